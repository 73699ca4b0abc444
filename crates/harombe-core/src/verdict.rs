//! What harombe decided about a call, and how threatening it looked.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Threat levels, ordered `None < Low < Medium < High < Critical`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ThreatLevel {
    None,
    Low,
    Medium,
    High,
    Critical,
}

impl ThreatLevel {
    pub const ALL: [ThreatLevel; 5] = [
        ThreatLevel::None,
        ThreatLevel::Low,
        ThreatLevel::Medium,
        ThreatLevel::High,
        ThreatLevel::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ThreatLevel::None => "none",
            ThreatLevel::Low => "low",
            ThreatLevel::Medium => "medium",
            ThreatLevel::High => "high",
            ThreatLevel::Critical => "critical",
        }
    }

    /// 0 (none) to 4 (critical): the value stores index and compare.
    pub fn rank(self) -> u8 {
        self as u8
    }

    pub fn from_rank(rank: u8) -> Option<Self> {
        Self::ALL.get(usize::from(rank)).copied()
    }
}

impl fmt::Display for ThreatLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for ThreatLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|l| l.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!("unknown threat level {s:?} (none, low, medium, high, critical)")
            })
    }
}

/// The three outcomes of a decision. A hold or a deny is a normal decision, not an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Allow,
    Hold,
    Deny,
}

impl Decision {
    pub const ALL: [Decision; 3] = [Decision::Allow, Decision::Hold, Decision::Deny];

    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Hold => "hold",
            Decision::Deny => "deny",
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Decision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|d| d.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown verdict {s:?} (allow, hold, deny)"))
    }
}

/// A decision with the reasons that led to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Verdict {
    pub decision: Decision,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
}

impl Verdict {
    pub fn allow() -> Self {
        Self {
            decision: Decision::Allow,
            reasons: Vec::new(),
        }
    }

    pub fn deny(reason: impl Into<String>) -> Self {
        Self {
            decision: Decision::Deny,
            reasons: vec![reason.into()],
        }
    }

    pub fn hold(reason: impl Into<String>) -> Self {
        Self {
            decision: Decision::Hold,
            reasons: vec![reason.into()],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threat_levels_are_ordered_and_round_trip() {
        let mut shuffled = [
            ThreatLevel::High,
            ThreatLevel::None,
            ThreatLevel::Critical,
            ThreatLevel::Low,
            ThreatLevel::Medium,
        ];
        shuffled.sort();
        assert_eq!(shuffled, ThreatLevel::ALL);
        for l in ThreatLevel::ALL {
            assert_eq!(ThreatLevel::from_rank(l.rank()), Some(l));
            assert_eq!(l.as_str().parse::<ThreatLevel>().unwrap(), l);
            let json = serde_json::to_string(&l).unwrap();
            assert_eq!(json, format!("\"{}\"", l.as_str()));
        }
        assert_eq!(ThreatLevel::from_rank(5), None);
        assert!("severe".parse::<ThreatLevel>().is_err());
    }

    #[test]
    fn decisions_parse() {
        for d in Decision::ALL {
            assert_eq!(d.as_str().parse::<Decision>().unwrap(), d);
        }
        assert!("maybe".parse::<Decision>().is_err());
    }
}
