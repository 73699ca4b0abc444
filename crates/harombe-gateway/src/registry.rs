//! Agents and their bearer tokens. Only SHA-256 hashes of tokens are stored; a token is
//! shown once, when the agent is added. Tokens are `hrb_` + 43 base62 characters (about
//! 256 bits), so a plain SHA-256 is enough (no password stretching needed).

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use harombe_core::{AgentId, Redacted};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use crate::error::GatewayError;

/// The token prefix.
pub const TOKEN_PREFIX: &str = "hrb_";
const TOKEN_CHARS: usize = 43;
const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// An agent as listed (never its token).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentRecord {
    pub name: AgentId,
    /// Hex SHA-256 of the token.
    pub token_sha256: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub revoked: Option<OffsetDateTime>,
}

/// Who may talk to the gateway.
pub trait AgentRegistry: Send + Sync + fmt::Debug {
    /// The agent a bearer token belongs to (constant-time comparison of hashes).
    fn authenticate(&self, token: &str) -> Option<AgentId>;
    /// Adds an agent and returns its new token (shown once).
    fn add(&self, name: &AgentId) -> Result<Redacted<String>, GatewayError>;
    fn list(&self) -> Result<Vec<AgentRecord>, GatewayError>;
    /// Revokes an agent's token; `false` when there was no active agent of that name.
    fn revoke(&self, name: &AgentId) -> Result<bool, GatewayError>;
}

/// A fresh token.
pub fn new_token() -> Redacted<String> {
    let mut rng = rand::rng();
    let mut s = String::with_capacity(TOKEN_PREFIX.len() + TOKEN_CHARS);
    s.push_str(TOKEN_PREFIX);
    for _ in 0..TOKEN_CHARS {
        s.push(BASE62[rng.random_range(0..BASE62.len())] as char);
    }
    Redacted::new(s)
}

/// SHA-256 of a token.
/// Replaces `path` with `bytes` atomically, readable by the owner only (0600): a unique
/// temporary file beside it, fsync, rename, fsync of the directory. A reader sees the old
/// file or the new one, never a part; nothing is left behind on failure.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.{}.{}",
        std::process::id(),
        rand::rng().random::<u32>()
    ));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBody {
    version: u32,
    agents: Vec<AgentRecord>,
}

#[derive(Debug)]
struct Cache {
    /// (hash, agent) for active agents.
    active: Vec<([u8; 32], AgentId)>,
    mtime: Option<SystemTime>,
    checked: Instant,
}

/// The registry kept in `<data_dir>/agents.json` (0600, replaced atomically). The file is
/// re-read when it changes, so `harombe agents revoke` takes effect in a running gateway
/// within a second.
#[derive(Debug)]
pub struct FileAgentRegistry {
    path: PathBuf,
    cache: Mutex<Cache>,
    /// Serialises writers in this process.
    write: Mutex<()>,
}

const RECHECK: Duration = Duration::from_secs(1);

impl FileAgentRegistry {
    /// Opens (or prepares to create) `<data_dir>/agents.json`.
    pub fn open(data_dir: &Path) -> Result<Self, GatewayError> {
        let path = data_dir.join("agents.json");
        let reg = Self {
            path,
            cache: Mutex::new(Cache {
                active: Vec::new(),
                mtime: None,
                checked: Instant::now(),
            }),
            write: Mutex::new(()),
        };
        let body = reg.read()?;
        reg.refresh_cache(&body);
        Ok(reg)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, problem: impl fmt::Display) -> GatewayError {
        GatewayError::Registry {
            path: self.path.display().to_string(),
            problem: problem.to_string(),
        }
    }

    fn read(&self) -> Result<FileBody, GatewayError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| self.err(e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(FileBody {
                version: 1,
                agents: Vec::new(),
            }),
            Err(e) => Err(self.err(e)),
        }
    }

    fn write_atomically(&self, body: &FileBody) -> Result<(), GatewayError> {
        let mut json = serde_json::to_vec_pretty(body).map_err(|e| self.err(e))?;
        json.push(b'\n');
        write_private(&self.path, &json).map_err(|e| self.err(e))?;
        self.refresh_cache(body);
        Ok(())
    }

    fn refresh_cache(&self, body: &FileBody) {
        let active = body
            .agents
            .iter()
            .filter(|a| a.revoked.is_none())
            .filter_map(|a| {
                let mut h = [0u8; 32];
                hex::decode_to_slice(&a.token_sha256, &mut h).ok()?;
                Some((h, a.name.clone()))
            })
            .collect();
        let mtime = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        let mut c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        *c = Cache {
            active,
            mtime,
            checked: Instant::now(),
        };
    }

    fn maybe_reload(&self) {
        let stale = {
            let c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if c.checked.elapsed() < RECHECK {
                return;
            }
            let mtime = std::fs::metadata(&self.path)
                .and_then(|m| m.modified())
                .ok();
            mtime != c.mtime
        };
        if stale {
            match self.read() {
                Ok(body) => self.refresh_cache(&body),
                Err(e) => {
                    tracing::warn!(error = %e, "agent registry reload failed; keeping the old one");
                }
            }
        } else {
            let mut c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            c.checked = Instant::now();
        }
    }
}

impl AgentRegistry for FileAgentRegistry {
    fn authenticate(&self, token: &str) -> Option<AgentId> {
        self.maybe_reload();
        let h = hash_token(token);
        let c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        // Compare against every entry, in constant time per entry.
        let mut found = None;
        for (stored, agent) in &c.active {
            if bool::from(stored.ct_eq(&h)) {
                found = Some(agent.clone());
            }
        }
        found
    }

    fn add(&self, name: &AgentId) -> Result<Redacted<String>, GatewayError> {
        let _w = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let mut body = self.read()?;
        if body
            .agents
            .iter()
            .any(|a| a.name == *name && a.revoked.is_none())
        {
            return Err(self.err(format!(
                "agent {name} already exists; revoke it first to issue a new token"
            )));
        }
        let token = new_token();
        body.version = 1;
        body.agents.push(AgentRecord {
            name: name.clone(),
            token_sha256: hex::encode(hash_token(token.expose())),
            created: OffsetDateTime::now_utc(),
            revoked: None,
        });
        self.write_atomically(&body)?;
        Ok(token)
    }

    fn list(&self) -> Result<Vec<AgentRecord>, GatewayError> {
        Ok(self.read()?.agents)
    }

    fn revoke(&self, name: &AgentId) -> Result<bool, GatewayError> {
        let _w = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let mut body = self.read()?;
        let now = OffsetDateTime::now_utc();
        let mut any = false;
        for a in &mut body.agents {
            if a.name == *name && a.revoked.is_none() {
                a.revoked = Some(now);
                any = true;
            }
        }
        if any {
            self.write_atomically(&body)?;
        }
        Ok(any)
    }
}

/// An in-memory registry (tests, benchmarks, embedding).
#[derive(Debug, Default)]
pub struct MemoryAgentRegistry {
    agents: Mutex<BTreeMap<String, ([u8; 32], AgentRecord)>>,
}

impl MemoryAgentRegistry {
    pub fn new() -> Self {
        Self::default()
    }
}

impl AgentRegistry for MemoryAgentRegistry {
    fn authenticate(&self, token: &str) -> Option<AgentId> {
        let h = hash_token(token);
        let g = self.agents.lock().unwrap_or_else(|e| e.into_inner());
        let mut found = None;
        for (stored, rec) in g.values() {
            if rec.revoked.is_none() && bool::from(stored.ct_eq(&h)) {
                found = Some(rec.name.clone());
            }
        }
        found
    }

    fn add(&self, name: &AgentId) -> Result<Redacted<String>, GatewayError> {
        let token = new_token();
        let h = hash_token(token.expose());
        let rec = AgentRecord {
            name: name.clone(),
            token_sha256: hex::encode(h),
            created: OffsetDateTime::now_utc(),
            revoked: None,
        };
        self.agents
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), (h, rec));
        Ok(token)
    }

    fn list(&self) -> Result<Vec<AgentRecord>, GatewayError> {
        let g = self.agents.lock().unwrap_or_else(|e| e.into_inner());
        Ok(g.values().map(|(_, r)| r.clone()).collect())
    }

    fn revoke(&self, name: &AgentId) -> Result<bool, GatewayError> {
        let mut g = self.agents.lock().unwrap_or_else(|e| e.into_inner());
        Ok(match g.get_mut(name.as_str()) {
            Some((_, r)) if r.revoked.is_none() => {
                r.revoked = Some(OffsetDateTime::now_utc());
                true
            }
            _ => false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn tokens_have_the_documented_shape() {
        let t = new_token();
        let s = t.expose();
        assert!(s.starts_with("hrb_"));
        assert_eq!(s.len(), 4 + 43);
        assert!(s[4..].bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(new_token().expose(), s);
        assert_eq!(format!("{t:?}"), "[REDACTED]");
    }

    #[test]
    fn file_registry_stores_only_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let reg = FileAgentRegistry::open(dir.path()).unwrap();
        let bot = AgentId::new("bot").unwrap();
        let token = reg.add(&bot).unwrap();
        assert!(reg.add(&bot).is_err(), "duplicate active agent");
        let raw = std::fs::read_to_string(dir.path().join("agents.json")).unwrap();
        assert!(!raw.contains(token.expose().as_str()));
        assert!(raw.contains(&hex::encode(hash_token(token.expose()))));
        let mode = std::fs::metadata(dir.path().join("agents.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(reg.authenticate(token.expose()), Some(bot.clone()));
        assert_eq!(reg.authenticate("hrb_wrong"), None);
        // A second handle (another process) sees the agent; revocation is seen on reload.
        let other = FileAgentRegistry::open(dir.path()).unwrap();
        assert_eq!(other.authenticate(token.expose()), Some(bot.clone()));
        assert!(reg.revoke(&bot).unwrap());
        assert!(!reg.revoke(&bot).unwrap());
        assert_eq!(reg.authenticate(token.expose()), None);
        let list = reg.list().unwrap();
        assert_eq!(list.len(), 1);
        assert!(list[0].revoked.is_some());
        // Re-adding after revocation issues a new token.
        let t2 = reg.add(&bot).unwrap();
        assert_ne!(t2.expose(), token.expose());
        assert_eq!(reg.authenticate(t2.expose()), Some(bot));
    }
}
