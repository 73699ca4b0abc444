//! The merged tool catalogue: every upstream's tools/list, names made unique by prefix,
//! each tool routed to its upstream with its compiled inputSchema.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::value::RawValue;

use crate::config::{PrefixMode, ToolNaming};
use crate::jsonrpc;
use crate::pipeline::validate::Schema;

/// One tool as the agents see it.
#[derive(Debug, Clone)]
pub struct ToolEntry {
    /// The client-facing name.
    pub name: String,
    pub upstream: usize,
    pub upstream_name: String,
    /// The name at the upstream.
    pub upstream_tool: String,
    /// The tool definition, with `name` rewritten when prefixed; all else byte for byte.
    pub raw: Box<RawValue>,
    pub schema: Option<Schema>,
}

/// The catalogue.
#[derive(Debug, Default)]
pub struct Catalog {
    pub tools: Vec<ToolEntry>,
    /// Tools (as their upstreams name them) withheld because their definition failed
    /// inspection: never listed, and calls to them are refused.
    pub hidden: std::collections::HashSet<String>,
    by_name: HashMap<String, usize>,
}

/// One upstream's tools.
#[derive(Clone, Debug)]
pub struct UpstreamTools {
    pub index: usize,
    pub name: String,
    pub tools: Vec<Box<RawValue>>,
}

pub(crate) fn tool_name(raw: &RawValue) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct T {
        name: String,
    }
    serde_json::from_str::<T>(raw.get()).ok().map(|t| t.name)
}

fn input_schema(raw: &RawValue) -> Option<serde_json::Value> {
    #[derive(serde::Deserialize)]
    struct T {
        #[serde(rename = "inputSchema")]
        schema: Option<serde_json::Value>,
    }
    serde_json::from_str::<T>(raw.get())
        .ok()
        .and_then(|t| t.schema)
}

impl Catalog {
    pub fn build(per_upstream: Vec<UpstreamTools>, naming: &ToolNaming) -> Self {
        let mut count: HashMap<String, usize> = HashMap::new();
        for u in &per_upstream {
            for t in &u.tools {
                if let Some(n) = tool_name(t) {
                    *count.entry(n).or_default() += 1;
                }
            }
        }
        let mut cat = Catalog::default();
        for u in per_upstream {
            for raw in u.tools {
                let Some(orig) = tool_name(&raw) else {
                    tracing::warn!(upstream = %u.name, "tool without a name ignored");
                    continue;
                };
                let prefixed = naming.prefix == PrefixMode::Always || count[&orig] > 1;
                let name = if prefixed {
                    format!("{}{}{}", u.name, naming.separator, orig)
                } else {
                    orig.clone()
                };
                if cat.by_name.contains_key(&name) {
                    tracing::warn!(tool = %name, "duplicate tool name after prefixing; later one ignored");
                    continue;
                }
                let raw = if prefixed {
                    rename(&raw, &name).unwrap_or(raw)
                } else {
                    raw
                };
                let schema = input_schema(&raw).and_then(|s| Schema::compile(&name, &s));
                cat.by_name.insert(name.clone(), cat.tools.len());
                cat.tools.push(ToolEntry {
                    name,
                    upstream: u.index,
                    upstream_name: u.name.clone(),
                    upstream_tool: orig,
                    raw,
                    schema,
                });
            }
        }
        cat
    }

    pub fn get(&self, name: &str) -> Option<&ToolEntry> {
        self.by_name.get(name).map(|&i| &self.tools[i])
    }
}

fn rename(raw: &RawValue, name: &str) -> Option<Box<RawValue>> {
    let fields = jsonrpc::object_fields(raw.get())?;
    let new = serde_json::value::to_raw_value(name).ok()?;
    let fields: Vec<(String, Box<RawValue>)> = fields
        .into_iter()
        .map(|(k, v)| {
            if k == "name" {
                (k, new.clone())
            } else {
                (k, v)
            }
        })
        .collect();
    RawValue::from_string(String::from_utf8(jsonrpc::encode_object(&fields)).ok()?).ok()
}

/// A shared, swappable catalogue.
pub type SharedCatalog = std::sync::RwLock<Arc<Catalog>>;

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    #[test]
    fn collisions_get_prefixes_and_unknown_fields_stay() {
        let cat = Catalog::build(
            vec![
                UpstreamTools {
                    index: 0,
                    name: "a".into(),
                    tools: vec![
                        raw(
                            r#"{"name":"echo","x-extra":{"k":1e400},"inputSchema":{"type":"object"}}"#,
                        ),
                        raw(r#"{"name":"only_a"}"#),
                    ],
                },
                UpstreamTools {
                    index: 1,
                    name: "b".into(),
                    tools: vec![raw(r#"{"name":"echo"}"#)],
                },
            ],
            &ToolNaming::default(),
        );
        let names: Vec<_> = cat.tools.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a__echo", "only_a", "b__echo"]);
        let e = cat.get("a__echo").unwrap();
        assert_eq!(e.upstream_tool, "echo");
        assert_eq!(
            e.raw.get(),
            r#"{"name":"a__echo","x-extra":{"k":1e400},"inputSchema":{"type":"object"}}"#
        );
        assert!(e.schema.is_some());
        assert_eq!(cat.get("b__echo").unwrap().upstream, 1);
        let always = Catalog::build(
            vec![UpstreamTools {
                index: 0,
                name: "a".into(),
                tools: vec![raw(r#"{"name":"t"}"#)],
            }],
            &ToolNaming {
                prefix: PrefixMode::Always,
                separator: ".".into(),
            },
        );
        assert!(always.get("a.t").is_some());
    }
}
