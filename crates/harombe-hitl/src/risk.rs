//! Historical risk of a tool: how its last N calls ended.
//!
//! Over the last `window` (default 100) finished `tool_call` events of a tool (outcome
//! success, failure or denied; a held call's `pending` record is not an outcome yet):
//! failure rate (outcome failure), denial rate (outcome denied) and incident rate (threat
//! level high or critical), combined as `0.3·failure + 0.4·denial + 0.3·incident` (the
//! weights are configurable and must sum to 1). A tool with no history scores with
//! failure 0.5, denial 0.5, incident 0 (0.35 with the default weights): unknown tools are
//! never "very low risk".
//!
//! Each tool's window is a ring with running counts: [`HistoricalRiskScorer::observe`]
//! adds an event in O(1), [`HistoricalRiskScorer::score`] reads the cached counts, and
//! [`HistoricalRiskScorer::load`] rebuilds a window from the audit log with one indexed
//! query (kind + target). Windows loaded longer ago than the TTL report
//! [`HistoricalRiskScorer::needs_load`], so replicas that only see their own events
//! converge on the shared log.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use harombe_core::{
    AuditEvent, AuditStore, Clock, EventFilter, EventKind, Outcome, PageRequest, ThreatLevel,
};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::error::HitlError;
use crate::window::{Entry, Window};

const FAILURE: u8 = 1;
const DENIED: u8 = 2;
const INCIDENT: u8 = 4;

/// Default number of recent calls per tool (the spec's N).
pub const DEFAULT_RISK_WINDOW: usize = 100;

/// The most pages one load reads to fill a window (pending records are skipped).
const MAX_LOAD_PAGES: usize = 8;

/// Weights of the three risk factors; they must sum to 1.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RiskWeights {
    pub failure: f64,
    pub denial: f64,
    pub incident: f64,
}

impl Default for RiskWeights {
    fn default() -> Self {
        Self {
            failure: 0.3,
            denial: 0.4,
            incident: 0.3,
        }
    }
}

impl RiskWeights {
    /// Each weight finite and in `0..=1`, and their sum 1 within 1e-9.
    pub fn validate(&self) -> Result<(), HitlError> {
        for (name, w) in [
            ("risk_weights.failure", self.failure),
            ("risk_weights.denial", self.denial),
            ("risk_weights.incident", self.incident),
        ] {
            if !(w.is_finite() && (0.0..=1.0).contains(&w)) {
                return Err(HitlError::config(
                    name,
                    format!("{w} must be a number in 0..=1"),
                ));
            }
        }
        let sum = self.failure + self.denial + self.incident;
        if (sum - 1.0).abs() > 1e-9 {
            return Err(HitlError::config(
                "risk_weights",
                format!("failure + denial + incident = {sum}; they must sum to 1"),
            ));
        }
        Ok(())
    }
}

/// The rates a risk score combines.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RiskFactors {
    pub failure_rate: f64,
    pub denial_rate: f64,
    pub incident_rate: f64,
}

/// A tool's historical risk in `0..=1`, its factors, and how many calls it rests on.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RiskScore {
    pub score: f64,
    pub factors: RiskFactors,
    /// Finished calls in the window (0: no history, the spec's defaults apply).
    pub sample_size: u32,
}

impl RiskScore {
    /// The score of a tool nobody has called yet.
    pub fn no_history(w: &RiskWeights) -> Self {
        Self::from_rates(w, 0.5, 0.5, 0.0, 0)
    }

    /// The score of `n` calls of which `failures` failed, `denials` were denied and
    /// `incidents` were high-threat.
    pub fn from_counts(
        w: &RiskWeights,
        n: u32,
        failures: u32,
        denials: u32,
        incidents: u32,
    ) -> Self {
        if n == 0 {
            return Self::no_history(w);
        }
        let rate = |k: u32| f64::from(k) / f64::from(n);
        Self::from_rates(w, rate(failures), rate(denials), rate(incidents), n)
    }

    fn from_rates(w: &RiskWeights, f: f64, d: f64, i: f64, n: u32) -> Self {
        Self {
            score: (w.failure * f + w.denial * d + w.incident * i).clamp(0.0, 1.0),
            factors: RiskFactors {
                failure_rate: f,
                denial_rate: d,
                incident_rate: i,
            },
            sample_size: n,
        }
    }
}

/// What one event adds to its tool's window, or `None` when it does not count.
fn risk_entry(e: &AuditEvent) -> Option<(&str, Entry)> {
    if e.kind != EventKind::ToolCall || e.outcome == Outcome::Pending {
        return None;
    }
    let tool = e.target.as_deref()?;
    let mut flags = 0;
    if e.outcome == Outcome::Failure {
        flags |= FAILURE;
    }
    if e.outcome == Outcome::Denied {
        flags |= DENIED;
    }
    if e.threat_level.is_some_and(|l| l >= ThreatLevel::High) {
        flags |= INCIDENT;
    }
    Some((
        tool,
        Entry {
            id: e.id,
            at: e.unix_micros(),
            flags,
        },
    ))
}

#[derive(Debug)]
struct ToolEntry {
    window: Window,
    /// When the window was last rebuilt from the log (`None`: only observed so far).
    loaded_at: Option<OffsetDateTime>,
    /// Last observed or loaded (for eviction).
    touched: OffsetDateTime,
}

/// Per-tool historical risk, cached and kept current from the audit log. Thread-safe;
/// no lock is held across an `.await`.
#[derive(Debug)]
pub struct HistoricalRiskScorer {
    weights: RiskWeights,
    window: usize,
    ttl: Duration,
    clock: Arc<dyn Clock>,
    tools: RwLock<HashMap<String, ToolEntry>>,
    max_entries: usize,
}

impl HistoricalRiskScorer {
    /// A scorer over the last `window` calls per tool, reloading entries older than `ttl`.
    pub fn new(
        weights: RiskWeights,
        window: usize,
        ttl: Duration,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, HitlError> {
        weights.validate()?;
        if window == 0 || window > PageRequest::MAX_LIMIT as usize {
            return Err(HitlError::config(
                "risk_window",
                format!("{window} must be in 1..={}", PageRequest::MAX_LIMIT),
            ));
        }
        if ttl <= Duration::ZERO {
            return Err(HitlError::config("risk_ttl", "must be positive"));
        }
        Ok(Self {
            weights,
            window,
            ttl,
            clock,
            tools: RwLock::new(HashMap::new()),
            max_entries: crate::cache::DEFAULT_MAX_ENTRIES,
        })
    }

    /// Keeps at most `n` tools cached (the least recently touched make room).
    #[must_use]
    pub fn with_max_entries(mut self, n: usize) -> Self {
        self.max_entries = n.max(1);
        self
    }

    /// How many tools are cached.
    pub fn len(&self) -> usize {
        self.tools.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no tool is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops tools with no call observed or loaded for `idle`; returns how many.
    pub fn evict_idle(&self, idle: Duration) -> usize {
        let Some(before) = self.clock.now().checked_sub(idle) else {
            return 0;
        };
        let mut tools = self.tools.write().unwrap_or_else(|p| p.into_inner());
        crate::cache::evict_untouched(&mut tools, before, |t| t.touched)
    }

    pub fn weights(&self) -> &RiskWeights {
        &self.weights
    }

    /// Adds one audit event (any kind; only finished `tool_call` events count). O(1).
    pub fn observe(&self, e: &AuditEvent) {
        let Some((tool, entry)) = risk_entry(e) else {
            return;
        };
        let now = self.clock.now();
        let mut tools = self.tools.write().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = tools.get_mut(tool) {
            t.window.push(entry);
            t.touched = now;
        } else {
            let mut window = Window::new(self.window);
            window.push(entry);
            crate::cache::make_room(&mut tools, self.max_entries, |t| t.touched);
            tools.insert(
                tool.to_owned(),
                ToolEntry {
                    window,
                    loaded_at: None,
                    touched: now,
                },
            );
        }
    }

    /// The cached score of `tool`, or `None` when nothing is known about it yet.
    pub fn score(&self, tool: &str) -> Option<RiskScore> {
        let tools = self.tools.read().unwrap_or_else(|p| p.into_inner());
        tools.get(tool).map(|t| self.score_window(&t.window))
    }

    fn score_window(&self, w: &Window) -> RiskScore {
        let n = u32::try_from(w.len()).unwrap_or(u32::MAX);
        RiskScore::from_counts(
            &self.weights,
            n,
            w.count(FAILURE),
            w.count(DENIED),
            w.count(INCIDENT),
        )
    }

    /// Whether `tool` was never loaded from the log, or was loaded longer ago than the TTL.
    pub fn needs_load(&self, tool: &str) -> bool {
        let now = self.clock.now();
        let tools = self.tools.read().unwrap_or_else(|p| p.into_inner());
        tools
            .get(tool)
            .and_then(|t| t.loaded_at)
            .is_none_or(|at| now - at >= self.ttl)
    }

    /// Cached tools loaded longer than `older_than` ago (or never): what a background
    /// refresh reloads.
    pub fn loaded_before(&self, older_than: Duration) -> Vec<String> {
        let now = self.clock.now();
        let tools = self.tools.read().unwrap_or_else(|p| p.into_inner());
        tools
            .iter()
            .filter(|(_, t)| t.loaded_at.is_none_or(|at| now - at >= older_than))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Rebuilds `tool`'s window from the audit log (newest `window` finished calls, one
    /// indexed query in the common case) and returns its score.
    pub async fn load(&self, store: &dyn AuditStore, tool: &str) -> Result<RiskScore, HitlError> {
        let started = self.clock.now();
        let filter = EventFilter {
            kind: Some(EventKind::ToolCall),
            target: Some(tool.to_owned()),
            ..EventFilter::default()
        };
        let limit = u32::try_from(self.window).unwrap_or(PageRequest::MAX_LIMIT);
        let mut newest_first = Vec::with_capacity(self.window);
        let mut page = PageRequest::newest(limit);
        for _ in 0..MAX_LOAD_PAGES {
            let got = store
                .query(&filter, page)
                .await
                .map_err(|source| HitlError::Store {
                    what: format!("risk history of tool {tool:?}"),
                    source,
                })?;
            newest_first.extend(
                got.events
                    .iter()
                    .filter_map(|s| risk_entry(&s.event).map(|(_, e)| e))
                    .take(self.window - newest_first.len()),
            );
            match got.next_cursor {
                Some(c) if newest_first.len() < self.window => page.cursor = Some(c),
                _ => break,
            }
        }
        let mut loaded = Window::new(self.window);
        for e in newest_first.into_iter().rev() {
            loaded.push(e);
        }
        let mut tools = self.tools.write().unwrap_or_else(|p| p.into_inner());
        let window = Window::merged(loaded, tools.get(tool).map(|t| &t.window));
        let score = self.score_window(&window);
        if !tools.contains_key(tool) {
            crate::cache::make_room(&mut tools, self.max_entries, |t| t.touched);
        }
        tools.insert(
            tool.to_owned(),
            ToolEntry {
                window,
                loaded_at: Some(started),
                touched: started,
            },
        );
        tracing::debug!(
            tool,
            score = score.score,
            n = score.sample_size,
            "risk history loaded"
        );
        Ok(score)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use harombe_core::ManualClock;
    use harombe_core::fake::MemoryAuditStore;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-01-05 09:00 UTC);

    fn call(i: i64, tool: &str, outcome: Outcome, threat: Option<ThreatLevel>) -> AuditEvent {
        let mut e = AuditEvent::new(T0 + Duration::seconds(i), EventKind::ToolCall, outcome)
            .with_target(tool);
        e.threat_level = threat;
        e
    }

    fn scorer(window: usize) -> (HistoricalRiskScorer, ManualClock) {
        let clock = ManualClock::new(T0);
        let s = HistoricalRiskScorer::new(
            RiskWeights::default(),
            window,
            Duration::minutes(10),
            Arc::new(clock.clone()),
        )
        .unwrap();
        (s, clock)
    }

    #[test]
    fn no_history_uses_the_spec_defaults() {
        let r = RiskScore::no_history(&RiskWeights::default());
        assert!((r.score - 0.35).abs() < 1e-12);
        assert_eq!(r.sample_size, 0);
        let (s, _) = scorer(100);
        assert_eq!(s.score("never"), None);
        assert!(s.needs_load("never"));
    }

    #[test]
    fn rates_and_weights_combine() {
        let (s, _) = scorer(100);
        // 10 calls: 2 failures, 3 denials, 1 high-threat success.
        for i in 0..10 {
            let (o, t) = match i {
                0 | 1 => (Outcome::Failure, None),
                2..=4 => (Outcome::Denied, None),
                5 => (Outcome::Success, Some(ThreatLevel::Critical)),
                _ => (Outcome::Success, Some(ThreatLevel::Medium)),
            };
            s.observe(&call(i, "fs.write", o, t));
        }
        s.observe(&call(20, "fs.write", Outcome::Pending, None)); // not an outcome yet
        s.observe(&call(21, "fs.read", Outcome::Denied, None)); // another tool
        let r = s.score("fs.write").unwrap();
        assert_eq!(r.sample_size, 10);
        assert!((r.factors.failure_rate - 0.2).abs() < 1e-12);
        assert!((r.factors.denial_rate - 0.3).abs() < 1e-12);
        assert!((r.factors.incident_rate - 0.1).abs() < 1e-12);
        assert!((r.score - (0.3 * 0.2 + 0.4 * 0.3 + 0.3 * 0.1)).abs() < 1e-12);
    }

    #[test]
    fn only_the_last_n_calls_count() {
        let (s, _) = scorer(4);
        for i in 0..4 {
            s.observe(&call(i, "t", Outcome::Denied, None));
        }
        assert!((s.score("t").unwrap().factors.denial_rate - 1.0).abs() < 1e-12);
        for i in 4..8 {
            s.observe(&call(i, "t", Outcome::Success, None));
        }
        let r = s.score("t").unwrap();
        assert_eq!((r.sample_size, r.score), (4, 0.0));
    }

    #[test]
    fn weights_are_validated() {
        let bad = RiskWeights {
            failure: 0.5,
            denial: 0.5,
            incident: 0.1,
        };
        let e = bad.validate().unwrap_err();
        assert!(e.to_string().contains("sum to 1"), "{e}");
        let neg = RiskWeights {
            failure: -0.1,
            denial: 0.8,
            incident: 0.3,
        };
        assert!(
            neg.validate()
                .unwrap_err()
                .to_string()
                .contains("risk_weights.failure")
        );
        let (clock, w) = (Arc::new(ManualClock::new(T0)), RiskWeights::default());
        assert!(HistoricalRiskScorer::new(w, 0, Duration::minutes(1), clock.clone()).is_err());
        assert!(HistoricalRiskScorer::new(w, 10, Duration::ZERO, clock).is_err());
    }

    #[tokio::test]
    async fn load_matches_observe_and_expires_after_the_ttl() {
        let store = MemoryAuditStore::new();
        let (observed, _) = scorer(5);
        for i in 0..12 {
            let o = [
                Outcome::Success,
                Outcome::Failure,
                Outcome::Denied,
                Outcome::Pending,
            ][(i % 4) as usize];
            let e = call(i, "t", o, (i % 3 == 0).then_some(ThreatLevel::High));
            observed.observe(&e);
            store.append(e).await.unwrap();
        }
        let (loaded, clock) = scorer(5);
        let r = loaded.load(&store, "t").await.unwrap();
        assert_eq!(Some(r), observed.score("t"));
        assert_eq!(r.sample_size, 5);
        assert!(!loaded.needs_load("t"));
        clock.advance(Duration::minutes(10));
        assert!(loaded.needs_load("t"));
        // An event delivered by both the tail and a later load counts once.
        let e = call(50, "t", Outcome::Denied, None);
        loaded.observe(&e);
        store.append(e.clone()).await.unwrap();
        observed.observe(&e);
        loaded.observe(&e);
        loaded.load(&store, "t").await.unwrap();
        assert_eq!(loaded.score("t"), observed.score("t"));
    }

    #[tokio::test]
    async fn the_cache_is_bounded_and_idle_tools_are_dropped_then_reloaded() {
        let (s, clock) = scorer(10);
        let s = s.with_max_entries(100);
        // Calls to ever new tool names (names come from callers) stay within the bound.
        for i in 0..1_000 {
            s.observe(&call(i, &format!("junk-{i}"), Outcome::Denied, None));
        }
        assert!(s.len() <= 100, "{}", s.len());
        assert!(s.score("junk-999").is_some(), "the newest is kept");
        // Idle entries go; the log still has them, so a load brings the score back.
        let store = MemoryAuditStore::new();
        for i in 0..4 {
            store
                .append(call(i, "deploy", Outcome::Failure, None))
                .await
                .unwrap();
        }
        let before = s.load(&store, "deploy").await.unwrap();
        clock.advance(Duration::hours(1));
        s.observe(&call(5000, "fresh", Outcome::Success, None));
        let cached = s.len();
        let dropped = s.evict_idle(Duration::minutes(30));
        assert_eq!(dropped, cached - 1, "all but the one touched since");
        assert!(s.score("deploy").is_none() && s.score("fresh").is_some());
        assert!(s.needs_load("deploy"));
        let after = s.load(&store, "deploy").await.unwrap();
        assert_eq!(before.score, after.score);
        // A huge idle time evicts nothing (and does not overflow).
        assert_eq!(s.evict_idle(Duration::MAX), 0);
    }
}
