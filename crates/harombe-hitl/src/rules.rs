//! Auto-approval rules: configured conditions over trust, historical risk, threat level,
//! anomaly, tool, agent and hour, each with an action. Rules are evaluated by priority
//! (higher first; ties keep file order) and the first match decides.
//!
//! [`RuleSet::new`] refuses rule sets that cannot mean what their author intended: a bad
//! glob, hour range or bound (naming rule and field), two rules with identical conditions
//! and different actions (contradictory), and a rule every call of which is matched first
//! by an earlier rule (unreachable). Subsumption is checked conservatively per dimension
//! (sets ⊇, intervals ⊇; a glob list covers another when it is unrestricted, contains
//! each pattern literally or `*`, or matches each glob-free pattern as a name), so a
//! reported unreachable rule is always truly unreachable.
//!
//! Independently of any rule, [`critical_reason`] names calls that must never be
//! auto-approved: historical risk ≥ [`CRITICAL_RISK`] or threat level critical.

use globset::{GlobSet, GlobSetBuilder};
use harombe_core::ThreatLevel;
use serde::{Deserialize, Serialize};

use crate::error::RuleError;
use crate::trust::TrustLevel;

/// Historical risk at or above which a call is never auto-approved.
pub const CRITICAL_RISK: f64 = 0.8;

/// What a matching rule does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleAction {
    /// Let the call through without a human (unless the critical guard holds it).
    AutoApprove,
    /// Hold the call for a human.
    RequireApproval,
    /// Refuse the call.
    Deny,
}

impl RuleAction {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleAction::AutoApprove => "auto_approve",
            RuleAction::RequireApproval => "require_approval",
            RuleAction::Deny => "deny",
        }
    }
}

/// One rule as configured. Every condition is optional; all given ones must hold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub name: String,
    /// Higher first; equal priorities keep file order.
    #[serde(default)]
    pub priority: i32,
    pub action: RuleAction,
    /// Shown to humans with the decision.
    #[serde(default)]
    pub reason: String,
    /// The agent's trust level is one of these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_levels: Option<Vec<TrustLevel>>,
    /// Historical risk of the tool ≥ this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk_min: Option<f64>,
    /// Historical risk of the tool ≤ this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk_max: Option<f64>,
    /// The call's current threat level is one of these (no threat result counts as none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threat_levels: Option<Vec<ThreatLevel>>,
    /// The call's current threat level is at most this (use this or `threat_levels`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threat_max: Option<ThreatLevel>,
    /// The anomaly detector flagged (true) or did not flag (false) the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anomalous: Option<bool>,
    /// Tool name globs (case-insensitive); any may match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<String>>,
    /// Agent id globs (case-insensitive); any may match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agents: Option<Vec<String>>,
    /// UTC hours `"HH-HH"`, start inclusive, end exclusive; `"22-06"` wraps midnight,
    /// `"00-24"` is all day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hours: Option<String>,
}

impl RuleConfig {
    /// A rule with no conditions (matches every call).
    pub fn new(name: impl Into<String>, priority: i32, action: RuleAction) -> Self {
        Self {
            name: name.into(),
            priority,
            action,
            reason: String::new(),
            trust_levels: None,
            risk_min: None,
            risk_max: None,
            threat_levels: None,
            threat_max: None,
            anomalous: None,
            tools: None,
            agents: None,
            hours: None,
        }
    }
}

/// The rules harombe ships, exactly the specification's three: `always_approve_critical`
/// (risk ≥ 0.8 → require approval, highest priority), `high_trust_low_risk` and
/// `medium_trust_very_low_risk` (both also require threat ≤ low and no anomaly flag).
///
/// [`unfamiliar_or_elevated_risk`] is a stricter, optional rule, not shipped: holding the
/// first calls of every tool (read-only ones too) is too disruptive as a default.
pub fn default_rules() -> Vec<RuleConfig> {
    vec![
        RuleConfig {
            reason: "critical historical risk: a human must approve".into(),
            risk_min: Some(CRITICAL_RISK),
            ..RuleConfig::new("always_approve_critical", 100, RuleAction::RequireApproval)
        },
        RuleConfig {
            reason: "high-trust agent, low-risk tool, no threat or anomaly".into(),
            trust_levels: Some(vec![TrustLevel::High]),
            risk_max: Some(0.3),
            threat_max: Some(ThreatLevel::Low),
            anomalous: Some(false),
            ..RuleConfig::new("high_trust_low_risk", 20, RuleAction::AutoApprove)
        },
        RuleConfig {
            reason: "medium-trust agent, very-low-risk tool, no threat or anomaly".into(),
            trust_levels: Some(vec![TrustLevel::Medium]),
            risk_max: Some(0.1),
            threat_max: Some(ThreatLevel::Low),
            anomalous: Some(false),
            ..RuleConfig::new("medium_trust_very_low_risk", 10, RuleAction::AutoApprove)
        },
    ]
}

/// An optional, stricter rule operators may add to the defaults (it is not in
/// [`default_rules`]): hold calls of tools with historical risk ≥ 0.3, priority 50. A
/// tool nobody has called yet scores 0.35 with the default weights, so every tool's
/// first calls (read-only ones included) are shown to a human until history vouches for
/// it, and so are never-seen privileged tools that are not on the risky-tool list.
/// `docs/hitl-replay.md` shows it as `[[hitl.rules]]` TOML and measures its cost.
pub fn unfamiliar_or_elevated_risk() -> RuleConfig {
    RuleConfig {
        reason: "unfamiliar tool or elevated historical risk: a human must approve".into(),
        risk_min: Some(0.3),
        ..RuleConfig::new(
            "unfamiliar_or_elevated_risk",
            50,
            RuleAction::RequireApproval,
        )
    }
}

/// Why a call must never be auto-approved, if it must not.
pub fn critical_reason(risk: f64, threat: ThreatLevel) -> Option<String> {
    if threat == ThreatLevel::Critical {
        Some("threat level critical: never auto-approved".into())
    } else if risk >= CRITICAL_RISK {
        Some(format!(
            "historical risk {risk:.2} is critical (≥ {CRITICAL_RISK}): never auto-approved"
        ))
    } else {
        None
    }
}

/// What a rule is evaluated against.
#[derive(Clone, Copy, Debug)]
pub struct RuleInput<'a> {
    pub trust: TrustLevel,
    pub risk: f64,
    pub threat: ThreatLevel,
    pub anomalous: bool,
    pub tool: &'a str,
    pub agent: &'a str,
    /// UTC hour, 0..=23.
    pub hour: u8,
}

#[derive(Clone, Debug)]
struct Globs {
    patterns: Vec<String>,
    set: GlobSet,
}

impl Globs {
    fn parse(rule: &str, field: &'static str, patterns: &[String]) -> Result<Self, RuleError> {
        let bad = |problem: String| RuleError::Invalid {
            rule: rule.to_owned(),
            field,
            problem,
        };
        if patterns.is_empty() {
            return Err(bad(
                "an empty list never matches; omit the field instead".into()
            ));
        }
        let mut b = GlobSetBuilder::new();
        for (i, p) in patterns.iter().enumerate() {
            if p.is_empty() {
                return Err(bad(format!("pattern #{i} is empty")));
            }
            let g = globset::GlobBuilder::new(p)
                .case_insensitive(true)
                .build()
                .map_err(|e| bad(format!("pattern #{i} {p:?}: {e}")))?;
            b.add(g);
        }
        let set = b
            .build()
            .map_err(|e| bad(format!("patterns do not compile: {e}")))?;
        let mut patterns = patterns.to_vec();
        patterns.sort();
        patterns.dedup();
        Ok(Self { patterns, set })
    }

    /// Conservatively: does every name `other` matches also match `self`?
    fn covers(&self, other: &Globs) -> bool {
        other.patterns.iter().all(|p| {
            self.patterns.iter().any(|q| q == p || q == "*")
                || (!has_glob_syntax(p) && self.set.is_match(p))
        })
    }
}

fn has_glob_syntax(p: &str) -> bool {
    p.contains(['*', '?', '[', ']', '{', '}', '\\'])
}

/// Compiles a glob list for matching names (used for risky tools too).
pub(crate) fn compile_globs(
    owner: &str,
    field: &'static str,
    patterns: &[String],
) -> Result<GlobSet, RuleError> {
    if patterns.is_empty() {
        return Ok(GlobSet::empty());
    }
    Globs::parse(owner, field, patterns).map(|g| g.set)
}

const ALL_TRUST: u8 = 0b1111;
const ALL_THREAT: u8 = 0b1_1111;
const ALL_ANOMALY: u8 = 0b11;
const ALL_HOURS: u32 = (1 << 24) - 1;

#[derive(Clone, Debug)]
struct Conditions {
    trust: u8,
    risk: (f64, f64),
    threat: u8,
    /// Bit 0: not anomalous; bit 1: anomalous.
    anomaly: u8,
    hours: u32,
    tools: Option<Globs>,
    agents: Option<Globs>,
}

impl Conditions {
    fn matches(&self, i: &RuleInput<'_>) -> bool {
        self.trust & (1 << i.trust as u8) != 0
            && self.threat & (1 << i.threat.rank()) != 0
            && self.anomaly & (1 << u8::from(i.anomalous)) != 0
            && self.hours & (1 << u32::from(i.hour.min(23))) != 0
            && i.risk >= self.risk.0
            && i.risk <= self.risk.1
            && self.tools.as_ref().is_none_or(|g| g.set.is_match(i.tool))
            && self.agents.as_ref().is_none_or(|g| g.set.is_match(i.agent))
    }

    /// Every call `other` matches is matched by `self`.
    fn covers(&self, other: &Conditions) -> bool {
        fn globs(a: Option<&Globs>, b: Option<&Globs>) -> bool {
            match (a, b) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some(a), Some(b)) => a.covers(b),
            }
        }
        other.trust & !self.trust == 0
            && other.threat & !self.threat == 0
            && other.anomaly & !self.anomaly == 0
            && other.hours & !self.hours == 0
            && self.risk.0 <= other.risk.0
            && self.risk.1 >= other.risk.1
            && globs(self.tools.as_ref(), other.tools.as_ref())
            && globs(self.agents.as_ref(), other.agents.as_ref())
    }

    fn same_as(&self, other: &Conditions) -> bool {
        fn globs(a: Option<&Globs>, b: Option<&Globs>) -> bool {
            match (a, b) {
                (None, None) => true,
                (Some(a), Some(b)) => a.patterns == b.patterns,
                _ => false,
            }
        }
        self.trust == other.trust
            && self.threat == other.threat
            && self.anomaly == other.anomaly
            && self.hours == other.hours
            && self.risk == other.risk
            && globs(self.tools.as_ref(), other.tools.as_ref())
            && globs(self.agents.as_ref(), other.agents.as_ref())
    }
}

/// Parses `"HH-HH"` into a 24-bit mask of UTC hours.
fn parse_hours(s: &str) -> Result<u32, String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("{s:?} is not \"HH-HH\" (e.g. \"09-17\" or \"22-06\")"))?;
    let num = |t: &str, max: u32| -> Result<u32, String> {
        let t = t.trim();
        match t.parse::<u32>() {
            Ok(v) if v <= max && !t.is_empty() && t.len() <= 2 => Ok(v),
            _ => Err(format!("{t:?} in {s:?} is not an hour 0..={max}")),
        }
    };
    let (start, end) = (num(a, 23)?, num(b, 24)?);
    if start == end {
        return Err(format!(
            "{s:?} is empty (start equals end); use \"00-24\" for all day"
        ));
    }
    let range = |from: u32, to: u32| (from..to).fold(0u32, |m, h| m | (1 << h));
    Ok(if start < end {
        range(start, end)
    } else {
        range(start, 24) | range(0, end)
    })
}

/// A validated rule.
#[derive(Clone, Debug)]
pub struct Rule {
    name: String,
    priority: i32,
    action: RuleAction,
    reason: String,
    cond: Conditions,
}

impl Rule {
    fn from_config(c: &RuleConfig) -> Result<Self, RuleError> {
        let bad = |field: &'static str, problem: String| RuleError::Invalid {
            rule: c.name.clone(),
            field,
            problem,
        };
        if c.name.trim().is_empty() {
            return Err(bad("name", "must not be empty".into()));
        }
        let mask = |field: &'static str, ranks: Vec<u8>| -> Result<u8, RuleError> {
            if ranks.is_empty() {
                return Err(bad(
                    field,
                    "an empty list never matches; omit the field instead".into(),
                ));
            }
            Ok(ranks.into_iter().fold(0, |m, r| m | (1 << r)))
        };
        let trust = match &c.trust_levels {
            None => ALL_TRUST,
            Some(l) => mask("trust_levels", l.iter().map(|t| *t as u8).collect())?,
        };
        let threat = match (&c.threat_levels, c.threat_max) {
            (Some(_), Some(_)) => {
                return Err(bad(
                    "threat_max",
                    "give threat_levels or threat_max, not both".into(),
                ));
            }
            (Some(l), None) => mask("threat_levels", l.iter().map(|t| t.rank()).collect())?,
            (None, Some(max)) => (0..=max.rank()).fold(0, |m, r| m | (1 << r)),
            (None, None) => ALL_THREAT,
        };
        for (field, v) in [("risk_min", c.risk_min), ("risk_max", c.risk_max)] {
            if let Some(v) = v
                && !(v.is_finite() && (0.0..=1.0).contains(&v))
            {
                return Err(bad(field, format!("{v} must be a number in 0..=1")));
            }
        }
        let risk = (c.risk_min.unwrap_or(0.0), c.risk_max.unwrap_or(1.0));
        if risk.0 > risk.1 {
            return Err(bad(
                "risk_max",
                format!(
                    "risk_max {} is below risk_min {}: the rule never matches",
                    risk.1, risk.0
                ),
            ));
        }
        let anomaly = match c.anomalous {
            None => ALL_ANOMALY,
            Some(false) => 0b01,
            Some(true) => 0b10,
        };
        let hours = match &c.hours {
            None => ALL_HOURS,
            Some(h) => parse_hours(h).map_err(|p| bad("hours", p))?,
        };
        let tools = c
            .tools
            .as_deref()
            .map(|p| Globs::parse(&c.name, "tools", p))
            .transpose()?;
        let agents = c
            .agents
            .as_deref()
            .map(|p| Globs::parse(&c.name, "agents", p))
            .transpose()?;
        Ok(Self {
            name: c.name.clone(),
            priority: c.priority,
            action: c.action,
            reason: c.reason.clone(),
            cond: Conditions {
                trust,
                risk,
                threat,
                anomaly,
                hours,
                tools,
                agents,
            },
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn priority(&self) -> i32 {
        self.priority
    }

    pub fn action(&self) -> RuleAction {
        self.action
    }

    pub fn reason(&self) -> &str {
        &self.reason
    }

    pub fn matches(&self, input: &RuleInput<'_>) -> bool {
        self.cond.matches(input)
    }
}

/// Validated rules in evaluation order.
#[derive(Clone, Debug)]
pub struct RuleSet {
    rules: Vec<Rule>,
}

impl RuleSet {
    /// Validates `configs` and orders them by priority (higher first, ties in file order).
    pub fn new(configs: &[RuleConfig]) -> Result<Self, RuleError> {
        let mut rules = Vec::with_capacity(configs.len());
        for (i, c) in configs.iter().enumerate() {
            if let Some(j) = configs[..i].iter().position(|o| o.name == c.name) {
                return Err(RuleError::DuplicateName {
                    name: c.name.clone(),
                    first: j + 1,
                    second: i + 1,
                });
            }
            rules.push(Rule::from_config(c)?);
        }
        // A stable sort keeps file order among equal priorities.
        rules.sort_by_key(|r| std::cmp::Reverse(r.priority));
        for (j, later) in rules.iter().enumerate() {
            for earlier in &rules[..j] {
                if earlier.cond.same_as(&later.cond) && earlier.action != later.action {
                    return Err(RuleError::Contradictory {
                        first: earlier.name.clone(),
                        first_action: earlier.action.as_str(),
                        second: later.name.clone(),
                        second_action: later.action.as_str(),
                    });
                }
                if earlier.cond.covers(&later.cond) {
                    return Err(RuleError::Unreachable {
                        rule: later.name.clone(),
                        covered_by: earlier.name.clone(),
                    });
                }
            }
        }
        Ok(Self { rules })
    }

    /// The shipped rules ([`default_rules`]).
    pub fn defaults() -> Self {
        // The defaults are fixed and tested to validate.
        Self::new(&default_rules()).unwrap_or(Self { rules: Vec::new() })
    }

    /// The rules in evaluation order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The first rule (in evaluation order) that matches.
    pub fn evaluate(&self, input: &RuleInput<'_>) -> Option<&Rule> {
        self.rules.iter().find(|r| r.matches(input))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn input<'a>() -> RuleInput<'a> {
        RuleInput {
            trust: TrustLevel::High,
            risk: 0.1,
            threat: ThreatLevel::None,
            anomalous: false,
            tool: "fs_write",
            agent: "ops-bot",
            hour: 10,
        }
    }

    fn rule(name: &str, priority: i32, action: RuleAction) -> RuleConfig {
        RuleConfig::new(name, priority, action)
    }

    #[test]
    fn defaults_validate_and_decide_as_the_spec_says() {
        let rs = RuleSet::defaults();
        assert_eq!(rs.rules().len(), default_rules().len());
        assert_eq!(rs.rules()[0].name(), "always_approve_critical");
        let hit = |i: RuleInput<'_>| rs.evaluate(&i).map(|r| r.name().to_owned());
        assert_eq!(hit(input()).as_deref(), Some("high_trust_low_risk"));
        let medium = RuleInput {
            trust: TrustLevel::Medium,
            risk: 0.2,
            ..input()
        };
        assert_eq!(hit(medium), None);
        let medium_low = RuleInput {
            risk: 0.1,
            ..medium
        };
        assert_eq!(
            hit(medium_low).as_deref(),
            Some("medium_trust_very_low_risk")
        );
        let critical = RuleInput {
            risk: 0.85,
            ..input()
        };
        assert_eq!(hit(critical).as_deref(), Some("always_approve_critical"));
        // No shipped rule holds an unfamiliar tool (no history: risk 0.35); the fallback
        // decides it (held only if risky, anomalous or threatening).
        let unfamiliar = RuleInput {
            risk: 0.35,
            ..input()
        };
        assert_eq!(hit(unfamiliar), None);
        let threat = RuleInput {
            threat: ThreatLevel::Medium,
            ..input()
        };
        assert_eq!(hit(threat), None);
        let anomalous = RuleInput {
            anomalous: true,
            ..input()
        };
        assert_eq!(hit(anomalous), None);
    }

    #[test]
    fn defaults_are_exactly_the_specification_three() {
        let names: Vec<String> = default_rules().into_iter().map(|r| r.name).collect();
        assert_eq!(
            names,
            [
                "always_approve_critical",
                "high_trust_low_risk",
                "medium_trust_very_low_risk"
            ]
        );
        let critical = &default_rules()[0];
        assert_eq!(
            (critical.risk_min, critical.action),
            (Some(CRITICAL_RISK), RuleAction::RequireApproval)
        );
        assert!(
            default_rules()
                .iter()
                .all(|r| r.priority < critical.priority || r.name == critical.name)
        );
    }

    #[test]
    fn optional_unfamiliar_rule_holds_new_tools_before_trust_rules() {
        let mut configs = default_rules();
        configs.push(unfamiliar_or_elevated_risk());
        let rs = RuleSet::new(&configs).unwrap();
        let names: Vec<&str> = rs.rules().iter().map(Rule::name).collect();
        assert_eq!(
            names,
            [
                "always_approve_critical",
                "unfamiliar_or_elevated_risk",
                "high_trust_low_risk",
                "medium_trust_very_low_risk"
            ]
        );
        let hit = |i: RuleInput<'_>| rs.evaluate(&i).map(|r| r.name().to_owned());
        // A never-seen tool (risk 0.35), even for a high-trust agent and a read-only tool.
        let unfamiliar = RuleInput {
            risk: 0.35,
            tool: "fs_read",
            ..input()
        };
        assert_eq!(
            hit(unfamiliar).as_deref(),
            Some("unfamiliar_or_elevated_risk")
        );
        assert_eq!(
            rs.evaluate(&unfamiliar).unwrap().action(),
            RuleAction::RequireApproval
        );
        // Exactly at the bound it holds; the critical rule still outranks it.
        assert_eq!(
            hit(RuleInput {
                risk: 0.3,
                ..input()
            })
            .as_deref(),
            Some("unfamiliar_or_elevated_risk")
        );
        assert_eq!(
            hit(RuleInput {
                risk: 0.9,
                ..input()
            })
            .as_deref(),
            Some("always_approve_critical")
        );
        // Below it the defaults decide as before.
        assert_eq!(hit(input()).as_deref(), Some("high_trust_low_risk"));
    }

    #[test]
    fn optional_unfamiliar_rule_parses_from_its_documented_form() {
        // The `[[hitl.rules]]` entry in docs/hitl-replay.md, as JSON.
        let r: RuleConfig = serde_json::from_str(
            r#"{"name":"unfamiliar_or_elevated_risk","priority":50,"action":"require_approval",
                "reason":"unfamiliar tool or elevated historical risk: a human must approve",
                "risk_min":0.3}"#,
        )
        .unwrap();
        assert_eq!(r, unfamiliar_or_elevated_risk());
    }

    #[test]
    fn config_parses_with_deny_unknown_fields() {
        let r: RuleConfig = serde_json::from_str(
            r#"{"name":"n","priority":5,"action":"deny","tools":["*drop*"],"hours":"22-06"}"#,
        )
        .unwrap();
        assert_eq!(r.action, RuleAction::Deny);
        let e = serde_json::from_str::<RuleConfig>(r#"{"name":"n","action":"deny","tool":[]}"#)
            .unwrap_err();
        assert!(e.to_string().contains("tool"), "{e}");
    }

    #[test]
    fn hours_parse_and_wrap() {
        assert_eq!(parse_hours("09-17").unwrap(), 0b1111_1111 << 9);
        let night = parse_hours("22-06").unwrap();
        assert!(night & (1 << 23) != 0 && night & (1 << 0) != 0 && night & (1 << 5) != 0);
        assert!(night & (1 << 6) == 0 && night & (1 << 21) == 0);
        assert_eq!(parse_hours("00-24").unwrap(), ALL_HOURS);
        for bad in ["9", "09-09", "25-03", "a-b", "09-17-18", "-1-3", "009-10"] {
            assert!(parse_hours(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_fields_name_rule_and_field() {
        let cases: Vec<(RuleConfig, &str)> = vec![
            (
                RuleConfig {
                    tools: Some(vec!["[oops".into()]),
                    ..rule("g", 0, RuleAction::Deny)
                },
                "tools",
            ),
            (
                RuleConfig {
                    hours: Some("7-7".into()),
                    ..rule("g", 0, RuleAction::Deny)
                },
                "hours",
            ),
            (
                RuleConfig {
                    risk_min: Some(0.6),
                    risk_max: Some(0.2),
                    ..rule("g", 0, RuleAction::Deny)
                },
                "risk_max",
            ),
            (
                RuleConfig {
                    risk_min: Some(f64::NAN),
                    ..rule("g", 0, RuleAction::Deny)
                },
                "risk_min",
            ),
            (
                RuleConfig {
                    trust_levels: Some(vec![]),
                    ..rule("g", 0, RuleAction::Deny)
                },
                "trust_levels",
            ),
            (
                RuleConfig {
                    threat_levels: Some(vec![ThreatLevel::Low]),
                    threat_max: Some(ThreatLevel::Low),
                    ..rule("g", 0, RuleAction::Deny)
                },
                "threat_max",
            ),
            (
                RuleConfig {
                    agents: Some(vec![String::new()]),
                    ..rule("g", 0, RuleAction::Deny)
                },
                "agents",
            ),
        ];
        for (c, field) in cases {
            let e = RuleSet::new(&[c]).unwrap_err();
            match &e {
                RuleError::Invalid { rule, field: f, .. } => {
                    assert_eq!((rule.as_str(), *f), ("g", field), "{e}");
                }
                other => panic!("expected an invalid field, got {other}"),
            }
            assert!(e.to_string().contains("rule \"g\""), "{e}");
        }
    }

    #[test]
    fn duplicates_contradictions_and_unreachable_rules_are_refused() {
        let e = RuleSet::new(&[
            rule("a", 1, RuleAction::Deny),
            rule("a", 2, RuleAction::Deny),
        ])
        .unwrap_err();
        assert!(matches!(e, RuleError::DuplicateName { .. }), "{e}");

        let tools = Some(vec!["db_*".to_owned()]);
        let e = RuleSet::new(&[
            RuleConfig {
                tools: tools.clone(),
                ..rule("x", 1, RuleAction::AutoApprove)
            },
            RuleConfig {
                tools,
                ..rule("y", 9, RuleAction::Deny)
            },
        ])
        .unwrap_err();
        assert!(e.to_string().contains("contradictory"), "{e}");
        assert!(e.to_string().contains("\"x\"") && e.to_string().contains("\"y\""));

        // A broad high-priority rule hides a narrower one.
        let e = RuleSet::new(&[
            RuleConfig {
                tools: Some(vec!["fs_delete".into(), "db_drop".into()]),
                trust_levels: Some(vec![TrustLevel::Low]),
                risk_max: Some(0.2),
                hours: Some("09-17".into()),
                ..rule("narrow", 1, RuleAction::AutoApprove)
            },
            RuleConfig {
                tools: Some(vec!["*delete*".into(), "db_*".into()]),
                trust_levels: Some(vec![TrustLevel::Low, TrustLevel::Untrusted]),
                risk_max: Some(0.5),
                hours: Some("08-18".into()),
                ..rule("broad", 5, RuleAction::RequireApproval)
            },
        ])
        .unwrap_err();
        assert_eq!(
            e,
            RuleError::Unreachable {
                rule: "narrow".into(),
                covered_by: "broad".into()
            }
        );

        // The same rules with the narrow one first are fine.
        let rs = RuleSet::new(&[
            RuleConfig {
                tools: Some(vec!["fs_delete".into()]),
                ..rule("narrow", 5, RuleAction::AutoApprove)
            },
            RuleConfig {
                tools: Some(vec!["*delete*".into()]),
                ..rule("broad", 1, RuleAction::RequireApproval)
            },
        ])
        .unwrap();
        assert_eq!(rs.rules()[0].name(), "narrow");

        // A glob the covering rule cannot be shown to cover is not reported.
        assert!(
            RuleSet::new(&[
                RuleConfig {
                    tools: Some(vec!["fs_*".into()]),
                    ..rule("a", 5, RuleAction::Deny)
                },
                RuleConfig {
                    tools: Some(vec!["fs_del*".into()]),
                    ..rule("b", 1, RuleAction::AutoApprove)
                },
            ])
            .is_ok()
        );
    }

    #[test]
    fn globs_and_hours_match_case_insensitively_in_utc_hours() {
        let rs = RuleSet::new(&[RuleConfig {
            tools: Some(vec!["*DELETE*".into()]),
            agents: Some(vec!["ops-*".into()]),
            hours: Some("22-06".into()),
            ..rule("night_deletes", 1, RuleAction::Deny)
        }])
        .unwrap();
        let at = |tool, hour| RuleInput {
            tool,
            hour,
            ..input()
        };
        assert!(rs.evaluate(&at("fs_delete", 23)).is_some());
        assert!(rs.evaluate(&at("fs_delete", 3)).is_some());
        assert!(rs.evaluate(&at("fs_delete", 12)).is_none());
        assert!(rs.evaluate(&at("fs_read", 23)).is_none());
    }

    #[test]
    fn critical_guard_names_its_reason() {
        assert!(critical_reason(0.79, ThreatLevel::High).is_none());
        assert!(
            critical_reason(0.8, ThreatLevel::None)
                .unwrap()
                .contains("0.80")
        );
        assert!(
            critical_reason(0.0, ThreatLevel::Critical)
                .unwrap()
                .contains("critical")
        );
    }

    fn arb_rule(i: usize) -> impl Strategy<Value = RuleConfig> {
        (
            -3i32..3,
            prop_oneof![
                Just(RuleAction::AutoApprove),
                Just(RuleAction::RequireApproval),
                Just(RuleAction::Deny)
            ],
            proptest::option::of(proptest::sample::subsequence(
                TrustLevel::ALL.to_vec(),
                1..4,
            )),
            proptest::option::of(0.0f64..0.5),
            proptest::option::of(0.5f64..1.0),
            proptest::option::of(proptest::sample::select(ThreatLevel::ALL.to_vec())),
            proptest::option::of(any::<bool>()),
            proptest::option::of(proptest::sample::subsequence(
                vec!["fs_*", "*delete*", "db_drop", "*"],
                1..3,
            )),
            proptest::option::of(proptest::sample::select(vec!["09-17", "22-06", "00-12"])),
        )
            .prop_map(
                move |(p, action, trust, rmin, rmax, tmax, anomalous, tools, hours)| RuleConfig {
                    trust_levels: trust,
                    risk_min: rmin,
                    risk_max: rmax,
                    threat_max: tmax,
                    anomalous,
                    tools: tools.map(|t| t.into_iter().map(String::from).collect()),
                    hours: hours.map(String::from),
                    ..RuleConfig::new(format!("r{i}"), p, action)
                },
            )
    }

    fn arb_input() -> impl Strategy<Value = (TrustLevel, f64, ThreatLevel, bool, usize, u8)> {
        (
            proptest::sample::select(TrustLevel::ALL.to_vec()),
            0.0f64..=1.0,
            proptest::sample::select(ThreatLevel::ALL.to_vec()),
            any::<bool>(),
            0usize..4,
            0u8..24,
        )
    }

    proptest! {
        /// The first match is the matching rule with the highest priority, earliest in the
        /// file among equals; and a validated set never holds an unreachable rule that the
        /// checker could prove unreachable (each rule fires for some input it matches).
        #[test]
        fn highest_priority_match_wins(
            rules in (0usize..6).prop_flat_map(|n| {
                (0..n).map(arb_rule).collect::<Vec<_>>()
            }),
            inputs in proptest::collection::vec(arb_input(), 1..20),
        ) {
            let Ok(rs) = RuleSet::new(&rules) else { return Ok(()); };
            let tools = ["fs_read", "fs_delete", "db_drop", "http_get"];
            for (trust, risk, threat, anomalous, t, hour) in inputs {
                let i = RuleInput { trust, risk, threat, anomalous, tool: tools[t], agent: "a", hour };
                let compiled: Vec<&Rule> = rules
                    .iter()
                    .map(|c| rs.rules().iter().find(|r| r.name() == c.name).unwrap())
                    .collect();
                let expected = compiled
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.matches(&i))
                    .max_by_key(|(idx, r)| (r.priority(), std::cmp::Reverse(*idx)))
                    .map(|(_, r)| r.name().to_owned());
                prop_assert_eq!(rs.evaluate(&i).map(|r| r.name().to_owned()), expected);
            }
        }

        /// When the checker says `a` covers `b`, every input `b` matches, `a` matches.
        #[test]
        fn coverage_is_sound(a in arb_rule(0), b in arb_rule(1), inputs in proptest::collection::vec(arb_input(), 1..40)) {
            let (ra, rb) = (Rule::from_config(&a), Rule::from_config(&b));
            let (Ok(ra), Ok(rb)) = (ra, rb) else { return Ok(()); };
            if ra.cond.covers(&rb.cond) {
                let tools = ["fs_read", "fs_delete", "db_drop", "http_get"];
                for (trust, risk, threat, anomalous, t, hour) in inputs {
                    let i = RuleInput { trust, risk, threat, anomalous, tool: tools[t], agent: "a", hour };
                    prop_assert!(!rb.matches(&i) || ra.matches(&i));
                }
            }
        }
    }
}
