//! Keeping secret material out of logs: `Redacted<T>` and `SecretRef`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A value that must never be printed. `Debug`, `Display` and `Serialize` all write
/// `[REDACTED]`; the value is only reachable through [`Redacted::expose`].
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Redacted<T>(T);

impl<T> Redacted<T> {
    pub const MARKER: &'static str = "[REDACTED]";

    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The wrapped value. Call sites of this are the places to review for leaks.
    pub fn expose(&self) -> &T {
        &self.0
    }

    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> From<T> for Redacted<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

impl<T> fmt::Debug for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Self::MARKER)
    }
}

impl<T> fmt::Display for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Self::MARKER)
    }
}

impl<T> Serialize for Redacted<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(Self::MARKER)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Redacted<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::deserialize(d).map(Self)
    }
}

/// Where a secret lives. Configuration holds references, never values.
///
/// Written as `env:NAME`, `file:/path/to/file` or `vault:path/in/vault#key`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum SecretRef {
    Env(String),
    File(String),
    Vault { path: String, key: String },
}

impl FromStr for SecretRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        // Errors never quote the value: a literal secret written by mistake must not end
        // up in a log line or a terminal.
        let (scheme, rest) = s.split_once(':').ok_or_else(|| {
            "a secret reference needs a scheme (env:NAME, file:/path or vault:path#key); \
             the value given has none and is not shown"
                .to_owned()
        })?;
        if rest.is_empty() {
            return Err("a secret reference names nothing after its scheme".to_owned());
        }
        match scheme {
            "env" => Ok(SecretRef::Env(rest.to_owned())),
            "file" => Ok(SecretRef::File(rest.to_owned())),
            "vault" => match rest.split_once('#') {
                Some((path, key)) if !path.is_empty() && !key.is_empty() => Ok(SecretRef::Vault {
                    path: path.to_owned(),
                    key: key.to_owned(),
                }),
                _ => Err("a vault reference must look like vault:path#key".to_owned()),
            },
            _ => Err(
                "unknown secret scheme (expected env:, file: or vault:); the value is not shown"
                    .to_owned(),
            ),
        }
    }
}

impl TryFrom<String> for SecretRef {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<SecretRef> for String {
    fn from(r: SecretRef) -> String {
        r.to_string()
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(n) => write!(f, "env:{n}"),
            SecretRef::File(p) => write!(f, "file:{p}"),
            SecretRef::Vault { path, key } => write!(f, "vault:{path}#{key}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacted_never_prints_its_value() {
        let r = Redacted::new(String::from("hunter2-very-secret"));
        assert_eq!(format!("{r:?}"), "[REDACTED]");
        assert_eq!(format!("{r}"), "[REDACTED]");
        assert_eq!(serde_json::to_string(&r).unwrap(), "\"[REDACTED]\"");
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Holder {
            token: Redacted<String>,
        }
        let h = Holder { token: r.clone() };
        assert!(!format!("{h:?}").contains("hunter2"));
        assert!(!format!("{h:#?}").contains("hunter2"));
        assert_eq!(r.expose(), "hunter2-very-secret");
        let back: Redacted<String> = serde_json::from_str("\"abc\"").unwrap();
        assert_eq!(back.expose(), "abc");
    }

    #[test]
    fn secret_refs_parse_and_print() {
        for s in [
            "env:API_TOKEN",
            "file:/etc/harombe/key",
            "vault:kv/agents/bot#token",
        ] {
            let r: SecretRef = s.parse().unwrap();
            assert_eq!(r.to_string(), s);
        }
        assert!("API_TOKEN".parse::<SecretRef>().is_err());
        assert!("env:".parse::<SecretRef>().is_err());
        assert!("vault:kv/agents".parse::<SecretRef>().is_err());
        assert!("s3:bucket".parse::<SecretRef>().is_err());
        // A literal secret written where a reference belongs is never echoed back.
        for literal in ["hrb_live_s3cr3t", "ghp:s3cr3t", "vault:s3cr3t"] {
            let e = literal.parse::<SecretRef>().unwrap_err();
            assert!(!e.contains("s3cr3t"), "{e}");
        }
    }
}
