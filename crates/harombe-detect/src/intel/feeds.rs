//! Offline feed parsers and the refresh schedule.
//!
//! Formats: plain lists (one IP, CIDR, domain or URL per line, `#` comments), Spamhaus
//! DROP (`1.2.3.0/24 ; SBL123`, `;` comments), abuse.ch CSV exports (URLhaus, ThreatFox,
//! Feodo Tracker: `#` comments, the commented header names the columns) and STIX 2.1
//! bundles (`indicator` objects with `[ipv4-addr:value = '…']`-style patterns).
//!
//! Every parser keeps the good lines and reports each bad one with its line number (for
//! STIX: the object's position and id). A feed whose refresh fails keeps its previous
//! indicators; the failure is reported and retried sooner than the normal interval.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::index::{IntelIndex, normalise_domain, parse_net};
use super::{Indicator, IndicatorValue, IntelError};

/// One line (or STIX object) a parser refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineError {
    /// 1-based line (STIX: 1-based object position in `objects`).
    pub line: usize,
    /// What was wrong.
    pub reason: String,
}

/// Result of parsing one feed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ParseReport {
    /// Indicators accepted.
    pub indicators: Vec<Indicator>,
    /// Lines refused.
    pub errors: Vec<LineError>,
}

/// Feed formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedFormat {
    /// One indicator per line.
    Plain,
    /// Spamhaus DROP / EDROP.
    SpamhausDrop,
    /// abuse.ch CSV (URLhaus, ThreatFox, Feodo).
    AbuseChCsv,
    /// STIX 2.1 bundle.
    Stix,
}

/// Parses `text` in `format`; `source` names the feed in matches; `score` is the
/// maliciousness given to its indicators (STIX `confidence` overrides it).
pub fn parse(format: FeedFormat, text: &str, source: &str, score: f64) -> ParseReport {
    match format {
        FeedFormat::Plain => parse_plain(text, source, score),
        FeedFormat::SpamhausDrop => parse_spamhaus_drop(text, source, score),
        FeedFormat::AbuseChCsv => parse_abuse_ch_csv(text, source, score),
        FeedFormat::Stix => parse_stix(text, source, score),
    }
}

fn ind(value: IndicatorValue, source: &str, label: Option<String>, score: f64) -> Indicator {
    Indicator {
        value,
        source: source.to_owned(),
        label,
        score,
    }
}

/// Classifies one token: CIDR, IP, `ip:port`, URL, hash, or domain.
fn classify(tok: &str) -> Option<IndicatorValue> {
    let tok = tok.trim();
    if tok.is_empty() {
        return None;
    }
    if let Some(v) = parse_net(tok) {
        return Some(v);
    }
    if let Some((ip, port)) = tok.rsplit_once(':')
        && port.bytes().all(|b| b.is_ascii_digit())
        && let Ok(ip) = ip.trim_matches(|c| c == '[' || c == ']').parse()
    {
        return Some(IndicatorValue::Ip(ip));
    }
    if tok.contains("://") {
        return url::Url::parse(tok)
            .ok()
            .filter(|u| u.host_str().is_some())
            .map(|_| IndicatorValue::Url(tok.to_owned()));
    }
    if matches!(tok.len(), 32 | 40 | 64) && tok.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Some(IndicatorValue::Hash(tok.to_ascii_lowercase()));
    }
    let d = normalise_domain(tok.strip_prefix("*.").unwrap_or(tok));
    let ok = d.contains('.')
        && d.len() <= 253
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        && d.rsplit('.').next().is_some_and(|t| {
            t.bytes().all(|b| b.is_ascii_alphanumeric()) && !t.bytes().all(|b| b.is_ascii_digit())
        });
    ok.then_some(IndicatorValue::Domain(d))
}

fn clip(s: &str) -> String {
    let s: String = s.chars().take(60).collect();
    format!("{s:?}")
}

/// Plain list: one IP, CIDR, domain, URL or hash per line; `#` starts a comment; an
/// optional second column (after whitespace) is kept as the label.
pub fn parse_plain(text: &str, source: &str, score: f64) -> ParseReport {
    let mut r = ParseReport::default();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut parts = line.split_whitespace();
        let tok = parts.next().unwrap_or("");
        let label = parts.collect::<Vec<_>>().join(" ");
        match classify(tok) {
            Some(v) => {
                r.indicators
                    .push(ind(v, source, (!label.is_empty()).then_some(label), score));
            }
            None => r.errors.push(LineError {
                line: i + 1,
                reason: format!("not an IP, CIDR, domain, URL or hash: {}", clip(tok)),
            }),
        }
    }
    r
}

/// Spamhaus DROP: `CIDR ; SBLnnn`, `;` comment lines.
pub fn parse_spamhaus_drop(text: &str, source: &str, score: f64) -> ParseReport {
    let mut r = ParseReport::default();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with(';') {
            continue;
        }
        let (net, label) = match line.split_once(';') {
            Some((n, l)) => (
                n.trim(),
                Some(l.trim().to_owned()).filter(|l| !l.is_empty()),
            ),
            None => (line, None),
        };
        match net.parse::<ipnet::IpNet>() {
            Ok(n) => r
                .indicators
                .push(ind(IndicatorValue::Net(n), source, label, score)),
            Err(_) => r.errors.push(LineError {
                line: i + 1,
                reason: format!("expected `CIDR ; SBL id`, found {}", clip(net)),
            }),
        }
    }
    r
}

/// Splits one CSV record (double quotes, `""` escapes).
fn csv_fields(line: &str) -> Result<Vec<String>, &'static str> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (false, '"') if cur.trim().is_empty() => {
                cur.clear();
                quoted = true;
            }
            (false, ',') => out.push(std::mem::take(&mut cur).trim().to_owned()),
            (_, c) => cur.push(c),
        }
    }
    if quoted {
        return Err("unterminated quote");
    }
    out.push(cur.trim().to_owned());
    Ok(out)
}

/// abuse.ch CSV. The last `#` line with commas is taken as the header; the indicator is
/// read from `url`, `ioc_value` (`ip:port` kept as the IP), `dst_ip`/`ip_address`, `domain`
/// or a hash column, and the label from `threat`/`threat_type`/`malware`/`malware_printable`.
/// Without a recognised header, the first field that is an indicator is used.
pub fn parse_abuse_ch_csv(text: &str, source: &str, score: f64) -> ParseReport {
    let mut r = ParseReport::default();
    let mut header: Option<Vec<String>> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(c) = line.strip_prefix('#') {
            if c.contains(',')
                && let Ok(h) = csv_fields(c.trim())
            {
                header = Some(h.into_iter().map(|s| s.to_ascii_lowercase()).collect());
            }
            continue;
        }
        let fields = match csv_fields(line) {
            Ok(f) => f,
            Err(e) => {
                r.errors.push(LineError {
                    line: i + 1,
                    reason: e.into(),
                });
                continue;
            }
        };
        let col = |names: &[&str]| {
            header.as_ref().and_then(|h| {
                names
                    .iter()
                    .find_map(|n| h.iter().position(|x| x == n))
                    .and_then(|p| fields.get(p))
                    .filter(|v| !v.is_empty())
            })
        };
        let label = col(&["threat_type", "threat", "malware_printable", "malware"]).cloned();
        let value = col(&[
            "url",
            "ioc_value",
            "ioc",
            "dst_ip",
            "ip_address",
            "domain",
            "sha256_hash",
            "md5_hash",
        ])
        .and_then(|v| classify(v))
        .or_else(|| {
            header
                .is_none()
                .then(|| {
                    fields
                        .iter()
                        .skip_while(|f| f.parse::<u64>().is_ok())
                        .find_map(|f| classify(f))
                })
                .flatten()
        });
        match value {
            Some(v) => r.indicators.push(ind(v, source, label, score)),
            None => r.errors.push(LineError {
                line: i + 1,
                reason: format!("no indicator in record {}", clip(line)),
            }),
        }
    }
    r
}

/// STIX 2.1 bundle: every `indicator` object with `pattern_type` `stix` (or none) whose
/// pattern compares `ipv4-addr:value`, `ipv6-addr:value`, `domain-name:value`,
/// `url:value` or `file:hashes.*` with `=`; several comparisons joined by OR/AND give
/// several indicators. `revoked` objects are skipped; `confidence` (0–100) sets the score.
pub fn parse_stix(text: &str, source: &str, score: f64) -> ParseReport {
    let mut r = ParseReport::default();
    let bundle: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            r.errors.push(LineError {
                line: e.line(),
                reason: format!("not JSON: {e}"),
            });
            return r;
        }
    };
    let Some(objects) = bundle.get("objects").and_then(|o| o.as_array()) else {
        r.errors.push(LineError {
            line: 1,
            reason: "not a STIX bundle: no `objects` array".into(),
        });
        return r;
    };
    for (i, o) in objects.iter().enumerate() {
        if o.get("type").and_then(|t| t.as_str()) != Some("indicator")
            || o.get("revoked").and_then(serde_json::Value::as_bool) == Some(true)
        {
            continue;
        }
        let id = o.get("id").and_then(|x| x.as_str()).unwrap_or("?");
        let bad = |reason: String| LineError {
            line: i + 1,
            reason: format!("{id}: {reason}"),
        };
        if let Some(pt) = o.get("pattern_type").and_then(|x| x.as_str())
            && pt != "stix"
        {
            r.errors
                .push(bad(format!("pattern_type {pt:?} not supported")));
            continue;
        }
        let Some(pattern) = o.get("pattern").and_then(|p| p.as_str()) else {
            r.errors.push(bad("no pattern".into()));
            continue;
        };
        let s = o
            .get("confidence")
            .and_then(serde_json::Value::as_f64)
            .map_or(score, |c| (c / 100.0).clamp(0.0, 1.0));
        let label = o.get("name").and_then(|n| n.as_str()).map(str::to_owned);
        match stix_values(pattern) {
            Ok(vals) if !vals.is_empty() => {
                for v in vals {
                    r.indicators.push(ind(v, source, label.clone(), s));
                }
            }
            Ok(_) => r
                .errors
                .push(bad(format!("no supported comparison in {}", clip(pattern)))),
            Err(e) => r.errors.push(bad(e)),
        }
    }
    r
}

/// Extracts `object:path = 'value'` comparisons from a STIX pattern.
fn stix_values(p: &str) -> Result<Vec<IndicatorValue>, String> {
    let mut out = Vec::new();
    let mut rest = p;
    while let Some(q) = rest.find('=') {
        let lhs = rest[..q].trim_end();
        let path_start = lhs
            .rfind(|c: char| c == '[' || c == '(' || c.is_whitespace())
            .map_or(0, |x| x + 1);
        let path = &lhs[path_start..];
        let after = rest[q + 1..].trim_start();
        let Some(body) = after.strip_prefix('\'') else {
            return Err(format!("expected a quoted value after `{path} =`"));
        };
        let mut val = String::new();
        let mut end = None;
        let mut it = body.char_indices();
        while let Some((k, c)) = it.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = it.next() {
                        val.push(n);
                    }
                }
                '\'' => {
                    end = Some(k);
                    break;
                }
                c => val.push(c),
            }
        }
        let Some(end) = end else {
            return Err(format!("unterminated string after `{path} =`"));
        };
        rest = &body[end + 1..];
        let v = match path {
            "ipv4-addr:value" | "ipv6-addr:value" => parse_net(&val),
            "domain-name:value" => Some(IndicatorValue::Domain(normalise_domain(&val))),
            "url:value" => Some(IndicatorValue::Url(val.clone())),
            p if p.starts_with("file:hashes.") => {
                Some(IndicatorValue::Hash(val.to_ascii_lowercase()))
            }
            _ => continue,
        };
        out.push(v.ok_or_else(|| format!("bad value {} for {path}", clip(&val)))?);
    }
    Ok(out)
}

/// Where a feed comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FeedLocation {
    /// A local file.
    File {
        /// Path.
        path: PathBuf,
    },
    /// A URL, fetched by the caller's fetch function.
    Url {
        /// URL.
        url: String,
    },
}

/// One configured feed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedSpec {
    /// Name (shown as the source of matches).
    pub name: String,
    /// Format.
    pub format: FeedFormat,
    /// Location.
    pub location: FeedLocation,
    /// Refresh interval.
    pub refresh: Duration,
    /// Score of its indicators.
    pub score: f64,
}

/// State of one feed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeedState {
    /// Last successful load.
    pub loaded_at: Option<OffsetDateTime>,
    /// Last attempt.
    pub attempted_at: Option<OffsetDateTime>,
    /// Last failure (cleared by a success).
    pub last_error: Option<String>,
    /// Indicators from the last successful load.
    pub indicators: Vec<Indicator>,
    /// Bad lines of the last successful load.
    pub line_errors: Vec<LineError>,
}

/// Configured feeds and their state; the caller drives the schedule by calling
/// [`refresh_due`](Self::refresh_due) periodically and swapping in [`index`](Self::index).
#[derive(Debug, Clone, Default)]
pub struct FeedSet {
    feeds: Vec<(FeedSpec, FeedState)>,
}

/// A fetch function for URL feeds: returns the body or an error.
pub type FetchFn<'a> = dyn FnMut(&str) -> Result<String, IntelError> + 'a;

impl FeedSet {
    /// Feeds to manage.
    pub fn new(specs: Vec<FeedSpec>) -> Self {
        Self {
            feeds: specs
                .into_iter()
                .map(|s| (s, FeedState::default()))
                .collect(),
        }
    }

    /// The feeds and their state.
    pub fn feeds(&self) -> impl Iterator<Item = (&FeedSpec, &FeedState)> {
        self.feeds.iter().map(|(s, st)| (s, st))
    }

    /// Whether feed `i` is due at `now`: never loaded, interval elapsed, or its last attempt
    /// failed more than a quarter interval (at least a minute) ago.
    fn due(spec: &FeedSpec, st: &FeedState, now: OffsetDateTime) -> bool {
        let since = |t: Option<OffsetDateTime>| t.map(|t| now - t);
        match (since(st.loaded_at), st.last_error.is_some()) {
            (None, false) => true,
            (_, true) => since(st.attempted_at)
                .is_none_or(|d| d >= (spec.refresh / 4).max(Duration::from_secs(60))),
            (Some(d), false) => d >= spec.refresh,
        }
    }

    /// Loads every due feed (files directly, URLs through `fetch`). Returns the names of
    /// feeds that changed and the failures; failed feeds keep their previous indicators.
    pub fn refresh_due(
        &mut self,
        now: OffsetDateTime,
        fetch: &mut FetchFn<'_>,
    ) -> (Vec<String>, Vec<IntelError>) {
        let mut changed = Vec::new();
        let mut failed = Vec::new();
        for (spec, st) in &mut self.feeds {
            if !Self::due(spec, st, now) {
                continue;
            }
            st.attempted_at = Some(now);
            let body = match &spec.location {
                FeedLocation::File { path } => {
                    std::fs::read_to_string(path).map_err(|e| IntelError::Feed {
                        feed: spec.name.clone(),
                        reason: format!("{}: {e}", path.display()),
                    })
                }
                FeedLocation::Url { url } => fetch(url).map_err(|e| IntelError::Feed {
                    feed: spec.name.clone(),
                    reason: e.to_string(),
                }),
            };
            match body {
                Ok(text) => {
                    let r = parse(spec.format, &text, &spec.name, spec.score);
                    st.indicators = r.indicators;
                    st.line_errors = r.errors;
                    st.loaded_at = Some(now);
                    st.last_error = None;
                    changed.push(spec.name.clone());
                }
                Err(e) => {
                    st.last_error = Some(e.to_string());
                    failed.push(e);
                }
            }
        }
        (changed, failed)
    }

    /// An index of every feed's current indicators.
    pub fn index(&self) -> IntelIndex {
        IntelIndex::from_indicators(self.feeds.iter().flat_map(|(_, st)| st.indicators.iter()))
    }
}
