//! The JSON API the gateway calls: scan every string leaf of a `serde_json::Value`
//! (reporting RFC 6901 JSON pointers) and redact findings in place.

use serde::Serialize;
use serde_json::Value;

use super::engine::Scanner;
use super::finding::Finding;

/// A finding inside a JSON document: `finding.span` is a byte range of the string at
/// `pointer` (the unescaped string value, not the JSON text).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct JsonFinding {
    /// RFC 6901 pointer to the string leaf, e.g. `/params/arguments/token`.
    pub pointer: String,
    /// The finding, with offsets relative to that string.
    pub finding: Finding,
}

impl std::fmt::Display for JsonFinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.pointer, self.finding)
    }
}

fn escape_token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

impl Scanner {
    /// Scans every string leaf of `value` (object keys are not scanned).
    pub fn scan_json(&self, value: &Value) -> Vec<JsonFinding> {
        let mut out = Vec::new();
        let mut pointer = String::new();
        walk(value, &mut pointer, &mut |ptr, s| {
            for finding in self.scan_bytes(s.as_bytes()) {
                out.push(JsonFinding {
                    pointer: ptr.to_owned(),
                    finding,
                });
            }
        });
        out
    }

    /// Scans `value` and replaces every finding's bytes with `[REDACTED:<rule-id>]` in
    /// place. Returns the findings (offsets refer to the strings before redaction).
    /// Findings under compression cannot be cut out byte-wise, so their whole string is
    /// replaced.
    pub fn redact_json(&self, value: &mut Value) -> Vec<JsonFinding> {
        let mut out = Vec::new();
        let mut pointer = String::new();
        walk_mut(value, &mut pointer, &mut |ptr, s| {
            let findings = self.scan_bytes(s.as_bytes());
            if findings.is_empty() {
                return;
            }
            *s = redact_str(s, &findings);
            out.extend(findings.into_iter().map(|finding| JsonFinding {
                pointer: ptr.to_owned(),
                finding,
            }));
        });
        out
    }
}

/// Replaces each finding's `span` in `data` with `[REDACTED:<rule-id>]` (overlapping spans
/// merge; the first rule id names the merged marker). Spans past the end are clamped.
pub fn redact_bytes(data: &[u8], findings: &[Finding]) -> Vec<u8> {
    let compressed = findings.iter().any(|f| {
        f.encodings
            .first()
            .is_some_and(|e| matches!(e, super::Encoding::Gzip | super::Encoding::Deflate))
    });
    if compressed {
        let id = &findings[0].rule_id;
        return format!("[REDACTED:{id}]").into_bytes();
    }
    let mut spans: Vec<(usize, usize, &str)> = findings
        .iter()
        .map(|f| {
            let r = f.span.range();
            (
                r.start.min(data.len()),
                r.end.min(data.len()),
                f.rule_id.as_str(),
            )
        })
        .collect();
    spans.sort_by_key(|s| (s.0, std::cmp::Reverse(s.1)));
    let mut out = Vec::with_capacity(data.len());
    let mut pos = 0;
    for (start, end, id) in spans {
        if end <= pos {
            continue;
        }
        let start = start.max(pos);
        out.extend_from_slice(&data[pos..start]);
        out.extend_from_slice(format!("[REDACTED:{id}]").as_bytes());
        pos = end;
    }
    out.extend_from_slice(&data[pos..]);
    out
}

fn redact_str(s: &str, findings: &[Finding]) -> String {
    String::from_utf8_lossy(&redact_bytes(s.as_bytes(), findings)).into_owned()
}

fn walk(value: &Value, pointer: &mut String, f: &mut dyn FnMut(&str, &str)) {
    match value {
        Value::String(s) => f(pointer, s),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&i.to_string());
                walk(item, pointer, f);
                pointer.truncate(len);
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&escape_token(k));
                walk(item, pointer, f);
                pointer.truncate(len);
            }
        }
        _ => {}
    }
}

fn walk_mut(value: &mut Value, pointer: &mut String, f: &mut dyn FnMut(&str, &mut String)) {
    match value {
        Value::String(s) => f(pointer, s),
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&i.to_string());
                walk_mut(item, pointer, f);
                pointer.truncate(len);
            }
        }
        Value::Object(map) => {
            for (k, item) in map.iter_mut() {
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&escape_token(k));
                walk_mut(item, pointer, f);
                pointer.truncate(len);
            }
        }
        _ => {}
    }
}
