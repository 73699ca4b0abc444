//! Bearer tokens: who may read the control plane, and who may decide approvals.
//!
//! Only SHA-256 hashes of tokens are kept; a presented token is hashed and compared with
//! every known hash in constant time. Failed attempts are audited as `auth` events that
//! name the path and never any token material.

use std::fmt;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use base64::Engine as _;
use harombe_core::{AuditEvent, EventKind, Outcome, Redacted};
use rand::RngCore as _;
use sha2::{Digest, Sha256};

use crate::ApiState;
use crate::error::ApiError;

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything: read, and approve or deny held calls.
    Admin,
    /// Read-only: events, metrics, approvals, dashboard data.
    Read,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Read => "read",
        }
    }
}

#[derive(Clone)]
struct Entry {
    name: String,
    role: Role,
    hash: [u8; 32],
}

/// The known tokens: `(name, role, SHA-256 of the token)`.
#[derive(Clone, Default)]
pub struct Tokens {
    entries: Vec<Entry>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Names and roles only: hashes are not secret, but nothing about a token is logged.
        f.debug_list()
            .entries(self.entries.iter().map(|e| (&e.name, e.role)))
            .finish()
    }
}

/// SHA-256 of a token, as stored.
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Why a token entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    #[error("token name {0:?} must be 1 to 64 of A-Z a-z 0-9 . _ -")]
    BadName(String),
    #[error("token {name:?}: the hash must be 64 hex digits (SHA-256)")]
    BadHash { name: String },
    #[error("token name {0:?} is used twice")]
    Duplicate(String),
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

impl Tokens {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a token by its SHA-256 hash.
    pub fn add_hash(&mut self, name: &str, role: Role, hash: [u8; 32]) -> Result<(), TokenError> {
        if !valid_name(name) {
            return Err(TokenError::BadName(name.chars().take(80).collect()));
        }
        if self.entries.iter().any(|e| e.name == name) {
            return Err(TokenError::Duplicate(name.to_owned()));
        }
        self.entries.push(Entry {
            name: name.to_owned(),
            role,
            hash,
        });
        Ok(())
    }

    /// Adds a token by the hex of its SHA-256 hash (the form a config file holds).
    pub fn add_hex(&mut self, name: &str, role: Role, hex_hash: &str) -> Result<(), TokenError> {
        let bytes = hex::decode(hex_hash.trim()).ok();
        let hash: [u8; 32] =
            bytes
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| TokenError::BadHash {
                    name: name.to_owned(),
                })?;
        self.add_hash(name, role, hash)
    }

    /// Adds a token given in plain text (only its hash is kept).
    pub fn add_plaintext(
        &mut self,
        name: &str,
        role: Role,
        token: &Redacted<String>,
    ) -> Result<(), TokenError> {
        self.add_hash(name, role, hash_token(token.expose()))
    }

    /// A new random token `hrb_<role>_<43 base64url characters>` (256 bits of entropy).
    pub fn generate_token(role: Role) -> Redacted<String> {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        Redacted::new(format!("hrb_{}_{body}", role.as_str()))
    }

    /// One admin token named `admin`, for a first start: returns the tokens (hash only)
    /// and the plain token, to be shown once.
    pub fn generate_admin() -> (Tokens, Redacted<String>) {
        let token = Self::generate_token(Role::Admin);
        let mut t = Tokens::new();
        t.entries.push(Entry {
            name: "admin".into(),
            role: Role::Admin,
            hash: hash_token(token.expose()),
        });
        (t, token)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The name and role of `token`, comparing against every entry (no early exit).
    pub fn check(&self, token: &str) -> Option<Caller> {
        let h = hash_token(token);
        let mut found: Option<&Entry> = None;
        for e in &self.entries {
            if ct_eq(&e.hash, &h) && found.is_none() {
                found = Some(e);
            }
        }
        found.map(|e| Caller {
            name: e.name.clone(),
            role: e.role,
        })
    }
}

/// Who made a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

impl Caller {
    /// How decisions record the decider: `token:<name>`.
    pub fn decided_by(&self) -> String {
        format!("token:{}", self.name)
    }
}

/// Extracts the bearer token of the `Authorization` header, if any.
pub(crate) fn bearer(parts: &Parts) -> Option<&str> {
    let v = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

/// Records a refused request: kind `auth`, outcome failure (401) or denied (403), target =
/// the path. The token is never recorded, only its name when it was valid.
pub(crate) async fn audit_refusal(
    state: &ApiState,
    path: &str,
    outcome: Outcome,
    reason: &str,
    token_name: Option<&str>,
) {
    let mut e = AuditEvent::new(state.clock.now(), EventKind::Auth, outcome)
        .with_target(path.chars().take(512).collect::<String>());
    let mut details = serde_json::json!({ "plane": "api", "reason": reason });
    if let Some(n) = token_name {
        details["token"] = n.into();
    }
    e.details = Some(details);
    if let Err(err) = state.store.append(e).await {
        tracing::warn!(path, error = %err, "could not audit a refused API request");
    }
}

/// Authenticates a token (for the WebSocket, whose token arrives in a message); audits
/// a refusal.
pub(crate) async fn authenticate(
    state: &ApiState,
    path: &str,
    token: Option<&str>,
) -> Result<Caller, ApiError> {
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        audit_refusal(state, path, Outcome::Failure, "missing bearer token", None).await;
        return Err(ApiError::Unauthorized(
            "missing bearer token (send Authorization: Bearer <token>)",
        ));
    };
    match state.tokens.check(token) {
        Some(c) => Ok(c),
        None => {
            audit_refusal(state, path, Outcome::Failure, "unknown token", None).await;
            Err(ApiError::Unauthorized("unknown or revoked token"))
        }
    }
}

/// A request carrying any valid token.
#[derive(Clone, Debug)]
pub struct Reader(pub Caller);

/// A request carrying an admin token.
#[derive(Clone, Debug)]
pub struct Admin(pub Caller);

impl FromRequestParts<ApiState> for Reader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let path = parts.uri.path().to_owned();
        authenticate(state, &path, bearer(parts)).await.map(Reader)
    }
}

impl FromRequestParts<ApiState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let path = parts.uri.path().to_owned();
        let caller = authenticate(state, &path, bearer(parts)).await?;
        if caller.role != Role::Admin {
            audit_refusal(
                state,
                &path,
                Outcome::Denied,
                "read token on an admin route",
                Some(&caller.name),
            )
            .await;
            return Err(ApiError::Forbidden {
                token: caller.name,
                route: format!("{} {path}", parts.method),
            });
        }
        Ok(Admin(caller))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_check_and_never_print() {
        let (tokens, token) = Tokens::generate_admin();
        assert!(token.expose().starts_with("hrb_admin_"));
        assert_eq!(token.expose().len(), "hrb_admin_".len() + 43);
        let c = tokens.check(token.expose()).unwrap();
        assert_eq!((c.name.as_str(), c.role), ("admin", Role::Admin));
        assert_eq!(c.decided_by(), "token:admin");
        assert!(tokens.check("hrb_admin_wrong").is_none());
        let shown = format!("{tokens:?} {token:?} {token}");
        assert!(!shown.contains(&token.expose()[10..]), "{shown}");
        assert!(!shown.contains(&hex::encode(hash_token(token.expose()))));
        assert_ne!(
            Tokens::generate_token(Role::Read).expose(),
            Tokens::generate_token(Role::Read).expose()
        );
    }

    #[test]
    fn entries_are_validated() {
        let mut t = Tokens::new();
        t.add_hex("ops", Role::Read, &hex::encode(hash_token("s3cret")))
            .unwrap();
        assert_eq!(t.check("s3cret").unwrap().role, Role::Read);
        assert_eq!(
            t.add_hex("ops", Role::Admin, &hex::encode([0u8; 32])),
            Err(TokenError::Duplicate("ops".into()))
        );
        assert!(matches!(
            t.add_hex("x", Role::Read, "abc"),
            Err(TokenError::BadHash { .. })
        ));
        assert!(matches!(
            t.add_hash("bad name", Role::Read, [0; 32]),
            Err(TokenError::BadName(_))
        ));
    }
}
