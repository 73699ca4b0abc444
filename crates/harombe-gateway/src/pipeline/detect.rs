//! Seam: threat scoring (anomaly, baseline deviation, rules, intel). The ML scorer plugs
//! in here; the default scores nothing.

use std::collections::BTreeMap;

use async_trait::async_trait;
use harombe_core::ThreatLevel;

use super::CallRecord;

/// Scores for one call.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Detection {
    /// Named scores in 0..=1.
    pub scores: BTreeMap<String, f64>,
    pub threat_level: Option<ThreatLevel>,
    pub reasons: Vec<String>,
}

#[async_trait]
pub trait DetectStage: Send + Sync + std::fmt::Debug {
    async fn detect(&self, _call: &CallRecord) -> Detection {
        Detection::default()
    }
}

/// Scores nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct PassThroughDetect;

impl DetectStage for PassThroughDetect {}
