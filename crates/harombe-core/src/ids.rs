//! Identifiers: agents and sessions are validated names; events are time-ordered UUIDv7.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    #[error("{what} is empty")]
    Empty { what: &'static str },
    #[error("{what} is {len} bytes long; the maximum is {max}")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{what} contains {ch:?} at byte {at}; allowed are A-Z a-z 0-9 . _ - @ :")]
    BadChar {
        what: &'static str,
        ch: char,
        at: usize,
    },
    #[error("event id {0:?} is not a UUID")]
    BadUuid(String),
}

fn check_name(what: &'static str, s: &str, max: usize) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty { what });
    }
    if s.len() > max {
        return Err(IdError::TooLong {
            what,
            len: s.len(),
            max,
        });
    }
    if let Some((at, ch)) = s
        .char_indices()
        .find(|&(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | ':')))
    {
        return Err(IdError::BadChar { what, ch, at });
    }
    Ok(())
}

macro_rules! name_id {
    ($(#[$doc:meta])* $name:ident, $what:literal, $max:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Longest accepted value, in bytes.
            pub const MAX_LEN: usize = $max;

            /// Validates and wraps `s`.
            pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                check_name($what, &s, $max)?;
                Ok(Self(s))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }
    };
}

name_id!(
    /// The name of an agent, as configured and as authenticated by its token.
    AgentId,
    "agent id",
    128
);
name_id!(
    /// An MCP session (the `Mcp-Session-Id`) or any other conversation scope.
    SessionId,
    "session id",
    128
);

/// A time-ordered event identifier (UUIDv7).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(Uuid);

impl EventId {
    /// A new UUIDv7 for the current time.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// A UUIDv7 whose time part is `at` (used when events are created with an injected clock).
    pub fn at(at: time::OffsetDateTime) -> Self {
        let nanos = at.unix_timestamp_nanos();
        let secs = nanos.div_euclid(1_000_000_000) as u64;
        let sub = nanos.rem_euclid(1_000_000_000) as u32;
        let ts = uuid::Timestamp::from_unix(uuid::NoContext, secs, sub);
        Self(Uuid::new_v7(ts))
    }

    pub fn from_uuid(u: Uuid) -> Self {
        Self(u)
    }

    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl Default for EventId {
    fn default() -> Self {
        Self::new()
    }
}

impl FromStr for EventId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        Uuid::parse_str(s)
            .map(Self)
            .map_err(|_| IdError::BadUuid(s.to_owned()))
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventId({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(AgentId::new("billing-bot_2@team:prod").is_ok());
        assert_eq!(AgentId::new(""), Err(IdError::Empty { what: "agent id" }));
        assert!(matches!(
            AgentId::new("a b"),
            Err(IdError::BadChar { ch: ' ', at: 1, .. })
        ));
        assert!(matches!(
            AgentId::new("x'; DROP TABLE t;--"),
            Err(IdError::BadChar { .. })
        ));
        assert!(matches!(
            AgentId::new("a".repeat(129)),
            Err(IdError::TooLong { .. })
        ));
        let err = serde_json::from_str::<AgentId>("\"bad name\"").unwrap_err();
        assert!(err.to_string().contains("agent id contains ' '"), "{err}");
    }

    #[test]
    fn event_ids_are_time_ordered() {
        let t0 = time::macros::datetime!(2026-01-01 00:00 UTC);
        let a = EventId::at(t0);
        let b = EventId::at(t0 + time::Duration::milliseconds(1));
        assert!(a < b);
        assert_eq!(a.as_uuid().get_version_num(), 7);
        assert_eq!(a.to_string().parse::<EventId>().unwrap(), a);
        assert!("nope".parse::<EventId>().is_err());
    }
}
