//! The context-aware decision: rules over trust, historical risk, threat and anomaly,
//! then the built-in fallbacks, then the critical guard.
//!
//! Order of evaluation (fixed):
//! 1. The first matching rule decides: `deny` → deny, `require_approval` → hold,
//!    `auto_approve` → allow.
//! 2. No rule matched: deny if the threat level ≥ `deny_threat_at`; hold if the threat
//!    level ≥ `hold_threat_at`, the call is anomalous, or the tool is a risky tool; else
//!    allow.
//! 3. Critical guard, whatever decided: an allow of a call with historical risk ≥ 0.8 or
//!    threat level critical becomes a hold.
//!
//! [`ContextAwareEngine::decide`] is synchronous and reads cached state only; callers
//! first await [`ContextAwareEngine::prepare`], which loads from the audit log whatever is
//! missing or older than its TTL (and does nothing when the caches are warm).

use std::collections::BTreeMap;
use std::sync::Arc;

use globset::GlobSet;
use harombe_core::{AgentId, AuditEvent, AuditStore, Clock, Decision, ThreatLevel, Verdict};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::error::HitlError;
use crate::risk::{DEFAULT_RISK_WINDOW, HistoricalRiskScorer, RiskScore, RiskWeights};
use crate::rules::{
    RuleAction, RuleConfig, RuleInput, RuleSet, compile_globs, critical_reason, default_rules,
};
use crate::trust::{DEFAULT_TRUST_WINDOW, Trust, TrustManager};

/// Tools that need a human unless a rule auto-approves them (case-insensitive globs):
/// anything that deletes, overwrites, executes, moves money, deploys, escalates
/// privileges or sends data out.
pub const DEFAULT_RISKY_TOOLS: [&str; 16] = [
    "*delete*",
    "*remove*",
    "*write*",
    "*exec*",
    "*shell*",
    "*run_command*",
    "*transfer*",
    "*payment*",
    "*deploy*",
    "*drop*",
    "*sudo*",
    "*grant*",
    "*iam*",
    "*send_email*",
    "*upload*",
    "*http_post*",
];

/// HITL configuration (`[hitl]`). Every field has a default; `rules`, when given,
/// replaces the shipped rules entirely.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HitlConfig {
    /// When false, every call is allowed without evaluation.
    pub enabled: bool,
    /// Tool globs whose calls are held unless a rule auto-approves them.
    pub risky_tools: Vec<String>,
    /// Hold (when no rule matched) at this threat level or above; `None`: never.
    pub hold_threat_at: Option<ThreatLevel>,
    /// Deny (when no rule matched) at this threat level or above; `None`: never.
    pub deny_threat_at: Option<ThreatLevel>,
    pub rules: Vec<RuleConfig>,
    pub risk_weights: RiskWeights,
    /// Recent finished calls per tool that historical risk looks at.
    pub risk_window: usize,
    /// Recent events per agent that trust looks at.
    pub trust_window: usize,
    /// Seconds after which a tool's cached risk is reloaded from the audit log.
    pub risk_ttl: u64,
    /// Seconds after which an agent's cached trust is reloaded from the audit log.
    pub trust_ttl: u64,
    /// Seconds a held call waits for a human before it expires.
    pub approval_timeout: u64,
    /// Most tools, and most agents, whose history is cached (the least recently active
    /// make room; an evicted one is reloaded from the audit log when next needed).
    pub cache_max_entries: usize,
}

impl Default for HitlConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            risky_tools: DEFAULT_RISKY_TOOLS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            hold_threat_at: Some(ThreatLevel::High),
            deny_threat_at: None,
            rules: default_rules(),
            risk_weights: RiskWeights::default(),
            risk_window: DEFAULT_RISK_WINDOW,
            trust_window: DEFAULT_TRUST_WINDOW,
            risk_ttl: 600,
            trust_ttl: 600,
            approval_timeout: 300,
            cache_max_entries: crate::cache::DEFAULT_MAX_ENTRIES,
        }
    }
}

impl HitlConfig {
    /// Checks everything [`ContextAwareEngine::new`] would (pure; no I/O).
    pub fn validate(&self) -> Result<(), HitlError> {
        self.checked().map(|_| ())
    }

    fn checked(&self) -> Result<(RuleSet, GlobSet), HitlError> {
        self.risk_weights.validate()?;
        for (field, secs) in [
            ("risk_ttl", self.risk_ttl),
            ("trust_ttl", self.trust_ttl),
            ("approval_timeout", self.approval_timeout),
        ] {
            if secs == 0 || secs > 7 * 86_400 {
                return Err(HitlError::config(
                    field,
                    format!("{secs} s must be between 1 s and 7 days"),
                ));
            }
        }
        if let (Some(hold), Some(deny)) = (self.hold_threat_at, self.deny_threat_at)
            && deny < hold
        {
            return Err(HitlError::config(
                "deny_threat_at",
                format!(
                    "{deny} is below hold_threat_at {hold}: calls would be denied before they could be held"
                ),
            ));
        }
        let rules = RuleSet::new(&self.rules)?;
        let risky = compile_globs("hitl", "risky_tools", &self.risky_tools)?;
        Ok((rules, risky))
    }

    /// How long a held call waits for a human.
    pub fn approval_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.approval_timeout)
    }
}

/// What the engine decides about.
#[derive(Clone, Copy, Debug)]
pub struct DecisionInput<'a> {
    pub agent: &'a AgentId,
    pub tool: &'a str,
    pub threat_level: Option<ThreatLevel>,
    pub threat_score: Option<f64>,
    pub anomalous: bool,
    pub anomaly_score: Option<f64>,
    /// When the call arrived (its UTC hour is what `hours` conditions see).
    pub at: OffsetDateTime,
}

/// A decision and everything that explains it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HitlDecision {
    pub decision: Decision,
    /// The rule that matched, if any.
    pub rule: Option<String>,
    /// Human-readable, most important first.
    pub reasons: Vec<String>,
    /// How sure the engine is, 0..=1 (0.95 for a rule's auto-approval, the detector's
    /// score for holds on threat or anomaly, 0.5 for a routine hold of a risky tool).
    pub confidence: f64,
    pub risk: RiskScore,
    pub trust: Trust,
}

impl HitlDecision {
    /// The verdict for the pipeline and the audit event.
    pub fn verdict(&self) -> Verdict {
        Verdict {
            decision: self.decision,
            reasons: self.reasons.clone(),
        }
    }

    /// Scores for the audit event: `risk` (0..=1), `trust` (0..=1, i.e. score / 100),
    /// `confidence`.
    pub fn scores(&self) -> BTreeMap<String, f64> {
        BTreeMap::from([
            ("risk".to_owned(), self.risk.score),
            ("trust".to_owned(), self.trust.score / 100.0),
            ("hitl_confidence".to_owned(), self.confidence),
        ])
    }

    /// Structured details for the audit event.
    pub fn details(&self) -> serde_json::Value {
        serde_json::json!({
            "hitl": {
                "rule": self.rule,
                "confidence": self.confidence,
                "risk": self.risk,
                "trust": self.trust,
            }
        })
    }
}

/// The decision engine: rules, risky tools, and the risk and trust caches.
#[derive(Debug)]
pub struct ContextAwareEngine {
    config: HitlConfig,
    rules: RuleSet,
    risky: GlobSet,
    risk: HistoricalRiskScorer,
    trust: TrustManager,
}

fn secs(s: u64) -> Duration {
    Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX))
}

impl ContextAwareEngine {
    /// Validates `config` and builds an engine with empty caches.
    pub fn new(config: HitlConfig, clock: Arc<dyn Clock>) -> Result<Self, HitlError> {
        let (rules, risky) = config.checked()?;
        let risk = HistoricalRiskScorer::new(
            config.risk_weights,
            config.risk_window,
            secs(config.risk_ttl),
            clock.clone(),
        )?
        .with_max_entries(config.cache_max_entries);
        let trust = TrustManager::new(config.trust_window, secs(config.trust_ttl), clock)?
            .with_max_entries(config.cache_max_entries);
        Ok(Self {
            config,
            rules,
            risky,
            risk,
            trust,
        })
    }

    pub fn config(&self) -> &HitlConfig {
        &self.config
    }

    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    pub fn risk(&self) -> &HistoricalRiskScorer {
        &self.risk
    }

    pub fn trust(&self) -> &TrustManager {
        &self.trust
    }

    /// Whether `tool` matches a risky-tool pattern.
    pub fn is_risky_tool(&self, tool: &str) -> bool {
        self.risky.is_match(tool)
    }

    /// Feeds one appended audit event to the risk and trust caches. O(1).
    pub fn observe(&self, e: &AuditEvent) {
        self.risk.observe(e);
        self.trust.observe(e);
    }

    /// Whether `decide` for this agent and tool would use fresh state (no load needed).
    pub fn is_ready(&self, agent: &AgentId, tool: &str) -> bool {
        !self.risk.needs_load(tool) && !self.trust.needs_load(agent)
    }

    /// Loads from the audit log whatever `decide(agent, tool)` needs that is missing or
    /// stale. A no-op (no I/O) when both caches are fresh.
    pub async fn prepare(
        &self,
        store: &dyn AuditStore,
        agent: &AgentId,
        tool: &str,
    ) -> Result<(), HitlError> {
        if self.risk.needs_load(tool) {
            self.risk.load(store, tool).await?;
        }
        if self.trust.needs_load(agent) {
            self.trust.load(store, agent).await?;
        }
        Ok(())
    }

    /// Reloads every cached tool and agent loaded longer than `older_than` ago, one at a
    /// time; returns how many were reloaded. Run it from a background task every half
    /// TTL (`older_than` = TTL / 2) and `prepare` only ever loads keys seen for the first
    /// time, keeping cold loads off the request path.
    pub async fn refresh(
        &self,
        store: &dyn AuditStore,
        older_than: Duration,
    ) -> Result<usize, HitlError> {
        // Entries with no activity for four TTLs are dropped rather than reloaded: the
        // next decision that needs one loads it again.
        self.risk
            .evict_idle(secs(self.config.risk_ttl).saturating_mul(4));
        self.trust
            .evict_idle(secs(self.config.trust_ttl).saturating_mul(4));
        let tools = self.risk.loaded_before(older_than);
        let agents = self.trust.loaded_before(older_than);
        for t in &tools {
            self.risk.load(store, t).await?;
        }
        for a in &agents {
            self.trust.load(store, a).await?;
        }
        Ok(tools.len() + agents.len())
    }

    /// Decides from cached state. An agent or tool with no cached state is scored as
    /// having no history (neutral trust, the spec's no-history risk).
    pub fn decide(&self, input: &DecisionInput<'_>) -> HitlDecision {
        let risk = self
            .risk
            .score(input.tool)
            .unwrap_or_else(|| RiskScore::no_history(self.risk.weights()));
        let trust = self.trust.trust(input.agent).unwrap_or_else(Trust::neutral);
        self.evaluate(input, risk, trust)
    }

    /// Decides from the given risk and trust (pure: no cache is read).
    pub fn evaluate(
        &self,
        input: &DecisionInput<'_>,
        risk: RiskScore,
        trust: Trust,
    ) -> HitlDecision {
        let threat = input.threat_level.unwrap_or(ThreatLevel::None);
        let context = format!(
            "trust {} ({:.1}), risk {:.2}",
            trust.level, trust.score, risk.score
        );
        let mut d = HitlDecision {
            decision: Decision::Allow,
            rule: None,
            reasons: Vec::new(),
            confidence: 1.0,
            risk,
            trust,
        };
        if !self.config.enabled {
            d.reasons
                .push("human-in-the-loop is disabled: allowed without evaluation".into());
            return d;
        }
        let rule_input = RuleInput {
            trust: d.trust.level,
            risk: risk.score,
            threat,
            anomalous: input.anomalous,
            tool: input.tool,
            agent: input.agent.as_str(),
            hour: input.at.to_offset(time::UtcOffset::UTC).hour(),
        };
        if let Some(rule) = self.rules.evaluate(&rule_input) {
            let (decision, verb, confidence) = match rule.action() {
                RuleAction::AutoApprove => (Decision::Allow, "auto-approved", 0.95),
                RuleAction::RequireApproval => (Decision::Hold, "held for approval", 0.9),
                RuleAction::Deny => (Decision::Deny, "denied", 0.9),
            };
            d.decision = decision;
            d.confidence = confidence;
            d.rule = Some(rule.name().to_owned());
            d.reasons
                .push(format!("{verb} by rule {}: {context}", rule.name()));
            if !rule.reason().is_empty() {
                d.reasons.push(rule.reason().to_owned());
            }
        } else {
            self.fallback(input, threat, &context, &mut d);
        }
        if d.decision == Decision::Allow
            && let Some(why) = critical_reason(risk.score, threat)
        {
            d.decision = Decision::Hold;
            d.confidence = 0.99;
            d.reasons.insert(0, format!("held: {why}"));
        }
        if d.rule.is_some() && d.decision == Decision::Allow {
            tracing::debug!(agent = %input.agent, tool = input.tool, rule = ?d.rule, "auto-approved");
        }
        d
    }

    fn fallback(
        &self,
        input: &DecisionInput<'_>,
        threat: ThreatLevel,
        context: &str,
        d: &mut HitlDecision,
    ) {
        if self.config.deny_threat_at.is_some_and(|at| threat >= at) {
            d.decision = Decision::Deny;
            d.confidence = input.threat_score.unwrap_or(0.9);
            d.reasons.push(format!(
                "denied: threat level {threat} (score {:.2}) reaches deny_threat_at; {context}",
                input.threat_score.unwrap_or(f64::NAN)
            ));
            return;
        }
        let mut why = Vec::new();
        let mut confidence: f64 = 0.0;
        if self.config.hold_threat_at.is_some_and(|at| threat >= at) {
            why.push(format!(
                "threat level {threat} (score {:.2})",
                input.threat_score.unwrap_or(f64::NAN)
            ));
            confidence = confidence.max(input.threat_score.unwrap_or(0.8));
        }
        if input.anomalous {
            why.push(format!(
                "anomalous behaviour (score {:.2})",
                input.anomaly_score.unwrap_or(f64::NAN)
            ));
            confidence = confidence.max(input.anomaly_score.unwrap_or(0.7));
        }
        if self.is_risky_tool(input.tool) {
            why.push(format!("{} is a risky tool", input.tool));
            confidence = confidence.max(0.5);
        }
        if why.is_empty() {
            d.decision = Decision::Allow;
            d.confidence = (1.0 - d.risk.score).clamp(0.0, 1.0);
            d.reasons.push(format!(
                "allowed: no rule matched and no hold condition (threat {threat}, not anomalous, not a risky tool); {context}"
            ));
        } else {
            d.decision = Decision::Hold;
            d.confidence = confidence.clamp(0.0, 1.0);
            d.reasons.push(format!(
                "held for approval: {}; no rule auto-approves it ({context})",
                why.join(", ")
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use harombe_core::fake::MemoryAuditStore;
    use harombe_core::{EventKind, ManualClock, Outcome};
    use proptest::prelude::*;
    use time::macros::datetime;

    use crate::risk::RiskFactors;
    use crate::trust::TrustLevel;

    const T0: OffsetDateTime = datetime!(2026-03-02 10:00 UTC);

    fn engine(config: HitlConfig) -> ContextAwareEngine {
        ContextAwareEngine::new(config, Arc::new(ManualClock::new(T0))).unwrap()
    }

    fn input<'a>(agent: &'a AgentId, tool: &'a str) -> DecisionInput<'a> {
        DecisionInput {
            agent,
            tool,
            threat_level: Some(ThreatLevel::None),
            threat_score: Some(0.02),
            anomalous: false,
            anomaly_score: Some(0.1),
            at: T0,
        }
    }

    fn risk(score: f64) -> RiskScore {
        RiskScore {
            score,
            factors: RiskFactors {
                failure_rate: score,
                denial_rate: score,
                incident_rate: score,
            },
            sample_size: 100,
        }
    }

    fn trust(score: f64) -> Trust {
        Trust {
            score,
            level: TrustLevel::from_score(score),
            factors: vec![],
            sample_size: 500,
        }
    }

    #[test]
    fn config_defaults_parse_and_unknown_fields_are_refused() {
        let c: HitlConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(c, HitlConfig::default());
        assert!(c.validate().is_ok());
        assert_eq!(c.approval_timeout(), std::time::Duration::from_secs(300));
        let e = serde_json::from_str::<HitlConfig>(r#"{"risky_tool":[]}"#).unwrap_err();
        assert!(e.to_string().contains("risky_tool"), "{e}");
        let c: HitlConfig = serde_json::from_str(r#"{"rules":[]}"#).unwrap();
        assert!(c.rules.is_empty());
    }

    #[test]
    fn config_errors_name_the_field() {
        let bad = HitlConfig {
            risky_tools: vec!["[".into()],
            ..HitlConfig::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("risky_tools")
        );
        let bad = HitlConfig {
            approval_timeout: 0,
            ..HitlConfig::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("approval_timeout")
        );
        let bad = HitlConfig {
            deny_threat_at: Some(ThreatLevel::Medium),
            ..HitlConfig::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("deny_threat_at")
        );
    }

    #[test]
    fn rules_then_fallbacks_decide_with_reasons() {
        let e = engine(HitlConfig::default());
        let a = AgentId::new("ops").unwrap();
        // High trust, low risk, risky tool: auto-approved by rule.
        let d = e.evaluate(&input(&a, "fs_delete"), risk(0.12), trust(93.1));
        assert_eq!(d.decision, Decision::Allow);
        assert_eq!(d.rule.as_deref(), Some("high_trust_low_risk"));
        assert_eq!(
            d.reasons[0],
            "auto-approved by rule high_trust_low_risk: trust high (93.1), risk 0.12"
        );
        assert!((d.confidence - 0.95).abs() < 1e-12);
        // Same call, low trust: no rule; risky tool → hold.
        let d = e.evaluate(&input(&a, "fs_delete"), risk(0.12), trust(55.0));
        assert_eq!((d.decision, d.rule.as_deref()), (Decision::Hold, None));
        assert!(
            d.reasons[0].contains("fs_delete is a risky tool"),
            "{:?}",
            d.reasons
        );
        // Not risky: allowed.
        let d = e.evaluate(&input(&a, "fs_read"), risk(0.12), trust(55.0));
        assert_eq!(d.decision, Decision::Allow);
        assert!(d.reasons[0].starts_with("allowed: no rule matched"));
        // Anomalous: hold with the anomaly score as confidence.
        let mut i = input(&a, "fs_read");
        i.anomalous = true;
        i.anomaly_score = Some(0.91);
        let d = e.evaluate(&i, risk(0.12), trust(93.1));
        assert_eq!(d.decision, Decision::Hold);
        assert!(d.reasons[0].contains("anomalous behaviour (score 0.91)"));
        assert!((d.confidence - 0.91).abs() < 1e-12);
        // High threat: hold.
        let mut i = input(&a, "fs_read");
        i.threat_level = Some(ThreatLevel::High);
        let d = e.evaluate(&i, risk(0.0), trust(99.0));
        assert_eq!(d.decision, Decision::Hold);
        assert!(d.reasons[0].contains("threat level high"));
        // Critical risk: the rule requires approval.
        let d = e.evaluate(&input(&a, "fs_read"), risk(0.85), trust(99.0));
        assert_eq!(
            (d.decision, d.rule.as_deref()),
            (Decision::Hold, Some("always_approve_critical"))
        );
    }

    #[test]
    fn deny_threshold_and_disabled_engine() {
        let e = engine(HitlConfig {
            deny_threat_at: Some(ThreatLevel::Critical),
            ..HitlConfig::default()
        });
        let a = AgentId::new("ops").unwrap();
        let mut i = input(&a, "fs_read");
        i.threat_level = Some(ThreatLevel::Critical);
        assert_eq!(
            e.evaluate(&i, risk(0.0), trust(99.0)).decision,
            Decision::Deny
        );
        let off = engine(HitlConfig {
            enabled: false,
            ..HitlConfig::default()
        });
        let d = off.evaluate(&i, risk(0.9), trust(0.0));
        assert_eq!(d.decision, Decision::Allow);
        assert!(d.reasons[0].contains("disabled"));
    }

    #[test]
    fn decision_exports_verdict_scores_and_details() {
        let e = engine(HitlConfig::default());
        let a = AgentId::new("ops").unwrap();
        let d = e.evaluate(&input(&a, "fs_delete"), risk(0.12), trust(93.1));
        assert_eq!(d.verdict().decision, Decision::Allow);
        assert!((d.scores()["trust"] - 0.931).abs() < 1e-12);
        assert_eq!(d.details()["hitl"]["rule"], "high_trust_low_risk");
    }

    #[tokio::test]
    async fn prepare_loads_what_is_missing_then_decide_uses_it() {
        let clock = ManualClock::new(T0);
        let e = ContextAwareEngine::new(HitlConfig::default(), Arc::new(clock.clone())).unwrap();
        let store = MemoryAuditStore::new();
        let a = AgentId::new("ops").unwrap();
        for i in 0..200 {
            let mut ev = AuditEvent::new(
                T0 - Duration::days(120) + Duration::hours(i),
                EventKind::ToolCall,
                Outcome::Success,
            )
            .with_agent(a.clone())
            .with_target("fs_delete");
            ev.threat_level = Some(ThreatLevel::None);
            store.append(ev).await.unwrap();
        }
        assert!(!e.is_ready(&a, "fs_delete"));
        // Before prepare: neutral trust, no-history risk → held.
        assert_eq!(e.decide(&input(&a, "fs_delete")).decision, Decision::Hold);
        e.prepare(&store, &a, "fs_delete").await.unwrap();
        assert!(e.is_ready(&a, "fs_delete"));
        let d = e.decide(&input(&a, "fs_delete"));
        assert_eq!((d.trust.level, d.risk.score), (TrustLevel::High, 0.0));
        assert_eq!(d.decision, Decision::Allow, "{:?}", d.reasons);
        clock.advance(Duration::seconds(300));
        assert_eq!(e.refresh(&store, Duration::seconds(600)).await.unwrap(), 0);
        assert_eq!(e.refresh(&store, Duration::seconds(300)).await.unwrap(), 2);
        clock.advance(Duration::seconds(300));
        assert!(e.is_ready(&a, "fs_delete"), "refreshed entries are fresh");
        clock.advance(Duration::seconds(300));
        assert!(!e.is_ready(&a, "fs_delete"));
    }

    fn arb_action() -> impl Strategy<Value = RuleAction> {
        prop_oneof![
            Just(RuleAction::AutoApprove),
            Just(RuleAction::RequireApproval),
            Just(RuleAction::Deny)
        ]
    }

    proptest! {
        /// Whatever the rules say, a call with critical risk or threat is never allowed.
        #[test]
        fn critical_guard_is_never_bypassed(
            action in arb_action(),
            priority in -5i32..5,
            with_defaults in any::<bool>(),
            risky in any::<bool>(),
            hold_at in proptest::option::of(proptest::sample::select(ThreatLevel::ALL.to_vec())),
            score in 0.0f64..=1.0,
            threat in proptest::sample::select(ThreatLevel::ALL.to_vec()),
            trust_score in 0.0f64..=100.0,
            anomalous in any::<bool>(),
        ) {
            let mut rules = vec![RuleConfig::new("approve_all", priority, action)];
            if with_defaults {
                rules = default_rules().into_iter().filter(|r| r.priority > priority).collect();
                rules.push(RuleConfig::new("approve_all", priority, action));
            }
            let e = engine(HitlConfig {
                rules,
                hold_threat_at: hold_at,
                risky_tools: if risky { vec!["*".into()] } else { vec![] },
                ..HitlConfig::default()
            });
            let a = AgentId::new("x").unwrap();
            let mut i = input(&a, "tool");
            i.threat_level = Some(threat);
            i.anomalous = anomalous;
            let d = e.evaluate(&i, risk(score), trust(trust_score));
            if score >= crate::rules::CRITICAL_RISK || threat == ThreatLevel::Critical {
                prop_assert_ne!(d.decision, Decision::Allow, "{:?}", d.reasons);
            }
            prop_assert!(!d.reasons.is_empty());
            prop_assert!((0.0..=1.0).contains(&d.confidence));
        }
    }
}
