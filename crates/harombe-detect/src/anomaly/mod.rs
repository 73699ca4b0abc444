//! Per-agent anomaly detection: the spec's `AnomalyDetector` (train / detect / save /
//! load / feedback per agent) over [`features`] and a dual model
//! (statistical baseline + Isolation Forest, 60/40 by default).
//!
//! **Owns**: [`AgentDetector`] (one agent's extractor, baseline, forest, adaptive
//! threshold and feedback), [`AnomalyDetector`] (the registry of agents, with model files
//! in a directory), [`AnomalyResult`], the model file format ([`persist`]) and the error
//! type of the behavioural detectors ([`DetectError`]).
//!
//! **Key decisions**:
//! - Training replays the agent's audit events twice: once to learn which tools,
//!   destinations and transitions it uses, then to compute *leave-one-out* features, so a
//!   tool used once in the window counts as new in training, as it would live.
//! - Fallbacks are states, not failures: with fewer than `min_samples` events the agent is
//!   [`ScoringMode::Learning`] (score 0, events recorded); with a baseline but no usable
//!   forest (not trained, degenerate data, damaged model file) it is
//!   [`ScoringMode::BaselineOnly`] with the reason. Every [`AnomalyResult`] carries its mode.
//! - Feedback: a **false positive** is recorded into the baseline as normal, kept (at most
//!   [`MAX_FEEDBACK_ROWS`]) and added `fp_weight` times to the next training set, and the
//!   agent's threshold rises by `threshold_step` (capped at `max_threshold`). A
//!   **confirmed** anomaly lowers the agent's threshold by `threshold_step / 2`, never below
//!   the configured one. Both survive save/load.
//! - Scoring takes `&mut self` on one agent only and does no I/O and no locking; online
//!   learning (events not flagged update the baseline) is on by default and can be turned
//!   off against slow poisoning. Every scored call becomes familiar to the feature
//!   extractor (tool, destinations, transition); flagged ones stay out of its call-rate
//!   windows.
//! - Besides the combined score, a call in an hour the agent has never been active in is
//!   flagged once its baseline spans [`UNSEEN_HOUR_MIN_DAYS`] days
//!   ([`DetectorConfig::flag_unseen_hours`]).

mod error;
mod model;
pub mod persist;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use harombe_core::{AgentId, AuditEvent, EventKind, ThreatLevel};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub use error::DetectError;
pub use model::{DualConfig, DualModel, DualScore, ScoringMode, TrainRow};

use crate::baseline::{FeatureLayout, Z_HIGH};
use crate::features::{
    self, CallFeatures, FEATURE_DESCRIPTIONS, FEATURE_NAMES, FeatureExtractor, FeatureVector,
    N_FEATURES, idx,
};

/// The layout of tool-call vectors, built once (it is a constant table).
static TOOL_CALLS: LazyLock<FeatureLayout> = LazyLock::new(FeatureLayout::tool_calls);

/// Most false-positive rows kept for retraining.
pub const MAX_FEEDBACK_ROWS: usize = 256;

/// Detector configuration (spec defaults: contamination 0.05, threshold 0.7, 100 samples).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorConfig {
    /// Baseline + forest parameters.
    pub model: DualConfig,
    /// Anomaly threshold on the combined score.
    pub threshold: f64,
    /// Highest threshold feedback may raise an agent to.
    pub max_threshold: f64,
    /// How far one false positive raises the threshold.
    pub threshold_step: f64,
    /// How many times a false-positive row is repeated in the next training set.
    pub fp_weight: usize,
    /// Whether events scored below the threshold update the baseline.
    pub learn_online: bool,
    /// Whether a call in an hour of day this agent has never been active in (within the
    /// baseline's window) is flagged whatever its combined score: the rarity alone is
    /// the strongest signal a hijacked agent acting off-hours gives, and the forest,
    /// seeing one odd feature among many, dilutes it. Applies only once the baseline spans
    /// [`UNSEEN_HOUR_MIN_DAYS`] days, so an agent still showing its first hours is not
    /// flagged every time the clock moves on.
    pub flag_unseen_hours: bool,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            model: DualConfig::default(),
            threshold: 0.7,
            max_threshold: 0.9,
            threshold_step: 0.02,
            fp_weight: 3,
            learn_online: true,
            flag_unseen_hours: true,
        }
    }
}

impl DetectorConfig {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), DetectError> {
        self.model.validate()?;
        let ok = self.threshold > 0.0
            && self.threshold < 1.0
            && self.max_threshold >= self.threshold
            && self.max_threshold <= 1.0;
        if !ok {
            return Err(DetectError::InvalidConfig {
                field: "threshold",
                reason: format!(
                    "need 0 < threshold ({}) <= max_threshold ({}) <= 1",
                    self.threshold, self.max_threshold
                ),
            });
        }
        if !(self.threshold_step >= 0.0 && self.threshold_step < 0.5) {
            return Err(DetectError::InvalidConfig {
                field: "threshold_step",
                reason: format!("{} not in [0, 0.5)", self.threshold_step),
            });
        }
        Ok(())
    }
}

/// Analyst feedback on a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Feedback {
    /// The flagged event was normal.
    FalsePositive,
    /// The flagged event was a real incident.
    Confirmed,
}

/// Days of history a baseline must span before an hour it has never seen is flagged.
pub const UNSEEN_HOUR_MIN_DAYS: u32 = 7;

/// The outcome of scoring one event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnomalyResult {
    /// Agent.
    pub agent_id: AgentId,
    /// Time of the scored event.
    #[serde(with = "time::serde::rfc3339")]
    pub timestamp: OffsetDateTime,
    /// Combined score, 0–1 (higher is more anomalous).
    pub anomaly_score: f64,
    /// `anomaly_score >= threshold`.
    pub is_anomaly: bool,
    /// Level derived from the score (see [`level_for`]).
    pub threat_level: ThreatLevel,
    /// `|z|` of each feature that deviates by 2σ or more, plus `baseline_score` and
    /// `forest_score` (when the forest scored).
    /// Keys are feature names (borrowed, so scoring allocates none of them).
    pub contributing_factors: BTreeMap<Cow<'static, str>, f64>,
    /// Human-readable explanation.
    pub explanation: String,
    /// Baseline and forest, baseline only, or learning.
    pub mode: ScoringMode,
    /// The agent's threshold when scored.
    pub threshold: f64,
    /// The feature vector (for feedback and audit).
    pub features: FeatureVector,
}

/// Level of an anomaly score against a threshold `t`: below `0.6 t` none, below `t` low;
/// flagged events are at least medium, high from 0.8, critical from 0.9.
pub fn level_for(score: f64, t: f64) -> ThreatLevel {
    if score < t {
        if score >= 0.6 * t {
            ThreatLevel::Low
        } else {
            ThreatLevel::None
        }
    } else if score >= 0.9 {
        ThreatLevel::Critical
    } else if score >= 0.8 {
        ThreatLevel::High
    } else {
        ThreatLevel::Medium
    }
}

/// What a training run did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    /// Tool-call events used.
    pub events: u64,
    /// Events skipped (other agents, other kinds).
    pub skipped: u64,
    /// Feedback rows added (already weighted).
    pub feedback_rows: u64,
    /// Mode the agent now scores in.
    pub mode: ScoringMode,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct FeedbackState {
    pub(crate) false_positive_rows: VecDeque<Vec<f64>>,
    pub(crate) false_positives: u64,
    pub(crate) confirmed: u64,
}

/// One agent's detector.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentDetector {
    pub(crate) agent: AgentId,
    pub(crate) config: DetectorConfig,
    pub(crate) extractor: FeatureExtractor,
    pub(crate) model: DualModel,
    pub(crate) threshold: f64,
    pub(crate) feedback: FeedbackState,
}

impl AgentDetector {
    /// A detector that knows nothing about `agent` yet.
    pub fn new(agent: AgentId, config: DetectorConfig) -> Result<Self, DetectError> {
        config.validate()?;
        Ok(Self {
            agent,
            config,
            extractor: FeatureExtractor::new(),
            model: DualModel::new(config.model, N_FEATURES),
            threshold: config.threshold,
            feedback: FeedbackState::default(),
        })
    }

    /// The agent.
    pub fn agent(&self) -> &AgentId {
        &self.agent
    }

    /// The current (possibly feedback-adapted) threshold.
    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    /// The dual model (baseline, forest state).
    pub fn model(&self) -> &DualModel {
        &self.model
    }

    /// The feature extractor state.
    pub fn extractor(&self) -> &FeatureExtractor {
        &self.extractor
    }

    /// Trains from audit events: tool calls of this agent (or with no agent) are used,
    /// others skipped. Replaces the extractor state, baseline and forest. With too few or
    /// degenerate events the error says so and the agent keeps what could be learned (a
    /// baseline, or learning mode).
    pub fn train(&mut self, events: &[AuditEvent]) -> Result<TrainReport, DetectError> {
        let mut calls: Vec<CallFeatures> = Vec::with_capacity(events.len());
        for e in events {
            if e.kind == EventKind::ToolCall && e.agent.as_ref().is_none_or(|a| *a == self.agent) {
                calls.push(CallFeatures::from_event(e));
            }
        }
        let skipped = (events.len() - calls.len()) as u64;
        self.train_calls(calls, skipped)
    }

    /// Trains from calls (see [`train`](Self::train)).
    pub fn train_calls(
        &mut self,
        mut calls: Vec<CallFeatures>,
        skipped: u64,
    ) -> Result<TrainReport, DetectError> {
        calls.sort_by_key(|c| c.timestamp);
        // Pass 1: what the agent uses. Pass 2: leave-one-out features in time order.
        let mut fx = FeatureExtractor::new();
        calls.iter().for_each(|c| fx.observe(c));
        let mut window = VecDeque::new();
        let mut prev = None;
        let vectors: Vec<FeatureVector> = calls
            .iter()
            .map(|c| {
                let v = fx.compute_loo(c, &mut window, prev);
                prev = Some(features::fnv1a64(c.tool.as_bytes()));
                v
            })
            .collect();
        if let Some((i, (name, value))) = vectors
            .iter()
            .enumerate()
            .find_map(|(i, v)| v.first_non_finite().map(|x| (i, x)))
        {
            let _ = i;
            return Err(DetectError::NonFinite {
                feature: name,
                value,
            });
        }
        let rows: Vec<TrainRow<'_>> = vectors
            .iter()
            .zip(&calls)
            .map(|(v, c)| TrainRow {
                at: c.timestamp,
                kind: c.kind.as_str(),
                values: &v.values,
                missing: v.missing,
            })
            .collect();
        let extra: Vec<Vec<f64>> = self
            .feedback
            .false_positive_rows
            .iter()
            .flat_map(|r| std::iter::repeat_n(r.clone(), self.config.fp_weight))
            .collect();
        self.extractor = fx;
        let result = self
            .model
            .train(self.agent.as_str(), &FEATURE_NAMES, &rows, &extra);
        let mode = self.mode();
        result.map(|()| TrainReport {
            events: calls.len() as u64,
            skipped,
            feedback_rows: extra.len() as u64,
            mode,
        })
    }

    /// The mode the next event will be scored in.
    pub fn mode(&self) -> ScoringMode {
        let have = self.model.baseline.count();
        if have < self.config.model.min_samples {
            ScoringMode::Learning {
                have,
                need: self.config.model.min_samples,
            }
        } else if self.model.has_forest() {
            ScoringMode::Dual
        } else {
            ScoringMode::BaselineOnly {
                reason: self
                    .model
                    .fallback_reason()
                    .unwrap_or("forest not trained yet")
                    .to_owned(),
            }
        }
    }

    /// Scores a live call, then records it (extractor state; the baseline too when it is
    /// not flagged and online learning is on).
    pub fn detect(&mut self, call: &CallFeatures) -> Result<AnomalyResult, DetectError> {
        let fv = self.extractor.compute(call);
        let result = self.detect_vector(call.timestamp, &fv)?;
        self.extractor.observe_flagged(call, result.is_anomaly);
        if self.config.learn_online && !result.is_anomaly {
            self.model.baseline.record(
                call.timestamp,
                call.kind.as_str(),
                &fv.values,
                fv.missing,
                &FEATURE_NAMES,
            )?;
        }
        Ok(result)
    }

    /// Scores a feature vector without recording anything. NaN or infinite values are an
    /// error naming the feature.
    pub fn detect_vector(
        &self,
        at: OffsetDateTime,
        fv: &FeatureVector,
    ) -> Result<AnomalyResult, DetectError> {
        if let Some((feature, value)) = fv.first_non_finite() {
            return Err(DetectError::NonFinite { feature, value });
        }
        let s = self.model.score(at, &fv.values, fv.missing, &TOOL_CALLS);
        let scored = !matches!(s.mode, ScoringMode::Learning { .. });
        let unseen_hour = self.config.flag_unseen_hours
            && self.model.baseline.days_spanned() >= UNSEEN_HOUR_MIN_DAYS
            && s.deviation.z.get(idx::HOUR).is_some_and(|&z| z >= Z_HIGH);
        let is_anomaly = scored && (s.score >= self.threshold || unseen_hour);
        let score = if is_anomaly {
            s.score.max(self.threshold)
        } else {
            s.score
        };
        let mut factors = BTreeMap::new();
        let mut ranked: Vec<(usize, f64)> = s
            .deviation
            .z
            .iter()
            .copied()
            .enumerate()
            .filter(|&(_, z)| z >= 2.0)
            .collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        for &(i, z) in &ranked {
            factors.insert(Cow::Borrowed(FEATURE_NAMES[i]), z);
        }
        factors.insert(Cow::Borrowed("baseline_score"), s.deviation.score);
        if let Some(f) = s.forest {
            factors.insert(Cow::Borrowed("forest_score"), f);
        }
        let explanation = explain(&s, &ranked, fv, is_anomaly);
        Ok(AnomalyResult {
            agent_id: self.agent.clone(),
            timestamp: at,
            anomaly_score: score,
            is_anomaly,
            threat_level: level_for(score, self.threshold),
            contributing_factors: factors,
            explanation,
            mode: s.mode,
            threshold: self.threshold,
            features: *fv,
        })
    }

    /// Applies analyst feedback on a result of this agent (see the module doc).
    pub fn feedback(
        &mut self,
        result: &AnomalyResult,
        feedback: Feedback,
    ) -> Result<(), DetectError> {
        let fv = &result.features;
        if let Some((feature, value)) = fv.first_non_finite() {
            return Err(DetectError::NonFinite { feature, value });
        }
        match feedback {
            Feedback::FalsePositive => {
                self.feedback.false_positives += 1;
                self.model.baseline.record(
                    result.timestamp,
                    EventKind::ToolCall.as_str(),
                    &fv.values,
                    fv.missing,
                    &FEATURE_NAMES,
                )?;
                let mut row = fv.values.to_vec();
                self.model.baseline.impute(&mut row, fv.missing);
                if self.feedback.false_positive_rows.len() >= MAX_FEEDBACK_ROWS {
                    self.feedback.false_positive_rows.pop_front();
                }
                self.feedback.false_positive_rows.push_back(row);
                self.threshold =
                    (self.threshold + self.config.threshold_step).min(self.config.max_threshold);
            }
            Feedback::Confirmed => {
                self.feedback.confirmed += 1;
                self.threshold =
                    (self.threshold - self.config.threshold_step / 2.0).max(self.config.threshold);
            }
        }
        Ok(())
    }

    /// Counts of feedback received: `(false positives, confirmed)`.
    pub fn feedback_counts(&self) -> (u64, u64) {
        (self.feedback.false_positives, self.feedback.confirmed)
    }
}

fn explain(s: &DualScore, ranked: &[(usize, f64)], fv: &FeatureVector, flagged: bool) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(160);
    match &s.mode {
        ScoringMode::Learning { have, need } => {
            let _ = write!(
                out,
                "learning: {have} of {need} events needed before scoring"
            );
            return out;
        }
        ScoringMode::BaselineOnly { reason } => {
            let _ = write!(out, "baseline only ({reason}); ");
        }
        ScoringMode::Dual => {}
    }
    out.push_str(if flagged { "anomalous: " } else { "normal: " });
    if ranked.is_empty() {
        out.push_str("every feature within 2σ of this agent's baseline");
    }
    for (n, &(i, z)) in ranked.iter().take(3).enumerate() {
        if n > 0 {
            out.push_str("; ");
        }
        let what = match i {
            idx::TOOL_NOVELTY if fv.values[i] >= 1.0 => "first use of this tool",
            idx::DEST_NOVELTY if fv.values[i] >= 1.0 => "destination never seen for this agent",
            idx::TRANSITION if fv.values[i] >= 1.0 => "tool sequence never seen before",
            idx::HOUR => "unusual hour of day",
            idx::DOW => "unusual day of week",
            _ => FEATURE_DESCRIPTIONS[i],
        };
        let _ = write!(
            out,
            "{what} ({} = {:.3}, {z:.1}σ)",
            FEATURE_NAMES[i], fv.values[i]
        );
    }
    if let Some(f) = s.forest {
        let _ = write!(out, "; isolation forest {f:.2}");
    }
    out
}

/// The spec's `AnomalyDetector`: per-agent detectors, trained, scored, saved and loaded
/// by agent. A gateway that shards agents can hold [`AgentDetector`]s directly instead.
#[derive(Debug, Clone)]
pub struct AnomalyDetector {
    config: DetectorConfig,
    model_dir: Option<PathBuf>,
    agents: HashMap<AgentId, AgentDetector>,
}

impl AnomalyDetector {
    /// A detector with no agents; `model_dir` is where `save`/`load` put model files.
    pub fn new(config: DetectorConfig, model_dir: Option<PathBuf>) -> Result<Self, DetectError> {
        config.validate()?;
        Ok(Self {
            config,
            model_dir,
            agents: HashMap::new(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &DetectorConfig {
        &self.config
    }

    /// One agent's detector, if known.
    pub fn agent(&self, agent: &AgentId) -> Option<&AgentDetector> {
        self.agents.get(agent)
    }

    /// One agent's detector, created in learning mode if unknown.
    pub fn agent_mut(&mut self, agent: &AgentId) -> &mut AgentDetector {
        let config = self.config;
        self.agents
            .entry(agent.clone())
            .or_insert_with(|| AgentDetector {
                agent: agent.clone(),
                config,
                extractor: FeatureExtractor::new(),
                model: DualModel::new(config.model, N_FEATURES),
                threshold: config.threshold,
                feedback: FeedbackState::default(),
            })
    }

    /// Trains `agent` from audit events (see [`AgentDetector::train`]).
    pub fn train(
        &mut self,
        agent: &AgentId,
        events: &[AuditEvent],
    ) -> Result<TrainReport, DetectError> {
        self.agent_mut(agent).train(events)
    }

    /// Scores one live call of `agent` and records it.
    pub fn detect(
        &mut self,
        agent: &AgentId,
        call: &CallFeatures,
    ) -> Result<AnomalyResult, DetectError> {
        self.agent_mut(agent).detect(call)
    }

    /// Scores one audit event of `agent` and records it.
    pub fn detect_event(
        &mut self,
        agent: &AgentId,
        event: &AuditEvent,
    ) -> Result<AnomalyResult, DetectError> {
        self.detect(agent, &CallFeatures::from_event(event))
    }

    /// Applies feedback on a result (to the result's agent).
    pub fn feedback(
        &mut self,
        result: &AnomalyResult,
        feedback: Feedback,
    ) -> Result<(), DetectError> {
        let a = self
            .agents
            .get_mut(&result.agent_id)
            .ok_or_else(|| DetectError::UnknownAgent {
                agent: result.agent_id.to_string(),
            })?;
        a.feedback(result, feedback)
    }

    fn path_for(&self, agent: &AgentId) -> Result<PathBuf, DetectError> {
        let dir = self
            .model_dir
            .as_deref()
            .ok_or_else(|| DetectError::InvalidConfig {
                field: "model_dir",
                reason: "no model directory configured".into(),
            })?;
        Ok(dir.join(format!("{}.hdm", agent.as_str().replace(':', "_"))))
    }

    /// Writes the agent's model to `model_dir/<agent>.hdm` (atomically: temp file, rename).
    pub fn save(&self, agent: &AgentId) -> Result<PathBuf, DetectError> {
        let a = self
            .agents
            .get(agent)
            .ok_or_else(|| DetectError::UnknownAgent {
                agent: agent.to_string(),
            })?;
        let path = self.path_for(agent)?;
        persist::write_file(&path, &a.to_bytes()?)?;
        Ok(path)
    }

    /// Loads the agent's model from `model_dir`. A damaged forest section still loads
    /// the baseline (mode baseline-only, reason given). If the file cannot be used at
    /// all, the error is returned and the agent keeps its in-memory baseline with its
    /// forest dropped and the reason recorded (baseline-only or learning mode).
    pub fn load(&mut self, agent: &AgentId) -> Result<ScoringMode, DetectError> {
        let path = self.path_for(agent)?;
        let loaded = persist::read_file(&path).and_then(|b| AgentDetector::from_bytes(&b));
        match loaded {
            Ok(mut d) => {
                d.agent = agent.clone();
                let mode = d.mode();
                self.agents.insert(agent.clone(), d);
                Ok(mode)
            }
            Err(e) => {
                let reason = format!("model file {} unusable: {e}", path.display());
                self.agent_mut(agent).model.set_fallback(reason);
                Err(e)
            }
        }
    }

    /// Installs a detector built elsewhere (e.g. [`AgentDetector::from_bytes`]).
    pub fn insert(&mut self, detector: AgentDetector) {
        self.agents.insert(detector.agent.clone(), detector);
    }

    /// Agents known.
    pub fn agents(&self) -> impl Iterator<Item = &AgentId> {
        self.agents.keys()
    }
}

/// `model_dir` helper for callers: the file an agent's model is saved to.
pub fn model_file(dir: &Path, agent: &AgentId) -> PathBuf {
    dir.join(format!("{}.hdm", agent.as_str().replace(':', "_")))
}

#[cfg(test)]
mod tests;
