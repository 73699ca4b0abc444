//! The JSON-RPC 2.0 codec. Messages are kept as their top-level fields with *raw* values
//! (`serde_json::value::RawValue`), so everything the gateway does not look at —
//! unknown methods, unknown fields, `_meta`, huge numbers — is forwarded byte for byte.
//! Only the `id` is ever rewritten (requests multiplexed onto a shared upstream).
//!
//! Nesting depth is checked by a linear scan *before* serde sees the input, so a
//! 10,000-deep document costs one pass and never recurses.

use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::GatewayError;

/// What a message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Request,
    Notification,
    Response,
}

/// One decoded JSON-RPC message.
#[derive(Clone)]
pub struct Message {
    fields: Vec<(String, Box<RawValue>)>,
    kind: Kind,
    method: Option<String>,
    id_at: Option<usize>,
    params_at: Option<usize>,
}

impl fmt::Debug for Message {
    // Arguments may hold secrets: Debug shows the shape, never the params.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("kind", &self.kind)
            .field("method", &self.method)
            .field("id", &self.id().map(RawValue::get))
            .finish_non_exhaustive()
    }
}

/// A decoded body: one message or a batch. Each batch element decodes on its own, so one
/// bad element does not spoil the others.
#[derive(Debug)]
pub enum Incoming {
    Single(Result<Message, Invalid>),
    Batch(Vec<Result<Message, Invalid>>),
}

/// A message that could not be accepted, with the id to answer to when one was readable.
#[derive(Debug)]
pub struct Invalid {
    pub id: Option<Box<RawValue>>,
    pub error: GatewayError,
}

struct Fields(Vec<(String, Box<RawValue>)>, Option<String>);

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Fields;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON-RPC message object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
                let mut out: Vec<(String, Box<RawValue>)> = Vec::new();
                let mut dup = None;
                while let Some((k, v)) = map.next_entry::<String, Box<RawValue>>()? {
                    if dup.is_none() && out.iter().any(|(seen, _)| *seen == k) {
                        dup = Some(k.clone());
                    }
                    out.push((k, v));
                }
                Ok(Fields(out, dup))
            }
        }
        d.deserialize_map(V)
    }
}

/// Checks nesting depth without recursion. Errors name the byte offset.
pub fn check_depth(bytes: &[u8], max: usize) -> Result<(), GatewayError> {
    let mut depth = 0usize;
    let mut in_str = false;
    let mut esc = false;
    for (i, &b) in bytes.iter().enumerate() {
        if in_str {
            if esc {
                esc = false;
            } else if b == b'\\' {
                esc = true;
            } else if b == b'"' {
                in_str = false;
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Err(GatewayError::ResourceLimit(format!(
                        "JSON nesting deeper than {max} levels at byte {i}"
                    )));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

fn parse_error(bytes: &[u8], e: &serde_json::Error) -> GatewayError {
    // serde_json reports line/column; turn that into a byte offset.
    let mut offset = 0usize;
    let mut line = 1usize;
    for (i, &b) in bytes.iter().enumerate() {
        if line == e.line() {
            offset = i + e.column().saturating_sub(1);
            break;
        }
        if b == b'\n' {
            line += 1;
        }
    }
    let mut problem = e.to_string();
    if let Some(cut) = problem.find(" at line ") {
        problem.truncate(cut);
    }
    GatewayError::Parse {
        offset: offset.min(bytes.len()),
        problem,
    }
}

/// Decodes a body: depth check, then one message or a batch.
pub fn decode(bytes: &[u8], max_depth: usize) -> Result<Incoming, GatewayError> {
    check_depth(bytes, max_depth)?;
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace()).copied();
    if first == Some(b'[') {
        let items: Vec<Box<RawValue>> =
            serde_json::from_slice(bytes).map_err(|e| parse_error(bytes, &e))?;
        if items.is_empty() {
            return Err(GatewayError::InvalidRequest("empty batch".into()));
        }
        let mut out: Vec<Result<Message, Invalid>> =
            items.iter().map(|r| Message::from_raw(r)).collect();
        // Duplicate request ids inside one batch cannot be answered unambiguously.
        let mut seen: Vec<String> = Vec::new();
        for item in &mut out {
            let dup = match item {
                Ok(m) if m.kind == Kind::Request => {
                    let id = m.id().map(|i| i.get().to_owned()).unwrap_or_default();
                    let d = seen.contains(&id);
                    seen.push(id);
                    d
                }
                _ => false,
            };
            if dup && let Ok(m) = item {
                let id = m.id().map(ToOwned::to_owned);
                *item = Err(Invalid {
                    error: GatewayError::InvalidRequest(format!(
                        "duplicate id {} in batch",
                        id.as_deref().map(RawValue::get).unwrap_or("null")
                    )),
                    id,
                });
            }
        }
        Ok(Incoming::Batch(out))
    } else {
        // An object (nearly every body) is read into its members in one pass; anything
        // else, or a parse error, takes the two-step path that names the problem.
        if first == Some(b'{')
            && let Ok(f) = serde_json::from_slice::<Fields>(bytes)
        {
            return Ok(Incoming::Single(Message::from_fields(f)));
        }
        let raw: Box<RawValue> =
            serde_json::from_slice(bytes).map_err(|e| parse_error(bytes, &e))?;
        Ok(Incoming::Single(Message::from_raw(&raw)))
    }
}

/// Decodes exactly one message (stdio lines, upstream responses).
pub fn decode_one(bytes: &[u8], max_depth: usize) -> Result<Message, Invalid> {
    let wrap = |error| Invalid { id: None, error };
    check_depth(bytes, max_depth).map_err(wrap)?;
    if bytes.first() == Some(&b'{')
        && let Ok(f) = serde_json::from_slice::<Fields>(bytes)
    {
        return Message::from_fields(f);
    }
    let raw: Box<RawValue> =
        serde_json::from_slice(bytes).map_err(|e| wrap(parse_error(bytes, &e)))?;
    Message::from_raw(&raw)
}

fn valid_id(raw: &RawValue) -> bool {
    let s = raw.get();
    match s.as_bytes().first() {
        Some(b'"') => true,
        Some(b'-' | b'0'..=b'9') => !s.contains(['.', 'e', 'E']),
        _ => false,
    }
}

impl Message {
    /// Validates one raw JSON value as a JSON-RPC 2.0 message.
    pub fn from_raw(raw: &RawValue) -> Result<Message, Invalid> {
        let invalid = |id: Option<Box<RawValue>>, why: String| Invalid {
            id,
            error: GatewayError::InvalidRequest(why),
        };
        let f = serde_json::from_str(raw.get())
            .map_err(|_| invalid(None, "a JSON-RPC message must be an object".into()))?;
        Self::from_fields(f)
    }

    /// Validates the members of one JSON object as a JSON-RPC 2.0 message.
    fn from_fields(Fields(fields, dup): Fields) -> Result<Message, Invalid> {
        let invalid = |id: Option<Box<RawValue>>, why: String| Invalid {
            id,
            error: GatewayError::InvalidRequest(why),
        };
        let pos = |k: &str| fields.iter().position(|(n, _)| n == k);
        let id_at = pos("id");
        let id = id_at.map(|i| fields[i].1.clone());
        let id = id.filter(|i| valid_id(i));
        if let Some(k) = dup {
            return Err(invalid(id, format!("duplicate member {k:?}")));
        }
        match pos("jsonrpc").map(|i| fields[i].1.get()) {
            Some("\"2.0\"") => {}
            Some(other) => {
                return Err(invalid(
                    id,
                    format!("\"jsonrpc\" must be \"2.0\", not {other}"),
                ));
            }
            None => return Err(invalid(id, "missing \"jsonrpc\": \"2.0\"".into())),
        }
        if let Some(i) = id_at
            && !valid_id(&fields[i].1)
        {
            return Err(invalid(
                None,
                format!(
                    "\"id\" must be a string or an integer, not {}",
                    truncate(fields[i].1.get(), 40)
                ),
            ));
        }
        let method = match pos("method") {
            Some(i) => Some(
                serde_json::from_str::<String>(fields[i].1.get())
                    .map_err(|_| invalid(id.clone(), "\"method\" must be a string".into()))?,
            ),
            None => None,
        };
        let params_at = pos("params");
        if let Some(p) = params_at {
            let b = fields[p].1.get().as_bytes().first();
            if !matches!(b, Some(b'{' | b'[')) {
                return Err(invalid(
                    id,
                    "\"params\" must be an object or an array".into(),
                ));
            }
        }
        let kind = match (&method, id_at) {
            (Some(_), Some(_)) => Kind::Request,
            (Some(m), None) if m.starts_with("notifications/") => Kind::Notification,
            (Some(m), None) => {
                return Err(invalid(None, format!("request {m:?} has no \"id\"")));
            }
            (None, Some(_)) => {
                let has = |k| pos(k).is_some();
                if has("result") == has("error") {
                    return Err(invalid(
                        id,
                        "a response needs exactly one of \"result\" and \"error\"".into(),
                    ));
                }
                Kind::Response
            }
            (None, None) => {
                return Err(invalid(
                    None,
                    "message has neither \"method\" nor \"id\"".into(),
                ));
            }
        };
        Ok(Message {
            fields,
            kind,
            method,
            id_at,
            params_at,
        })
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn method(&self) -> Option<&str> {
        self.method.as_deref()
    }

    pub fn id(&self) -> Option<&RawValue> {
        self.id_at.map(|i| &*self.fields[i].1)
    }

    pub fn params(&self) -> Option<&RawValue> {
        self.params_at.map(|i| &*self.fields[i].1)
    }

    /// A top-level member by name.
    pub fn field(&self, name: &str) -> Option<&RawValue> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| &**v)
    }

    /// The params parsed into `T` (`None` when absent).
    pub fn params_as<'a, T: Deserialize<'a>>(&'a self) -> Result<Option<T>, GatewayError> {
        match self.params() {
            None => Ok(None),
            Some(p) => serde_json::from_str(p.get())
                .map(Some)
                .map_err(|e| GatewayError::InvalidParams(e.to_string())),
        }
    }

    /// A copy with one member of `params` replaced (everything else byte for byte).
    pub fn with_param(&self, key: &str, value: &RawValue) -> Result<Message, GatewayError> {
        let raw = self
            .params()
            .and_then(|p| with_member(p.get(), key, value))
            .ok_or_else(|| GatewayError::InvalidParams("params must be an object".into()))?;
        let mut m = self.clone();
        if let Some(i) = m.params_at {
            m.fields[i].1 = raw;
        }
        Ok(m)
    }

    /// A copy with the top-level member `name` (`params`, `result`) replaced as a whole,
    /// every other member byte for byte.
    pub fn with_field(&self, name: &str, value: &RawValue) -> Result<Message, GatewayError> {
        let i = self
            .fields
            .iter()
            .position(|(k, _)| k == name)
            .ok_or_else(|| GatewayError::InvalidParams(format!("the message has no {name}")))?;
        let mut m = self.clone();
        m.fields[i].1 = value.to_owned();
        Ok(m)
    }

    /// Re-encodes the message; unknown members and all values are kept byte for byte.
    pub fn encode(&self) -> Vec<u8> {
        self.encode_with(None)
    }

    /// Re-encodes the message with another id (for multiplexing).
    pub fn encode_with_id(&self, id: &RawValue) -> Vec<u8> {
        self.encode_with(Some(id))
    }

    fn encode_with(&self, id: Option<&RawValue>) -> Vec<u8> {
        let len: usize = self
            .fields
            .iter()
            .map(|(k, v)| k.len() + v.get().len() + 4)
            .sum();
        let mut out = Vec::with_capacity(len + 16);
        out.push(b'{');
        for (n, (k, v)) in self.fields.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            // Keys came from JSON; serde_json re-escapes them exactly.
            let _ = serde_json::to_writer(&mut out, k);
            out.push(b':');
            let v = match (id, Some(n) == self.id_at) {
                (Some(new), true) => new.get(),
                _ => v.get(),
            };
            out.extend_from_slice(v.as_bytes());
        }
        out.push(b'}');
        out
    }
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The top-level members of a JSON object, values raw (`None` if not an object).
pub fn object_fields(json: &str) -> Option<Vec<(String, Box<RawValue>)>> {
    serde_json::from_str::<Fields>(json).ok().map(|f| f.0)
}

/// The object `json` with its member `key` (when present) replaced by `value`, every other
/// member byte for byte; `None` when `json` is not an object.
pub fn with_member(json: &str, key: &str, value: &RawValue) -> Option<Box<RawValue>> {
    let fields: Vec<(String, Box<RawValue>)> = object_fields(json)?
        .into_iter()
        .map(|(k, v)| {
            if k == key {
                (k, value.to_owned())
            } else {
                (k, v)
            }
        })
        .collect();
    RawValue::from_string(String::from_utf8(encode_object(&fields)).ok()?).ok()
}

/// Encodes members as an object, values byte for byte.
pub fn encode_object(fields: &[(String, Box<RawValue>)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.push(b'{');
    for (n, (k, v)) in fields.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        let _ = serde_json::to_writer(&mut out, k);
        out.push(b':');
        out.extend_from_slice(v.get().as_bytes());
    }
    out.push(b'}');
    out
}

/// A raw id from an integer.
pub fn int_id(n: u64) -> Box<RawValue> {
    RawValue::from_string(n.to_string()).unwrap_or_else(|_| null())
}

/// The raw `null`.
pub fn null() -> Box<RawValue> {
    RawValue::from_string("null".to_owned()).unwrap_or_else(|_| unreachable_null())
}

fn unreachable_null() -> Box<RawValue> {
    serde_json::value::to_raw_value(&serde_json::Value::Null).unwrap_or_default()
}

/// A success response with a serialisable result.
pub fn result<T: Serialize>(id: &RawValue, result: &T) -> Vec<u8> {
    #[derive(Serialize)]
    struct R<'a, T> {
        jsonrpc: &'static str,
        id: &'a RawValue,
        result: &'a T,
    }
    serde_json::to_vec(&R {
        jsonrpc: "2.0",
        id,
        result,
    })
    .unwrap_or_default()
}

/// An error response with a given error object.
pub fn error<T: Serialize>(id: &RawValue, error: &T) -> Vec<u8> {
    #[derive(Serialize)]
    struct E<'a, T> {
        jsonrpc: &'static str,
        id: &'a RawValue,
        error: &'a T,
    }
    serde_json::to_vec(&E {
        jsonrpc: "2.0",
        id,
        error,
    })
    .unwrap_or_default()
}

/// A request built by the gateway itself (to upstreams).
pub fn request<T: Serialize>(id: u64, method: &str, params: &T) -> Vec<u8> {
    #[derive(Serialize)]
    struct R<'a, T> {
        jsonrpc: &'static str,
        id: u64,
        method: &'a str,
        params: &'a T,
    }
    serde_json::to_vec(&R {
        jsonrpc: "2.0",
        id,
        method,
        params,
    })
    .unwrap_or_default()
}

/// A notification built by the gateway itself.
pub fn notification<T: Serialize>(method: &str, params: &T) -> Vec<u8> {
    #[derive(Serialize)]
    struct N<'a, T> {
        jsonrpc: &'static str,
        method: &'a str,
        params: &'a T,
    }
    serde_json::to_vec(&N {
        jsonrpc: "2.0",
        method,
        params,
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn one(s: &str) -> Result<Message, Invalid> {
        match decode(s.as_bytes(), 64).unwrap() {
            Incoming::Single(m) => m,
            Incoming::Batch(_) => panic!("batch"),
        }
    }

    #[test]
    fn requests_keep_unknown_fields_byte_for_byte() {
        let s = r#"{"jsonrpc":"2.0","id":7,"method":"x/y","params":{"a":1.0e0,"b":[ 1 ,2]},"zz":{"k":123456789012345678901234567890}}"#;
        let m = one(s).unwrap();
        assert_eq!(m.kind(), Kind::Request);
        assert_eq!(m.encode(), s.as_bytes());
        let re = m.encode_with_id(&int_id(99));
        assert_eq!(
            String::from_utf8(re).unwrap(),
            s.replace("\"id\":7", "\"id\":99")
        );
    }

    #[test]
    fn bad_messages_are_invalid_requests() {
        for (s, want) in [
            (r#"{"jsonrpc":"1.0","id":1,"method":"a"}"#, "2.0"),
            (r#"{"id":1,"method":"a"}"#, "jsonrpc"),
            (r#"{"jsonrpc":"2.0","method":"tools/call"}"#, "no \"id\""),
            (
                r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"a"}"#,
                "duplicate",
            ),
            (r#"{"jsonrpc":"2.0","id":{},"method":"a"}"#, "\"id\""),
            (r#"{"jsonrpc":"2.0","id":1.5,"method":"a"}"#, "\"id\""),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"a","params":3}"#,
                "params",
            ),
            (r#"[1]"#, "object"),
        ] {
            let err = match decode(s.as_bytes(), 64).unwrap() {
                Incoming::Single(m) => m.unwrap_err(),
                Incoming::Batch(mut v) => v.remove(0).unwrap_err(),
            };
            assert_eq!(err.error.code(), -32600, "{s}");
            assert!(err.error.to_string().contains(want), "{s}: {}", err.error);
        }
        let n = one(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert_eq!(n.kind(), Kind::Notification);
        let r = one(r#"{"jsonrpc":"2.0","id":"a","result":{}}"#).unwrap();
        assert_eq!(r.kind(), Kind::Response);
    }

    #[test]
    fn parse_errors_and_depth() {
        let e = decode(b"{\"jsonrpc\":", 64).unwrap_err();
        assert_eq!(e.code(), -32700);
        let e = decode(b"{\"a\":\"\xff\"}", 64).unwrap_err();
        assert_eq!(e.code(), -32700);
        let deep = "[".repeat(10_000) + &"]".repeat(10_000);
        let e = decode(deep.as_bytes(), 64).unwrap_err();
        assert_eq!(e.code(), -32006);
        // Brackets inside strings do not count.
        let s = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"{}"}}"#,
            "[".repeat(500)
        );
        assert!(decode(s.as_bytes(), 64).is_ok());
        assert!(matches!(
            decode(b"[]", 64),
            Err(GatewayError::InvalidRequest(_))
        ));
    }

    #[test]
    fn duplicate_ids_in_a_batch() {
        let s = r#"[{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"2.0","id":1,"method":"b"},{"jsonrpc":"2.0","method":"notifications/x"}]"#;
        let Incoming::Batch(v) = decode(s.as_bytes(), 64).unwrap() else {
            panic!()
        };
        assert!(v[0].is_ok());
        assert!(
            v[1].as_ref()
                .unwrap_err()
                .error
                .to_string()
                .contains("duplicate id 1")
        );
        assert!(v[2].is_ok());
    }

    /// The two-step decoding the one-pass path must agree with.
    fn reference(bytes: &[u8]) -> Result<Result<Message, Invalid>, GatewayError> {
        check_depth(bytes, 64)?;
        let raw: Box<RawValue> =
            serde_json::from_slice(bytes).map_err(|e| parse_error(bytes, &e))?;
        Ok(Message::from_raw(&raw))
    }

    fn shape(r: &Result<Result<Message, Invalid>, GatewayError>) -> String {
        match r {
            Err(e) => format!("error {} {e}", e.code()),
            Ok(Err(inv)) => format!(
                "invalid {:?} {} {}",
                inv.id.as_deref().map(RawValue::get),
                inv.error.code(),
                inv.error
            ),
            Ok(Ok(m)) => format!(
                "{:?} {:?} {:?} {:?} {}",
                m.kind(),
                m.method(),
                m.id().map(RawValue::get),
                m.params().map(RawValue::get),
                String::from_utf8_lossy(&m.encode())
            ),
        }
    }

    fn member() -> impl Strategy<Value = String> {
        let key = prop_oneof![
            Just("\"jsonrpc\"".to_owned()),
            Just("\"id\"".to_owned()),
            Just("\"method\"".to_owned()),
            Just("\"params\"".to_owned()),
            Just("\"result\"".to_owned()),
            Just("\"error\"".to_owned()),
            Just("\"\\u0069d\"".to_owned()),
            "\"[a-z_]{0,6}\"",
        ];
        let value = prop_oneof![
            Just("\"2.0\"".to_owned()),
            Just("\"1.0\"".to_owned()),
            Just("\"tools/call\"".to_owned()),
            Just("\"notifications/x\"".to_owned()),
            Just("null".to_owned()),
            Just("{}".to_owned()),
            Just("{\"a\":[1,{\"b\":2.50}]}".to_owned()),
            Just("[1 , 2]".to_owned()),
            Just("1.5".to_owned()),
            Just("\"x\\n\\u00e9\"".to_owned()),
            any::<i64>().prop_map(|n| n.to_string()),
            "[ -~]{0,8}",
        ];
        (key, value).prop_map(|(k, v)| format!("{k} : {v}"))
    }

    proptest! {
        #[test]
        fn one_pass_decoding_equals_the_two_step_reference(
            members in proptest::collection::vec(member(), 0..6),
            tail in prop_oneof![Just(String::new()), Just(" \n".to_owned()), Just(",".to_owned()), "[ -~]{0,3}"],
        ) {
            let s = format!(" {{{}}}{tail}", members.join(","));
            let fast = decode(s.as_bytes(), 64).map(|i| match i {
                Incoming::Single(m) => m,
                Incoming::Batch(_) => unreachable!("not a batch"),
            });
            prop_assert_eq!(shape(&fast), shape(&reference(s.as_bytes())), "{}", s);
            let trimmed = s.trim_start();
            let one = decode_one(trimmed.as_bytes(), 64);
            match (one, reference(trimmed.as_bytes())) {
                (Ok(m), Ok(r)) => prop_assert_eq!(shape(&Ok(Ok(m))), shape(&Ok(r))),
                (Err(inv), Ok(r)) => prop_assert_eq!(shape(&Ok(Err(inv))), shape(&Ok(r))),
                (Err(inv), Err(e)) => prop_assert_eq!(inv.error.to_string(), e.to_string()),
                (Ok(_), Err(e)) => prop_assert!(false, "{} decoded but the reference failed: {}", s, e),
            }
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&bytes, 64);
        }

        #[test]
        fn encode_round_trips(
            id in prop_oneof![any::<i64>().prop_map(|n| n.to_string()), "[a-z0-9]{0,12}".prop_map(|s| format!("\"{s}\""))],
            method in "[a-z/_]{1,20}",
            key in "[a-zA-Z_]{1,10}",
            val in any::<f64>().prop_filter("finite", |f| f.is_finite()),
        ) {
            let s = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{{"{key}":{val}}},"x-extra":[{val}]}}"#);
            let m = one(&s).unwrap();
            prop_assert_eq!(m.encode(), s.as_bytes().to_vec());
            prop_assert_eq!(m.id().unwrap().get(), id.as_str());
        }
    }
}
