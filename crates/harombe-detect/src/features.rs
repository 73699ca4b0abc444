//! Feature extraction for per-agent behavioural anomaly detection.
//!
//! **Owns**: [`CallFeatures`] (what one tool call looked like, built from a
//! [`harombe_core::AuditEvent`] or live by the gateway), the destination finder
//! ([`find_destinations`]: URLs, hosts, e-mail addresses, IPs inside JSON arguments), and
//! the per-agent [`FeatureExtractor`] that turns a call into a fixed [`FeatureVector`] of
//! [`N_FEATURES`] numbers, keeping the little state that needs (tools and destinations
//! seen, tool-to-tool transition counts, timestamps of the last hour).
//!
//! **Key decisions**:
//! - Every feature is a documented, finite number (see [`FEATURE_NAMES`] and
//!   [`FEATURE_DESCRIPTIONS`]); sizes and latencies are `ln(1 + x)` so that heavy tails do
//!   not swamp z-scores.
//! - Tool identity is FNV-1a-64 of the tool name folded into `[0, 1)`: stable across
//!   processes and versions (never `RandomState`), so persisted models stay valid.
//! - Destinations and tools are remembered by their FNV hash only: a persisted extractor
//!   does not hold the raw URLs an agent visited.
//! - Values the caller does not know yet (result size and latency before the call is
//!   forwarded) are marked *missing* in the vector; the models impute them with the
//!   agent's baseline mean, so they neither raise nor lower a score.
//! - Novelty and rarity are `1 / (1 + count)`: 1 for never seen, ½ for seen once, close to
//!   0 for routine — independent of how many distinct tools an agent uses.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::LazyLock;

use harombe_core::{AuditEvent, EventKind, Outcome};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Number of features in a [`FeatureVector`].
pub const N_FEATURES: usize = 18;

/// Feature names, in column order (persisted with every model as its schema).
pub const FEATURE_NAMES: [&str; N_FEATURES] = [
    "tool_id",
    "arg_bytes",
    "arg_depth",
    "arg_keys",
    "arg_strings",
    "result_bytes",
    "latency",
    "error",
    "hour_surprisal",
    "day_surprisal",
    "rate_1m",
    "rate_1h",
    "tool_novelty",
    "dest_novelty",
    "dest_count",
    "transition_rarity",
    "sensitive_refs",
    "arg_bytes_tool_z",
];

/// What each feature measures, for explanations (same order as [`FEATURE_NAMES`]).
pub const FEATURE_DESCRIPTIONS: [&str; N_FEATURES] = [
    "tool identity (FNV-1a of the tool name folded to [0, 1))",
    "argument size, ln(1 + bytes)",
    "argument nesting depth",
    "number of object keys in the arguments",
    "number of strings in the arguments",
    "result size, ln(1 + bytes)",
    "latency, ln(1 + milliseconds)",
    "the call failed (1) or not (0)",
    "how unusual this hour of day (UTC) is for this agent, -log2 of its smoothed share of the agent's calls",
    "how unusual this day of week is for this agent, -log2 of its smoothed share of the agent's calls",
    "calls by this agent in the last minute, this one included",
    "calls by this agent in the last hour, this one included",
    "tool novelty for this agent, 1 / (1 + times used)",
    "destination novelty, sum over destinations of 1 / (1 + times seen)",
    "number of destinations (URLs, hosts, e-mails, IPs) in the arguments",
    "rarity of the transition from the previous tool, 1 / (1 + times seen) (unknown after a tool never used before)",
    "argument strings naming credential material (.ssh, .aws, .env, /etc/shadow, ...)",
    "argument size against this tool's own history, z in [-10, 20] (0 until 5 uses)",
];

/// Index of each feature, for code that reads one by name.
#[allow(missing_docs)]
pub mod idx {
    pub const TOOL_ID: usize = 0;
    pub const ARG_BYTES: usize = 1;
    pub const ARG_DEPTH: usize = 2;
    pub const ARG_KEYS: usize = 3;
    pub const ARG_STRINGS: usize = 4;
    pub const RESULT_BYTES: usize = 5;
    pub const LATENCY: usize = 6;
    pub const ERROR: usize = 7;
    pub const HOUR: usize = 8;
    pub const DOW: usize = 9;
    pub const RATE_1M: usize = 10;
    pub const RATE_1H: usize = 11;
    pub const TOOL_NOVELTY: usize = 12;
    pub const DEST_NOVELTY: usize = 13;
    pub const DEST_COUNT: usize = 14;
    pub const TRANSITION: usize = 15;
    pub const SENSITIVE: usize = 16;
    pub const ARG_BYTES_TOOL_Z: usize = 17;
}

/// Smallest standard deviation a baseline assumes per feature, so that a feature that was
/// constant in training (say `error` always 0) still yields a finite, large z-score when it
/// changes instead of the zero a `std = 0` would give.
pub const MIN_STD: [f64; N_FEATURES] = [
    0.05, 0.35, 0.5, 1.0, 1.0, 0.35, 0.35, 0.15, 1.0, 1.0, 1.0, 3.0, 0.1, 0.1, 0.5, 0.1, 0.1, 1.0,
];

/// At most this many destinations are taken from one call.
pub const MAX_DESTINATIONS: usize = 32;
/// At most this many bytes of argument strings are scanned for destinations, in all.
pub const MAX_SCAN_BYTES: usize = 64 * 1024;
/// At most this many bytes of one string are scanned for destinations (its start): a bulk
/// payload does not use up the budget of the fields after it.
pub const MAX_SCAN_BYTES_PER_STRING: usize = 4 * 1024;
/// Nesting deeper than this is not walked (the depth feature saturates here).
pub const MAX_DEPTH: usize = 64;

/// FNV-1a, 64 bits: the stable hash used for tool identity and remembered names.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Folds a 64-bit hash into `[0, 1)` with 53 bits of precision.
#[allow(clippy::cast_precision_loss)]
pub fn fold_hash(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// What kind of destination was found in the arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DestinationKind {
    /// A URL (`value` is its host; `url` the whole URL).
    Url,
    /// A bare host name.
    Host,
    /// An e-mail address (lower-cased).
    Email,
    /// An IPv4 or IPv6 address.
    Ip,
}

/// A destination found in a call's arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    /// What it is.
    pub kind: DestinationKind,
    /// Normalised value: host (lower case, no trailing dot), e-mail or canonical IP.
    pub value: String,
    /// The full URL, for [`DestinationKind::Url`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

impl Destination {
    /// The IP, when the destination is one (or a URL whose host is one).
    pub fn ip(&self) -> Option<IpAddr> {
        self.value
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok()
    }

    /// The host or domain to look up (the domain part of an e-mail address).
    pub fn domain(&self) -> Option<&str> {
        match self.kind {
            DestinationKind::Ip => None,
            DestinationKind::Email => self.value.rsplit_once('@').map(|(_, d)| d),
            _ if self.ip().is_some() => None,
            _ => Some(&self.value),
        }
    }
}

/// Shape of a JSON argument value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArgShape {
    /// Approximate serialized size in bytes.
    pub bytes: u64,
    /// Nesting depth (a scalar is 0, `{"a":1}` is 1).
    pub depth: u32,
    /// Object keys, all levels.
    pub keys: u32,
    /// Strings, all levels (keys excluded).
    pub strings: u32,
    /// Strings that name credential material (see [`SENSITIVE_MARKERS`]).
    #[serde(default)]
    pub sensitive: u32,
}

/// Lower-case substrings that mark a reference to credential material in an argument
/// string: key files, cloud credentials, secret stores, password databases.
pub const SENSITIVE_MARKERS: &[&str] = &[
    ".ssh/",
    "id_rsa",
    "id_ed25519",
    ".aws/credentials",
    ".aws/config",
    "/etc/shadow",
    "/etc/passwd",
    ".env",
    ".netrc",
    ".pgpass",
    ".kube/config",
    "credentials.json",
    ".git-credentials",
    ".docker/config.json",
    "secrets.yaml",
    "private_key",
    ".pem",
    "keychain",
    "vault/",
    "/proc/self/environ",
];

/// Bytes that anchor the marker search: every marker holds one of these, except
/// `keychain`, which is anchored on its `k`.
const ANCHORS: [u8; 3] = [b'.', b'/', b'_'];

/// Markers anchored on one byte, each with the offset of that byte in it.
type Anchored = Vec<(usize, &'static [u8])>;

/// Per anchor byte, the markers anchored on it: on a marker's first `.`, `/` or `_`, or
/// else on its first `k`.
static ANCHORED: LazyLock<[Anchored; 4]> = LazyLock::new(|| {
    let mut by_anchor: [Anchored; 4] = Default::default();
    for m in SENSITIVE_MARKERS {
        let b = m.as_bytes();
        let (slot, off) = (0..ANCHORS.len())
            .find_map(|a| memchr::memchr(ANCHORS[a], b).map(|o| (a, o)))
            .or_else(|| memchr::memchr(b'k', b).map(|o| (3, o)))
            .expect("every marker holds an anchor byte");
        by_anchor[slot].push((off, b));
    }
    by_anchor
});

/// Whether a string of at most 4 KB names credential material (longer strings are bulk
/// data, not paths, and are not searched). ASCII case-insensitive (the markers are
/// lower-case ASCII). Every occurrence of a marker has the marker's anchor byte at a known
/// offset, so only the positions of the four anchor bytes are checked, found by `memchr`
/// (a few bytes per cycle on text that holds few of them).
fn is_sensitive(s: &str) -> bool {
    if s.len() > 4096 {
        return false;
    }
    let b = s.as_bytes();
    let at = |p: usize, slot: usize| {
        ANCHORED[slot].iter().any(|&(off, m)| {
            p >= off
                && b.get(p - off..p - off + m.len())
                    .is_some_and(|w| w.eq_ignore_ascii_case(m))
        })
    };
    memchr::memchr3_iter(ANCHORS[0], ANCHORS[1], ANCHORS[2], b)
        .any(|p| at(p, ANCHORS.iter().position(|&a| a == b[p]).unwrap_or(2)))
        || memchr::memchr2_iter(b'k', b'K', b).any(|p| at(p, 3))
}

/// One call as the detectors see it: built once (arguments walked once), then scored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallFeatures {
    /// When the call happened (UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub timestamp: OffsetDateTime,
    /// Event kind (tool calls mostly; other kinds feed event-type frequencies).
    pub kind: EventKind,
    /// The tool (the event's target).
    pub tool: String,
    /// Shape of the arguments.
    pub shape: ArgShape,
    /// Destinations found in the arguments.
    pub destinations: Vec<Destination>,
    /// Result size in bytes, when known.
    pub result_bytes: Option<u64>,
    /// Latency in microseconds, when known.
    pub duration_us: Option<u64>,
    /// Whether the call failed.
    pub is_error: bool,
}

impl CallFeatures {
    /// A call to `tool` at `timestamp` with no arguments, result or latency yet.
    pub fn new(timestamp: OffsetDateTime, tool: impl Into<String>) -> Self {
        Self {
            timestamp,
            kind: EventKind::ToolCall,
            tool: tool.into(),
            shape: ArgShape::default(),
            destinations: Vec::new(),
            result_bytes: None,
            duration_us: None,
            is_error: false,
        }
    }

    /// Sets the arguments: walks them once for shape and destinations.
    pub fn with_arguments(mut self, args: &serde_json::Value) -> Self {
        let (shape, dests) = analyse_arguments(args);
        self.shape = shape;
        self.destinations = dests;
        self
    }

    /// Sets the result size and latency (known after the call returned).
    pub fn with_result(mut self, result_bytes: u64, duration_us: u64, is_error: bool) -> Self {
        self.result_bytes = Some(result_bytes);
        self.duration_us = Some(duration_us);
        self.is_error = is_error;
        self
    }

    /// From an audit event: `target` is the tool (`"?"` when absent), `arguments` the JSON,
    /// `bytes_in` the request size when non-zero (else the arguments' approximate size),
    /// `bytes_out` the result size, `duration_us` the latency, and the call is an error
    /// when the outcome is `failure` or `error` is set. Result size and latency are treated
    /// as unknown when the event has no duration (the call was not forwarded).
    pub fn from_event(event: &AuditEvent) -> Self {
        let mut c = Self::new(
            event.timestamp,
            event.target.clone().unwrap_or_else(|| "?".into()),
        );
        c.kind = event.kind;
        if let Some(args) = &event.arguments {
            c = c.with_arguments(args);
        }
        if event.bytes_in > 0 {
            c.shape.bytes = event.bytes_in;
        }
        if let Some(d) = event.duration_us {
            c.duration_us = Some(d);
            c.result_bytes = Some(event.bytes_out);
        }
        c.is_error = event.outcome == Outcome::Failure || event.error.is_some();
        c
    }
}

/// Walks a JSON value once: its shape and the destinations inside its strings.
pub fn analyse_arguments(v: &serde_json::Value) -> (ArgShape, Vec<Destination>) {
    let mut w = Walker::default();
    w.walk(v, 0);
    (w.shape, w.dests)
}

/// Destinations inside a JSON value (see [`find_destinations_in_str`]).
pub fn find_destinations(v: &serde_json::Value) -> Vec<Destination> {
    analyse_arguments(v).1
}

#[derive(Default)]
struct Walker {
    shape: ArgShape,
    dests: Vec<Destination>,
    scanned: usize,
}

impl Walker {
    fn walk(&mut self, v: &serde_json::Value, depth: usize) {
        use serde_json::Value;
        #[allow(clippy::cast_possible_truncation)]
        {
            self.shape.depth = self.shape.depth.max(depth as u32);
        }
        match v {
            Value::Null => self.shape.bytes += 4,
            Value::Bool(_) => self.shape.bytes += 5,
            Value::Number(_) => self.shape.bytes += 8,
            Value::String(s) => {
                self.shape.strings += 1;
                self.shape.bytes += s.len() as u64 + 2;
                if is_sensitive(s) {
                    self.shape.sensitive += 1;
                }
                let budget = MAX_SCAN_BYTES_PER_STRING.min(MAX_SCAN_BYTES - self.scanned);
                if budget > 0 && self.dests.len() < MAX_DESTINATIONS {
                    let head = &s[..s.floor_char_boundary(budget.min(s.len()))];
                    self.scanned += head.len();
                    find_destinations_in_str(head, &mut self.dests);
                }
            }
            Value::Array(items) => {
                self.shape.bytes += 2 + items.len() as u64;
                if depth < MAX_DEPTH {
                    for i in items {
                        self.walk(i, depth + 1);
                    }
                }
            }
            Value::Object(map) => {
                self.shape.bytes += 2;
                if depth < MAX_DEPTH {
                    for (k, item) in map {
                        self.shape.keys += 1;
                        self.shape.bytes += k.len() as u64 + 4;
                        self.walk(item, depth + 1);
                    }
                }
            }
        }
    }
}

/// File extensions that look like top-level domains but are not destinations.
const NOT_TLDS: &[&str] = &[
    "json", "txt", "csv", "py", "rs", "js", "ts", "md", "pdf", "png", "jpg", "jpeg", "gif", "html",
    "htm", "log", "yaml", "yml", "toml", "xml", "sh", "exe", "zip", "gz", "tar", "doc", "docx",
    "xls", "xlsx", "conf", "cfg", "ini", "lock", "sql", "db", "go", "java", "c", "h", "cpp", "rb",
    "php", "env", "pem", "key", "bak", "tmp", "old", "swp", "so", "dll", "bin", "svg", "css",
    "map", "min", "tsx", "jsx", "vue", "ipynb", "parquet", "sqlite",
];

/// Appends the destinations found in one string (at most [`MAX_DESTINATIONS`] in all).
/// Tokens are split on whitespace, quotes, brackets, commas and semicolons; a token is a
/// URL when it has a `scheme://` and parses, an e-mail when it is `local@domain.tld`, an IP
/// when it parses as one (an IPv4 may carry `:port`), and a bare host when it has at least
/// two DNS labels and an alphabetic top-level label that is not a file extension.
///
/// Only tokens holding a `.`, `@` or `:` can be destinations, so the string is searched for
/// those bytes and only the tokens around them are split out and classified.
pub fn find_destinations_in_str(s: &str, out: &mut Vec<Destination>) {
    let is_sep = |c: char| {
        c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '(' | ')' | ',' | ';' | '`')
    };
    let bytes = s.as_bytes();
    let mut from = 0;
    while let Some(hit) = memchr::memchr3(b'.', b'@', b':', &bytes[from..]) {
        if out.len() >= MAX_DESTINATIONS {
            return;
        }
        let hit = from + hit;
        // A token whose only `.`, `@` or `:` is its last byte is never a destination (the
        // trimmed token has no `.` or `:`, and an `@` with nothing after it names no host):
        // sentence ends and `key: value` labels are skipped without tokenizing.
        if bytes
            .get(hit + 1)
            .is_none_or(|&c| c.is_ascii_whitespace() || b"\"'<>(),;`".contains(&c))
        {
            from = hit + 1;
            continue;
        }
        let start = s[from..hit]
            .char_indices()
            .rev()
            .find(|&(_, c)| is_sep(c))
            .map_or(from, |(i, c)| from + i + c.len_utf8());
        let end = s[hit..]
            .char_indices()
            .find(|&(_, c)| is_sep(c))
            .map_or(s.len(), |(i, _)| hit + i);
        let tok =
            s[start..end].trim_matches(|c: char| matches!(c, '.' | ':' | '!' | '?' | '{' | '}'));
        if tok.len() >= 4
            && let Some(d) = classify(tok)
            && !out.contains(&d)
        {
            out.push(d);
        }
        from = end;
    }
}

fn classify(tok: &str) -> Option<Destination> {
    if tok.contains("://") {
        let u = url::Url::parse(tok).ok()?;
        let host = u.host_str()?;
        return Some(Destination {
            kind: DestinationKind::Url,
            value: normalise_host(host),
            url: Some(u.to_string()),
        });
    }
    if let Some((local, domain)) = tok.rsplit_once('@') {
        let local = local.rsplit(':').next().unwrap_or(local); // mailto:
        if !local.is_empty() && is_host(domain) {
            return Some(Destination {
                kind: DestinationKind::Email,
                value: format!("{}@{}", local.to_ascii_lowercase(), normalise_host(domain)),
                url: None,
            });
        }
        return None;
    }
    let ip_part = match tok.rsplit_once(':') {
        Some((a, port)) if a.contains('.') && port.bytes().all(|b| b.is_ascii_digit()) => a,
        _ => tok,
    };
    if let Ok(ip) = ip_part
        .trim_matches(|c| c == '[' || c == ']')
        .parse::<IpAddr>()
    {
        return Some(Destination {
            kind: DestinationKind::Ip,
            value: ip.to_string(),
            url: None,
        });
    }
    let host = tok.split('/').next().unwrap_or(tok);
    let host = match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    if is_host(host) {
        return Some(Destination {
            kind: DestinationKind::Host,
            value: normalise_host(host),
            url: None,
        });
    }
    None
}

fn normalise_host(h: &str) -> String {
    h.trim_end_matches('.').to_ascii_lowercase()
}

/// Whether `h` looks like a DNS name with an alphabetic TLD that is not a file extension.
fn is_host(h: &str) -> bool {
    let h = h.trim_end_matches('.');
    if h.len() > 253 || !h.contains('.') {
        return false;
    }
    let mut labels = 0;
    for label in h.split('.') {
        labels += 1;
        if label.is_empty()
            || label.len() > 63
            || !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return false;
        }
    }
    let tld = h.rsplit('.').next().unwrap_or("");
    labels >= 2
        && (2..=24).contains(&tld.len())
        && tld.bytes().all(|b| b.is_ascii_alphabetic())
        && !NOT_TLDS.iter().any(|x| x.eq_ignore_ascii_case(tld))
}

/// A feature vector with a mask of values that are unknown (to be imputed by the model).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FeatureVector {
    /// The values, in [`FEATURE_NAMES`] order.
    pub values: [f64; N_FEATURES],
    /// Bit `i` set: feature `i` is unknown.
    pub missing: u32,
}

impl FeatureVector {
    /// Whether feature `i` is unknown.
    pub fn is_missing(&self, i: usize) -> bool {
        self.missing & (1 << i) != 0
    }

    /// The first non-finite value, as `(feature name, value)`.
    pub fn first_non_finite(&self) -> Option<(&'static str, f64)> {
        self.values
            .iter()
            .enumerate()
            .find(|(i, v)| !v.is_finite() && !self.is_missing(*i))
            .map(|(i, v)| (FEATURE_NAMES[i], *v))
    }
}

/// Most destinations an extractor remembers; past this, new ones are scored as new but no
/// longer remembered (memory stays bounded for agents that crawl the web).
pub const MAX_REMEMBERED_DESTINATIONS: usize = 50_000;
/// Most timestamps kept for the one-hour rate window.
pub const MAX_RECENT: usize = 20_000;

const MINUTE_US: i64 = 60_000_000;
const HOUR_US: i64 = 3_600_000_000;

/// Per-agent state needed to compute features: how often each tool and destination was
/// seen, tool-to-tool transition counts, and the timestamps of the last hour. Serde
/// persistable; memory is bounded by [`MAX_REMEMBERED_DESTINATIONS`] and [`MAX_RECENT`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FeatureExtractor {
    tools: ByHash<u64>,
    /// Calls per UTC hour of day and per day of week (Monday = 0).
    hours: [u64; 24],
    days: [u64; 7],
    destinations: ByHash<u32>,
    transitions: ByHash<ByHash<u64>>,
    recent: VecDeque<i64>,
    last_tool: Option<u64>,
    events: u64,
    #[serde(default)]
    arg_sizes: ByHash<harombe_ml::RunningStats>,
}

/// Maps keyed by 64-bit FNV-1a hashes of tool names and destinations. Several lookups per
/// scored call, so a fast hasher (foldhash, seeded at random per map like the standard
/// one, so the layout is not predictable from outside) instead of SipHash.
type ByHash<V> = HashMap<u64, V, foldhash::fast::RandomState>;

/// Microseconds since the epoch.
pub fn unix_us(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX)
}

impl FeatureExtractor {
    /// An extractor that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Calls observed so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Distinct tools seen.
    pub fn distinct_tools(&self) -> usize {
        self.tools.len()
    }

    /// Whether this destination was seen before.
    pub fn has_seen_destination(&self, d: &Destination) -> bool {
        self.destinations.contains_key(&fnv1a64(d.value.as_bytes()))
    }

    /// Features of `call` against the current state, then records the call.
    pub fn extract(&mut self, call: &CallFeatures) -> FeatureVector {
        let fv = self.compute(call);
        self.observe(call);
        fv
    }

    /// Features of `call` against the current state, without recording it.
    pub fn compute(&self, call: &CallFeatures) -> FeatureVector {
        let t = unix_us(call.timestamp);
        let (r1m, r1h) = window_counts(&self.recent, t);
        self.compute_with(call, r1m, r1h, self.last_tool, 0)
    }

    /// Leave-one-out features for training replay: counts are taken from this (fully
    /// observed) state minus the call itself, rates from `window`, which the caller
    /// maintains in time order. A tool or destination seen only once in the training
    /// window therefore counts as new, as it would have live.
    pub(crate) fn compute_loo(
        &self,
        call: &CallFeatures,
        window: &mut VecDeque<i64>,
        prev_tool: Option<u64>,
    ) -> FeatureVector {
        let t = unix_us(call.timestamp);
        let (r1m, r1h) = window_counts(window, t);
        push_recent(window, t);
        self.compute_with(call, r1m, r1h, prev_tool, 1)
    }

    #[allow(clippy::cast_precision_loss)]
    fn compute_with(
        &self,
        call: &CallFeatures,
        r1m: u32,
        r1h: u32,
        prev_tool: Option<u64>,
        loo: u64,
    ) -> FeatureVector {
        let tool = fnv1a64(call.tool.as_bytes());
        let mut v = [0.0; N_FEATURES];
        let mut missing = 0u32;
        v[idx::TOOL_ID] = fold_hash(tool);
        v[idx::ARG_BYTES] = (call.shape.bytes as f64).ln_1p();
        v[idx::ARG_DEPTH] = f64::from(call.shape.depth);
        v[idx::ARG_KEYS] = f64::from(call.shape.keys);
        v[idx::ARG_STRINGS] = f64::from(call.shape.strings);
        match call.result_bytes {
            Some(b) => v[idx::RESULT_BYTES] = (b as f64).ln_1p(),
            None => missing |= 1 << idx::RESULT_BYTES,
        }
        match call.duration_us {
            Some(d) => v[idx::LATENCY] = (d as f64 / 1000.0).ln_1p(),
            None => missing |= 1 << idx::LATENCY,
        }
        v[idx::ERROR] = if call.is_error { 1.0 } else { 0.0 };
        let total = self.events.saturating_sub(loo);
        let hour = usize::from(call.timestamp.hour());
        let dow = usize::from(call.timestamp.weekday().number_days_from_monday());
        v[idx::HOUR] = surprisal(self.hours[hour].saturating_sub(loo), total, 24);
        v[idx::DOW] = surprisal(self.days[dow].saturating_sub(loo), total, 7);
        v[idx::RATE_1M] = f64::from(r1m + 1);
        v[idx::RATE_1H] = f64::from(r1h + 1);
        let seen = self
            .tools
            .get(&tool)
            .copied()
            .unwrap_or(0)
            .saturating_sub(loo);
        v[idx::TOOL_NOVELTY] = 1.0 / (1.0 + seen as f64);
        let mut novelty = 0.0;
        for d in &call.destinations {
            let c = self
                .destinations
                .get(&fnv1a64(d.value.as_bytes()))
                .map_or(0, |&c| u64::from(c).saturating_sub(loo));
            novelty += 1.0 / (1.0 + c as f64);
        }
        v[idx::DEST_NOVELTY] = novelty.min(8.0);
        v[idx::DEST_COUNT] = call.destinations.len() as f64;
        // After a tool the agent never used before, no transition is known: the novelty is
        // that tool's (scored on its own call), not the sequence's.
        let from = prev_tool.and_then(|p| self.transitions.get(&p));
        let out_of_prev = from.map_or(0, |m| m.values().sum::<u64>().saturating_sub(loo));
        match from {
            Some(m) if out_of_prev > 0 => {
                let c = m.get(&tool).map_or(0, |&c| c.saturating_sub(loo));
                v[idx::TRANSITION] = 1.0 / (1.0 + c as f64);
            }
            _ => missing |= 1 << idx::TRANSITION,
        }
        v[idx::SENSITIVE] = f64::from(call.shape.sensitive);
        v[idx::ARG_BYTES_TOOL_Z] = match self.arg_sizes.get(&tool) {
            Some(st) if st.count() >= 5 => {
                ((v[idx::ARG_BYTES] - st.mean()) / st.std().max(0.35)).clamp(-10.0, 20.0)
            }
            _ => 0.0,
        };
        FeatureVector { values: v, missing }
    }

    /// Records `call` (tool, destinations, transition, timestamp).
    pub fn observe(&mut self, call: &CallFeatures) {
        self.observe_flagged(call, false);
    }

    /// [`observe`](Self::observe) for a scored call: a flagged call still counts as seen
    /// (tool, destinations, transition), but not in the call-rate windows, so the normal
    /// calls after a flagged burst are rated against the agent's own pace.
    pub fn observe_flagged(&mut self, call: &CallFeatures, flagged: bool) {
        let tool = fnv1a64(call.tool.as_bytes());
        *self.tools.entry(tool).or_insert(0) += 1;
        self.hours[usize::from(call.timestamp.hour())] += 1;
        self.days[usize::from(call.timestamp.weekday().number_days_from_monday())] += 1;
        #[allow(clippy::cast_precision_loss)]
        let size = (call.shape.bytes as f64).ln_1p();
        // Finite by construction (ln of a u64); an error cannot happen.
        let _ = self.arg_sizes.entry(tool).or_default().push(size);
        for d in &call.destinations {
            let h = fnv1a64(d.value.as_bytes());
            if let Some(c) = self.destinations.get_mut(&h) {
                *c = c.saturating_add(1);
            } else if self.destinations.len() < MAX_REMEMBERED_DESTINATIONS {
                self.destinations.insert(h, 1);
            }
        }
        if let Some(prev) = self.last_tool {
            *self
                .transitions
                .entry(prev)
                .or_default()
                .entry(tool)
                .or_insert(0) += 1;
        }
        self.last_tool = Some(tool);
        if !flagged {
            push_recent(&mut self.recent, unix_us(call.timestamp));
        }
        self.events += 1;
    }
}

/// `-log2((count + 1) / (total + buckets))`: the information content of a bucket (an hour
/// of day, a day of week) in the agent's history, Laplace-smoothed so a bucket never seen
/// is finite and the most surprising (about `log2(total)` bits).
#[allow(clippy::cast_precision_loss)]
fn surprisal(count: u64, total: u64, buckets: u64) -> f64 {
    -((count as f64 + 1.0) / (total as f64 + buckets as f64)).log2()
}

/// Calls in `[t - 1 min, t]` and `[t - 1 h, t]` among `recent` (sorted ascending, or
/// nearly: late arrivals are inserted in place by [`push_recent`]).
fn window_counts(recent: &VecDeque<i64>, t: i64) -> (u32, u32) {
    let end = recent.partition_point(|&x| x <= t);
    let m = recent.partition_point(|&x| x < t - MINUTE_US);
    let h = recent.partition_point(|&x| x < t - HOUR_US);
    let c = |a: usize| u32::try_from(end.saturating_sub(a)).unwrap_or(u32::MAX);
    (c(m), c(h))
}

fn push_recent(recent: &mut VecDeque<i64>, t: i64) {
    let pos = recent.partition_point(|&x| x <= t);
    recent.insert(pos, t);
    let newest = recent.back().copied().unwrap_or(t);
    while recent
        .front()
        .is_some_and(|&x| x < newest - HOUR_US || recent.len() > MAX_RECENT)
    {
        recent.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    #[test]
    fn destinations_are_found_and_normalised() {
        let args = json!({
            "url": "https://Evil.Example.COM/upload?x=1",
            "body": "send to Bob@Corp.Example.org, then 10.0.0.7:8080 and 2001:db8::1",
            "file": "report.pdf",
            "host": "api.github.com",
            "nested": {"list": ["ftp://files.example.net/a", "not a host"]}
        });
        let (shape, d) = analyse_arguments(&args);
        let vals: Vec<_> = d.iter().map(|d| (d.kind, d.value.as_str())).collect();
        assert!(vals.contains(&(DestinationKind::Url, "evil.example.com")));
        assert!(vals.contains(&(DestinationKind::Email, "bob@corp.example.org")));
        assert!(vals.contains(&(DestinationKind::Ip, "10.0.0.7")));
        assert!(vals.contains(&(DestinationKind::Ip, "2001:db8::1")));
        assert!(vals.contains(&(DestinationKind::Host, "api.github.com")));
        assert!(vals.contains(&(DestinationKind::Url, "files.example.net")));
        assert!(!vals.iter().any(|(_, v)| v.contains("report")));
        assert_eq!(shape.depth, 3);
        assert_eq!(shape.keys, 6);
        assert_eq!(shape.strings, 6);
        assert_eq!(
            d.iter()
                .find(|x| x.kind == DestinationKind::Email)
                .unwrap()
                .domain(),
            Some("corp.example.org")
        );
    }

    /// The plain tokenizer: every token split out and classified.
    fn destinations_by_splitting(s: &str) -> Vec<Destination> {
        let mut out = Vec::new();
        for tok in s.split(|c: char| {
            c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '(' | ')' | ',' | ';' | '`')
        }) {
            if out.len() >= MAX_DESTINATIONS {
                break;
            }
            let tok = tok.trim_matches(|c: char| matches!(c, '.' | ':' | '!' | '?' | '{' | '}'));
            if tok.len() < 4 {
                continue;
            }
            if let Some(d) = classify(tok)
                && !out.contains(&d)
            {
                out.push(d);
            }
        }
        out
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
        #[test]
        fn destination_search_equals_plain_tokenizing(
            parts in proptest::collection::vec(proptest::sample::select(vec![
                "a", "Evil", "example", "com", "org", ".", "..", "@", ":", "://", "/", "https",
                "10", "0", "7", "8080", " ", "\u{a0}", "\u{2003}", "é", "\"", "'", "(", ")", ",",
                ";", "`", "<", ">", "!", "?", "{", "}", "-", "_", "pdf", "x@y", "[", "]", "::1",
                "mailto:", "\n", "\t",
            ]), 0..60),
        ) {
            let s: String = parts.concat();
            let mut fast = Vec::new();
            find_destinations_in_str(&s, &mut fast);
            proptest::prop_assert_eq!(fast, destinations_by_splitting(&s));
        }
    }

    #[test]
    fn the_scan_budget_is_per_string_and_in_all() {
        // A bulk field first (keys are walked in order) no longer hides the URL after it.
        let args = json!({"data": "Q".repeat(500_000), "url": "https://upload.exfil.net/in"});
        let d = find_destinations(&args);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].value, "upload.exfil.net");
        // Only the head of a long string is searched.
        let late = format!("{} https://late.example.com/", "word ".repeat(2000));
        assert!(find_destinations(&json!({ "q": late })).is_empty());
        // In all, at most MAX_SCAN_BYTES: 16 full 4 KB strings use it up.
        let mut map = serde_json::Map::new();
        for i in 0..16 {
            map.insert(
                format!("a{i:02}"),
                json!("x".repeat(MAX_SCAN_BYTES_PER_STRING)),
            );
        }
        map.insert("z".into(), json!("https://after.example.com/"));
        assert!(find_destinations(&serde_json::Value::Object(map.clone())).is_empty());
        map.remove("a00");
        assert_eq!(find_destinations(&serde_json::Value::Object(map)).len(), 1);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1024))]
        #[test]
        fn anchored_marker_search_equals_a_full_automaton(
            parts in proptest::collection::vec(proptest::sample::select(vec![
                ".", "/", "_", "k", "K", "ssh", "SSH", "id", "rsa", "Rsa", "ed25519", "aws",
                "credentials", "config", "etc", "shadow", "passwd", "env", "ENV", "netrc",
                "pgpass", "kube", "json", "git-", "docker", "secrets", "yaml", "private",
                "key", "KEY", "pem", "keychain", "KeyChain", "keych", "ain", "vault", "proc",
                "self", "environ", " ", "é", "x", "\u{2003}", "\n",
            ]), 0..40),
        ) {
            let s: String = parts.concat();
            let reference = aho_corasick::AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .build(SENSITIVE_MARKERS)
                .unwrap()
                .is_match(&s);
            proptest::prop_assert_eq!(is_sensitive(&s), reference && s.len() <= 4096);
        }
    }

    #[test]
    fn every_marker_is_found_alone_and_inside_text() {
        for m in SENSITIVE_MARKERS {
            assert!(is_sensitive(m), "{m}");
            assert!(
                is_sensitive(&format!("cat ~/{}", m.to_ascii_uppercase())),
                "{m}"
            );
        }
    }

    #[test]
    fn sensitive_markers_match_in_any_ascii_case() {
        assert!(is_sensitive("/home/APP/.SSH/Id_Rsa"));
        assert!(is_sensitive("open the KeyChain"));
        assert!(!is_sensitive("/srv/app/readme.md"));
        assert!(!is_sensitive(&format!("{}/etc/shadow", "x".repeat(4096))));
    }

    #[test]
    fn tool_identity_is_stable() {
        // FNV-1a test vector: "a" -> 0xaf63dc4c8601ec8c.
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        let x = CallFeatures::new(datetime!(2025-01-06 10:00 UTC), "read_file");
        let a = FeatureExtractor::new().compute(&x).values[idx::TOOL_ID];
        let b = FeatureExtractor::new().compute(&x).values[idx::TOOL_ID];
        assert_eq!(a.to_bits(), b.to_bits());
        assert!((0.0..1.0).contains(&a));
    }

    #[test]
    fn novelty_rates_and_transitions_evolve() {
        let mut fx = FeatureExtractor::new();
        let t0 = datetime!(2025-01-06 10:00 UTC);
        let call = |s: i64, tool: &str| {
            CallFeatures::new(t0 + time::Duration::seconds(s), tool)
                .with_arguments(&json!({"u": "https://a.example.com/x"}))
        };
        let f1 = fx.extract(&call(0, "fetch"));
        assert_eq!(f1.values[idx::TOOL_NOVELTY], 1.0);
        assert_eq!(f1.values[idx::DEST_NOVELTY], 1.0);
        assert!(f1.is_missing(idx::TRANSITION));
        assert!(f1.is_missing(idx::LATENCY));
        let f2 = fx.extract(&call(10, "fetch"));
        assert_eq!(f2.values[idx::TOOL_NOVELTY], 0.5);
        assert_eq!(f2.values[idx::DEST_NOVELTY], 0.5);
        // Nothing has followed `fetch` yet: no transition to rate.
        assert!(f2.is_missing(idx::TRANSITION));
        assert_eq!(f2.values[idx::RATE_1M], 2.0);
        let f3 = fx.extract(&call(100, "fetch"));
        assert_eq!(f3.values[idx::RATE_1M], 1.0);
        assert_eq!(f3.values[idx::RATE_1H], 3.0);
        assert_eq!(f3.values[idx::TRANSITION], 0.5);
        assert!(f3.first_non_finite().is_none());
    }

    #[test]
    fn a_flagged_call_is_seen_but_not_counted_in_the_rates() {
        let mut fx = FeatureExtractor::new();
        let t0 = datetime!(2025-01-06 10:00 UTC);
        let call = |s: i64| {
            CallFeatures::new(t0 + time::Duration::seconds(s), "fetch")
                .with_arguments(&json!({"u": "https://a.example.com/x"}))
        };
        fx.observe(&call(0));
        for s in 1..=20 {
            fx.observe_flagged(&call(s), true);
        }
        let next = fx.compute(&call(30));
        // Only the unflagged call (and this one) count towards the rates...
        assert_eq!(next.values[idx::RATE_1M], 2.0);
        assert_eq!(next.values[idx::RATE_1H], 2.0);
        // ...but the tool and destination were seen 21 times.
        assert_eq!(next.values[idx::TOOL_NOVELTY], 1.0 / 22.0);
        assert_eq!(next.values[idx::DEST_NOVELTY], 1.0 / 22.0);
        fx.observe_flagged(&call(31), false);
        assert_eq!(fx.compute(&call(32)).values[idx::RATE_1M], 3.0);
    }

    #[test]
    fn extractor_round_trips_through_serde() {
        let mut fx = FeatureExtractor::new();
        let t0 = datetime!(2025-01-06 10:00 UTC);
        for i in 0..5 {
            fx.observe(&CallFeatures::new(t0 + time::Duration::seconds(i), "t"));
        }
        let s = serde_json::to_string(&fx).unwrap();
        let back: FeatureExtractor = serde_json::from_str(&s).unwrap();
        assert_eq!(fx, back);
    }

    #[test]
    fn event_conversion_reads_every_field() {
        let mut e = AuditEvent::new(
            datetime!(2025-01-07 23:30 UTC),
            EventKind::ToolCall,
            Outcome::Failure,
        )
        .with_target("send_email");
        e.arguments = Some(json!({"to": "x@evil.io", "body": "hi"}));
        e.duration_us = Some(2_000);
        e.bytes_out = 99;
        let c = CallFeatures::from_event(&e);
        assert_eq!(c.tool, "send_email");
        assert!(c.is_error);
        assert_eq!(c.result_bytes, Some(99));
        assert_eq!(c.destinations.len(), 1);
        let f = FeatureExtractor::new().compute(&c);
        // Nothing seen yet: every hour and day is equally likely.
        assert_eq!(f.values[idx::HOUR], 24f64.log2());
        assert_eq!(f.values[idx::DOW], 7f64.log2());
        assert_eq!(f.values[idx::ERROR], 1.0);
    }
}
