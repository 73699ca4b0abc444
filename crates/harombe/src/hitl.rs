//! Human-in-the-loop wiring: the decide stage (the context-aware engine), the hold stage
//! (files an approval and waits for a human), and what the API shows about agents.
//!
//! A held call fails closed: no store, a timeout, a binding that does not match the call,
//! or any error → the call is denied.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use harombe_api::{AgentInsights, InsightsError, Metrics, MetricsInsights};
use harombe_core::{AgentId, EventFilter, EventKind, PageRequest};
use harombe_core::{
    Approval, ApprovalId, ApprovalRequest, ApprovalState, ApprovalStore, AuditStore, Clock,
    Decision, Verdict, approval_event, binding,
};
use harombe_gateway::pipeline::audit::redact_by_key;
use harombe_gateway::{CallRecord, DecideStage, Decided, Detection, HoldStage};
use harombe_hitl::{ContextAwareEngine, DecisionInput};

use crate::stages::DetectionStage;

/// The decide stage: the context-aware engine (rules, trust, historical risk, threat,
/// anomaly). Its caches are filled from the audit log on first use and kept current by
/// the log tail.
#[derive(Debug)]
pub struct HitlDecide {
    pub engine: Arc<ContextAwareEngine>,
    pub audit: Arc<dyn AuditStore>,
    pub clock: Arc<dyn Clock>,
}

#[async_trait]
impl DecideStage for HitlDecide {
    async fn decide(&self, call: &CallRecord, d: &Detection) -> Decided {
        if !self.engine.config().enabled {
            return Verdict::allow().into();
        }
        if !self.engine.is_ready(&call.agent, &call.tool)
            && let Err(e) = self
                .engine
                .prepare(self.audit.as_ref(), &call.agent, &call.tool)
                .await
        {
            // Without history the engine scores as for a newcomer (neutral trust, the
            // no-history risk), which auto-approves nothing the rules would not.
            tracing::warn!(error = %e, agent = %call.agent, tool = %call.tool, "HITL history not loaded");
        }
        let input = DecisionInput {
            agent: &call.agent,
            tool: &call.tool,
            threat_level: d.threat_level,
            threat_score: d.scores.get("threat").copied(),
            anomalous: d.scores.get("anomalous").is_some_and(|v| *v >= 1.0),
            anomaly_score: d.scores.get("anomaly").copied(),
            at: self.clock.now(),
        };
        let h = self.engine.decide(&input);
        Decided {
            verdict: h.verdict(),
            scores: h.scores(),
            details: Some(h.details()),
        }
    }
}

/// What `GET /api/agents` shows: activity from the metrics, trust from the HITL engine,
/// the anomaly model's state, and the agent's recent anomalies.
#[derive(Debug)]
pub struct Insights {
    base: MetricsInsights,
    engine: Arc<ContextAwareEngine>,
    detection: Arc<DetectionStage>,
    audit: Arc<dyn AuditStore>,
}

impl Insights {
    pub fn new(
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
        engine: Arc<ContextAwareEngine>,
        detection: Arc<DetectionStage>,
        audit: Arc<dyn AuditStore>,
    ) -> Self {
        Self {
            base: MetricsInsights::new(metrics, clock),
            engine,
            detection,
            audit,
        }
    }

    fn enrich(&self, mut v: serde_json::Value) -> serde_json::Value {
        if let Some(agent) = v
            .get("agent")
            .and_then(|a| a.as_str())
            .and_then(|a| AgentId::new(a).ok())
        {
            if let Some(t) = self.engine.trust().trust(&agent) {
                v["trust_level"] = serde_json::json!(t.level);
                v["trust_score"] = serde_json::json!((t.score * 10.0).round() / 10.0);
            }
            if let Some(m) = self.detection.summary(&agent) {
                v["baseline"] = m;
            }
        }
        v
    }
}

#[async_trait]
impl AgentInsights for Insights {
    async fn list(&self) -> Result<Vec<serde_json::Value>, InsightsError> {
        Ok(self
            .base
            .list()
            .await?
            .into_iter()
            .map(|v| self.enrich(v))
            .collect())
    }

    async fn get(&self, agent: &AgentId) -> Result<Option<serde_json::Value>, InsightsError> {
        // Trust is loaded from the log when it is not cached yet.
        if self.engine.trust().needs_load(agent) {
            self.engine
                .trust()
                .load(self.audit.as_ref(), agent)
                .await
                .map_err(|e| InsightsError(e.to_string()))?;
        }
        let recent = self
            .audit
            .query(
                &EventFilter {
                    agent: Some(agent.clone()),
                    kind: Some(EventKind::ToolCall),
                    ..Default::default()
                },
                PageRequest::newest(500),
            )
            .await?;
        let anomalies: Vec<serde_json::Value> = recent
            .events
            .iter()
            .filter(|s| s.event.scores.get("anomalous").is_some_and(|v| *v >= 1.0))
            .take(20)
            .map(|s| {
                serde_json::json!({
                    "id": s.event.id.to_string(),
                    "timestamp": s.event.timestamp.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
                    "tool": s.event.target,
                    "anomaly": s.event.scores.get("anomaly"),
                    "threat_level": s.event.threat_level,
                })
            })
            .collect();
        let base = self.base.get(agent).await?;
        if base.is_none() && recent.events.is_empty() {
            return Ok(None);
        }
        let mut v = self.enrich(base.unwrap_or_else(|| serde_json::json!({"agent": agent})));
        if let Some(t) = self.engine.trust().trust(agent) {
            v["trust"] = serde_json::to_value(&t).map_err(|e| InsightsError(e.to_string()))?;
        }
        v["recent_anomalies"] = anomalies.into();
        Ok(Some(v))
    }
}

/// The hold stage: one approval per held call, bound to its exact arguments.
#[derive(Debug)]
pub struct ApprovalHold {
    pub approvals: Arc<dyn ApprovalStore>,
    pub audit: Arc<dyn AuditStore>,
    pub clock: Arc<dyn Clock>,
    pub timeout: Duration,
}

impl ApprovalHold {
    async fn record(&self, a: &Approval) {
        if let Err(e) = self.audit.append(approval_event(a, self.clock.now())).await {
            tracing::error!(error = %e, approval = %a.id(), "cannot audit an approval");
        }
    }

    fn outcome(&self, a: &Approval, expected_binding: &str, mut reasons: Vec<String>) -> Verdict {
        let id = a.id();
        let by = a.decided_by.as_deref().unwrap_or("nobody");
        let why = a
            .reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        let (decision, text) = match a.state {
            ApprovalState::Approved if a.request.binding == expected_binding => (
                Decision::Allow,
                format!("approval {id} approved by {by}{why}"),
            ),
            ApprovalState::Approved => (
                Decision::Deny,
                format!("approval {id} is bound to another call; refused"),
            ),
            ApprovalState::Denied => (Decision::Deny, format!("approval {id} denied by {by}{why}")),
            ApprovalState::Expired | ApprovalState::Pending => (
                Decision::Deny,
                format!(
                    "approval {id} expired: no decision within {}s",
                    self.timeout.as_secs()
                ),
            ),
        };
        reasons.push(text);
        Verdict { decision, reasons }
    }
}

#[async_trait]
impl HoldStage for ApprovalHold {
    async fn hold(&self, call: &CallRecord, verdict: Verdict) -> Verdict {
        let now = self.clock.now();
        let bind = binding(&call.agent, &call.tool, &call.arguments);
        let request = ApprovalRequest {
            id: ApprovalId::new(),
            agent: call.agent.clone(),
            session: call.session.clone(),
            tool: call.tool.clone(),
            arguments: call
                .redacted_arguments
                .clone()
                .unwrap_or_else(|| redact_by_key(&call.arguments)),
            binding: bind.clone(),
            reasons: verdict.reasons.clone(),
            threat_level: call.threat_level,
            risk: call.scores.get("risk").copied(),
            created: now,
            deadline: now + self.timeout,
        };
        let id = request.id;
        let mut reasons = verdict.reasons;
        let pending = match self.approvals.create(request).await {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %e, "cannot file an approval; the held call is denied");
                reasons.push(format!("cannot file an approval ({e}); denied"));
                return deny(reasons);
            }
        };
        // The request is in the log before anyone can decide it: the dashboard sees it.
        self.record(&pending).await;
        tracing::info!(approval = %id, agent = %call.agent, tool = %call.tool, "call held for approval");
        let waited = match self.approvals.wait(id, self.timeout).await {
            Ok(a) => a,
            Err(e) => {
                reasons.push(format!("approval {id}: {e}; denied"));
                return deny(reasons);
            }
        };
        let a = if waited.state == ApprovalState::Pending {
            // The deadline passed: expire it, unless a decision won the race.
            match self.approvals.expire(id, self.clock.now()).await {
                Ok(a) => {
                    if a.state == ApprovalState::Expired {
                        self.record(&a).await;
                    }
                    a
                }
                Err(e) => {
                    reasons.push(format!("approval {id}: {e}; denied"));
                    return deny(reasons);
                }
            }
        } else {
            waited
        };
        self.outcome(&a, &bind, reasons)
    }
}

fn deny(reasons: Vec<String>) -> Verdict {
    Verdict {
        decision: Decision::Deny,
        reasons,
    }
}
