//! Online threat-intelligence clients (feature `online`): AbuseIPDB v2, VirusTotal v3 and
//! AlienVault OTX, following their documented request and response formats.
//!
//! | provider | request | key header | score |
//! |---|---|---|---|
//! | AbuseIPDB | `GET /api/v2/check?ipAddress=…&maxAgeInDays=90` | `Key` | `data.abuseConfidenceScore / 100` |
//! | VirusTotal | `GET /api/v3/ip_addresses/{ip}`, `/api/v3/domains/{d}` | `x-apikey` | `min(1, (malicious + suspicious/2) / 5)` from `data.attributes.last_analysis_stats` |
//! | OTX | `GET /api/v1/indicators/{IPv4,IPv6,domain}/{v}/general` | `X-OTX-API-KEY` | 0 without pulses, else `min(0.9, 0.3 + 0.1 · pulse_info.count)` |
//!
//! Every call goes through, in order: the 1-hour TTL cache (successful answers only), the
//! circuit breaker, the provider's token bucket, and a request timeout. Any failure
//! (timeout, transport, 401, 429 with `Retry-After`, 5xx, malformed body, a body over
//! [`MAX_RESPONSE_BYTES`], quota, open circuit) makes that provider's answer **unknown**: it is reported in the verdict's
//! notes, feeds the breaker (a 429 opens it for `Retry-After`), and is never cached. A
//! 404 from VirusTotal (indicator not in its dataset) is a successful "no data" answer.

mod guard;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use harombe_core::{Clock, Redacted};
use serde_json::Value;

pub use guard::{CircuitBreaker, TokenBucket, TtlCache};

use super::{IntelError, IntelMatch, IntelVerdict};

/// The supported providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// AbuseIPDB v2 (IPs only).
    AbuseIpDb,
    /// VirusTotal v3.
    VirusTotal,
    /// AlienVault OTX.
    Otx,
}

impl ProviderKind {
    /// Stable name.
    pub fn name(self) -> &'static str {
        match self {
            Self::AbuseIpDb => "abuseipdb",
            Self::VirusTotal => "virustotal",
            Self::Otx => "otx",
        }
    }

    /// The public API base URL.
    pub fn default_base_url(self) -> &'static str {
        match self {
            Self::AbuseIpDb => "https://api.abuseipdb.com",
            Self::VirusTotal => "https://www.virustotal.com",
            Self::Otx => "https://otx.alienvault.com",
        }
    }
}

/// One provider's settings.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// Which provider.
    pub kind: ProviderKind,
    /// Base URL (scheme, host, port; no path).
    pub base_url: String,
    /// API key (never printed).
    pub api_key: Redacted<String>,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Token bucket capacity.
    pub burst: u32,
    /// Token refill per second (e.g. AbuseIPDB free tier: 1000/day ≈ 0.0116).
    pub per_second: f64,
    /// Consecutive failures that open the breaker.
    pub breaker_threshold: u32,
    /// How long the breaker stays open.
    pub breaker_cooldown: Duration,
    /// Cache TTL (1 hour by default).
    pub cache_ttl: Duration,
}

impl ProviderConfig {
    /// Defaults for `kind` against its public API.
    pub fn new(kind: ProviderKind, api_key: impl Into<String>) -> Self {
        Self {
            kind,
            base_url: kind.default_base_url().to_owned(),
            api_key: Redacted::new(api_key.into()),
            timeout: Duration::from_secs(3),
            burst: 10,
            per_second: 1.0 / 60.0,
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_secs(60),
            cache_ttl: Duration::from_secs(3600),
        }
    }
}

struct Provider {
    cfg: ProviderConfig,
    cache: TtlCache,
    bucket: TokenBucket,
    breaker: CircuitBreaker,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("kind", &self.cfg.kind)
            .field("base_url", &self.cfg.base_url)
            .finish_non_exhaustive()
    }
}

/// What to look up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query<'a> {
    /// An IP address.
    Ip(IpAddr),
    /// A domain.
    Domain(&'a str),
}

/// Clients for the configured providers, sharing one HTTP client and the clock.
#[derive(Debug)]
pub struct OnlineIntel {
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    providers: Vec<Provider>,
}

fn lower(s: &str) -> String {
    s.to_ascii_lowercase()
}

impl OnlineIntel {
    /// Clients for `providers`.
    pub fn new(providers: Vec<ProviderConfig>, clock: Arc<dyn Clock>) -> Result<Self, IntelError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("harombe/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| IntelError::InvalidConfig {
                field: "http client",
                reason: e.to_string(),
            })?;
        let providers = providers
            .into_iter()
            .map(|cfg| {
                url::Url::parse(&cfg.base_url).map_err(|e| IntelError::InvalidConfig {
                    field: "base_url",
                    reason: format!("{}: {e}", cfg.base_url),
                })?;
                Ok(Provider {
                    cache: TtlCache::new(cfg.cache_ttl, 100_000),
                    bucket: TokenBucket::new(cfg.burst, cfg.per_second),
                    breaker: CircuitBreaker::new(cfg.breaker_threshold, cfg.breaker_cooldown),
                    cfg,
                })
            })
            .collect::<Result<Vec<_>, IntelError>>()?;
        Ok(Self {
            http,
            clock,
            providers,
        })
    }

    /// Asks every provider that supports the query (concurrently) and merges: the highest
    /// known score wins; providers that failed are listed in `notes`; the score is None
    /// only when no provider could answer.
    pub async fn lookup(&self, q: &Query<'_>) -> (IntelVerdict, Vec<IntelError>) {
        let calls = self
            .providers
            .iter()
            .filter(|p| !(matches!(q, Query::Domain(_)) && p.cfg.kind == ProviderKind::AbuseIpDb))
            .map(|p| self.ask(p, q));
        let answers = futures_join_all(calls).await;
        let mut v = IntelVerdict {
            checked: 1,
            ..IntelVerdict::default()
        };
        let mut errors = Vec::new();
        let queried = match q {
            Query::Ip(ip) => ip.to_string(),
            Query::Domain(d) => lower(d),
        };
        for (kind, a) in answers {
            match a {
                Ok(Some(score)) => {
                    v.score = Some(v.score.map_or(score, |s: f64| s.max(score)));
                    if score > 0.0 {
                        v.matches.push(IntelMatch {
                            indicator: queried.clone(),
                            queried: queried.clone(),
                            source: kind.name().to_owned(),
                            label: None,
                            score,
                        });
                    }
                }
                Ok(None) => v.notes.push(format!("{}: no data", kind.name())),
                Err(e) => {
                    v.notes.push(format!("{}: unknown ({e})", kind.name()));
                    errors.push(e);
                }
            }
        }
        v.matches.sort_by(|a, b| b.score.total_cmp(&a.score));
        (v, errors)
    }

    async fn ask(
        &self,
        p: &Provider,
        q: &Query<'_>,
    ) -> (ProviderKind, Result<Option<f64>, IntelError>) {
        let kind = p.cfg.kind;
        let name = kind.name();
        let key = match q {
            Query::Ip(ip) => format!("ip:{ip}"),
            Query::Domain(d) => format!("domain:{}", lower(d)),
        };
        let now = self.clock.now();
        if let Some(hit) = p.cache.get(&key, now) {
            return (kind, Ok(hit));
        }
        if !p.breaker.allow(now) {
            return (kind, Err(IntelError::CircuitOpen { provider: name }));
        }
        if !p.bucket.try_take(now) {
            return (kind, Err(IntelError::QuotaExhausted { provider: name }));
        }
        let result = self.request(p, q).await;
        let now = self.clock.now();
        match &result {
            Ok(score) => {
                p.breaker.success();
                p.cache.put(key, *score, now);
            }
            Err(IntelError::RateLimited { retry_after, .. }) => {
                p.breaker.failure(now, *retry_after);
            }
            Err(_) => p.breaker.failure(now, None),
        }
        (kind, result)
    }

    async fn request(&self, p: &Provider, q: &Query<'_>) -> Result<Option<f64>, IntelError> {
        let name = p.cfg.kind.name();
        let base = p.cfg.base_url.trim_end_matches('/');
        let key = p.cfg.api_key.expose().as_str();
        let req = match (p.cfg.kind, q) {
            (ProviderKind::AbuseIpDb, Query::Ip(ip)) => {
                let mut u = url::Url::parse(&format!("{base}/api/v2/check")).map_err(|e| {
                    IntelError::InvalidConfig {
                        field: "base_url",
                        reason: e.to_string(),
                    }
                })?;
                u.query_pairs_mut()
                    .append_pair("ipAddress", &ip.to_string())
                    .append_pair("maxAgeInDays", "90");
                self.http.get(u).header("Key", key)
            }
            (ProviderKind::AbuseIpDb, Query::Domain(_)) => return Ok(None),
            (ProviderKind::VirusTotal, Query::Ip(ip)) => self
                .http
                .get(format!("{base}/api/v3/ip_addresses/{ip}"))
                .header("x-apikey", key),
            (ProviderKind::VirusTotal, Query::Domain(d)) => self
                .http
                .get(format!("{base}/api/v3/domains/{}", lower(d)))
                .header("x-apikey", key),
            (ProviderKind::Otx, Query::Ip(ip)) => {
                let fam = if ip.is_ipv4() { "IPv4" } else { "IPv6" };
                self.http
                    .get(format!("{base}/api/v1/indicators/{fam}/{ip}/general"))
                    .header("X-OTX-API-KEY", key)
            }
            (ProviderKind::Otx, Query::Domain(d)) => self
                .http
                .get(format!(
                    "{base}/api/v1/indicators/domain/{}/general",
                    lower(d)
                ))
                .header("X-OTX-API-KEY", key),
        };
        let resp = req
            .header("Accept", "application/json")
            .timeout(p.cfg.timeout)
            .send()
            .await
            .map_err(|e| transport(name, &e))?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = read_capped(resp, MAX_RESPONSE_BYTES)
            .await
            .map_err(|e| e.for_provider(name))?;
        match status {
            200 => {}
            401 | 403 => {
                return Err(IntelError::Unauthorized {
                    provider: name,
                    status,
                });
            }
            429 => {
                return Err(IntelError::RateLimited {
                    provider: name,
                    retry_after,
                });
            }
            404 if p.cfg.kind == ProviderKind::VirusTotal => return Ok(None),
            s => {
                return Err(IntelError::Http {
                    provider: name,
                    status: s,
                    reason: error_detail(&body),
                });
            }
        }
        provider_score(p.cfg.kind, &body).map(Some)
    }
}

/// The largest answer read from a provider (theirs are a few kilobytes).
pub const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// The largest feed [`fetch_feed`] reads.
pub const MAX_FEED_BYTES: usize = 64 << 20;

/// The 0-1 score in a provider's successful (200) answer `body`, per the table in the
/// module doc; `BadResponse` naming what is missing when the body is not that provider's
/// JSON. Never NaN: scores are clamped to 0-1.
pub fn provider_score(kind: ProviderKind, body: &str) -> Result<f64, IntelError> {
    let provider = kind.name();
    let v: Value = serde_json::from_str(body).map_err(|e| IntelError::BadResponse {
        provider,
        reason: format!("not JSON: {e}"),
    })?;
    let bad = |what: &str| IntelError::BadResponse {
        provider,
        reason: format!("missing {what}"),
    };
    let score = match kind {
        ProviderKind::AbuseIpDb => {
            v.pointer("/data/abuseConfidenceScore")
                .and_then(Value::as_f64)
                .ok_or_else(|| bad("data.abuseConfidenceScore"))?
                / 100.0
        }
        ProviderKind::VirusTotal => {
            let stats = v
                .pointer("/data/attributes/last_analysis_stats")
                .ok_or_else(|| bad("data.attributes.last_analysis_stats"))?;
            let n = |k: &str| stats.get(k).and_then(Value::as_f64).unwrap_or(0.0);
            ((n("malicious") + n("suspicious") / 2.0) / 5.0).min(1.0)
        }
        ProviderKind::Otx => {
            let count = v
                .pointer("/pulse_info/count")
                .and_then(Value::as_f64)
                .ok_or_else(|| bad("pulse_info.count"))?;
            if count <= 0.0 {
                0.0
            } else {
                (0.3 + 0.1 * count).min(0.9)
            }
        }
    };
    // Whatever the numbers (JSON ones are finite, their sums may not be), no NaN gets out.
    Ok(if score.is_nan() {
        0.0
    } else {
        score.clamp(0.0, 1.0)
    })
}

/// Why a capped read failed.
enum ReadError {
    Transport(reqwest::Error),
    TooLarge(usize),
}

impl ReadError {
    fn for_provider(self, provider: &'static str) -> IntelError {
        match self {
            Self::Transport(e) => transport(provider, &e),
            Self::TooLarge(cap) => IntelError::BadResponse {
                provider,
                reason: format!("answer larger than {cap} bytes"),
            },
        }
    }
}

/// The body of `resp` as text (invalid UTF-8 replaced), refused past `cap` bytes without
/// reading further.
async fn read_capped(mut resp: reqwest::Response, cap: usize) -> Result<String, ReadError> {
    if resp
        .content_length()
        .is_some_and(|n| usize::try_from(n).map_or(true, |n| n > cap))
    {
        return Err(ReadError::TooLarge(cap));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(ReadError::Transport)? {
        if body.len() + chunk.len() > cap {
            return Err(ReadError::TooLarge(cap));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

fn transport(provider: &'static str, e: &reqwest::Error) -> IntelError {
    if e.is_timeout() {
        IntelError::Timeout { provider }
    } else {
        IntelError::Transport {
            provider,
            reason: e.to_string(),
        }
    }
}

/// The provider's error message: AbuseIPDB `errors[0].detail`, VirusTotal
/// `error.message`, otherwise the body's first 200 characters.
fn error_detail(body: &str) -> String {
    let v: Option<Value> = serde_json::from_str(body).ok();
    v.as_ref()
        .and_then(|v| {
            v.pointer("/errors/0/detail")
                .or_else(|| v.pointer("/error/message"))
                .or_else(|| v.get("detail"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| body.chars().take(200).collect())
}

/// Runs futures concurrently on the current task and collects their outputs in order.
async fn futures_join_all<F: Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futs {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in set.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

/// Fetches a feed URL (for [`FeedSet::refresh_due`](super::FeedSet::refresh_due), run it
/// from a blocking context or pre-fetch): GET with a timeout, 2xx required, at most
/// [`MAX_FEED_BYTES`].
pub async fn fetch_feed(
    http: &reqwest::Client,
    url: &str,
    timeout: Duration,
) -> Result<String, IntelError> {
    let resp = http
        .get(url)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| transport("feed", &e))?;
    let status = resp.status().as_u16();
    let body = read_capped(resp, MAX_FEED_BYTES)
        .await
        .map_err(|e| match e {
            ReadError::Transport(e) => transport("feed", &e),
            ReadError::TooLarge(cap) => IntelError::Feed {
                feed: super::url_for_display(url),
                reason: format!("larger than {cap} bytes"),
            },
        })?;
    if (200..300).contains(&status) {
        Ok(body)
    } else {
        Err(IntelError::Http {
            provider: "feed",
            status,
            reason: error_detail(&body),
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    const KINDS: [ProviderKind; 3] = [
        ProviderKind::AbuseIpDb,
        ProviderKind::VirusTotal,
        ProviderKind::Otx,
    ];

    #[test]
    fn documented_answers_score_as_the_table_says() {
        let abuse = json!({"data": {"ipAddress": "198.51.100.66", "abuseConfidenceScore": 85}});
        assert_eq!(
            provider_score(ProviderKind::AbuseIpDb, &abuse.to_string()).unwrap(),
            0.85
        );
        let vt = json!({"data": {"attributes": {"last_analysis_stats": {"malicious": 2, "suspicious": 2, "harmless": 60}}}});
        assert_eq!(
            provider_score(ProviderKind::VirusTotal, &vt.to_string()).unwrap(),
            0.6
        );
        let otx = json!({"pulse_info": {"count": 2, "pulses": []}});
        assert!((provider_score(ProviderKind::Otx, &otx.to_string()).unwrap() - 0.5).abs() < 1e-12);
        let none = json!({"pulse_info": {"count": 0}});
        assert_eq!(
            provider_score(ProviderKind::Otx, &none.to_string()).unwrap(),
            0.0
        );
    }

    #[test]
    fn a_body_of_the_wrong_shape_is_a_bad_response_naming_the_field() {
        for (kind, field) in [
            (ProviderKind::AbuseIpDb, "data.abuseConfidenceScore"),
            (
                ProviderKind::VirusTotal,
                "data.attributes.last_analysis_stats",
            ),
            (ProviderKind::Otx, "pulse_info.count"),
        ] {
            let e = provider_score(kind, r#"{"data": {}}"#).unwrap_err();
            assert_eq!(e.reason(), "bad_response");
            assert!(e.to_string().contains(field), "{e}");
            let e = provider_score(kind, "<html>busy</html>").unwrap_err();
            assert!(e.to_string().contains("not JSON"), "{e}");
        }
        // Huge counts sum past f64: still a score in range.
        let vt = r#"{"data":{"attributes":{"last_analysis_stats":{"malicious":1e308,"suspicious":1e308}}}}"#;
        assert_eq!(provider_score(ProviderKind::VirusTotal, vt).unwrap(), 1.0);
    }

    #[test]
    fn urls_are_shown_without_credentials_or_query() {
        assert_eq!(
            super::super::url_for_display(
                "https://user:pw@feeds.example:8443/drop.txt?auth-key=s3cret#x"
            ),
            "https://feeds.example:8443/drop.txt?…"
        );
        assert_eq!(
            super::super::url_for_display("https://feeds.example/list"),
            "https://feeds.example/list"
        );
        assert!(!super::super::url_for_display("not a url s3cret").contains("s3cret"));
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            "[a-zA-Z_]{0,12}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            let key = prop_oneof![
                Just("data".to_owned()),
                Just("attributes".to_owned()),
                Just("last_analysis_stats".to_owned()),
                Just("malicious".to_owned()),
                Just("suspicious".to_owned()),
                Just("abuseConfidenceScore".to_owned()),
                Just("pulse_info".to_owned()),
                Just("count".to_owned()),
                "[a-z]{1,6}",
            ];
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(key, inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_json_gives_a_score_in_range_or_a_bad_response(v in json_value()) {
            let body = v.to_string();
            for kind in KINDS {
                match provider_score(kind, &body) {
                    Ok(s) => prop_assert!((0.0..=1.0).contains(&s), "{kind:?} {s} {body}"),
                    Err(e) => prop_assert_eq!(e.reason(), "bad_response"),
                }
            }
        }

        #[test]
        fn any_text_is_handled(body in ".{0,200}") {
            for kind in KINDS {
                if let Ok(s) = provider_score(kind, &body) {
                    prop_assert!((0.0..=1.0).contains(&s));
                }
            }
        }

        #[test]
        fn documented_fields_give_the_documented_scores(
            abuse in 0u32..=100,
            malicious in 0u32..1000,
            suspicious in 0u32..1000,
            pulses in -5i64..1000,
        ) {
            let a = json!({"data": {"abuseConfidenceScore": abuse}}).to_string();
            prop_assert_eq!(provider_score(ProviderKind::AbuseIpDb, &a).unwrap(), f64::from(abuse) / 100.0);
            let v = json!({"data": {"attributes": {"last_analysis_stats": {"malicious": malicious, "suspicious": suspicious}}}}).to_string();
            let want = ((f64::from(malicious) + f64::from(suspicious) / 2.0) / 5.0).min(1.0);
            prop_assert_eq!(provider_score(ProviderKind::VirusTotal, &v).unwrap(), want);
            let o = json!({"pulse_info": {"count": pulses}}).to_string();
            #[allow(clippy::cast_precision_loss)]
            let want = if pulses <= 0 { 0.0 } else { (0.3 + 0.1 * pulses as f64).min(0.9) };
            prop_assert_eq!(provider_score(ProviderKind::Otx, &o).unwrap(), want);
        }
    }
}
