//! Incremental dashboard aggregates: every event is folded once, as it is read from the
//! log, into per-minute buckets kept for 48 hours; a snapshot or an hourly trend only adds
//! up buckets, so it costs the same whether the log holds a thousand events or a billion.
//!
//! Nothing is sampled or truncated: each bucket counts every event of its minute. Buckets
//! are rolled up into the UTC hours of a trend, and into the rolling 1-hour and 24-hour
//! windows of a snapshot (to the minute).
//!
//! Alongside the windows, cumulative counters (since the tail started folding) feed the
//! Prometheus exposition: the gateway latency histogram, decisions and findings by rule.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use harombe_core::{AgentId, AuditEvent, Decision, EventKind, Outcome, StoredEvent, ThreatLevel};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Minutes of history kept (48 hours).
pub const RETAINED_MINUTES: i64 = 48 * 60;
/// The longest trend one call returns, in hours.
pub const MAX_TREND_HOURS: u32 = 48;

/// Upper bounds (µs) of the latency histogram buckets: 1-2-5 steps from 10 µs to 100 s,
/// then +Inf.
pub const LATENCY_BOUNDS_US: [u64; 22] = [
    10,
    20,
    50,
    100,
    200,
    500,
    1_000,
    2_000,
    5_000,
    10_000,
    20_000,
    50_000,
    100_000,
    200_000,
    500_000,
    1_000_000,
    2_000_000,
    5_000_000,
    10_000_000,
    20_000_000,
    50_000_000,
    100_000_000,
];
const LATENCY_BUCKETS: usize = LATENCY_BOUNDS_US.len() + 1;

/// A latency histogram over fixed log-scale buckets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LatencyHistogram {
    /// Per-bucket (not cumulative) counts; the last bucket is +Inf.
    pub counts: [u64; LATENCY_BUCKETS],
    pub sum_us: u64,
    pub count: u64,
}

impl LatencyHistogram {
    pub fn record(&mut self, us: u64) {
        let i = LATENCY_BOUNDS_US.partition_point(|&b| b < us);
        self.counts[i] += 1;
        self.sum_us = self.sum_us.saturating_add(us);
        self.count += 1;
    }

    fn add(&mut self, other: &LatencyHistogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
        self.count += other.count;
    }

    /// Mean in µs, `None` when empty.
    pub fn average_us(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum_us as f64 / self.count as f64)
    }

    /// The `q` quantile (0..=1) in µs, interpolated linearly inside its bucket; `None`
    /// when empty. A quantile in the +Inf bucket reads as the last finite bound.
    pub fn quantile_us(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * self.count as f64).max(1.0);
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            if (seen + c) as f64 >= rank {
                let lower = if i == 0 { 0 } else { LATENCY_BOUNDS_US[i - 1] } as f64;
                let Some(&upper) = LATENCY_BOUNDS_US.get(i) else {
                    return Some(lower);
                };
                let within = (rank - seen as f64) / c as f64;
                return Some(lower + (upper as f64 - lower) * within);
            }
            seen += c;
        }
        LATENCY_BOUNDS_US.last().map(|&b| b as f64)
    }
}

/// What one minute holds.
#[derive(Clone, Debug, Default)]
struct Bucket {
    /// The minute (Unix seconds / 60) these counts belong to; `i64::MIN` when unused.
    minute: i64,
    total: u64,
    by_kind: [u64; EventKind::ALL.len()],
    by_outcome: [u64; Outcome::ALL.len()],
    by_decision: [u64; Decision::ALL.len()],
    by_threat: [u64; ThreatLevel::ALL.len()],
    tool_calls: u64,
    errors: u64,
    denials: u64,
    auth_failures: u64,
    hitl_denials: u64,
    network_blocks: u64,
    secrets_detected: u64,
    anomalies: u64,
    /// `(agent index, events)` for the agents seen this minute (a handful).
    agents: Vec<(u32, u32)>,
    latency: LatencyHistogram,
}

impl Bucket {
    fn empty(minute: i64) -> Self {
        Self {
            minute,
            ..Self::default()
        }
    }
}

/// Cumulative counters (never windowed) for the Prometheus exposition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub events: u64,
    pub by_kind: [u64; EventKind::ALL.len()],
    /// Verdicts of `tool_call` events.
    pub by_decision: [u64; Decision::ALL.len()],
    /// Inspection findings by rule name.
    pub findings_by_rule: BTreeMap<String, u64>,
    /// Gateway latency of `tool_call` events.
    pub latency: LatencyHistogram,
}

#[derive(Debug)]
struct Inner {
    ring: Vec<Bucket>,
    totals: Totals,
    /// Agents interned to small indices, so windows union bitmaps instead of names.
    agent_ids: Vec<AgentId>,
    agent_index: HashMap<AgentId, u32>,
    /// Latest event time per agent index.
    last_seen: Vec<OffsetDateTime>,
}

/// The aggregates. Cheap to share (`Arc<Metrics>`); every method takes a short lock that is
/// never held across an `.await`.
#[derive(Debug)]
pub struct Metrics {
    inner: Mutex<Inner>,
    /// Bumped on every observed event (lets publishers skip unchanged snapshots).
    version: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Threat levels of events in a window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreatDistribution {
    pub none: u64,
    pub low: u64,
    pub medium: u64,
    pub high: u64,
    pub critical: u64,
}

impl ThreatDistribution {
    fn from_counts(c: &[u64; ThreatLevel::ALL.len()]) -> Self {
        Self {
            none: c[0],
            low: c[1],
            medium: c[2],
            high: c[3],
            critical: c[4],
        }
    }
}

/// The twelve dashboard metrics. Each name carries its window: `_last_hour`/`_1h` is the
/// last 60 minutes, `_24h` the last 1,440 minutes, both up to and including `at`'s minute.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricsSnapshot {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    // Activity.
    pub events_last_hour: u64,
    pub events_last_24h: u64,
    pub active_agents_24h: u64,
    pub tool_calls_24h: u64,
    // Security.
    pub auth_failures_1h: u64,
    pub hitl_denials_24h: u64,
    pub network_blocks_1h: u64,
    pub secrets_detected_24h: u64,
    pub anomalies_1h: u64,
    pub threat_levels_24h: ThreatDistribution,
    // Performance (gateway latency of tool calls; `null` when there were none).
    pub latency_avg_us_1h: Option<f64>,
    pub latency_p95_us_1h: Option<f64>,
}

/// Hourly series over whole UTC hours, oldest first; `hours` are the hours' starts in Unix
/// seconds (what the dashboard's charts take).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trend {
    pub hours: Vec<i64>,
    pub events: Vec<u64>,
    pub errors: Vec<u64>,
    pub denials: Vec<u64>,
    pub tool_calls: Vec<u64>,
}

/// One agent seen in the last 24 hours.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentActivity {
    pub agent: AgentId,
    pub events_24h: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen: OffsetDateTime,
}

fn minute_of(t: OffsetDateTime) -> i64 {
    t.unix_timestamp().div_euclid(60)
}

fn slot(minute: i64) -> usize {
    minute.rem_euclid(RETAINED_MINUTES) as usize
}

/// Whether a finding (from `details.findings`) is a detected secret.
fn is_secret_finding(f: &serde_json::Value) -> bool {
    f.get("tags")
        .and_then(|t| t.as_array())
        .is_some_and(|tags| tags.iter().any(|t| t.as_str() == Some("secret")))
}

fn findings(e: &AuditEvent) -> &[serde_json::Value] {
    e.details
        .as_ref()
        .and_then(|d| d.get("findings"))
        .and_then(|f| f.as_array())
        .map_or(&[], Vec::as_slice)
}

/// Whether an event records an anomaly: an `anomaly` event, or a call the detector flagged
/// (`scores.anomalous >= 1`).
pub fn is_anomaly(e: &AuditEvent) -> bool {
    e.kind == EventKind::Anomaly || e.scores.get("anomalous").is_some_and(|&s| s >= 1.0)
}

fn kind_index(k: EventKind) -> usize {
    EventKind::ALL.iter().position(|&x| x == k).unwrap_or(0)
}

fn outcome_index(o: Outcome) -> usize {
    Outcome::ALL.iter().position(|&x| x == o).unwrap_or(0)
}

fn decision_index(d: Decision) -> usize {
    Decision::ALL.iter().position(|&x| x == d).unwrap_or(0)
}

impl Metrics {
    pub fn new() -> Self {
        Self {
            inner: Mutex::new(Inner {
                ring: (0..RETAINED_MINUTES)
                    .map(|_| Bucket::empty(i64::MIN))
                    .collect(),
                totals: Totals::default(),
                agent_ids: Vec::new(),
                agent_index: HashMap::new(),
                last_seen: Vec::new(),
            }),
            version: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many events have been observed (changes whenever the aggregates do).
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Folds one event in. Constant time apart from its findings; an event older than
    /// the 48 hours kept only reaches the cumulative counters.
    pub fn observe(&self, stored: &StoredEvent) {
        let e = &stored.event;
        let secret_findings = findings(e).iter().filter(|f| is_secret_finding(f)).count() as u64;
        let anomaly = is_anomaly(e);
        let latency = (e.kind == EventKind::ToolCall)
            .then_some(e.duration_us)
            .flatten();
        let minute = minute_of(e.timestamp);

        let mut g = self.lock();
        let inner = &mut *g;

        // Cumulative counters.
        let t = &mut inner.totals;
        t.events += 1;
        t.by_kind[kind_index(e.kind)] += 1;
        if e.kind == EventKind::ToolCall
            && let Some(v) = &e.verdict
        {
            t.by_decision[decision_index(v.decision)] += 1;
        }
        for f in findings(e) {
            let rule = f.get("rule").and_then(|r| r.as_str()).unwrap_or("unknown");
            match t.findings_by_rule.get_mut(rule) {
                Some(n) => *n += 1,
                None => {
                    t.findings_by_rule.insert(rule.to_owned(), 1);
                }
            }
        }
        if let Some(us) = latency {
            t.latency.record(us);
        }
        let agent = e.agent.as_ref().map(|a| match inner.agent_index.get(a) {
            Some(&i) => {
                let seen = &mut inner.last_seen[i as usize];
                *seen = (*seen).max(e.timestamp);
                i
            }
            None => {
                let i = inner.agent_ids.len() as u32;
                inner.agent_ids.push(a.clone());
                inner.agent_index.insert(a.clone(), i);
                inner.last_seen.push(e.timestamp);
                i
            }
        });

        // The minute's bucket: reuse a slot holding an older minute; skip an event older
        // than what the slot holds (it is past the 48 hours kept).
        let b = &mut inner.ring[slot(minute)];
        if b.minute > minute {
            self.version.fetch_add(1, Ordering::AcqRel);
            return;
        }
        if b.minute < minute {
            *b = Bucket::empty(minute);
        }
        b.total += 1;
        b.by_kind[kind_index(e.kind)] += 1;
        b.by_outcome[outcome_index(e.outcome)] += 1;
        if let Some(v) = &e.verdict {
            b.by_decision[decision_index(v.decision)] += 1;
        }
        if let Some(l) = e.threat_level {
            b.by_threat[usize::from(l.rank())] += 1;
        }
        match e.outcome {
            Outcome::Failure => b.errors += 1,
            Outcome::Denied => b.denials += 1,
            _ => {}
        }
        match (e.kind, e.outcome) {
            (EventKind::ToolCall, _) => b.tool_calls += 1,
            (EventKind::Auth, Outcome::Failure | Outcome::Denied) => b.auth_failures += 1,
            (EventKind::Approval, Outcome::Failure | Outcome::Denied)
                if !harombe_core::is_refused_decision(e) =>
            {
                b.hitl_denials += 1;
            }
            (EventKind::EgressConnection, Outcome::Denied) => b.network_blocks += 1,
            _ => {}
        }
        b.secrets_detected += secret_findings;
        b.anomalies += u64::from(anomaly);
        if let Some(a) = agent {
            match b.agents.iter_mut().find(|(i, _)| *i == a) {
                Some((_, n)) => *n += 1,
                None => b.agents.push((a, 1)),
            }
        }
        if let Some(us) = latency {
            b.latency.record(us);
        }
        drop(g);
        self.version.fetch_add(1, Ordering::AcqRel);
    }

    /// The buckets of the `minutes` minutes up to and including `now`'s.
    fn window(inner: &Inner, now: OffsetDateTime, minutes: i64) -> impl Iterator<Item = &Bucket> {
        let end = minute_of(now);
        let minutes = minutes.min(RETAINED_MINUTES);
        (end - minutes + 1..=end).filter_map(move |m| {
            let b = &inner.ring[slot(m)];
            (b.minute == m).then_some(b)
        })
    }

    /// The twelve dashboard metrics as of `now`.
    pub fn snapshot(&self, now: OffsetDateTime) -> MetricsSnapshot {
        let g = self.lock();
        let mut hour = Bucket::default();
        for b in Self::window(&g, now, 60) {
            hour.total += b.total;
            hour.auth_failures += b.auth_failures;
            hour.network_blocks += b.network_blocks;
            hour.anomalies += b.anomalies;
            hour.latency.add(&b.latency);
        }
        let mut day = Bucket::default();
        let mut agents = vec![false; g.agent_ids.len()];
        for b in Self::window(&g, now, 24 * 60) {
            day.total += b.total;
            day.tool_calls += b.tool_calls;
            day.hitl_denials += b.hitl_denials;
            day.secrets_detected += b.secrets_detected;
            for (a, t) in day.by_threat.iter_mut().zip(b.by_threat.iter()) {
                *a += t;
            }
            for &(a, _) in &b.agents {
                agents[a as usize] = true;
            }
        }
        MetricsSnapshot {
            at: now,
            events_last_hour: hour.total,
            events_last_24h: day.total,
            active_agents_24h: agents.iter().filter(|&&x| x).count() as u64,
            tool_calls_24h: day.tool_calls,
            auth_failures_1h: hour.auth_failures,
            hitl_denials_24h: day.hitl_denials,
            network_blocks_1h: hour.network_blocks,
            secrets_detected_24h: day.secrets_detected,
            anomalies_1h: hour.anomalies,
            threat_levels_24h: ThreatDistribution::from_counts(&day.by_threat),
            latency_avg_us_1h: hour.latency.average_us(),
            latency_p95_us_1h: hour.latency.quantile_us(0.95),
        }
    }

    /// Hourly series for the `hours` whole UTC hours ending with `now`'s hour (clamped to
    /// `1..=MAX_TREND_HOURS`).
    pub fn trend(&self, now: OffsetDateTime, hours: u32) -> Trend {
        let hours = i64::from(hours.clamp(1, MAX_TREND_HOURS));
        let this_hour = now.unix_timestamp().div_euclid(3600);
        let g = self.lock();
        let mut t = Trend {
            hours: Vec::with_capacity(hours as usize),
            events: Vec::with_capacity(hours as usize),
            errors: Vec::with_capacity(hours as usize),
            denials: Vec::with_capacity(hours as usize),
            tool_calls: Vec::with_capacity(hours as usize),
        };
        for h in this_hour - hours + 1..=this_hour {
            let (mut ev, mut er, mut de, mut tc) = (0, 0, 0, 0);
            for m in h * 60..h * 60 + 60 {
                let b = &g.ring[slot(m)];
                if b.minute == m {
                    ev += b.total;
                    er += b.errors;
                    de += b.denials;
                    tc += b.tool_calls;
                }
            }
            t.hours.push(h * 3600);
            t.events.push(ev);
            t.errors.push(er);
            t.denials.push(de);
            t.tool_calls.push(tc);
        }
        t
    }

    /// Agents with events in the 24 hours up to `now`, most active first.
    pub fn agents(&self, now: OffsetDateTime) -> Vec<AgentActivity> {
        let g = self.lock();
        let mut counts = vec![0u64; g.agent_ids.len()];
        for b in Self::window(&g, now, 24 * 60) {
            for &(a, n) in &b.agents {
                counts[a as usize] += u64::from(n);
            }
        }
        let mut out: Vec<AgentActivity> = counts
            .iter()
            .enumerate()
            .filter(|&(_, &n)| n > 0)
            .map(|(i, &n)| AgentActivity {
                agent: g.agent_ids[i].clone(),
                events_24h: n,
                last_seen: g.last_seen[i],
            })
            .collect();
        out.sort_by(|x, y| y.events_24h.cmp(&x.events_24h).then(x.agent.cmp(&y.agent)));
        out
    }

    /// The cumulative counters.
    pub fn totals(&self) -> Totals {
        self.lock().totals.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use harombe_core::Verdict;
    use harombe_core::chain::ChainHash;
    use time::macros::datetime;

    fn stored(seq: u64, e: AuditEvent) -> StoredEvent {
        StoredEvent {
            seq,
            hash: ChainHash::GENESIS,
            event: e,
        }
    }

    fn call(at: OffsetDateTime, agent: &str, us: u64) -> AuditEvent {
        let mut e = AuditEvent::new(at, EventKind::ToolCall, Outcome::Success)
            .with_agent(AgentId::new(agent).unwrap())
            .with_target("fs.read")
            .with_verdict(Verdict::allow());
        e.duration_us = Some(us);
        e.threat_level = Some(ThreatLevel::Low);
        e
    }

    #[test]
    fn histogram_buckets_average_and_p95() {
        let mut h = LatencyHistogram::default();
        assert_eq!(h.quantile_us(0.95), None);
        for _ in 0..95 {
            h.record(150); // (100, 200]
        }
        for _ in 0..5 {
            h.record(4_000); // (2000, 5000]
        }
        assert_eq!(h.count, 100);
        assert_eq!(h.average_us(), Some((95.0 * 150.0 + 5.0 * 4000.0) / 100.0));
        let p95 = h.quantile_us(0.95).unwrap();
        assert!((100.0..=200.0).contains(&p95), "{p95}");
        let p99 = h.quantile_us(0.99).unwrap();
        assert!((2_000.0..=5_000.0).contains(&p99), "{p99}");
        h.record(u64::MAX);
        assert_eq!(h.counts[LATENCY_BUCKETS - 1], 1);
        // A boundary value lands in the bucket it bounds (le semantics).
        let mut b = LatencyHistogram::default();
        b.record(10);
        assert_eq!(b.counts[0], 1);
    }

    #[test]
    fn snapshot_counts_each_metric_in_its_window() {
        let now = datetime!(2026-05-01 12:30 UTC);
        let m = Metrics::new();
        let mut seq = 0;
        let mut push = |e: AuditEvent| {
            seq += 1;
            m.observe(&stored(seq, e));
        };
        push(call(now - time::Duration::minutes(5), "a", 1_000));
        push(call(now - time::Duration::hours(3), "b", 9_000));
        let mut auth = AuditEvent::new(now, EventKind::Auth, Outcome::Denied);
        auth.target = Some("/mcp".into());
        push(auth.clone());
        auth.timestamp = now - time::Duration::hours(2);
        push(auth);
        push(AuditEvent::new(
            now,
            EventKind::EgressConnection,
            Outcome::Denied,
        ));
        push(AuditEvent::new(now, EventKind::Approval, Outcome::Denied));
        push(AuditEvent::new(now, EventKind::Approval, Outcome::Failure));
        push(AuditEvent::new(now, EventKind::Approval, Outcome::Success));
        let mut flagged = call(now, "a", 2_000);
        flagged.scores.insert("anomalous".into(), 1.0);
        flagged.threat_level = Some(ThreatLevel::High);
        flagged.details = Some(serde_json::json!({"findings": [
            {"in": "arguments", "rule": "aws-key", "tags": ["secret", "aws"]},
            {"in": "arguments", "rule": "prompt-injection", "tags": ["injection"]},
        ]}));
        push(flagged);
        // Older than 24 h: in no window.
        push(call(now - time::Duration::hours(30), "c", 5));

        let s = m.snapshot(now);
        assert_eq!(s.events_last_hour, 7);
        assert_eq!(s.events_last_24h, 9);
        assert_eq!(s.active_agents_24h, 2);
        assert_eq!(s.tool_calls_24h, 3);
        assert_eq!(s.auth_failures_1h, 1);
        assert_eq!(s.hitl_denials_24h, 2);
        assert_eq!(s.network_blocks_1h, 1);
        assert_eq!(s.secrets_detected_24h, 1);
        assert_eq!(s.anomalies_1h, 1);
        assert_eq!(s.threat_levels_24h.low, 2);
        assert_eq!(s.threat_levels_24h.high, 1);
        assert_eq!(s.latency_avg_us_1h, Some(1_500.0));
        assert!(s.latency_p95_us_1h.unwrap() <= 2_000.0);

        let t = m.totals();
        assert_eq!(t.events, 10);
        assert_eq!(t.by_decision[decision_index(Decision::Allow)], 4);
        assert_eq!(t.findings_by_rule.get("aws-key"), Some(&1));
        assert_eq!(t.latency.count, 4);

        // Time passes: the windows roll.
        let later = m.snapshot(now + time::Duration::hours(2));
        assert_eq!(later.events_last_hour, 0);
        assert_eq!(later.events_last_24h, 9);
        assert_eq!(later.latency_avg_us_1h, None);
        let agents = m.agents(now);
        assert_eq!(agents[0].agent.as_str(), "a");
        assert_eq!(agents[0].events_24h, 2);
        assert_eq!(agents[0].last_seen, now);
    }

    #[test]
    fn trend_is_hourly_and_aligned_to_utc_hours() {
        let now = datetime!(2026-05-01 12:30 UTC);
        let m = Metrics::new();
        m.observe(&stored(1, call(datetime!(2026-05-01 12:05 UTC), "a", 1)));
        m.observe(&stored(2, call(datetime!(2026-05-01 11:59 UTC), "a", 1)));
        m.observe(&stored(
            3,
            AuditEvent::new(
                datetime!(2026-05-01 11:00 UTC),
                EventKind::Auth,
                Outcome::Denied,
            ),
        ));
        m.observe(&stored(
            4,
            AuditEvent::new(
                datetime!(2026-05-01 10:10 UTC),
                EventKind::Alert,
                Outcome::Failure,
            ),
        ));
        let t = m.trend(now, 3);
        assert_eq!(
            t.hours,
            vec![
                datetime!(2026-05-01 10:00 UTC).unix_timestamp(),
                datetime!(2026-05-01 11:00 UTC).unix_timestamp(),
                datetime!(2026-05-01 12:00 UTC).unix_timestamp(),
            ]
        );
        assert_eq!(t.events, vec![1, 2, 1]);
        assert_eq!(t.errors, vec![1, 0, 0]);
        assert_eq!(t.denials, vec![0, 1, 0]);
        assert_eq!(t.tool_calls, vec![0, 1, 1]);
        assert_eq!(m.trend(now, 0).hours.len(), 1);
        assert_eq!(m.trend(now, 1000).hours.len(), MAX_TREND_HOURS as usize);
    }

    #[test]
    fn events_past_the_kept_window_only_reach_totals() {
        let now = datetime!(2026-05-01 12:30 UTC);
        let m = Metrics::new();
        m.observe(&stored(1, call(now, "a", 1)));
        // Exactly 48 h older: same slot, older minute → skipped by the windows.
        m.observe(&stored(2, call(now - time::Duration::hours(48), "b", 1)));
        let s = m.snapshot(now);
        assert_eq!(s.events_last_hour, 1);
        assert_eq!(s.active_agents_24h, 1);
        assert_eq!(m.totals().events, 2);
        // A newer minute in the same slot replaces the old one.
        m.observe(&stored(3, call(now + time::Duration::hours(48), "c", 1)));
        let s = m.snapshot(now + time::Duration::hours(48));
        assert_eq!(s.events_last_hour, 1);
        assert_eq!(m.snapshot(now).events_last_hour, 0);
    }
}
