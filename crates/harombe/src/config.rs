//! Configuration: one file (`harombe.toml`, or YAML), parsed into raw serde structs and
//! validated into typed config. Every setting has a default, so no file is needed.
//!
//! Parsing is strict (`deny_unknown_fields`, typed values); an error names the key and the
//! line. Validation is pure, so `harombe config validate` runs anywhere.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use harombe_core::{Redacted, SecretRef};
use harombe_store::{FullPolicy, Location, StoreOptions};
use serde::Deserialize;

/// The whole configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub log: LogConfig,
    /// The MCP gateway: listen address, limits, upstreams, per-agent policy.
    #[serde(default)]
    pub gateway: harombe_gateway::GatewayConfig,
    /// Content inspection of tool arguments and results.
    #[serde(default)]
    pub inspect: crate::stages::InspectConfig,
    /// Behavioural anomaly detection and threat scoring of every tool call.
    #[serde(default)]
    pub detect: crate::stages::DetectConfig,
    /// The REST API and dashboard on the control-plane address: who may use them.
    #[serde(default)]
    pub api: ApiConfig,
    /// Human-in-the-loop: when a call is allowed, held for a human, or denied.
    #[serde(default)]
    pub hitl: harombe_hitl::HitlConfig,
}

/// Control-plane access.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Bearer tokens for the REST API and the dashboard. When none is configured, one
    /// admin token is generated on first start, printed once, and kept (hashed) in
    /// `<data_dir>/api-token.json`.
    #[serde(default)]
    pub tokens: Vec<ApiTokenConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiTokenConfig {
    /// Shown in the audit log as `token:<name>` (never the token itself).
    pub name: String,
    /// `admin` (may approve, deny) or `read`.
    pub role: ApiRole,
    /// Where the token is: `env:NAME` or `file:/path` (a literal token is refused).
    pub token: SecretRef,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiRole {
    Admin,
    Read,
}

impl ApiTokenConfig {
    /// The token itself, read from the environment or a file.
    pub fn resolve(&self) -> anyhow::Result<Redacted<String>> {
        let what = format!("api.tokens {:?}", self.name);
        Ok(Redacted::new(match &self.token {
            SecretRef::Env(name) => std::env::var(name)
                .with_context(|| format!("{what}: environment variable {name} is not set"))?,
            SecretRef::File(path) => std::fs::read_to_string(path)
                .with_context(|| format!("{what}: cannot read {path}"))?
                .trim()
                .to_owned(),
            other => bail!("{what}: unsupported reference {other} (use env: or file:)"),
        }))
    }
}

impl ApiConfig {
    fn validate(&self) -> anyhow::Result<()> {
        let mut seen = std::collections::BTreeSet::new();
        for t in &self.tokens {
            if t.name.is_empty()
                || !t
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                bail!(
                    "api.tokens: name {:?} must be 1+ of A-Z a-z 0-9 - _ .",
                    t.name
                );
            }
            if !seen.insert(t.name.as_str()) {
                bail!("api.tokens: the name {:?} is used twice", t.name);
            }
            if matches!(t.token, SecretRef::Vault { .. }) {
                bail!(
                    "api.tokens {:?}: token must be env:NAME or file:/path",
                    t.name
                );
            }
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Control plane: health, REST API, dashboard.
    #[serde(default = "default_control_addr")]
    pub control_addr: SocketAddr,
    /// Where the audit database and other state live (overridden by `--data-dir`).
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            control_addr: default_control_addr(),
            data_dir: None,
        }
    }
}

fn default_control_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

/// Which database holds the audit log.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// A file in the data directory (`audit.db`).
    #[default]
    Sqlite,
    /// A PostgreSQL database shared by several replicas (`url` required).
    Postgres,
}

/// The PostgreSQL URL: literal when it holds no password, otherwise a reference.
#[derive(Debug, Clone)]
pub enum PgUrl {
    Literal(String),
    Reference(SecretRef),
}

impl<'de> Deserialize<'de> for PgUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let s = String::deserialize(d)?;
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            let authority = s
                .split_once("://")
                .map(|(_, r)| r.split(['/', '?']).next().unwrap_or(""));
            let userinfo = authority.and_then(|a| a.rsplit_once('@')).map(|(u, _)| u);
            if userinfo.is_some_and(|u| u.contains(':')) {
                return Err(D::Error::custom(
                    "the URL contains a password: put it in the environment or a file and write \
                     url = \"env:NAME\" or url = \"file:/path\"",
                ));
            }
            return Ok(PgUrl::Literal(s));
        }
        match s.parse::<SecretRef>() {
            Ok(r @ (SecretRef::Env(_) | SecretRef::File(_))) => Ok(PgUrl::Reference(r)),
            Ok(SecretRef::Vault { .. }) => Err(D::Error::custom(
                "the audit database URL cannot come from the vault it may depend on",
            )),
            Err(_) => Err(D::Error::custom(format!(
                "expected a postgres:// URL, env:NAME or file:/path, found {s:?}"
            ))),
        }
    }
}

impl PgUrl {
    /// The URL itself, read from the environment or a file when referenced.
    pub fn resolve(&self) -> anyhow::Result<Redacted<String>> {
        Ok(Redacted::new(match self {
            PgUrl::Literal(s) => s.clone(),
            PgUrl::Reference(SecretRef::Env(name)) => std::env::var(name)
                .with_context(|| format!("store.url: environment variable {name} is not set"))?,
            PgUrl::Reference(SecretRef::File(path)) => std::fs::read_to_string(path)
                .with_context(|| format!("store.url: cannot read {path}"))?
                .trim()
                .to_owned(),
            PgUrl::Reference(other) => bail!("store.url: unsupported reference {other}"),
        }))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    #[serde(default)]
    pub backend: StoreBackend,
    /// PostgreSQL only: `postgres://user@host:port/db`, or a reference (`env:NAME`,
    /// `file:/path`) to a URL that carries a password. A literal URL with a password is
    /// refused.
    #[serde(default)]
    pub url: Option<PgUrl>,
    /// Events waiting to be written before `full_policy` applies.
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: NonZeroUsize,
    /// `wait` (back-pressure) or `reject` (refuse at once); never drop.
    #[serde(default)]
    pub full_policy: FullPolicy,
    /// Most events committed in one transaction.
    #[serde(default = "default_batch_max")]
    pub batch_max: NonZeroUsize,
    /// Delete events older than this many days (a checkpoint keeps the rest verifiable).
    #[serde(default)]
    pub retention_days: Option<std::num::NonZeroU32>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            backend: StoreBackend::default(),
            url: None,
            queue_capacity: default_queue_capacity(),
            full_policy: FullPolicy::default(),
            batch_max: default_batch_max(),
            retention_days: None,
        }
    }
}

fn default_queue_capacity() -> NonZeroUsize {
    NonZeroUsize::new(StoreOptions::default().queue_capacity).unwrap_or(NonZeroUsize::MIN)
}

fn default_batch_max() -> NonZeroUsize {
    NonZeroUsize::new(StoreOptions::default().batch_max).unwrap_or(NonZeroUsize::MIN)
}

impl StoreConfig {
    pub fn options(&self) -> StoreOptions {
        StoreOptions {
            queue_capacity: self.queue_capacity.get(),
            full_policy: self.full_policy,
            batch_max: self.batch_max.get(),
            max_db_bytes: None,
        }
    }

    pub fn location(&self, data_dir: &Path) -> anyhow::Result<Location> {
        Ok(match (self.backend, &self.url) {
            (StoreBackend::Sqlite, _) => Location::Sqlite(data_dir.join("audit.db")),
            (StoreBackend::Postgres, Some(url)) => Location::Postgres(url.resolve()?),
            (StoreBackend::Postgres, None) => {
                bail!("store.url is required with backend = \"postgres\"")
            }
        })
    }

    fn validate(&self) -> anyhow::Result<()> {
        match (self.backend, &self.url) {
            (StoreBackend::Postgres, None) => {
                bail!("store.url is required with backend = \"postgres\"")
            }
            (StoreBackend::Sqlite, Some(_)) => {
                bail!(
                    "store.url is set but store.backend is \"sqlite\": set backend = \"postgres\" or remove url"
                )
            }
            _ => Ok(()),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (default) or `json`.
    #[serde(default)]
    pub format: LogFormat,
    /// A tracing filter such as `info` or `harombe=debug,info` (RUST_LOG wins).
    #[serde(default)]
    pub level: Option<String>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl Config {
    /// Checks what parsing alone cannot (settings that depend on each other).
    pub fn validate(&self) -> anyhow::Result<()> {
        self.store.validate()?;
        self.gateway.validate()?;
        self.api.validate()?;
        self.detect.validate()?;
        self.inspect.validate()?;
        self.hitl
            .validate()
            .map_err(|e| anyhow::anyhow!("hitl: {e}"))?;
        Ok(())
    }
}

/// Parses a configuration file; TOML unless the name ends in `.yaml` or `.yml`.
pub fn load(path: &Path) -> anyhow::Result<Config> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse(path, &text)
}

/// Parses configuration text; errors name the file, the key and the line.
pub fn parse(path: &Path, text: &str) -> anyhow::Result<Config> {
    let yaml = matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    );
    let config = if yaml {
        serde_saphyr::from_str::<Config>(text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
    } else {
        toml::from_str::<Config>(text)
            .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), describe_toml(&e, text)))?
    };
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(config)
}

/// A TOML error with its line number spelled out.
fn describe_toml(e: &toml::de::Error, text: &str) -> String {
    let msg = e.message();
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            let src = mask_secret_values(&mask_url_passwords(
                text.lines().nth(line - 1).unwrap_or("").trim(),
            ));
            format!("line {line}: {msg}\n    {line} | {src}")
        }
        None => msg.to_string(),
    }
}

/// `key = value` lines whose key names secret material (token, secret, password, key)
/// are quoted as `key = ***`, so an error never prints a credential written in place.
fn mask_secret_values(line: &str) -> String {
    let Some((key, _)) = line.split_once('=') else {
        return line.to_owned();
    };
    let k = key.trim().to_ascii_lowercase();
    if ["token", "secret", "password", "passwd", "key"]
        .iter()
        .any(|m| k.contains(m))
    {
        format!("{} = ***", key.trim())
    } else {
        line.to_owned()
    }
}

/// Replaces the password of every `scheme://user:password@` in `s` with `***`, so an error
/// that quotes a configuration line never prints a credential.
fn mask_url_passwords(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let authority_end = tail
            .find(['/', '?', '#', '"', '\'', ' '])
            .unwrap_or(tail.len());
        let authority = &tail[..authority_end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at => {
                out.push_str(&authority[..colon]);
                out.push_str(":***");
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[authority_end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toml(text: &str) -> anyhow::Result<Config> {
        parse(Path::new("harombe.toml"), text)
    }

    #[test]
    fn empty_file_is_all_defaults() {
        let c = toml("").unwrap();
        assert_eq!(c.server.control_addr, "127.0.0.1:8080".parse().unwrap());
        assert!(matches!(c.store.backend, StoreBackend::Sqlite));
        assert_eq!(c.store.options(), StoreOptions::default());
    }

    #[test]
    fn full_file_parses() {
        let c = toml(
            r#"
[server]
control_addr = "0.0.0.0:9000"
data_dir = "/var/lib/harombe"

[store]
backend = "postgres"
url = "postgres://harombe@db:5432/audit"
queue_capacity = 1000
full_policy = "reject"
batch_max = 64
retention_days = 90

[log]
format = "json"
level = "debug"
"#,
        )
        .unwrap();
        assert_eq!(c.server.control_addr.port(), 9000);
        assert_eq!(c.store.backend, StoreBackend::Postgres);
        assert_eq!(c.store.full_policy, FullPolicy::Reject);
        assert_eq!(c.store.retention_days.map(|d| d.get()), Some(90));
        assert_eq!(c.log.format, LogFormat::Json);
    }

    #[test]
    fn unknown_keys_and_wrong_types_name_key_and_line() {
        let err = toml("[server]\ncontrol_addr = \"127.0.0.1:1\"\ncontrol_adr = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("control_adr"), "{err}");
        let err = toml("[store]\nqueue_capacity = \"many\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 2") && err.contains("queue_capacity"),
            "{err}"
        );
        let err = toml("[store]\nqueue_capacity = 0\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2"), "{err}");
        let err = toml("[server]\ncontrol_addr = \"not an address\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2"), "{err}");
        let err = toml("[stor]\n").unwrap_err().to_string();
        assert!(err.contains("stor") && err.contains("line 1"), "{err}");
    }

    #[test]
    fn postgres_passwords_must_be_references() {
        let err = toml("[store]\nbackend = \"postgres\"\nurl = \"postgres://u:hunter2@db/a\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("password") && err.contains("line 3"), "{err}");
        assert!(
            !err.contains("hunter2"),
            "the password must not be echoed: {err}"
        );
        let c = toml("[store]\nbackend = \"postgres\"\nurl = \"env:HAROMBE_TEST_UNSET_VAR\"\n")
            .unwrap();
        let err = c
            .store
            .url
            .as_ref()
            .unwrap()
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(err.contains("HAROMBE_TEST_UNSET_VAR"), "{err}");
        let err = toml("[store]\nbackend = \"postgres\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("store.url is required"), "{err}");
        let err = toml("[store]\nurl = \"postgres://db/a\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("store.backend"), "{err}");
        assert!(toml("[store]\nbackend = \"mysql\"\n").is_err());
    }

    #[test]
    fn inspect_threads_are_bounded() {
        assert_eq!(toml("").unwrap().inspect.threads, 0);
        assert_eq!(toml("[inspect]\nthreads = 2\n").unwrap().inspect.threads, 2);
        let err = toml("[inspect]\nthreads = 1000\n").unwrap_err().to_string();
        assert!(err.contains("inspect.threads: 1000"), "{err}");
        let err = toml("[inspect]\nthreads = -1\n").unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn the_readme_example_is_valid() {
        let readme = include_str!("../../../README.md");
        let start = readme.find("```toml\n").expect("README has a TOML example") + 8;
        let end = start + readme[start..].find("```").unwrap();
        let c = toml(&readme[start..end]).unwrap_or_else(|e| panic!("README example: {e}"));
        assert_eq!(c.gateway.upstreams.len(), 1);
        assert!(c.inspect.enabled);
    }

    #[test]
    fn api_tokens_are_references_with_unique_names() {
        let c = toml(
            "[[api.tokens]]\nname = \"ops\"\nrole = \"admin\"\ntoken = \"env:HAROMBE_T1\"\n\
             [[api.tokens]]\nname = \"viewer\"\nrole = \"read\"\ntoken = \"file:/run/t\"\n",
        )
        .unwrap();
        assert_eq!(c.api.tokens.len(), 2);
        assert_eq!(c.api.tokens[1].role, ApiRole::Read);
        let err = toml(
            "[[api.tokens]]\nname = \"ops\"\nrole = \"admin\"\ntoken = \"hrb_s3cr3t_literal\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("line 4"), "{err}");
        assert!(
            !err.contains("s3cr3t"),
            "a literal token is never echoed: {err}"
        );
        let err = toml(
            "[[api.tokens]]\nname = \"a\"\nrole = \"read\"\ntoken = \"env:X\"\n\
             [[api.tokens]]\nname = \"a\"\nrole = \"admin\"\ntoken = \"env:Y\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("used twice"), "{err}");
        let err = toml("[[api.tokens]]\nname = \"a\"\nrole = \"root\"\ntoken = \"env:X\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("role") || err.contains("root"), "{err}");
    }

    #[test]
    fn quoted_lines_never_show_url_passwords() {
        assert_eq!(
            mask_url_passwords(r#"url = "postgres://u:pw@db/a""#),
            r#"url = "postgres://u:***@db/a""#
        );
        assert_eq!(
            mask_url_passwords("a http://h/x b https://x:y@z"),
            "a http://h/x b https://x:***@z"
        );
        assert_eq!(mask_url_passwords("no urls here"), "no urls here");
        assert_eq!(mask_secret_values(r#"token = "abc""#), "token = ***");
        assert_eq!(mask_secret_values(r#"name = "ops""#), r#"name = "ops""#);
    }

    #[test]
    fn yaml_is_accepted_with_locations() {
        let c = parse(
            Path::new("h.yaml"),
            "server:\n  control_addr: \"127.0.0.1:7000\"\nstore:\n  backend: sqlite\n",
        )
        .unwrap();
        assert_eq!(c.server.control_addr.port(), 7000);
        let err = parse(Path::new("h.yml"), "server:\n  control_adr: x\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("control_adr"), "{err}");
        assert!(err.contains('2'), "names the line: {err}");
    }
}
