//! Agent trust: a 0–100 score from how an agent has behaved, mapped to a level.
//!
//! `score = 100 · (0.4·compliance + 0.3·approval_success + 0.3·tenure)` over the agent's
//! last `window` (default 1000) audit events of any kind:
//! - compliance = 1 − violations / events, a violation being an event with outcome denied
//!   or threat level high or critical;
//! - approval_success = approved / decided over its `approval` events (outcome success
//!   is approved, denied is denied; an expired approval was not decided), 1.0 when none;
//! - tenure = min(days since the agent's first event ever / 90, 1), against the injected
//!   clock.
//!
//! An agent with no events scores 50 (neutral, level low). Levels: high ≥ 90, medium ≥ 70,
//! low ≥ 50, else untrusted.
//!
//! Persistence: there is no trust table. The state is derived from the durable, hash-
//! chained audit log (the last `window` events of the agent and its first event), so it
//! survives restarts and every replica that reads the same log computes the same trust;
//! the in-memory windows are a cache kept current by [`TrustManager::observe`] and
//! rebuilt by [`TrustManager::load`] when missing or older than the TTL.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use harombe_core::{
    AgentId, AuditEvent, AuditStore, Clock, EventFilter, EventKind, EventSummary, Outcome,
    PageRequest, ThreatLevel,
};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::error::HitlError;
use crate::window::{Entry, Window};

const VIOLATION: u8 = 1;
const DECIDED: u8 = 2;
const APPROVED: u8 = 4;

/// Default number of recent events per agent (the spec's 1000).
pub const DEFAULT_TRUST_WINDOW: usize = 1000;

/// Days of activity for full tenure.
pub const FULL_TENURE_DAYS: f64 = 90.0;

/// Weights of compliance, approval success and tenure.
const W_COMPLIANCE: f64 = 0.4;
const W_APPROVAL: f64 = 0.3;
const W_TENURE: f64 = 0.3;

/// Trust levels, ordered `Untrusted < Low < Medium < High`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrustLevel {
    Untrusted,
    Low,
    Medium,
    High,
}

impl TrustLevel {
    pub const ALL: [TrustLevel; 4] = [
        TrustLevel::Untrusted,
        TrustLevel::Low,
        TrustLevel::Medium,
        TrustLevel::High,
    ];

    /// high ≥ 90, medium ≥ 70, low ≥ 50, else untrusted.
    pub fn from_score(score: f64) -> Self {
        if score >= 90.0 {
            TrustLevel::High
        } else if score >= 70.0 {
            TrustLevel::Medium
        } else if score >= 50.0 {
            TrustLevel::Low
        } else {
            TrustLevel::Untrusted
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TrustLevel::Untrusted => "untrusted",
            TrustLevel::Low => "low",
            TrustLevel::Medium => "medium",
            TrustLevel::High => "high",
        }
    }
}

impl fmt::Display for TrustLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// One factor of a trust score, with the sentence that explains it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrustFactor {
    pub name: String,
    /// In `0..=1`.
    pub value: f64,
    pub weight: f64,
    pub explanation: String,
}

/// An agent's trust: `score = 100 · Σ value·weight` over `factors`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trust {
    pub score: f64,
    pub level: TrustLevel,
    pub factors: Vec<TrustFactor>,
    /// Events in the window (0: no history, neutral score).
    pub sample_size: u32,
}

impl Trust {
    /// The neutral trust of an agent with no history.
    pub fn neutral() -> Self {
        Self {
            score: 50.0,
            level: TrustLevel::from_score(50.0),
            factors: vec![TrustFactor {
                name: "neutral".into(),
                value: 0.5,
                weight: 1.0,
                explanation: "no recorded events for this agent: neutral score for new agents"
                    .into(),
            }],
            sample_size: 0,
        }
    }

    /// Trust from window counts, the agent's first event and the current time.
    pub fn from_counts(
        events: u32,
        violations: u32,
        decided: u32,
        approved: u32,
        first_seen: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) -> Self {
        if events == 0 {
            return Self::neutral();
        }
        let compliance = 1.0 - f64::from(violations) / f64::from(events);
        let approval = if decided == 0 {
            1.0
        } else {
            f64::from(approved) / f64::from(decided)
        };
        let days = first_seen.map_or(0.0, |f| ((now - f).as_seconds_f64() / 86_400.0).max(0.0));
        let tenure = (days / FULL_TENURE_DAYS).min(1.0);
        let approval_text = if decided == 0 {
            "no decided approvals yet (counts as 1.00)".to_owned()
        } else {
            format!("{approved} of {decided} decided approvals were approved")
        };
        let factors = vec![
            TrustFactor {
                name: "compliance".into(),
                value: compliance,
                weight: W_COMPLIANCE,
                explanation: format!(
                    "{violations} violations (denied or high-threat) in the last {events} events"
                ),
            },
            TrustFactor {
                name: "approval_success".into(),
                value: approval,
                weight: W_APPROVAL,
                explanation: approval_text,
            },
            TrustFactor {
                name: "tenure".into(),
                value: tenure,
                weight: W_TENURE,
                explanation: format!(
                    "first seen {days:.1} days ago (full tenure at {FULL_TENURE_DAYS} days)"
                ),
            },
        ];
        let score =
            (100.0 * factors.iter().map(|f| f.value * f.weight).sum::<f64>()).clamp(0.0, 100.0);
        Self {
            score,
            level: TrustLevel::from_score(score),
            factors,
            sample_size: events,
        }
    }
}

fn trust_entry(e: &AuditEvent) -> Option<(&AgentId, Entry)> {
    let agent = e.agent.as_ref()?;
    Some((
        agent,
        Entry {
            id: e.id,
            at: e.unix_micros(),
            flags: trust_flags(e.kind, e.outcome, e.threat_level),
        },
    ))
}

/// The same entry from an event's indexed columns (what a load reads).
fn summary_entry(s: &EventSummary) -> Entry {
    Entry {
        id: s.id,
        at: i64::try_from(s.timestamp.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX),
        flags: trust_flags(s.kind, s.outcome, s.threat_level),
    }
}

fn trust_flags(kind: EventKind, outcome: Outcome, threat: Option<ThreatLevel>) -> u8 {
    let mut flags = 0;
    if outcome == Outcome::Denied || threat.is_some_and(|l| l >= ThreatLevel::High) {
        flags |= VIOLATION;
    }
    if kind == EventKind::Approval {
        match outcome {
            Outcome::Success => flags |= DECIDED | APPROVED,
            Outcome::Denied => flags |= DECIDED,
            Outcome::Failure | Outcome::Pending => {}
        }
    }
    flags
}

#[derive(Debug)]
struct AgentEntry {
    window: Window,
    first_seen: Option<OffsetDateTime>,
    loaded_at: Option<OffsetDateTime>,
    /// Last observed or loaded (for eviction).
    touched: OffsetDateTime,
}

/// Per-agent trust, cached and kept current from the audit log. Thread-safe; no lock is
/// held across an `.await`.
#[derive(Debug)]
pub struct TrustManager {
    window: usize,
    ttl: Duration,
    clock: Arc<dyn Clock>,
    agents: RwLock<HashMap<AgentId, AgentEntry>>,
    max_entries: usize,
}

impl TrustManager {
    /// A manager over the last `window` events per agent, reloading entries older than
    /// `ttl`; tenure is measured against `clock`.
    pub fn new(window: usize, ttl: Duration, clock: Arc<dyn Clock>) -> Result<Self, HitlError> {
        if window == 0 || window > PageRequest::MAX_LIMIT as usize {
            return Err(HitlError::config(
                "trust_window",
                format!("{window} must be in 1..={}", PageRequest::MAX_LIMIT),
            ));
        }
        if ttl <= Duration::ZERO {
            return Err(HitlError::config("trust_ttl", "must be positive"));
        }
        Ok(Self {
            window,
            ttl,
            clock,
            agents: RwLock::new(HashMap::new()),
            max_entries: crate::cache::DEFAULT_MAX_ENTRIES,
        })
    }

    /// Keeps at most `n` agents cached (the least recently touched make room).
    #[must_use]
    pub fn with_max_entries(mut self, n: usize) -> Self {
        self.max_entries = n.max(1);
        self
    }

    /// How many agents are cached.
    pub fn len(&self) -> usize {
        self.agents.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no agent is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops agents with no event observed or loaded for `idle`; returns how many.
    pub fn evict_idle(&self, idle: Duration) -> usize {
        let Some(before) = self.clock.now().checked_sub(idle) else {
            return 0;
        };
        let mut agents = self.agents.write().unwrap_or_else(|p| p.into_inner());
        crate::cache::evict_untouched(&mut agents, before, |a| a.touched)
    }

    /// Adds one audit event (any kind with an agent). O(1).
    pub fn observe(&self, e: &AuditEvent) {
        let Some((agent, entry)) = trust_entry(e) else {
            return;
        };
        let now = self.clock.now();
        let mut agents = self.agents.write().unwrap_or_else(|p| p.into_inner());
        if let Some(a) = agents.get_mut(agent) {
            a.window.push(entry);
            a.touched = now;
            if a.first_seen.is_none_or(|f| e.timestamp < f) {
                a.first_seen = Some(e.timestamp);
            }
        } else {
            let mut window = Window::new(self.window);
            window.push(entry);
            crate::cache::make_room(&mut agents, self.max_entries, |a| a.touched);
            agents.insert(
                agent.clone(),
                AgentEntry {
                    window,
                    first_seen: Some(e.timestamp),
                    loaded_at: None,
                    touched: now,
                },
            );
        }
    }

    /// The cached trust of `agent`, or `None` when nothing is known about it yet.
    pub fn trust(&self, agent: &AgentId) -> Option<Trust> {
        let now = self.clock.now();
        let agents = self.agents.read().unwrap_or_else(|p| p.into_inner());
        agents.get(agent).map(|a| Self::trust_of(a, now))
    }

    /// The cached level and score only (no explanation text): the cheapest lookup.
    pub fn level(&self, agent: &AgentId) -> Option<(TrustLevel, f64)> {
        self.trust(agent).map(|t| (t.level, t.score))
    }

    fn trust_of(a: &AgentEntry, now: OffsetDateTime) -> Trust {
        let w = &a.window;
        Trust::from_counts(
            u32::try_from(w.len()).unwrap_or(u32::MAX),
            w.count(VIOLATION),
            w.count(DECIDED),
            w.count(APPROVED),
            a.first_seen,
            now,
        )
    }

    /// Whether `agent` was never loaded from the log, or was loaded longer ago than the TTL.
    pub fn needs_load(&self, agent: &AgentId) -> bool {
        let now = self.clock.now();
        let agents = self.agents.read().unwrap_or_else(|p| p.into_inner());
        agents
            .get(agent)
            .and_then(|a| a.loaded_at)
            .is_none_or(|at| now - at >= self.ttl)
    }

    /// Cached agents loaded longer than `older_than` ago (or never): what a background
    /// refresh reloads.
    pub fn loaded_before(&self, older_than: Duration) -> Vec<AgentId> {
        let now = self.clock.now();
        let agents = self.agents.read().unwrap_or_else(|p| p.into_inner());
        agents
            .iter()
            .filter(|(_, a)| a.loaded_at.is_none_or(|at| now - at >= older_than))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Rebuilds `agent`'s window from the audit log (its newest `window` events, and its
    /// first event for tenure: two indexed queries) and returns its trust.
    pub async fn load(&self, store: &dyn AuditStore, agent: &AgentId) -> Result<Trust, HitlError> {
        let started = self.clock.now();
        let filter = EventFilter {
            agent: Some(agent.clone()),
            ..EventFilter::default()
        };
        let err = |source| HitlError::Store {
            what: format!("trust history of agent {agent}"),
            source,
        };
        let limit = u32::try_from(self.window).unwrap_or(PageRequest::MAX_LIMIT);
        // Indexed columns only: no event body is decoded.
        let recent = store
            .summaries(&filter, PageRequest::newest(limit))
            .await
            .map_err(err)?;
        let first = store
            .summaries(&filter, PageRequest::oldest(1))
            .await
            .map_err(err)?;
        let mut loaded = Window::new(self.window);
        for s in recent.iter().rev() {
            loaded.push(summary_entry(s));
        }
        let first_seen = first.first().map(|s| s.timestamp);
        let mut agents = self.agents.write().unwrap_or_else(|p| p.into_inner());
        let prev = agents.get(agent);
        let window = Window::merged(loaded, prev.map(|a| &a.window));
        let first_seen = match (first_seen, prev.and_then(|a| a.first_seen)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let entry = AgentEntry {
            window,
            first_seen,
            loaded_at: Some(started),
            touched: started,
        };
        let trust = Self::trust_of(&entry, self.clock.now());
        if !agents.contains_key(agent) {
            crate::cache::make_room(&mut agents, self.max_entries, |a| a.touched);
        }
        agents.insert(agent.clone(), entry);
        tracing::debug!(%agent, score = trust.score, n = trust.sample_size, "trust history loaded");
        Ok(trust)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use harombe_core::ManualClock;
    use harombe_core::fake::MemoryAuditStore;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-01-05 09:00 UTC);

    fn agent() -> AgentId {
        AgentId::new("bot").unwrap()
    }

    fn ev(at: OffsetDateTime, kind: EventKind, outcome: Outcome) -> AuditEvent {
        AuditEvent::new(at, kind, outcome).with_agent(agent())
    }

    fn manager(clock: &ManualClock) -> TrustManager {
        TrustManager::new(1000, Duration::minutes(10), Arc::new(clock.clone())).unwrap()
    }

    #[test]
    fn levels_follow_the_thresholds() {
        assert_eq!(TrustLevel::from_score(90.0), TrustLevel::High);
        assert_eq!(TrustLevel::from_score(89.99), TrustLevel::Medium);
        assert_eq!(TrustLevel::from_score(70.0), TrustLevel::Medium);
        assert_eq!(TrustLevel::from_score(50.0), TrustLevel::Low);
        assert_eq!(TrustLevel::from_score(49.9), TrustLevel::Untrusted);
        assert_eq!(
            serde_json::to_string(&TrustLevel::High).unwrap(),
            "\"high\""
        );
    }

    #[test]
    fn new_agents_are_neutral() {
        let clock = ManualClock::new(T0);
        let m = manager(&clock);
        assert_eq!(m.trust(&agent()), None);
        let t = Trust::neutral();
        assert_eq!((t.score, t.level), (50.0, TrustLevel::Low));
        assert!(t.factors[0].explanation.contains("no recorded events"));
    }

    #[test]
    fn score_combines_compliance_approvals_and_tenure() {
        let clock = ManualClock::new(T0 + Duration::days(45));
        let m = manager(&clock);
        // 10 events over 45 days: 1 denied call, 1 high-threat call, 4 approvals
        // (3 approved, 1 denied), 1 expired approval.
        let mut at = T0;
        let mut push = |kind, outcome, threat| {
            let mut e = ev(at, kind, outcome);
            e.threat_level = threat;
            m.observe(&e);
            at += Duration::hours(1);
        };
        push(EventKind::ToolCall, Outcome::Success, None);
        push(EventKind::ToolCall, Outcome::Denied, None);
        push(
            EventKind::ToolCall,
            Outcome::Success,
            Some(ThreatLevel::High),
        );
        for _ in 0..3 {
            push(EventKind::Approval, Outcome::Success, None);
        }
        push(EventKind::Approval, Outcome::Denied, None);
        push(EventKind::Approval, Outcome::Failure, None);
        push(EventKind::ToolCall, Outcome::Success, None);
        push(EventKind::ToolCall, Outcome::Success, None);
        let t = m.trust(&agent()).unwrap();
        assert_eq!(t.sample_size, 10);
        // Violations: the denied call, the high-threat call, the denied approval.
        let compliance = 1.0 - 3.0 / 10.0;
        let approval = 3.0 / 4.0;
        let tenure = 45.0 / 90.0;
        let expected = 100.0 * (0.4 * compliance + 0.3 * approval + 0.3 * tenure);
        assert!(
            (t.score - expected).abs() < 1e-9,
            "{} vs {expected}",
            t.score
        );
        assert_eq!(t.level, TrustLevel::from_score(expected));
        assert!(t.factors[0].explanation.contains("3 violations"));
        assert!(t.factors[1].explanation.contains("3 of 4"));
        assert!(t.factors[2].explanation.contains("45.0 days"));
        // Tenure saturates at 90 days.
        clock.advance(Duration::days(400));
        let t = m.trust(&agent()).unwrap();
        assert!((t.factors[2].value - 1.0).abs() < 1e-12);
    }

    #[tokio::test]
    async fn load_matches_observe_and_keeps_the_first_event() {
        let clock = ManualClock::new(T0 + Duration::days(100));
        let store = MemoryAuditStore::new();
        let small = TrustManager::new(5, Duration::minutes(10), Arc::new(clock.clone())).unwrap();
        for i in 0..20 {
            let outcome = if i % 3 == 0 {
                Outcome::Denied
            } else {
                Outcome::Success
            };
            let kind = if i % 2 == 0 {
                EventKind::Approval
            } else {
                EventKind::ToolCall
            };
            let e = ev(T0 + Duration::days(i), kind, outcome);
            small.observe(&e);
            store.append(e).await.unwrap();
        }
        let other = AuditEvent::new(T0, EventKind::ToolCall, Outcome::Denied)
            .with_agent(AgentId::new("other").unwrap());
        store.append(other).await.unwrap();
        let loaded = TrustManager::new(5, Duration::minutes(10), Arc::new(clock.clone())).unwrap();
        let t = loaded.load(&store, &agent()).await.unwrap();
        assert_eq!(Some(&t), small.trust(&agent()).as_ref());
        // Tenure counts from the first event ever, not the first in the window.
        assert!((t.factors[2].value - 1.0).abs() < 1e-12);
        assert!(!loaded.needs_load(&agent()));
        clock.advance(Duration::minutes(10));
        assert!(loaded.needs_load(&agent()));
    }

    #[test]
    fn the_agent_cache_is_bounded_and_idle_agents_are_dropped() {
        let clock = ManualClock::new(T0);
        let m = manager(&clock).with_max_entries(50);
        for i in 0..500 {
            let a = AgentId::new(format!("a{i}")).unwrap();
            m.observe(&AuditEvent::new(T0, EventKind::ToolCall, Outcome::Success).with_agent(a));
        }
        assert!(m.len() <= 50, "{}", m.len());
        m.observe(&ev(T0, EventKind::ToolCall, Outcome::Success));
        assert!(m.trust(&agent()).is_some());
        clock.advance(Duration::hours(1));
        assert_eq!(m.evict_idle(Duration::minutes(90)), 0);
        assert!(m.evict_idle(Duration::minutes(30)) > 0);
        assert!(m.is_empty());
        assert!(m.needs_load(&agent()));
    }
}
