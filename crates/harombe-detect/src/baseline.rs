//! Statistical behavioural baselines: what is normal for one agent over a rolling window.
//!
//! **Owns**: [`WindowedBaseline`] (per-feature mean/variance, hour-of-day and day-of-week
//! histograms, event-type frequencies, kept per UTC day and merged over the window),
//! the z-score deviation of a new observation ([`Deviation`]), the mapping of the largest
//! deviation to a 0–1 score ([`baseline_score`]), and the spec's [`BaselineLearner`]
//! (`record_event` / `compute_baseline` / `detect_anomalies`, per agent).
//!
//! **Key decisions**:
//! - *Incremental and rolling*: one bucket per UTC day holds mergeable summaries
//!   (Welford [`RunningStats`], histograms, counters). Recording is O(features); buckets
//!   older than `window_days` are dropped and the merged snapshot rebuilt from the rest, so
//!   the baseline forgets old behaviour without keeping raw events. Memory is bounded by
//!   `window_days + 1` buckets.
//! - z-scores use `max(std, MIN_STD[i])`: a feature that never varied in training (no
//!   errors, no new tools) still produces a large, finite z when it changes.
//! - Hour and day of week are cyclic and categorical, so they are scored by rarity in
//!   their histogram ([`rarity_z`]), not by distance from a mean.

use std::collections::{BTreeMap, HashMap, VecDeque};

use harombe_core::{AgentId, AuditEvent};
use harombe_ml::{DayOfWeekHistogram, HourOfDayHistogram, RunningStats};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::anomaly::DetectError;
use crate::features::{self, CallFeatures, FeatureExtractor, FeatureVector, N_FEATURES};

/// Rolling-window parameters (the spec's defaults: 30 days, 100 samples).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BaselineConfig {
    /// Days of history kept (1..=366).
    pub window_days: u32,
    /// Observations needed before a baseline is used.
    pub min_samples: u64,
}

impl Default for BaselineConfig {
    fn default() -> Self {
        Self {
            window_days: 30,
            min_samples: 100,
        }
    }
}

impl BaselineConfig {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), DetectError> {
        if !(1..=366).contains(&self.window_days) {
            return Err(DetectError::InvalidConfig {
                field: "window_days",
                reason: format!("{} not in 1..=366", self.window_days),
            });
        }
        if self.min_samples == 0 {
            return Err(DetectError::InvalidConfig {
                field: "min_samples",
                reason: "must be at least 1".into(),
            });
        }
        Ok(())
    }
}

/// The merged summary of a window: the learned behavioural pattern.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BehavioralPattern {
    /// Observations.
    pub count: u64,
    /// Per-feature statistics (resource profiles: sizes, latency; rates; novelty).
    pub stats: Vec<RunningStats>,
    /// Activity by hour of day (UTC).
    pub hours: HourOfDayHistogram,
    /// Activity by day of week (Monday = 0).
    pub days: DayOfWeekHistogram,
    /// Event-type frequencies (`tool_call`, `egress_connection`, ...).
    pub kinds: BTreeMap<String, u64>,
}

impl BehavioralPattern {
    fn empty(n: usize) -> Self {
        Self {
            count: 0,
            stats: vec![RunningStats::new(); n],
            hours: HourOfDayHistogram::new(),
            days: DayOfWeekHistogram::new(),
            kinds: BTreeMap::new(),
        }
    }

    fn merge(&mut self, o: &Self) {
        self.count += o.count;
        for (a, b) in self.stats.iter_mut().zip(&o.stats) {
            a.merge(b);
        }
        self.hours.merge(&o.hours);
        self.days.merge(&o.days);
        for (k, v) in &o.kinds {
            *self.kinds.entry(k.clone()).or_insert(0) += v;
        }
    }

    /// Share of events of this kind (0 when none recorded).
    #[allow(clippy::cast_precision_loss)]
    pub fn kind_frequency(&self, kind: &str) -> f64 {
        match self.kinds.get(kind) {
            Some(&c) if self.count > 0 => c as f64 / self.count as f64,
            _ => 0.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct DayBucket {
    day: i64,
    pattern: BehavioralPattern,
}

/// How far one observation is from the baseline.
#[derive(Debug, Clone, PartialEq)]
pub struct Deviation {
    /// `|z|` per feature (0 for skipped or missing ones; hour and day use rarity).
    pub z: Vec<f64>,
    /// Index of the largest entry of `z`.
    pub top: usize,
    /// The largest `|z|`.
    pub max_z: f64,
    /// [`baseline_score`] of `max_z`.
    pub score: f64,
}

/// z below which a deviation scores 0.
pub const Z_LOW: f64 = 3.0;
/// z at and above which a deviation scores 1.
pub const Z_HIGH: f64 = 7.0;
/// Cap on any single `|z|` (keeps explanations readable and sums finite).
pub const Z_CAP: f64 = 50.0;

/// Maps the largest `|z|` to 0–1: 0 up to [`Z_LOW`], linear to 1 at [`Z_HIGH`].
pub fn baseline_score(max_z: f64) -> f64 {
    ((max_z - Z_LOW) / (Z_HIGH - Z_LOW)).clamp(0.0, 1.0)
}

/// A rarity expressed on the z scale for a categorical bucket with share `p` among `k`
/// buckets: 0 while `p ≥ ¼ · 1/k`, rising linearly from 3 to 7 for a bucket never seen.
pub fn rarity_z(p: f64, k: usize) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let quarter = 0.25 / k as f64;
    if p >= quarter {
        0.0
    } else {
        3.0 + 4.0 * (1.0 - p / quarter)
    }
}

/// How a [`WindowedBaseline`] reads the vectors it is given.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureLayout {
    /// Floor on the standard deviation, per feature.
    pub min_std: Vec<f64>,
    /// Features scored by histogram rarity instead of z (`(hour index, dow index)`).
    pub hour_dow: Option<(usize, usize)>,
    /// Bit mask of features never z-scored (categorical ones such as a tool hash).
    pub skip: u32,
}

impl FeatureLayout {
    /// The layout of tool-call feature vectors.
    pub fn tool_calls() -> Self {
        Self {
            min_std: features::MIN_STD.to_vec(),
            hour_dow: Some((features::idx::HOUR, features::idx::DOW)),
            skip: 1 << features::idx::TOOL_ID,
        }
    }
}

/// Per-feature statistics over a rolling window of UTC days.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowedBaseline {
    window_days: u32,
    n_features: usize,
    buckets: VecDeque<DayBucket>,
    snapshot: BehavioralPattern,
}

fn day_of(t: OffsetDateTime) -> i64 {
    t.unix_timestamp().div_euclid(86_400)
}

impl WindowedBaseline {
    /// An empty baseline over `window_days` for vectors of `n_features`.
    pub fn new(window_days: u32, n_features: usize) -> Self {
        Self {
            window_days: window_days.max(1),
            n_features,
            buckets: VecDeque::new(),
            snapshot: BehavioralPattern::empty(n_features),
        }
    }

    /// Observations in the window.
    pub fn count(&self) -> u64 {
        self.snapshot.count
    }

    /// Days from the oldest to the newest observation in the window, both counted (0 when
    /// empty).
    pub fn days_spanned(&self) -> u32 {
        match (self.buckets.front(), self.buckets.back()) {
            (Some(a), Some(b)) => u32::try_from(b.day - a.day + 1).unwrap_or(u32::MAX),
            _ => 0,
        }
    }

    /// The merged pattern of the window.
    pub fn pattern(&self) -> &BehavioralPattern {
        &self.snapshot
    }

    /// Number of features.
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// Records one observation. Non-finite values are an error naming the feature and
    /// nothing is recorded; missing values are not counted in their feature's statistics.
    pub fn record(
        &mut self,
        at: OffsetDateTime,
        kind: &str,
        values: &[f64],
        missing: u32,
        names: &[&'static str],
    ) -> Result<(), DetectError> {
        if values.len() != self.n_features {
            return Err(DetectError::InvalidConfig {
                field: "features",
                reason: format!("{} values, baseline has {}", values.len(), self.n_features),
            });
        }
        if let Some((i, v)) = values
            .iter()
            .enumerate()
            .find(|(i, v)| !v.is_finite() && missing & (1 << i) == 0)
        {
            return Err(DetectError::NonFinite {
                feature: names.get(i).copied().unwrap_or("?"),
                value: *v,
            });
        }
        let day = day_of(at);
        let pos = self.buckets.partition_point(|b| b.day < day);
        if self.buckets.get(pos).is_none_or(|b| b.day != day) {
            self.buckets.insert(
                pos,
                DayBucket {
                    day,
                    pattern: BehavioralPattern::empty(self.n_features),
                },
            );
        }
        for target in [&mut self.buckets[pos].pattern, &mut self.snapshot] {
            target.count += 1;
            for (i, (s, &v)) in target.stats.iter_mut().zip(values).enumerate() {
                if missing & (1 << i) == 0 {
                    s.push(v).map_err(DetectError::Ml)?;
                }
            }
            // The hour and day are valid by construction (0..24, 0..7).
            target.hours.record(at.hour()).map_err(DetectError::Ml)?;
            target
                .days
                .record(at.weekday().number_days_from_monday())
                .map_err(DetectError::Ml)?;
            match target.kinds.get_mut(kind) {
                Some(c) => *c += 1,
                None => {
                    target.kinds.insert(kind.to_owned(), 1);
                }
            }
        }
        self.cleanup(at);
        Ok(())
    }

    /// Drops days older than the window (relative to `now`) and rebuilds the snapshot if
    /// any were dropped. Returns how many observations were forgotten.
    pub fn cleanup(&mut self, now: OffsetDateTime) -> u64 {
        let oldest = day_of(now) - i64::from(self.window_days) + 1;
        let mut dropped = 0;
        while self.buckets.front().is_some_and(|b| b.day < oldest) {
            if let Some(b) = self.buckets.pop_front() {
                dropped += b.pattern.count;
            }
        }
        if dropped > 0 {
            let mut s = BehavioralPattern::empty(self.n_features);
            for b in &self.buckets {
                s.merge(&b.pattern);
            }
            self.snapshot = s;
        }
        dropped
    }

    /// Mean of each feature (used to impute missing values).
    pub fn means(&self) -> impl Iterator<Item = f64> + '_ {
        self.snapshot.stats.iter().map(RunningStats::mean)
    }

    /// Replaces missing entries of `values` by the baseline mean of that feature.
    pub fn impute(&self, values: &mut [f64], missing: u32) {
        if missing == 0 {
            return;
        }
        for (i, (v, s)) in values.iter_mut().zip(&self.snapshot.stats).enumerate() {
            if missing & (1 << i) != 0 {
                *v = s.mean();
            }
        }
    }

    /// The deviation of an observation at `at` from this baseline.
    pub fn deviation(
        &self,
        at: OffsetDateTime,
        values: &[f64],
        missing: u32,
        layout: &FeatureLayout,
    ) -> Deviation {
        let mut z = vec![0.0; self.n_features];
        for (i, ((zi, &v), s)) in z
            .iter_mut()
            .zip(values)
            .zip(&self.snapshot.stats)
            .enumerate()
        {
            if missing & (1 << i) != 0 || layout.skip & (1 << i) != 0 || s.count() == 0 {
                continue;
            }
            let floor = layout.min_std.get(i).copied().unwrap_or(1e-9);
            *zi = ((v - s.mean()).abs() / s.std().max(floor)).min(Z_CAP);
        }
        if let Some((h, d)) = layout.hour_dow
            && self.snapshot.count > 0
        {
            if let Some(zh) = z.get_mut(h) {
                *zh = rarity_z(self.snapshot.hours.frequency(at.hour()), 24);
            }
            if let Some(zd) = z.get_mut(d) {
                let dow = at.weekday().number_days_from_monday();
                *zd = rarity_z(self.snapshot.days.frequency(dow), 7);
            }
        }
        let (top, max_z) = z
            .iter()
            .copied()
            .enumerate()
            .fold((0, 0.0), |acc, (i, v)| if v > acc.1 { (i, v) } else { acc });
        Deviation {
            z,
            top,
            max_z,
            score: baseline_score(max_z),
        }
    }
}

/// A learned baseline, as the spec's `compute_baseline` returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BehavioralBaseline {
    /// Agent.
    pub agent_id: AgentId,
    /// When it was computed (the newest observation's time).
    #[serde(with = "time::serde::rfc3339")]
    pub learned_at: OffsetDateTime,
    /// Observations in the window.
    pub event_count: u64,
    /// Window size in days.
    pub time_window_days: u32,
    /// The pattern.
    pub pattern: BehavioralPattern,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct LearnerAgent {
    extractor: FeatureExtractor,
    baseline: WindowedBaseline,
    #[serde(with = "time::serde::rfc3339")]
    last_seen: OffsetDateTime,
}

const LEARNER_MAGIC: &[u8; 8] = b"HRBBASE\0";
const LEARNER_VERSION: u32 = 1;

/// The spec's `BaselineLearner`: per-agent statistical baselines, incremental and
/// persisted (`to_bytes` / `from_bytes`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineLearner {
    config: BaselineConfig,
    agents: HashMap<AgentId, LearnerAgent>,
}

impl BaselineLearner {
    /// A learner with no agent yet.
    pub fn new(config: BaselineConfig) -> Result<Self, DetectError> {
        config.validate()?;
        Ok(Self {
            config,
            agents: HashMap::new(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &BaselineConfig {
        &self.config
    }

    /// Records one audit event for `agent`.
    pub fn record_event(&mut self, agent: &AgentId, event: &AuditEvent) -> Result<(), DetectError> {
        self.record_call(agent, &CallFeatures::from_event(event))
    }

    /// Records one call for `agent` (its features against the agent's history so far).
    pub fn record_call(&mut self, agent: &AgentId, call: &CallFeatures) -> Result<(), DetectError> {
        let window = self.config.window_days;
        let a = self
            .agents
            .entry(agent.clone())
            .or_insert_with(|| LearnerAgent {
                extractor: FeatureExtractor::new(),
                baseline: WindowedBaseline::new(window, N_FEATURES),
                last_seen: call.timestamp,
            });
        let fv = a.extractor.extract(call);
        a.last_seen = a.last_seen.max(call.timestamp);
        a.baseline.record(
            call.timestamp,
            call.kind.as_str(),
            &fv.values,
            fv.missing,
            &features::FEATURE_NAMES,
        )
    }

    /// The agent's baseline; an error while it has fewer than `min_samples` observations.
    pub fn compute_baseline(&self, agent: &AgentId) -> Result<BehavioralBaseline, DetectError> {
        let a = self.agent(agent)?;
        Ok(BehavioralBaseline {
            agent_id: agent.clone(),
            learned_at: a.last_seen,
            event_count: a.baseline.count(),
            time_window_days: self.config.window_days,
            pattern: a.baseline.pattern().clone(),
        })
    }

    /// Per-feature deviation (`|z|`, hour and day as rarity) of `call` from the agent's
    /// baseline, by feature name, plus `"baseline_score"` (0–1). Does not record the call.
    pub fn detect_anomalies(
        &self,
        agent: &AgentId,
        call: &CallFeatures,
    ) -> Result<BTreeMap<String, f64>, DetectError> {
        let a = self.agent(agent)?;
        let fv: FeatureVector = a.extractor.compute(call);
        let d = a.baseline.deviation(
            call.timestamp,
            &fv.values,
            fv.missing,
            &FeatureLayout::tool_calls(),
        );
        let mut out: BTreeMap<String, f64> = features::FEATURE_NAMES
            .iter()
            .zip(&d.z)
            .map(|(n, z)| ((*n).to_owned(), *z))
            .collect();
        out.insert("baseline_score".into(), d.score);
        Ok(out)
    }

    /// Drops every agent's days older than the window; returns observations forgotten.
    pub fn cleanup(&mut self, now: OffsetDateTime) -> u64 {
        self.agents
            .values_mut()
            .map(|a| a.baseline.cleanup(now))
            .sum()
    }

    /// Persists the learner (postcard bytes behind a magic and a format version; JSON
    /// cannot carry the infinities of an empty min/max).
    pub fn to_bytes(&self) -> Result<Vec<u8>, DetectError> {
        let mut out = LEARNER_MAGIC.to_vec();
        out.extend_from_slice(&LEARNER_VERSION.to_le_bytes());
        postcard::to_io(self, &mut out).map_err(|e| DetectError::ModelCorrupted {
            reason: format!("cannot encode baseline: {e}"),
        })?;
        Ok(out)
    }

    /// Loads a learner written by [`to_bytes`](Self::to_bytes).
    pub fn from_bytes(b: &[u8]) -> Result<Self, DetectError> {
        if b.len() < 12 || &b[..8] != LEARNER_MAGIC {
            return Err(DetectError::WrongFormat {
                reason: "missing HRBBASE header".into(),
            });
        }
        let version = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
        if version != LEARNER_VERSION {
            return Err(DetectError::ModelVersion {
                found: version,
                supported: LEARNER_VERSION,
            });
        }
        let l: Self = postcard::from_bytes(&b[12..]).map_err(|e| DetectError::ModelCorrupted {
            reason: format!("baseline: {e}"),
        })?;
        l.config.validate()?;
        Ok(l)
    }

    fn agent(&self, agent: &AgentId) -> Result<&LearnerAgent, DetectError> {
        let a = self
            .agents
            .get(agent)
            .ok_or_else(|| DetectError::UnknownAgent {
                agent: agent.to_string(),
            })?;
        if a.baseline.count() < self.config.min_samples {
            return Err(DetectError::InsufficientSamples {
                agent: agent.to_string(),
                have: a.baseline.count(),
                need: self.config.min_samples,
            });
        }
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    fn call(t: OffsetDateTime, tool: &str, n: usize) -> CallFeatures {
        CallFeatures::new(t, tool)
            .with_arguments(&json!({"path": "x".repeat(n)}))
            .with_result(500, 20_000, false)
    }

    #[test]
    fn learner_needs_min_samples_then_scores_deviation() {
        let agent = AgentId::new("a1").unwrap();
        let mut l = BaselineLearner::new(BaselineConfig::default()).unwrap();
        let t0 = datetime!(2025-01-06 09:00 UTC);
        for i in 0..99 {
            l.record_call(
                &agent,
                &call(
                    t0 + time::Duration::minutes(5 * i),
                    "read",
                    20 + (i as usize % 7),
                ),
            )
            .unwrap();
        }
        assert!(matches!(
            l.compute_baseline(&agent),
            Err(DetectError::InsufficientSamples {
                have: 99,
                need: 100,
                ..
            })
        ));
        l.record_call(&agent, &call(t0 + time::Duration::minutes(500), "read", 22))
            .unwrap();
        let b = l.compute_baseline(&agent).unwrap();
        assert_eq!(b.event_count, 100);
        assert_eq!(b.pattern.kind_frequency("tool_call"), 1.0);
        let normal = l
            .detect_anomalies(&agent, &call(t0 + time::Duration::minutes(505), "read", 23))
            .unwrap();
        assert_eq!(normal["baseline_score"], 0.0);
        let big = l
            .detect_anomalies(
                &agent,
                &call(t0 + time::Duration::minutes(505), "read", 50_000),
            )
            .unwrap();
        assert!(big["arg_bytes"] > Z_HIGH, "{big:?}");
        assert_eq!(big["baseline_score"], 1.0);
        let night = l
            .detect_anomalies(&agent, &call(datetime!(2025-01-07 03:00 UTC), "read", 23))
            .unwrap();
        assert!(night["hour_surprisal"] >= 6.9, "{night:?}");
    }

    #[test]
    fn rolling_window_forgets_old_days() {
        let mut b = WindowedBaseline::new(3, 2);
        let names = ["a", "b"];
        for d in 0..5 {
            let t = datetime!(2025-01-01 12:00 UTC) + time::Duration::days(d);
            b.record(t, "tool_call", &[d as f64, 1.0], 0, &names)
                .unwrap();
        }
        assert_eq!(b.count(), 3);
        assert_eq!(b.pattern().stats[0].mean(), 3.0);
        let dropped = b.cleanup(datetime!(2025-01-07 00:00 UTC));
        assert_eq!(dropped, 2);
        assert_eq!(b.count(), 1);
    }

    #[test]
    fn non_finite_values_are_refused_and_nothing_recorded() {
        let mut b = WindowedBaseline::new(30, 2);
        let err = b
            .record(
                datetime!(2025-01-01 12:00 UTC),
                "k",
                &[1.0, f64::NAN],
                0,
                &["a", "b"],
            )
            .unwrap_err();
        assert!(matches!(err, DetectError::NonFinite { feature: "b", .. }));
        assert_eq!(b.count(), 0);
        // A missing value may be anything.
        b.record(
            datetime!(2025-01-01 12:00 UTC),
            "k",
            &[1.0, f64::NAN],
            0b10,
            &["a", "b"],
        )
        .unwrap();
        assert_eq!(b.pattern().stats[1].count(), 0);
    }

    #[test]
    fn learner_round_trips() {
        let agent = AgentId::new("a1").unwrap();
        let mut l = BaselineLearner::new(BaselineConfig {
            window_days: 7,
            min_samples: 1,
        })
        .unwrap();
        l.record_call(&agent, &call(datetime!(2025-01-06 09:00 UTC), "read", 3))
            .unwrap();
        let back = BaselineLearner::from_bytes(&l.to_bytes().unwrap()).unwrap();
        assert_eq!(back, l);
        assert!(
            BaselineLearner::new(BaselineConfig {
                window_days: 0,
                min_samples: 1
            })
            .is_err()
        );
    }
}
