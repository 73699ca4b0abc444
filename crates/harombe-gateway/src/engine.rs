//! The engine: what happens to a client message once a transport has authenticated it
//! and decoded it. Transports (streamable HTTP, stdio) differ only in framing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use harombe_core::{AgentId, AuditEvent, EventKind, Outcome, Verdict};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::GatewayDeps;
use crate::catalog::{Catalog, SharedCatalog, UpstreamTools};
use crate::config::{GatewayConfig, UpstreamConfig};
use crate::error::GatewayError;
use crate::jsonrpc::{self, Kind, Message};
use crate::pipeline::audit;
use crate::pipeline::policy::Policy;
use crate::session::{Session, Sessions};
use crate::upstream::stdio::StdioSpec;
use crate::upstream::{self, CallOrigin, CallSink, Shared, Unrouted, Upstream};

/// Protocol versions the gateway speaks with clients, newest first.
pub const SUPPORTED_VERSIONS: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];
/// What a client gets when it asks for a version we do not know.
pub const DEFAULT_VERSION: &str = "2025-06-18";

/// The version to answer an `initialize` with.
pub fn negotiate(requested: Option<&str>) -> &'static str {
    requested
        .and_then(|r| SUPPORTED_VERSIONS.iter().find(|v| **v == r).copied())
        .unwrap_or(DEFAULT_VERSION)
}

/// The requested version in an initialize message.
pub fn requested_version(msg: &Message) -> Option<String> {
    #[derive(Deserialize)]
    struct P {
        #[serde(rename = "protocolVersion")]
        v: Option<String>,
    }
    msg.params_as::<P>().ok().flatten().and_then(|p| p.v)
}

/// One upstream to start: its name, and how (stdio or HTTP url + timeout).
type UpstreamSpec = (String, Option<StdioSpec>, Option<(String, Duration)>);

/// Who sent a message and where its side messages go.
#[derive(Debug, Clone)]
pub struct ClientCtx {
    pub agent: AgentId,
    pub session: Option<Arc<Session>>,
    pub sink: Option<CallSink>,
}

/// The gateway's state.
#[derive(Debug)]
pub struct Engine {
    pub config: GatewayConfig,
    pub deps: GatewayDeps,
    pub upstreams: Vec<Upstream>,
    pub sessions: Sessions,
    pub tracker: TaskTracker,
    pub shutdown: CancellationToken,
    catalog: SharedCatalog,
    /// Every upstream's list is in the catalogue.
    catalog_complete: AtomicBool,
    /// The catalogue was built at least once.
    catalog_built: AtomicBool,
    lists: tokio::sync::Mutex<Lists>,
    pub(crate) policy: Policy,
    routes: Mutex<HashMap<(&'static str, String), usize>>,
    /// Tool definitions already reported as failing inspection (hash of upstream,
    /// definition and action), so a refresh that finds the same again does not repeat it.
    flagged_tools: Mutex<std::collections::HashSet<u64>>,
}

impl Engine {
    /// Starts the upstreams (and `wrapped`, for `harombe wrap`) and the background tasks.
    pub fn start(
        config: GatewayConfig,
        deps: GatewayDeps,
        shutdown: CancellationToken,
        wrapped: Option<(String, StdioSpec)>,
    ) -> Result<Arc<Self>, GatewayError> {
        config.validate()?;
        let policy = Policy::new(&config.policy, deps.clock.clone())?;
        let (btx, brx) = mpsc::channel(1024);
        let tracker = TaskTracker::new();
        let screen: Arc<dyn upstream::Screen> = Arc::new(ContentScreen {
            inspect: deps.seams.inspect.clone(),
            audit: deps.audit.clone(),
            clock: deps.clock.clone(),
            tracker: tracker.clone(),
        });
        let max_line = config.limits.max_body_bytes.saturating_mul(4).max(1 << 20);
        let mut upstreams = Vec::new();
        let specs: Vec<UpstreamSpec> = match wrapped {
            Some((name, spec)) => vec![(name, Some(spec), None)],
            None => config
                .upstreams
                .iter()
                .map(|(name, u)| match u {
                    UpstreamConfig::Stdio {
                        command,
                        args,
                        env,
                        cwd,
                    } => (
                        name.clone(),
                        Some(StdioSpec {
                            command: command.clone(),
                            args: args.clone(),
                            env: env.clone(),
                            cwd: cwd.clone(),
                            restart: true,
                            handshake_timeout: config.limits.call_timeout,
                            max_line,
                        }),
                        None,
                    ),
                    UpstreamConfig::Http { url, timeout } => {
                        (name.clone(), None, Some((url.clone(), *timeout)))
                    }
                })
                .collect(),
        };
        for (i, (name, stdio, http)) in specs.into_iter().enumerate() {
            let shared = Shared::new(
                i,
                name,
                btx.clone(),
                config.limits.max_depth,
                Some(screen.clone()),
            );
            let up = match (stdio, http) {
                (Some(spec), _) => upstream::stdio::spawn(shared, spec, shutdown.clone()),
                (None, Some((url, timeout))) => {
                    upstream::http::spawn(shared, url, timeout, max_line, shutdown.clone())?
                }
                (None, None) => continue,
            };
            upstreams.push(up);
        }
        let engine = Arc::new(Self {
            sessions: Sessions::new(config.limits.max_sessions, config.limits.stream_buffer),
            config,
            deps,
            upstreams,
            tracker,
            shutdown,
            catalog: SharedCatalog::default(),
            catalog_complete: AtomicBool::new(false),
            catalog_built: AtomicBool::new(false),
            lists: tokio::sync::Mutex::new(Lists::default()),
            policy,
            routes: Mutex::new(HashMap::new()),
            flagged_tools: Mutex::new(std::collections::HashSet::new()),
        });
        tokio::spawn(unrouted_loop(Arc::downgrade(&engine), brx));
        let weak = Arc::downgrade(&engine);
        let stop = engine.shutdown.clone();
        // Idle sessions are swept at half their timeout (at most every 30 s), so one lives
        // at most 1.5 times `session_idle_timeout`.
        let sweep = (engine.config.limits.session_idle_timeout / 2)
            .clamp(Duration::from_millis(100), Duration::from_secs(30));
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(sweep) => {}
                    () = stop.cancelled() => return,
                }
                let Some(e) = weak.upgrade() else { return };
                let n = e.sessions.expire(e.config.limits.session_idle_timeout);
                if n > 0 {
                    tracing::info!(expired = n, "idle sessions closed");
                }
            }
        });
        Ok(engine)
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.config.limits.call_timeout
    }

    /// Handles one client message; the answer for requests, `None` otherwise.
    pub async fn handle(&self, ctx: &ClientCtx, msg: Message, bytes_in: usize) -> Option<Vec<u8>> {
        match msg.kind() {
            Kind::Response => {
                self.relay_response(ctx, &msg).await;
                None
            }
            Kind::Notification => {
                self.client_notification(ctx, &msg).await;
                None
            }
            Kind::Request => Some(self.request(ctx, msg, bytes_in).await),
        }
    }

    async fn request(&self, ctx: &ClientCtx, msg: Message, bytes_in: usize) -> Vec<u8> {
        let id = msg
            .id()
            .map(ToOwned::to_owned)
            .unwrap_or_else(jsonrpc::null);
        let method = msg.method().unwrap_or_default().to_owned();
        let r = match method.as_str() {
            "tools/call" => return self.tools_call(ctx, &msg, bytes_in).await,
            "initialize" => self.initialize(&msg).await,
            "ping" => Ok(jsonrpc::result(&id, &serde_json::json!({}))),
            "tools/list" => self.tools_list(ctx, &id).await,
            "resources/list" => self.merged(ctx, &msg, "resources", "uri").await,
            "resources/templates/list" => {
                self.merged(ctx, &msg, "resourceTemplates", "uriTemplate")
                    .await
            }
            "prompts/list" => self.merged(ctx, &msg, "prompts", "name").await,
            "resources/read" => {
                let up = self.route(&msg, "uri");
                self.forward_inspected(ctx, up, &msg, "uri").await
            }
            "resources/subscribe"
                if ctx
                    .session
                    .as_ref()
                    .is_some_and(|s| s.subscriptions() >= Session::MAX_SUBSCRIPTIONS) =>
            {
                Err(GatewayError::ResourceLimit(format!(
                    "this session holds {} resource subscriptions, the most one may",
                    Session::MAX_SUBSCRIPTIONS
                )))
            }
            "resources/subscribe" | "resources/unsubscribe" => {
                let up = self.route(&msg, "uri");
                let r = self.forward_plain(ctx, up, &msg).await;
                // Updates of a resource go to the sessions that subscribed to it.
                if let (Ok(_), Some(s), Some(uri)) = (&r, &ctx.session, param_str(&msg, "uri")) {
                    s.subscribe(uri, method == "resources/subscribe");
                }
                r
            }
            "prompts/get" => {
                let up = self.route(&msg, "name");
                self.forward_inspected(ctx, up, &msg, "name").await
            }
            // Completions of a prompt's or a resource template's argument: the upstream
            // that listed it answers; the suggestions reach the agent like a result.
            "completion/complete" => {
                let up = self.route_ref(&msg);
                self.forward_inspected(ctx, up, &msg, "ref").await
            }
            "logging/setLevel" => self.set_log_level(ctx, &msg).await,
            // Anything unknown: to the first upstream, untouched.
            _ => self.forward_plain(ctx, 0, &msg).await,
        };
        match r {
            Ok(b) => b,
            Err(e) => {
                self.audit_refusal(Some(&ctx.agent), ctx.session.as_deref(), &method, &e)
                    .await;
                e.to_rpc().response(Some(&id))
            }
        }
    }

    async fn initialize(&self, msg: &Message) -> Result<Vec<u8>, GatewayError> {
        let id = msg
            .id()
            .map(ToOwned::to_owned)
            .unwrap_or_else(jsonrpc::null);
        let version = negotiate(requested_version(msg).as_deref());
        let v = serde_json::value::to_raw_value(version)
            .map_err(|e| GatewayError::Internal(e.to_string()))?;
        if let [only] = self.upstreams.as_slice() {
            // One upstream: the client sees that server (capabilities, info, instructions).
            only.ready(self.timeout()).await?;
            let init = only
                .shared
                .init
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            if let Some(raw) =
                init.and_then(|i| jsonrpc::with_member(i.get(), "protocolVersion", &v))
            {
                return Ok(jsonrpc::result(&id, &raw));
            }
        }
        Ok(jsonrpc::result(
            &id,
            &serde_json::json!({
                "protocolVersion": version,
                "capabilities": {
                    "tools": {"listChanged": true},
                    "resources": {"subscribe": true, "listChanged": true},
                    "prompts": {"listChanged": true},
                    "logging": {},
                    "completions": {}
                },
                "serverInfo": {"name": "harombe", "version": env!("CARGO_PKG_VERSION")}
            }),
        ))
    }

    /// Rebuilds the tool catalogue from every upstream (all pages).
    pub async fn refresh_catalog(&self) {
        let mut lists = self.lists.lock().await;
        let all: Vec<usize> = (0..self.upstreams.len()).collect();
        self.refetch(&mut lists, &all).await;
    }

    /// Fetches the list of upstream `index` again (it said its list changed) and rebuilds
    /// the catalogue; the other upstreams' lists are kept.
    pub async fn refresh_upstream(&self, index: usize) {
        let mut lists = self.lists.lock().await;
        self.refetch(&mut lists, &[index]).await;
    }

    /// Fetches the lists of the upstreams `which` names (one that fails is left out until
    /// it is fetched again) and rebuilds the catalogue from every list held.
    async fn refetch(&self, lists: &mut Lists, which: &[usize]) {
        let fetched = futures::future::join_all(
            which
                .iter()
                .filter_map(|&i| self.upstreams.get(i).map(|up| (i, up)))
                .map(|(i, up)| async move { (i, self.fetch_tools(up).await) }),
        )
        .await;
        lists.per.resize_with(self.upstreams.len(), || None);
        lists.attempted.resize(self.upstreams.len(), false);
        for (i, r) in fetched {
            lists.attempted[i] = true;
            lists.per[i] = match r {
                Ok(mut t) => {
                    let mut hidden = std::collections::HashSet::new();
                    self.inspect_tools(&mut t, &mut hidden).await;
                    Some((t, hidden))
                }
                Err(e) => {
                    tracing::warn!(error = %e, "tools/list from an upstream failed");
                    None
                }
            };
        }
        let complete = lists.per.iter().all(Option::is_some);
        lists.retry_at = (!complete).then(|| tokio::time::Instant::now() + LIST_RETRY);
        let held = lists.per.iter().flatten();
        let mut cat = Catalog::build(
            held.clone().map(|(t, _)| t.clone()).collect(),
            &self.config.tool_names,
        );
        cat.hidden = held.flat_map(|(_, h)| h.iter().cloned()).collect();
        *self.catalog.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(cat);
        self.catalog_complete.store(complete, Ordering::Release);
        self.catalog_built
            .store(lists.attempted.iter().all(|a| *a), Ordering::Release);
    }

    /// Every page of one upstream's tools/list.
    async fn fetch_tools(&self, up: &Upstream) -> Result<UpstreamTools, GatewayError> {
        let timeout = self.timeout();
        let mut tools = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..100 {
            let params = match &cursor {
                Some(c) => serde_json::json!({"cursor": c}),
                None => serde_json::json!({}),
            };
            #[derive(Deserialize)]
            struct Page {
                #[serde(default)]
                tools: Vec<Box<RawValue>>,
                #[serde(rename = "nextCursor")]
                next: Option<String>,
            }
            let resp = up.request("tools/list", &params, timeout).await?;
            let page: Page = resp
                .field("result")
                .and_then(|r| serde_json::from_str(r.get()).ok())
                .ok_or_else(|| GatewayError::UpstreamUnavailable {
                    upstream: up.name().to_owned(),
                    problem: "tools/list failed".into(),
                })?;
            tools.extend(page.tools);
            match page.next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
        Ok(UpstreamTools {
            index: up.shared.index,
            name: up.name().to_owned(),
            tools,
        })
    }

    /// Inspects each tool definition of one upstream (see
    /// [`crate::InspectStage::inspect_tool`]): a clean one is kept as is; one with findings
    /// is hidden (deny, or a replacement that is no longer that tool), listed redacted, or
    /// kept and logged, and recorded in a `decision` event (once per definition and
    /// action, not at every refresh).
    async fn inspect_tools(
        &self,
        up: &mut UpstreamTools,
        hidden: &mut std::collections::HashSet<String>,
    ) {
        let mut kept = Vec::with_capacity(up.tools.len());
        for raw in std::mem::take(&mut up.tools) {
            let ins = self.deps.seams.inspect.inspect_tool(&up.name, &raw).await;
            if ins.is_clean() {
                kept.push(raw);
                continue;
            }
            let name = crate::catalog::tool_name(&raw).unwrap_or_default();
            let mut seen = std::collections::hash_map::DefaultHasher::new();
            std::hash::Hash::hash(&(up.name.as_str(), raw.get()), &mut seen);
            let redacted = ins
                .replacement
                .as_ref()
                .and_then(|r| serde_json::value::to_raw_value(r).ok())
                .filter(|r| crate::catalog::tool_name(r).as_deref() == Some(name.as_str()));
            let action = if ins.verdict.decision != harombe_core::Decision::Allow
                || (ins.replacement.is_some() && redacted.is_none())
            {
                hidden.insert(name.clone());
                "hidden"
            } else if let Some(r) = redacted {
                kept.push(r);
                "redacted"
            } else {
                kept.push(raw);
                "logged"
            };
            std::hash::Hash::hash(action, &mut seen);
            let first_time = self
                .flagged_tools
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(std::hash::Hasher::finish(&seen));
            if !first_time {
                continue;
            }
            tracing::warn!(upstream = %up.name, tool = %name, action, "tool definition failed inspection");
            let outcome = if action == "hidden" {
                Outcome::Denied
            } else {
                Outcome::Success
            };
            let mut e = AuditEvent::new(self.deps.clock.now(), EventKind::Decision, outcome)
                .with_target(truncated(&name))
                .with_verdict(ins.verdict.clone());
            e.details = Some(serde_json::json!({
                "upstream": up.name,
                "subject": "tool definition",
                "findings": ins.findings,
                "action": action,
            }));
            if let Err(err) = audit::append(self.deps.audit.as_ref(), e).await {
                tracing::error!(error = %err, "audit append failed");
            }
        }
        up.tools = kept;
    }

    /// The catalogue. Until every upstream's list was asked for once, callers wait for it.
    /// Afterwards, while some upstream's list is missing (it is down, or failed to list),
    /// one caller at a time fetches the missing lists again, at most once per
    /// `LIST_RETRY`; every other call goes on at once with the catalogue as it is, so an
    /// upstream that is down neither slows nor serialises the calls to the others.
    pub(crate) async fn catalog(&self) -> Arc<Catalog> {
        if !self.catalog_complete.load(Ordering::Acquire) {
            let lists = if self.catalog_built.load(Ordering::Acquire) {
                self.lists.try_lock().ok()
            } else {
                Some(self.lists.lock().await)
            };
            if let Some(mut lists) = lists {
                let due = lists
                    .retry_at
                    .is_none_or(|t| tokio::time::Instant::now() >= t)
                    || lists.attempted.len() < self.upstreams.len()
                    || lists.attempted.contains(&false);
                if !self.catalog_complete.load(Ordering::Acquire) && due {
                    let missing: Vec<usize> = (0..self.upstreams.len())
                        .filter(|&i| lists.per.get(i).is_none_or(Option::is_none))
                        .collect();
                    self.refetch(&mut lists, &missing).await;
                }
            }
        }
        self.catalog
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    async fn tools_list(&self, ctx: &ClientCtx, id: &RawValue) -> Result<Vec<u8>, GatewayError> {
        let started = std::time::Instant::now();
        let cat = self.catalog().await;
        let mut body = Vec::from(&b"{\"tools\":["[..]);
        let mut n = 0usize;
        for t in cat
            .tools
            .iter()
            .filter(|t| self.policy.allows(&ctx.agent, &t.name))
        {
            if n > 0 {
                body.push(b',');
            }
            body.extend_from_slice(t.raw.get().as_bytes());
            n += 1;
        }
        body.extend_from_slice(b"]}");
        let raw = RawValue::from_string(String::from_utf8(body).unwrap_or_default())
            .map_err(|e| GatewayError::Internal(e.to_string()))?;
        let out = jsonrpc::result(id, &raw);
        let mut e = AuditEvent::new(
            self.deps.clock.now(),
            EventKind::ToolsListed,
            Outcome::Success,
        )
        .with_agent(ctx.agent.clone())
        .with_target("tools/list");
        e.session = ctx.session.as_ref().map(|s| s.id.clone());
        e.duration_us = Some(started.elapsed().as_micros() as u64);
        e.bytes_out = out.len() as u64;
        e.details = Some(serde_json::json!({"count": n, "hidden_by_policy": cat.tools.len() - n}));
        audit::append(self.deps.audit.as_ref(), e).await?;
        Ok(out)
    }

    /// A list merged across upstreams (one upstream: forwarded untouched, pagination too).
    async fn merged(
        &self,
        ctx: &ClientCtx,
        msg: &Message,
        key: &'static str,
        route_key: &'static str,
    ) -> Result<Vec<u8>, GatewayError> {
        if self.upstreams.len() <= 1 {
            return self.forward_plain(ctx, 0, msg).await;
        }
        let id = msg
            .id()
            .map(ToOwned::to_owned)
            .unwrap_or_else(jsonrpc::null);
        let method = msg.method().unwrap_or_default().to_owned();
        let mut items: Vec<Box<RawValue>> = Vec::new();
        for up in &self.upstreams {
            let mut cursor: Option<String> = None;
            for _ in 0..100 {
                let params = match &cursor {
                    Some(c) => serde_json::json!({"cursor": c}),
                    None => serde_json::json!({}),
                };
                let Ok(resp) = up.request(&method, &params, self.timeout()).await else {
                    break;
                };
                let Some(fields) = resp
                    .field("result")
                    .and_then(|r| jsonrpc::object_fields(r.get()))
                else {
                    break;
                };
                let mut next = None;
                for (k, v) in fields {
                    if k == key {
                        let list: Vec<Box<RawValue>> =
                            serde_json::from_str(v.get()).unwrap_or_default();
                        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
                        for item in &list {
                            if let Some(r) = member_str(item, route_key) {
                                routes.insert((route_key_of(key), r), up.shared.index);
                            }
                        }
                        items.extend(list);
                    } else if k == "nextCursor" {
                        next = serde_json::from_str::<String>(v.get()).ok();
                    }
                }
                match next {
                    Some(n) => cursor = Some(n),
                    None => break,
                }
            }
        }
        let mut map = serde_json::Map::new();
        map.insert(
            key.to_owned(),
            serde_json::to_value(&items).map_err(|e| GatewayError::Internal(e.to_string()))?,
        );
        Ok(jsonrpc::result(&id, &map))
    }

    fn route(&self, msg: &Message, key: &'static str) -> usize {
        if self.upstreams.len() <= 1 {
            return 0;
        }
        let kind = if key == "uri" { "uri" } else { "name" };
        msg.params()
            .and_then(|p| member_str(p, key))
            .and_then(|v| {
                self.routes
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&(kind, v))
                    .copied()
            })
            .unwrap_or(0)
    }

    /// The upstream a `completion/complete` is for: the one that listed the prompt
    /// (`ref/prompt`, by name) or the resource or template (`ref/resource`, by URI).
    fn route_ref(&self, msg: &Message) -> usize {
        if self.upstreams.len() <= 1 {
            return 0;
        }
        #[derive(Deserialize)]
        struct Ref {
            #[serde(rename = "type")]
            kind: String,
            name: Option<String>,
            uri: Option<String>,
        }
        #[derive(Deserialize)]
        struct P {
            #[serde(rename = "ref")]
            target: Ref,
        }
        let Ok(Some(P { target })) = msg.params_as::<P>() else {
            return 0;
        };
        let key = match (target.kind.as_str(), target.name, target.uri) {
            ("ref/prompt", Some(name), _) => ("name", name),
            ("ref/resource", _, Some(uri)) => ("uri", uri),
            _ => return 0,
        };
        self.routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .copied()
            .unwrap_or(0)
    }

    /// `logging/setLevel` is the session's own: its log messages are filtered to that
    /// level, and the upstreams (shared by every agent) are asked for the most verbose
    /// level any open session asked for, so one agent can neither silence another's log
    /// messages nor flood a session that chose a level.
    async fn set_log_level(&self, ctx: &ClientCtx, msg: &Message) -> Result<Vec<u8>, GatewayError> {
        #[derive(Deserialize)]
        struct P {
            level: String,
        }
        let level = msg
            .params_as::<P>()?
            .ok_or_else(|| GatewayError::InvalidParams("level is missing".into()))?
            .level;
        let rank = crate::session::log_rank(&level).ok_or_else(|| {
            GatewayError::InvalidParams(format!(
                "level {:?} is not one of {}",
                truncated(&level),
                crate::session::LOG_LEVELS.join(", ")
            ))
        })?;
        if let Some(s) = &ctx.session {
            s.set_log_level(rank);
        }
        let most = self
            .sessions
            .all()
            .iter()
            .map(|s| s.log_level())
            .filter(|r| *r > 0)
            .chain([rank])
            .min()
            .unwrap_or(rank);
        let name = crate::session::LOG_LEVELS[usize::from(most.max(1)) - 1];
        let raw = serde_json::value::to_raw_value(name)
            .map_err(|e| GatewayError::Internal(e.to_string()))?;
        self.to_all(ctx, &msg.with_param("level", &raw)?).await
    }

    async fn to_all(&self, ctx: &ClientCtx, msg: &Message) -> Result<Vec<u8>, GatewayError> {
        let mut last = Err(GatewayError::UpstreamUnavailable {
            upstream: "*".into(),
            problem: "no upstreams".into(),
        });
        for i in 0..self.upstreams.len() {
            let r = self.forward_plain(ctx, i, msg).await;
            if last.is_err() || r.is_ok() {
                last = r;
            }
        }
        last
    }

    /// Forwards a request to upstream `index` and answers with the upstream's answer.
    async fn forward_plain(
        &self,
        ctx: &ClientCtx,
        index: usize,
        msg: &Message,
    ) -> Result<Vec<u8>, GatewayError> {
        let up = self.upstreams.get(index).ok_or_else(|| {
            GatewayError::UnknownMethod(msg.method().unwrap_or_default().to_owned())
        })?;
        let resp = self.exchange(ctx, up, msg, msg).await?;
        Ok(resp)
    }

    /// [`Self::forward_plain`] for content an upstream hands the agent outside a tool call
    /// (`resources/read`, `prompts/get`): the answer goes through the result inspection
    /// like a tool result. Nothing found: passed through (and not audited, like other
    /// plain requests). Something found: the action applies (block: refused with -32004;
    /// redact: the agent gets the redacted answer; log: the answer as is) and one
    /// `decision` event records the findings, `key` (the URI or prompt name) and the
    /// action.
    async fn forward_inspected(
        &self,
        ctx: &ClientCtx,
        index: usize,
        msg: &Message,
        key: &str,
    ) -> Result<Vec<u8>, GatewayError> {
        let up = self.upstreams.get(index).ok_or_else(|| {
            GatewayError::UnknownMethod(msg.method().unwrap_or_default().to_owned())
        })?;
        let client_id = msg
            .id()
            .map(ToOwned::to_owned)
            .unwrap_or_else(jsonrpc::null);
        let resp = self.forward_tracked(ctx, up, &client_id, msg).await?;
        let Some(result) = resp.field("result") else {
            return Ok(resp.encode_with_id(&client_id));
        };
        let method = msg.method().unwrap_or_default();
        let rec = crate::pipeline::CallRecord::new(
            ctx.agent.clone(),
            ctx.session.as_ref().map(|s| s.id.clone()),
            method.to_owned(),
            0,
        );
        let ins = self.deps.seams.inspect.inspect_result(&rec, result).await;
        if ins.is_clean() {
            return Ok(resp.encode_with_id(&client_id));
        }
        let (answer, action) = match ruling(&ins) {
            Err(e) => (Err(e), "blocked"),
            Ok(Some(cut)) => (Ok(jsonrpc::result(&client_id, &cut)), "redacted"),
            Ok(None) => (Ok(resp.encode_with_id(&client_id)), "logged"),
        };
        // The URI or name is the agent's own text: recorded only if it holds no finding.
        let mut subject = msg.params().and_then(|p| member_str(p, key));
        if let Some(raw) = subject
            .as_ref()
            .and_then(|v| serde_json::value::to_raw_value(v).ok())
            && !self
                .deps
                .seams
                .inspect
                .inspect_result(&rec, &raw)
                .await
                .findings
                .is_empty()
        {
            subject = Some("[withheld: inspection found something in it]".into());
        }
        let mut e = decision_event(
            self.deps.clock.now(),
            Some(ctx.agent.clone()),
            method.to_owned(),
            ins,
            answer.is_ok(),
            serde_json::json!({ key: subject, "action": action }),
        );
        let answer = answer.unwrap_or_else(|e| e.to_rpc().response(Some(&client_id)));
        e.session = rec.session.clone();
        e.bytes_out = answer.len() as u64;
        audit::append(self.deps.audit.as_ref(), e).await?;
        Ok(answer)
    }

    /// Sends `out` (built from the client's `msg`) upstream, tracking it for cancellation,
    /// and re-encodes the answer with the client's id.
    async fn exchange(
        &self,
        ctx: &ClientCtx,
        up: &Upstream,
        msg: &Message,
        out: &Message,
    ) -> Result<Vec<u8>, GatewayError> {
        let client_id = msg
            .id()
            .map(ToOwned::to_owned)
            .unwrap_or_else(jsonrpc::null);
        let resp = self.forward_tracked(ctx, up, &client_id, out).await?;
        Ok(resp.encode_with_id(&client_id))
    }

    /// Forwards `out` under a fresh upstream id while the client's id is registered as in
    /// flight in its session (so a `notifications/cancelled` from the client reaches the
    /// right upstream request). The one place that pairs `begin` with `end`.
    pub(crate) async fn forward_tracked(
        &self,
        ctx: &ClientCtx,
        up: &Upstream,
        client_id: &RawValue,
        out: &Message,
    ) -> Result<Message, GatewayError> {
        let upstream_id = up.shared.next_id();
        if let Some(s) = &ctx.session
            && !s.begin(client_id.get(), up.shared.index, upstream_id)
        {
            return Err(GatewayError::InvalidRequest(format!(
                "id {} is already in flight in this session",
                client_id.get()
            )));
        }
        let origin = CallOrigin {
            owner: Some(ctx.agent.clone()),
            session: ctx.session.as_ref().map(|s| s.id.clone()),
            sink: ctx.sink.clone(),
            log_level: ctx.session.as_ref().map_or(0, |s| s.log_level()),
        };
        let r = up.forward(upstream_id, out, origin, self.timeout()).await;
        if let Some(s) = &ctx.session {
            s.end(client_id.get());
        }
        r
    }

    /// Audits a refusal that happened outside a tool call (protocol errors, limits).
    pub async fn audit_refusal(
        &self,
        agent: Option<&AgentId>,
        session: Option<&Session>,
        method: &str,
        e: &GatewayError,
    ) {
        let kind = if matches!(e, GatewayError::Authentication(_)) {
            EventKind::Auth
        } else if method == "tools/call" {
            EventKind::ToolCall
        } else {
            EventKind::Decision
        };
        let outcome = if matches!(
            e,
            GatewayError::UpstreamUnavailable { .. }
                | GatewayError::UpstreamTimeout { .. }
                | GatewayError::Internal(_)
                | GatewayError::Audit(_)
        ) {
            Outcome::Failure
        } else {
            Outcome::Denied
        };
        let mut ev = AuditEvent::new(self.deps.clock.now(), kind, outcome)
            .with_target(if method.is_empty() { "mcp" } else { method })
            .with_error(truncated(&e.to_string()));
        if outcome == Outcome::Denied {
            ev.verdict = Some(Verdict::deny(truncated(&e.to_string())));
        }
        ev.agent = agent.cloned();
        ev.session = session.map(|s| s.id.clone());
        ev.details = Some(serde_json::json!({"code": e.code(), "reason": e.reason()}));
        if let Err(ae) = audit::append(self.deps.audit.as_ref(), ev).await {
            tracing::error!(error = %ae, "audit append failed");
        }
    }

    /// A client's answer to a server request relayed to it (only the agent it was relayed
    /// to can answer it). Its `result` leaves the agent for the tool server like arguments
    /// do, so it is inspected first: a finding to cut is cut, one that blocks sends the
    /// upstream an error instead, and an answer with findings is recorded as a `decision`
    /// event.
    async fn relay_response(&self, ctx: &ClientCtx, msg: &Message) {
        let Some(gid) = msg
            .id()
            .and_then(|i| serde_json::from_str::<String>(i.get()).ok())
        else {
            return;
        };
        for up in &self.upstreams {
            if gid.starts_with(&format!("{}:", up.name()))
                && let Some((orig, method)) = up.shared.take_relayed(&gid, &ctx.agent)
            {
                let out = self
                    .screen_answer(ctx, up.name(), &method, msg, &orig)
                    .await;
                let _ = up.send_raw(out).await;
                return;
            }
        }
    }

    /// What the upstream receives for the agent's answer `msg` to its request `method`.
    async fn screen_answer(
        &self,
        ctx: &ClientCtx,
        upstream: &str,
        method: &str,
        msg: &Message,
        orig: &RawValue,
    ) -> Vec<u8> {
        let Some(result) = msg.field("result") else {
            return msg.encode_with_id(orig);
        };
        let ins = self
            .deps
            .seams
            .inspect
            .inspect_agent_answer(upstream, method, result)
            .await;
        if ins.is_clean() {
            return msg.encode_with_id(orig);
        }
        let (out, action) = match ruling(&ins) {
            Err(e) => (Err(e), "blocked"),
            Ok(Some(cut)) => (msg.with_field("result", &cut), "redacted"),
            Ok(None) => (Ok(msg.clone()), "logged"),
        };
        let mut e = decision_event(
            self.deps.clock.now(),
            Some(ctx.agent.clone()),
            method.to_owned(),
            ins,
            out.is_ok(),
            serde_json::json!({ "upstream": upstream, "answer": true, "action": action }),
        );
        e.session = ctx.session.as_ref().map(|s| s.id.clone());
        let out = match out {
            Ok(m) => m.encode_with_id(orig),
            Err(e) => e.to_rpc().response(Some(orig)),
        };
        if let Err(ae) = audit::append(self.deps.audit.as_ref(), e).await {
            tracing::error!(error = %ae, "decision on an agent's answer not audited");
        }
        out
    }

    async fn client_notification(&self, ctx: &ClientCtx, msg: &Message) {
        match msg.method() {
            Some("notifications/initialized") => {}
            Some("notifications/cancelled") => {
                #[derive(Deserialize)]
                struct C<'a> {
                    #[serde(borrow, rename = "requestId")]
                    id: &'a RawValue,
                    #[serde(borrow)]
                    reason: Option<&'a RawValue>,
                }
                if let (Ok(Some(c)), Some(s)) = (msg.params_as::<C<'_>>(), &ctx.session)
                    && let Some((up, uid)) = s.lookup(c.id.get())
                    && let Some(up) = self.upstreams.get(up)
                {
                    up.cancel(uid, c.reason).await;
                }
            }
            _ => {
                for up in &self.upstreams {
                    let _ = up.send_raw(msg.encode()).await;
                }
            }
        }
    }
}

pub(crate) fn truncated(s: &str) -> String {
    s.chars().take(1000).collect()
}

fn member_str(raw: &RawValue, key: &str) -> Option<String> {
    jsonrpc::object_fields(raw.get())?
        .into_iter()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| serde_json::from_str::<String>(v.get()).ok())
}

fn route_key_of(list_key: &str) -> &'static str {
    if list_key == "prompts" { "name" } else { "uri" }
}

/// Messages upstreams start that name no call: requests are answered here; notifications
/// go to the sessions [`recipients`] names.
async fn unrouted_loop(engine: std::sync::Weak<Engine>, mut rx: mpsc::Receiver<Unrouted>) {
    while let Some(u) = rx.recv().await {
        let Some(engine) = engine.upgrade() else {
            return;
        };
        let Some(up) = engine.upstreams.get(u.upstream) else {
            continue;
        };
        let msg = u.msg;
        match msg.kind() {
            Kind::Request => {
                let id = msg
                    .id()
                    .map(ToOwned::to_owned)
                    .unwrap_or_else(jsonrpc::null);
                let answer = match (msg.method(), u.refuse) {
                    (_, Some(e)) => {
                        tracing::info!(upstream = %up.name(), method = ?msg.method(), error = %e, "upstream request withheld from the agent");
                        e.to_rpc().response(Some(&id))
                    }
                    (Some("ping"), None) => jsonrpc::result(&id, &serde_json::json!({})),
                    (Some("roots/list"), None) => {
                        jsonrpc::result(&id, &serde_json::json!({"roots": []}))
                    }
                    (m, None) => {
                        tracing::warn!(upstream = %up.name(), method = ?m, "upstream request refused: no client call in flight it can only belong to");
                        GatewayError::UnknownMethod(format!(
                            "{} (no client call it can belong to is in flight)",
                            m.unwrap_or_default()
                        ))
                        .to_rpc()
                        .response(Some(&id))
                    }
                };
                let _ = up.send_raw(answer).await;
            }
            _ => {
                if msg.method() == Some("notifications/tools/list_changed") {
                    engine.refresh_upstream(u.upstream).await;
                }
                let to = recipients(&msg, u.owner.as_ref(), &engine.sessions.all());
                if to.is_empty() {
                    tracing::info!(upstream = %up.name(), method = ?msg.method(), "upstream notification not relayed: it names no call and no single agent owns it");
                }
                let bytes = msg.encode();
                // A log message goes only to sessions that asked for its level.
                for s in to.iter().filter(|s| upstream::wanted(&msg, s.log_level())) {
                    s.deliver(bytes.clone());
                }
            }
        }
    }
}

/// What an upstream starts (server requests, log messages, progress) reaches an agent
/// only through content inspection with the `results` policy, like a result: findings are
/// cut out (redact), or the message is withheld (block; a request is answered upstream
/// with the error), and each message with findings is recorded as a `decision` event
/// (agent, the call's session, method, upstream, findings, action), appended in the background so the
/// upstream's reader never waits for the audit log (shutdown still waits for it).
struct ContentScreen {
    inspect: Arc<dyn crate::pipeline::InspectStage>,
    audit: Arc<dyn harombe_core::AuditStore>,
    clock: Arc<dyn harombe_core::Clock>,
    tracker: TaskTracker,
}

impl upstream::Screen for ContentScreen {
    fn screen(
        &self,
        upstream: &str,
        to: upstream::Recipient<'_>,
        msg: Message,
    ) -> Result<Message, GatewayError> {
        let Some(params) = msg.params() else {
            return Ok(msg);
        };
        let method = msg.method().unwrap_or_default().to_owned();
        let ins = self
            .inspect
            .inspect_upstream_message(upstream, &method, params);
        if ins.is_clean() {
            return Ok(msg);
        }
        let (out, action) = match ruling(&ins) {
            Err(e) => (Err(e), "withheld"),
            Ok(Some(cut)) => (msg.with_field("params", &cut), "redacted"),
            Ok(None) => (Ok(msg), "logged"),
        };
        let mut e = decision_event(
            self.clock.now(),
            to.agent.cloned(),
            method,
            ins,
            out.is_ok(),
            serde_json::json!({ "upstream": upstream, "action": action }),
        );
        e.session = to.session.cloned();
        let audit = self.audit.clone();
        self.tracker.spawn(async move {
            if let Err(e) = audit::append(audit.as_ref(), e).await {
                tracing::error!(error = %e, "decision on an upstream message not audited");
            }
        });
        out
    }
}

/// Least time between two attempts to fetch the tool list of an upstream that is missing
/// from the catalogue.
const LIST_RETRY: Duration = Duration::from_secs(1);

/// The tool lists the catalogue is built from, per upstream: the list after inspection and
/// the names inspection withheld (`None`: not fetched, or its last fetch failed).
#[derive(Debug, Default)]
struct Lists {
    per: Vec<Option<(UpstreamTools, std::collections::HashSet<String>)>>,
    /// Whether each upstream's list was asked for at least once.
    attempted: Vec<bool>,
    /// When a missing list may be fetched again.
    retry_at: Option<tokio::time::Instant>,
}

/// How an inspection that found something applies: `Err` with the refusal (a deny), or
/// what to send instead (the replacement, encoded; one that cannot be encoded is refused
/// rather than sent uncut), or `None` to send the inspected value as is.
fn ruling(ins: &crate::pipeline::Inspection) -> Result<Option<Box<RawValue>>, GatewayError> {
    if ins.verdict.decision != harombe_core::Decision::Allow {
        let why = ins.verdict.reasons.join("; ");
        return Err(if ins.secret_detected {
            GatewayError::SecretDetected(why)
        } else {
            GatewayError::Denied(why)
        });
    }
    ins.replacement
        .as_ref()
        .map(|cut| {
            serde_json::value::to_raw_value(cut).map_err(|e| GatewayError::Internal(e.to_string()))
        })
        .transpose()
}

/// The `decision` event for an inspection of something outside a tool call (`target`:
/// its method), `details` completed with the findings.
fn decision_event(
    at: time::OffsetDateTime,
    agent: Option<AgentId>,
    target: String,
    ins: crate::pipeline::Inspection,
    passed: bool,
    mut details: serde_json::Value,
) -> AuditEvent {
    let outcome = if passed {
        Outcome::Success
    } else {
        Outcome::Denied
    };
    let mut e = AuditEvent::new(at, EventKind::Decision, outcome)
        .with_target(target)
        .with_verdict(ins.verdict);
    e.agent = agent;
    details["findings"] = serde_json::Value::Array(ins.findings);
    e.details = Some(details);
    e
}

/// The sessions an upstream notification that names no call may reach. One upstream
/// session serves every agent, so anything that may carry data goes only where it cannot
/// cross from one agent to another:
/// - `notifications/*/list_changed` says only that a list changed: every session.
/// - `notifications/resources/updated`: the sessions subscribed to that URI.
/// - Anything else (log messages, ...): the sessions of `owner` (the agent every call in
///   flight belonged to when it arrived); with no owner, every session if they all belong
///   to one agent; otherwise none.
pub(crate) fn recipients(
    msg: &Message,
    owner: Option<&AgentId>,
    sessions: &[Arc<Session>],
) -> Vec<Arc<Session>> {
    let method = msg.method().unwrap_or_default();
    if method.starts_with("notifications/") && method.ends_with("/list_changed") {
        return sessions.to_vec();
    }
    if method == "notifications/resources/updated" {
        let Some(uri) = param_str(msg, "uri") else {
            return Vec::new();
        };
        return sessions
            .iter()
            .filter(|s| s.subscribed(&uri))
            .cloned()
            .collect();
    }
    let owner = owner.or_else(|| {
        let first = &sessions.first()?.agent;
        sessions.iter().all(|s| s.agent == *first).then_some(first)
    });
    match owner {
        Some(a) => sessions.iter().filter(|s| s.agent == *a).cloned().collect(),
        None => Vec::new(),
    }
}

/// A string member of a message's params.
fn param_str(msg: &Message, key: &str) -> Option<String> {
    member_str(msg.params()?, key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(json: &str) -> Message {
        jsonrpc::decode_one(json.as_bytes(), 64).unwrap()
    }

    fn who(to: &[Arc<Session>]) -> Vec<String> {
        let mut v: Vec<String> = to.iter().map(|s| s.agent.to_string()).collect();
        v.sort();
        v
    }

    #[test]
    fn unrouted_notifications_never_cross_agents() {
        let sessions = Sessions::new(8, 4);
        let alice = AgentId::new("alice").unwrap();
        let bob = AgentId::new("bob").unwrap();
        let a1 = sessions.create(alice.clone(), "v".into()).unwrap();
        sessions.create(alice.clone(), "v".into()).unwrap();
        let b1 = sessions.create(bob.clone(), "v".into()).unwrap();
        let all = sessions.all();
        let log = msg(
            r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x"}}"#,
        );
        assert_eq!(
            who(&recipients(&log, Some(&alice), &all)),
            ["alice", "alice"]
        );
        assert_eq!(who(&recipients(&log, Some(&bob), &all)), ["bob"]);
        assert!(
            recipients(&log, None, &all).is_empty(),
            "two agents, no owner"
        );
        let only_alice: Vec<_> = all.iter().filter(|s| s.agent == alice).cloned().collect();
        assert_eq!(recipients(&log, None, &only_alice).len(), 2);
        // A list change carries no data: everyone.
        let changed = msg(r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#);
        assert_eq!(recipients(&changed, None, &all).len(), 3);
        // A resource update: its subscribers only, whoever was in flight.
        let updated = msg(
            r#"{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":"file:///b"}}"#,
        );
        assert!(recipients(&updated, Some(&alice), &all).is_empty());
        b1.subscribe("file:///b".into(), true);
        a1.subscribe("file:///a".into(), true);
        assert_eq!(who(&recipients(&updated, Some(&alice), &all)), ["bob"]);
        b1.subscribe("file:///b".into(), false);
        assert!(recipients(&updated, None, &all).is_empty());
    }
}
