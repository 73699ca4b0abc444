//! What the API knows about agents: a port the binary fills with trust, baselines and
//! recent anomalies, and a default that only reports what the metrics window saw.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use harombe_core::{AgentId, Clock};

use crate::metrics::Metrics;

/// Why agent insights could not be produced.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct InsightsError(pub String);

impl From<harombe_core::StoreError> for InsightsError {
    fn from(e: harombe_core::StoreError) -> Self {
        InsightsError(e.to_string())
    }
}

/// Summaries of agents for `GET /api/agents` and `GET /api/agents/{name}`.
///
/// Each summary is a JSON object with at least `"agent": "<name>"`; the dashboard shows
/// every other field as a labelled value (objects and arrays as JSON), so an implementation
/// may add trust, baseline and recent anomalies freely.
#[async_trait]
pub trait AgentInsights: Send + Sync + fmt::Debug {
    /// Every agent worth listing, most relevant first.
    async fn list(&self) -> Result<Vec<serde_json::Value>, InsightsError>;

    /// One agent's details; `None` when the agent is unknown.
    async fn get(&self, agent: &AgentId) -> Result<Option<serde_json::Value>, InsightsError>;
}

/// The default: agents with events in the last 24 hours, from the metrics.
#[derive(Debug, Clone)]
pub struct MetricsInsights {
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
}

impl MetricsInsights {
    pub fn new(metrics: Arc<Metrics>, clock: Arc<dyn Clock>) -> Self {
        Self { metrics, clock }
    }
}

#[async_trait]
impl AgentInsights for MetricsInsights {
    async fn list(&self) -> Result<Vec<serde_json::Value>, InsightsError> {
        self.metrics
            .agents(self.clock.now())
            .into_iter()
            .map(|a| serde_json::to_value(a).map_err(|e| InsightsError(e.to_string())))
            .collect()
    }

    async fn get(&self, agent: &AgentId) -> Result<Option<serde_json::Value>, InsightsError> {
        self.metrics
            .agents(self.clock.now())
            .into_iter()
            .find(|a| &a.agent == agent)
            .map(|a| serde_json::to_value(a).map_err(|e| InsightsError(e.to_string())))
            .transpose()
    }
}
