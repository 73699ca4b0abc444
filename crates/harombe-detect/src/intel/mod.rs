//! Threat intelligence: offline feeds indexed in memory, and (feature `online`, on by
//! default) clients for AbuseIPDB v2, VirusTotal v3 and AlienVault OTX.
//!
//! **Owns**: indicator types, the feed parsers and schedule ([`feeds`]), the index
//! ([`index`]: exact sets, CIDR tries, domain suffixes), the verdict for an event's
//! destinations ([`check_destinations`]) and, behind `online`, the provider clients with
//! their cache, quotas and circuit breakers ([`online`]).
//!
//! **Key decisions**:
//! - **Unknown is never clean.** A verdict's score is `None` when nothing could be
//!   checked (no destination, every provider failed); the threat scorer then leaves intel
//!   out and renormalises. A provider failure is reported as unknown and never cached.
//! - An offline index that lists none of an event's destinations says `Some(0.0)`: the
//!   destinations were checked against every loaded list.
//! - The pure parts (parsers, index, verdicts) are synchronous and usable without
//!   `online`; the index is immutable once built, so lookups need no lock.

pub mod feeds;
pub mod index;
#[cfg(feature = "online")]
pub mod online;

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use feeds::{FeedFormat, FeedLocation, FeedSet, FeedSpec, LineError, ParseReport};
pub use index::{IntelIndex, IntelMatch};

use crate::features::{Destination, DestinationKind};

/// An indicator value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum IndicatorValue {
    /// One address.
    Ip(IpAddr),
    /// A block.
    Net(ipnet::IpNet),
    /// A domain and its subdomains.
    Domain(String),
    /// A URL.
    Url(String),
    /// A file hash.
    Hash(String),
}

/// An indicator from a feed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Indicator {
    /// Value.
    pub value: IndicatorValue,
    /// Feed name.
    pub source: String,
    /// Label (SBL id, threat type, malware family).
    pub label: Option<String>,
    /// Maliciousness 0–1.
    pub score: f64,
}

/// What intelligence says about an event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IntelVerdict {
    /// Highest score among matches, `Some(0.0)` when everything checked is unlisted,
    /// `None` when nothing could be checked.
    pub score: Option<f64>,
    /// Matches, highest score first.
    pub matches: Vec<IntelMatch>,
    /// Destinations checked.
    pub checked: usize,
    /// Why the score is unknown or partial (provider failures, nothing to check).
    pub notes: Vec<String>,
}

impl IntelVerdict {
    /// Merges another verdict (max score; unknown only if both unknown).
    pub fn merge(&mut self, other: IntelVerdict) {
        self.score = match (self.score, other.score) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.matches.extend(other.matches);
        self.matches.sort_by(|a, b| b.score.total_cmp(&a.score));
        self.checked += other.checked;
        self.notes.extend(other.notes);
    }

    /// The verdict as a threat-scorer signal.
    pub fn signal(&self) -> crate::threat::Signal {
        let reason = match (self.matches.first(), self.score) {
            (Some(m), _) => format!(
                "{} listed by {}{}",
                m.queried,
                m.source,
                m.label
                    .as_deref()
                    .map(|l| format!(" ({l})"))
                    .unwrap_or_default()
            ),
            (None, Some(_)) => format!("{} destination(s) not listed", self.checked),
            (None, None) => self
                .notes
                .first()
                .cloned()
                .unwrap_or_else(|| "nothing to check".into()),
        };
        crate::threat::Signal {
            score: self.score,
            reasons: vec![reason],
        }
    }
}

/// A feed or provider URL fit for logs and errors: scheme, host, port and path, without
/// user info, query or fragment (where feed keys usually sit); `?…` marks a dropped query.
pub fn url_for_display(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => {
            let mut out = format!("{}://{}", u.scheme(), u.host_str().unwrap_or(""));
            if let Some(p) = u.port() {
                out.push_str(&format!(":{p}"));
            }
            out.push_str(u.path());
            if u.query().is_some_and(|q| !q.is_empty()) {
                out.push_str("?…");
            }
            out
        }
        Err(_) => "(a URL that does not parse)".to_owned(),
    }
}

/// Checks destinations against an offline index.
pub fn check_destinations(index: &IntelIndex, dests: &[Destination]) -> IntelVerdict {
    let mut v = IntelVerdict::default();
    for d in dests {
        v.checked += 1;
        let m = match (d.kind, &d.url) {
            (DestinationKind::Url, Some(u)) => index.lookup_url(u),
            _ => match d.ip() {
                Some(ip) => index.lookup_ip(ip),
                None => d.domain().and_then(|h| index.lookup_domain(h)),
            },
        };
        if let Some(m) = m {
            v.matches.push(m);
        }
    }
    v.matches.sort_by(|a, b| b.score.total_cmp(&a.score));
    v.score = if v.checked == 0 {
        v.notes.push("no destination in the event".into());
        None
    } else {
        Some(v.matches.first().map_or(0.0, |m| m.score))
    };
    v
}

/// Errors of threat intelligence (feeds and providers).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum IntelError {
    /// A feed could not be read or fetched.
    #[error("feed {feed}: {reason}")]
    Feed {
        /// Feed.
        feed: String,
        /// Why.
        reason: String,
    },
    /// The provider refused the API key (401/403).
    #[error("{provider}: API key refused (HTTP {status})")]
    Unauthorized {
        /// Provider.
        provider: &'static str,
        /// Status.
        status: u16,
    },
    /// The provider rate-limited us (429).
    #[error("{provider}: rate limited (retry after {retry_after:?})")]
    RateLimited {
        /// Provider.
        provider: &'static str,
        /// From `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// Our own quota for the provider is used up.
    #[error("{provider}: local quota exhausted")]
    QuotaExhausted {
        /// Provider.
        provider: &'static str,
    },
    /// The circuit breaker is open after repeated failures.
    #[error("{provider}: circuit open after repeated failures")]
    CircuitOpen {
        /// Provider.
        provider: &'static str,
    },
    /// The request timed out.
    #[error("{provider}: timed out")]
    Timeout {
        /// Provider.
        provider: &'static str,
    },
    /// Any other HTTP error status.
    #[error("{provider}: HTTP {status}: {reason}")]
    Http {
        /// Provider.
        provider: &'static str,
        /// Status.
        status: u16,
        /// Body excerpt.
        reason: String,
    },
    /// The response did not follow the provider's documented format.
    #[error("{provider}: unexpected response: {reason}")]
    BadResponse {
        /// Provider.
        provider: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// Connection-level failure.
    #[error("{provider}: transport error: {reason}")]
    Transport {
        /// Provider.
        provider: &'static str,
        /// Cause.
        reason: String,
    },
    /// A configuration value outside its domain.
    #[error("invalid intel configuration {field}: {reason}")]
    InvalidConfig {
        /// Field.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

impl IntelError {
    /// A short, stable label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Feed { .. } => "feed",
            Self::Unauthorized { .. } => "unauthorized",
            Self::RateLimited { .. } => "rate_limited",
            Self::QuotaExhausted { .. } => "quota_exhausted",
            Self::CircuitOpen { .. } => "circuit_open",
            Self::Timeout { .. } => "timeout",
            Self::Http { .. } => "http",
            Self::BadResponse { .. } => "bad_response",
            Self::Transport { .. } => "transport",
            Self::InvalidConfig { .. } => "invalid_config",
        }
    }

    /// Whether retrying later could succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            Self::Unauthorized { .. } | Self::BadResponse { .. } | Self::InvalidConfig { .. } => {
                false
            }
            Self::Http { status, .. } => *status >= 500,
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests;
