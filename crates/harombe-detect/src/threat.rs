//! Threat scoring: one 0–1 score and a [`ThreatLevel`] per event from three components —
//! behavioural anomaly, rules (content inspection, policy hits) and threat intelligence —
//! weighted 0.4 / 0.3 / 0.3 by default, with every factor explained.
//!
//! **Key decisions**:
//! - **Unknown is not zero.** A component that has nothing to say (intel providers down or
//!   no indicator in the event, an agent still learning) is left out and the weights are
//!   renormalised over the components that are present: `total = Σ wᵢ sᵢ / Σ wᵢ` over the
//!   available ones. Capping instead (treating unknown intel as 0) would make HIGH and
//!   CRITICAL unreachable whenever intel is absent; renormalising keeps every level
//!   reachable with or without intel. The result says which components were used.
//! - Levels: `< 0.2` none, `< 0.4` low, `< 0.6` medium, `< 0.8` high, else critical
//!   (the spec's cut-offs, with NONE below 0.2).
//! - **Escalation**: a single component at or above `escalate_at` (0.9: a known-bad
//!   indicator, a critical rule such as a leaked private key) lifts the level to at least
//!   HIGH, so a certain signal is never averaged away by two quiet ones.

use harombe_core::ThreatLevel;
use serde::{Deserialize, Serialize};

use crate::anomaly::{AnomalyResult, DetectError, ScoringMode};

/// Weights of the components (they need not sum to 1; they are normalised).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThreatConfig {
    /// Weight of the anomaly score.
    pub anomaly_weight: f64,
    /// Weight of the rule score.
    pub rules_weight: f64,
    /// Weight of the intelligence score.
    pub intel_weight: f64,
    /// A component at or above this lifts the level to at least HIGH (> 1 disables).
    pub escalate_at: f64,
}

impl Default for ThreatConfig {
    fn default() -> Self {
        Self {
            anomaly_weight: 0.4,
            rules_weight: 0.3,
            intel_weight: 0.3,
            escalate_at: 0.9,
        }
    }
}

/// One component's input: a score in 0–1 (None = unknown) and why.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    /// Score, or None when the component could not tell.
    pub score: Option<f64>,
    /// Why (shown in the factors).
    pub reasons: Vec<String>,
}

impl Signal {
    /// A known score with one reason.
    pub fn known(score: f64, reason: impl Into<String>) -> Self {
        Self {
            score: Some(score),
            reasons: vec![reason.into()],
        }
    }

    /// Unknown, with the reason.
    pub fn unknown(reason: impl Into<String>) -> Self {
        Self {
            score: None,
            reasons: vec![reason.into()],
        }
    }

    /// The anomaly component from a detector result (unknown while the agent learns).
    pub fn from_anomaly(r: &AnomalyResult) -> Self {
        match r.mode {
            ScoringMode::Learning { .. } => Self::unknown(r.explanation.clone()),
            _ => Self::known(r.anomaly_score, r.explanation.clone()),
        }
    }
}

/// The three inputs of a score.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ThreatInputs {
    /// Behavioural anomaly.
    pub anomaly: Signal,
    /// Rules.
    pub rules: Signal,
    /// Threat intelligence.
    pub intel: Signal,
}

/// One component of a score, as used.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComponentScore {
    /// `anomaly`, `rules` or `intel`.
    pub name: &'static str,
    /// Its score (None: unknown, left out).
    pub score: Option<f64>,
    /// Configured weight.
    pub weight: f64,
    /// Weight after renormalisation (0 when left out).
    pub effective_weight: f64,
}

/// A threat score with its explanation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThreatScore {
    /// 0–1.
    pub total: f64,
    /// Level.
    pub level: ThreatLevel,
    /// The components.
    pub components: Vec<ComponentScore>,
    /// Whether some component was unknown and the weights were renormalised.
    pub renormalised: bool,
    /// Human-readable factors, most important first.
    pub factors: Vec<String>,
}

/// Level of a total: the spec's cut-offs plus NONE below 0.2.
pub fn level_of(total: f64) -> ThreatLevel {
    match total {
        t if t >= 0.8 => ThreatLevel::Critical,
        t if t >= 0.6 => ThreatLevel::High,
        t if t >= 0.4 => ThreatLevel::Medium,
        t if t >= 0.2 => ThreatLevel::Low,
        _ => ThreatLevel::None,
    }
}

/// Combines components into a [`ThreatScore`]. Pure and allocation-light: call it inline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThreatScorer {
    config: ThreatConfig,
}

impl ThreatScorer {
    /// A scorer; weights must be finite and non-negative with a positive sum.
    pub fn new(config: ThreatConfig) -> Result<Self, DetectError> {
        let w = [
            config.anomaly_weight,
            config.rules_weight,
            config.intel_weight,
        ];
        if w.iter().any(|x| !x.is_finite() || *x < 0.0) || w.iter().sum::<f64>() <= 0.0 {
            return Err(DetectError::InvalidConfig {
                field: "threat weights",
                reason: format!("{w:?}: each must be finite and >= 0, with a positive sum"),
            });
        }
        if !config.escalate_at.is_finite() || config.escalate_at <= 0.0 {
            return Err(DetectError::InvalidConfig {
                field: "escalate_at",
                reason: format!("{} must be finite and > 0", config.escalate_at),
            });
        }
        Ok(Self { config })
    }

    /// Scores `inputs`. Scores outside 0–1 are clamped; a NaN score is treated as unknown
    /// (and says so).
    pub fn score(&self, inputs: &ThreatInputs) -> ThreatScore {
        let c = &self.config;
        let parts = [
            ("anomaly", c.anomaly_weight, &inputs.anomaly),
            ("rules", c.rules_weight, &inputs.rules),
            ("intel", c.intel_weight, &inputs.intel),
        ];
        let mut factors = Vec::new();
        let clean = |s: Option<f64>| s.filter(|x| !x.is_nan()).map(|x| x.clamp(0.0, 1.0));
        let available: f64 = parts
            .iter()
            .filter(|(_, w, s)| clean(s.score).is_some() && *w > 0.0)
            .map(|(_, w, _)| w)
            .sum();
        let mut total = 0.0;
        let mut renormalised = false;
        let mut escalate: Option<&'static str> = None;
        let mut components = Vec::with_capacity(3);
        for (name, w, s) in parts {
            let score = clean(s.score);
            if s.score.is_some_and(f64::is_nan) {
                factors.push(format!("{name}: score was NaN, treated as unknown"));
            }
            let eff = match score {
                Some(x) if available > 0.0 => {
                    total += w * x / available;
                    if x >= c.escalate_at && w > 0.0 {
                        escalate.get_or_insert(name);
                    }
                    w / available
                }
                _ => {
                    if w > 0.0 {
                        renormalised = true;
                    }
                    0.0
                }
            };
            let shown = s.reasons.first().map_or("", String::as_str);
            match score {
                Some(x) => factors.push(format!("{name} {x:.2} × {eff:.2}: {shown}")),
                None => factors.push(format!("{name} unknown (left out): {shown}")),
            }
            components.push(ComponentScore {
                name,
                score,
                weight: w,
                effective_weight: eff,
            });
        }
        let mut level = level_of(total);
        if let Some(name) = escalate
            && level < ThreatLevel::High
        {
            level = ThreatLevel::High;
            factors.insert(
                0,
                format!(
                    "{name} at or above {:.2}: level raised to high",
                    c.escalate_at
                ),
            );
        }
        if available == 0.0 {
            factors.insert(0, "no component could score this event".into());
        } else if renormalised {
            factors.push("weights renormalised over the known components".into());
        }
        ThreatScore {
            total,
            level,
            components,
            renormalised,
            factors,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(a: f64, r: f64, i: Option<f64>) -> ThreatInputs {
        ThreatInputs {
            anomaly: Signal::known(a, "anomaly"),
            rules: Signal::known(r, "rules"),
            intel: match i {
                Some(x) => Signal::known(x, "feed match"),
                None => Signal::unknown("providers unavailable"),
            },
        }
    }

    #[test]
    fn every_level_is_reachable_with_and_without_intel() {
        let s = ThreatScorer::new(ThreatConfig::default()).unwrap();
        let cases = [
            (0.0, 0.0, ThreatLevel::None),
            (0.3, 0.3, ThreatLevel::Low),
            (0.5, 0.5, ThreatLevel::Medium),
            (0.7, 0.7, ThreatLevel::High),
            (0.85, 0.85, ThreatLevel::Critical),
        ];
        for (a, r, want) in cases {
            // Intel known and agreeing.
            let with = s.score(&inputs(a, r, Some(a)));
            assert_eq!(with.level, want, "with intel: {with:?}");
            assert!(!with.renormalised);
            // Intel unknown: renormalised over anomaly and rules.
            let without = s.score(&inputs(a, r, None));
            assert_eq!(without.level, want, "without intel: {without:?}");
            assert!(without.renormalised);
            assert!((without.total - (0.4 * a + 0.3 * r) / 0.7).abs() < 1e-12);
        }
    }

    #[test]
    fn weights_apply_and_factors_explain() {
        let s = ThreatScorer::new(ThreatConfig::default()).unwrap();
        let t = s.score(&inputs(1.0, 0.0, Some(0.0)));
        assert!((t.total - 0.4).abs() < 1e-12);
        assert_eq!(t.components[0].effective_weight, 0.4);
        // anomaly 1.0 >= 0.9 escalates.
        assert_eq!(t.level, ThreatLevel::High);
        assert!(t.factors[0].contains("raised to high"));
        let t = s.score(&inputs(0.1, 0.1, Some(0.95)));
        assert_eq!(t.level, ThreatLevel::High);
        let none = s.score(&ThreatInputs::default());
        assert_eq!(none.level, ThreatLevel::None);
        assert!(none.factors[0].contains("no component"));
        let nan = s.score(&inputs(f64::NAN, 0.5, None));
        assert_eq!(nan.components[0].score, None);
        assert!((nan.total - 0.5).abs() < 1e-12);
        assert!(
            ThreatScorer::new(ThreatConfig {
                intel_weight: -1.0,
                ..ThreatConfig::default()
            })
            .is_err()
        );
    }

    #[test]
    fn configurable_weights() {
        let s = ThreatScorer::new(ThreatConfig {
            anomaly_weight: 1.0,
            rules_weight: 0.0,
            intel_weight: 0.0,
            escalate_at: 2.0,
        })
        .unwrap();
        let t = s.score(&inputs(0.5, 1.0, Some(1.0)));
        assert!((t.total - 0.5).abs() < 1e-12);
        assert_eq!(t.level, ThreatLevel::Medium);
    }
}
