//! Which findings block, redact or only log: a tag-based policy the gateway loads from its
//! configuration (`[inspect]` table; unknown fields are errors).

use serde::{Deserialize, Serialize};

use super::finding::Finding;

/// What to do about a finding. Ordered: a stronger action wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Nothing to do.
    Allow,
    /// Record in the audit log.
    Log,
    /// Replace the bytes with `[REDACTED:<rule-id>]` and continue.
    Redact,
    /// Refuse the call / response.
    Block,
}

/// Tag → action mapping. A finding gets the strongest action any of its tags (or its
/// rule id) is listed under, else `default`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InspectPolicy {
    /// Tags or rule ids that block.
    pub block: Vec<String>,
    /// Tags or rule ids that redact.
    pub redact: Vec<String>,
    /// Tags or rule ids that are logged.
    pub log: Vec<String>,
    /// Action for findings none of the lists mention.
    pub default: Action,
}

impl Default for InspectPolicy {
    /// Block decompression bombs and private keys, redact other secrets and PII, log
    /// injection markers.
    fn default() -> Self {
        let s = |v: &[&str]| v.iter().map(|t| (*t).to_owned()).collect();
        Self {
            block: s(&["decompression-bomb", "private-key"]),
            redact: s(&["secret", "pii"]),
            log: s(&["injection"]),
            default: Action::Log,
        }
    }
}

impl InspectPolicy {
    /// The action for one finding.
    pub fn action_for(&self, finding: &Finding) -> Action {
        let listed = |list: &[String]| {
            list.iter()
                .any(|t| *t == finding.rule_id || finding.tags.iter().any(|ft| ft == t))
        };
        if listed(&self.block) {
            Action::Block
        } else if listed(&self.redact) {
            Action::Redact
        } else if listed(&self.log) {
            Action::Log
        } else {
            self.default
        }
    }

    /// The strongest action over `findings` (`Allow` when there are none).
    pub fn decide<'a>(&self, findings: impl IntoIterator<Item = &'a Finding>) -> Action {
        findings
            .into_iter()
            .map(|f| self.action_for(f))
            .max()
            .unwrap_or(Action::Allow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_rejected() {
        let err = toml::from_str::<InspectPolicy>("blok = [\"secret\"]").unwrap_err();
        assert!(err.to_string().contains("blok"), "{err}");
        let p: InspectPolicy = toml::from_str("block = [\"secret\"]\ndefault = \"allow\"").unwrap();
        assert_eq!(p.block, vec!["secret"]);
        assert_eq!(
            p.redact,
            InspectPolicy::default().redact,
            "omitted lists keep defaults"
        );
        assert_eq!(p.default, Action::Allow);
    }
}
