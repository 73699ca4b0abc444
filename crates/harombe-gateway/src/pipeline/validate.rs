//! Stage 3: arguments against the tool's `inputSchema` (compiled once per catalog refresh;
//! no remote `$ref` is ever fetched).

use std::sync::Arc;

use crate::error::GatewayError;

/// A compiled inputSchema.
#[derive(Clone)]
pub struct Schema(Arc<jsonschema::Validator>);

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Schema")
    }
}

impl Schema {
    /// Compiles a schema; `None` (with a warning) when it is not a usable schema, in which
    /// case calls are forwarded unvalidated rather than refused.
    pub fn compile(tool: &str, schema: &serde_json::Value) -> Option<Self> {
        match jsonschema::options().build(schema) {
            Ok(v) => Some(Self(Arc::new(v))),
            Err(e) => {
                tracing::warn!(tool, error = %e, "tool inputSchema does not compile; arguments not validated");
                None
            }
        }
    }

    /// Validates; the error names the failing path and the schema keyword it fails, never
    /// the value (arguments may hold secrets, and the message reaches the audit log).
    pub fn validate(&self, args: &serde_json::Value) -> Result<(), GatewayError> {
        if self.0.is_valid(args) {
            return Ok(());
        }
        let errors: Vec<String> = self
            .0
            .iter_errors(args)
            .take(3)
            .map(|e| describe(&e))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(GatewayError::InvalidParams(errors.join("; ")))
        }
    }
}

/// One validation error without the instance value: where, and which rule of the schema.
fn describe(e: &jsonschema::ValidationError<'_>) -> String {
    let at = e.instance_path().to_string();
    let at = if at.is_empty() { "arguments" } else { &at };
    match e.kind() {
        jsonschema::error::ValidationErrorKind::Required { property } => {
            // The property name comes from the schema.
            format!("{at}: missing required property {property}")
        }
        kind => format!(
            "{at}: fails `{}` (schema {})",
            kind.keyword(),
            e.schema_path()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn validates_and_names_the_path() {
        let s = Schema::compile(
            "t",
            &json!({"type":"object","properties":{"n":{"type":"integer"}},"required":["n"]}),
        )
        .unwrap();
        assert!(s.validate(&json!({"n": 3})).is_ok());
        let e = s.validate(&json!({"n": "ghp_secretvalue"})).unwrap_err();
        assert_eq!(e.code(), -32602);
        let m = e.to_string();
        assert!(
            m.contains("/n: fails `type` (schema /properties/n/type)"),
            "{m}"
        );
        assert!(
            !m.contains("ghp_secretvalue"),
            "the value never appears: {m}"
        );
        let m = s.validate(&json!({})).unwrap_err().to_string();
        assert!(m.contains("missing required property \"n\""), "{m}");
        assert!(Schema::compile("bad", &json!({"type": 12})).is_none());
    }
}
