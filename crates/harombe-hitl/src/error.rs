//! The crate's errors: bad configuration (named by field and rule) and store failures
//! while loading history (named by what was being loaded).

use harombe_core::StoreError;

/// Why a rule set was refused. Every variant names the rule(s) involved.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RuleError {
    /// A field of one rule is invalid.
    #[error("rule {rule:?}: {field}: {problem}")]
    Invalid {
        rule: String,
        field: &'static str,
        problem: String,
    },
    /// Two rules share a name.
    #[error("rule name {name:?} is used by rules #{first} and #{second}; names must be unique")]
    DuplicateName {
        name: String,
        first: usize,
        second: usize,
    },
    /// Two rules have identical conditions and different actions.
    #[error(
        "rules {first:?} ({first_action}) and {second:?} ({second_action}) have identical \
         conditions but different actions: contradictory"
    )]
    Contradictory {
        first: String,
        first_action: &'static str,
        second: String,
        second_action: &'static str,
    },
    /// A rule's conditions are covered by a rule evaluated before it: it can never fire.
    #[error(
        "rule {rule:?} is unreachable: every call it matches is matched first by {covered_by:?} \
         (same or higher priority, earlier in evaluation order)"
    )]
    Unreachable { rule: String, covered_by: String },
}

/// Errors of the HITL engine.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum HitlError {
    #[error("hitl rules: {0}")]
    Rule(#[from] RuleError),
    /// A configuration field outside the rules is invalid.
    #[error("hitl config: {field}: {problem}")]
    Config {
        field: &'static str,
        problem: String,
    },
    /// The audit store failed while loading history.
    #[error("loading {what} from the audit store: {source}")]
    Store {
        what: String,
        #[source]
        source: StoreError,
    },
}

impl HitlError {
    /// A short, stable label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            HitlError::Rule(_) => "invalid_rule",
            HitlError::Config { .. } => "invalid_config",
            HitlError::Store { .. } => "store",
        }
    }

    /// Whether trying again later may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            HitlError::Store { source, .. } => source.is_retriable(),
            _ => false,
        }
    }

    pub(crate) fn config(field: &'static str, problem: impl Into<String>) -> Self {
        HitlError::Config {
            field,
            problem: problem.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_what_and_where() {
        let e = HitlError::from(RuleError::Unreachable {
            rule: "b".into(),
            covered_by: "a".into(),
        });
        assert!(e.to_string().contains("\"b\" is unreachable"), "{e}");
        assert_eq!(e.reason(), "invalid_rule");
        assert!(!e.is_retriable());
        let e = HitlError::Store {
            what: "risk history of tool \"fs.delete\"".into(),
            source: StoreError::QueueFull { capacity: 1 },
        };
        assert!(e.to_string().contains("fs.delete"), "{e}");
        assert!(e.is_retriable());
    }
}
