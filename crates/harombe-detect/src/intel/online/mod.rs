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
//! (timeout, transport, 401, 429 with `Retry-After`, 5xx, malformed body, quota, open
//! circuit) makes that provider's answer **unknown**: it is reported in the verdict's
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
        let body = resp.text().await.map_err(|e| transport(name, &e))?;
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
        let v: Value = serde_json::from_str(&body).map_err(|e| IntelError::BadResponse {
            provider: name,
            reason: format!("not JSON: {e}"),
        })?;
        let bad = |what: &str| IntelError::BadResponse {
            provider: name,
            reason: format!("missing {what}"),
        };
        let score = match p.cfg.kind {
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
        Ok(Some(score.clamp(0.0, 1.0)))
    }
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
/// from a blocking context or pre-fetch): GET with a timeout, 2xx required.
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
    let body = resp.text().await.map_err(|e| transport("feed", &e))?;
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
