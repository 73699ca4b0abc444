//! The REST handlers, and [`ROUTES`]: the one list the router is built from and the
//! OpenAPI document is checked against.

use std::collections::HashMap;
use std::str::FromStr;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::routing::{MethodRouter, get, post};
use harombe_core::{
    AgentId, Approval, ApprovalDecision, ApprovalId, ApprovalState, Decision, EventFilter, EventId,
    EventKind, EventPage, Order, Outcome, PageRequest, SessionId, StoredEvent, ThreatLevel,
};
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::ApiState;
use crate::auth::{Admin, Reader};
use crate::error::ApiError;
use crate::metrics::{MAX_TREND_HOURS, MetricsSnapshot, Trend};
use crate::{dashboard, live, prom};

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Public,
    /// Any valid token.
    Read,
    /// An admin token.
    Admin,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endpoint {
    Dashboard,
    Asset,
    Healthz,
    Prometheus,
    Events,
    Event,
    Agents,
    Agent,
    Approvals,
    Approval,
    Approve,
    Deny,
    Metrics,
    Trends,
    Ws,
}

/// One route of the API.
#[derive(Clone, Copy, Debug)]
pub struct Route {
    pub method: &'static str,
    /// axum/OpenAPI path template (`{id}` segments).
    pub path: &'static str,
    pub access: Access,
    endpoint: Endpoint,
}

const fn route(
    method: &'static str,
    path: &'static str,
    access: Access,
    endpoint: Endpoint,
) -> Route {
    Route {
        method,
        path,
        access,
        endpoint,
    }
}

/// Every route the router serves (docs/openapi.json lists exactly these).
pub const ROUTES: &[Route] = &[
    route("GET", "/", Access::Public, Endpoint::Dashboard),
    route("GET", "/assets/{name}", Access::Public, Endpoint::Asset),
    route("GET", "/healthz", Access::Public, Endpoint::Healthz),
    route("GET", "/metrics", Access::Read, Endpoint::Prometheus),
    route("GET", "/api/events", Access::Read, Endpoint::Events),
    route("GET", "/api/events/{id}", Access::Read, Endpoint::Event),
    route("GET", "/api/agents", Access::Read, Endpoint::Agents),
    route("GET", "/api/agents/{name}", Access::Read, Endpoint::Agent),
    route("GET", "/api/approvals", Access::Read, Endpoint::Approvals),
    route(
        "GET",
        "/api/approvals/{id}",
        Access::Read,
        Endpoint::Approval,
    ),
    route(
        "POST",
        "/api/approvals/{id}/approve",
        Access::Admin,
        Endpoint::Approve,
    ),
    route(
        "POST",
        "/api/approvals/{id}/deny",
        Access::Admin,
        Endpoint::Deny,
    ),
    route("GET", "/api/metrics", Access::Read, Endpoint::Metrics),
    route("GET", "/api/trends", Access::Read, Endpoint::Trends),
    route("GET", "/api/ws", Access::Read, Endpoint::Ws),
];

pub(crate) fn method_router(r: &Route) -> MethodRouter<ApiState> {
    match r.endpoint {
        Endpoint::Dashboard => get(dashboard::index),
        Endpoint::Asset => get(dashboard::asset),
        Endpoint::Healthz => get(healthz),
        Endpoint::Prometheus => get(prom::handler),
        Endpoint::Events => get(list_events),
        Endpoint::Event => get(get_event),
        Endpoint::Agents => get(list_agents),
        Endpoint::Agent => get(get_agent),
        Endpoint::Approvals => get(list_approvals),
        Endpoint::Approval => get(get_approval),
        Endpoint::Approve => post(approve),
        Endpoint::Deny => post(deny),
        Endpoint::Metrics => get(metrics),
        Endpoint::Trends => get(trends),
        Endpoint::Ws => get(live::ws_handler),
    }
}

/// Query parameters, each at most once and each one the route knows.
fn params(raw: Option<String>, allowed: &[&str]) -> Result<HashMap<String, String>, ApiError> {
    let mut out = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        if !allowed.contains(&k.as_ref()) {
            return Err(ApiError::bad_param(
                format!(
                    "query parameter {:?}",
                    k.chars().take(64).collect::<String>()
                ),
                format!("unknown here (expected one of: {})", allowed.join(", ")),
            ));
        }
        if out.insert(k.to_string(), v.to_string()).is_some() {
            return Err(ApiError::bad_param(
                format!("query parameter {k:?}"),
                "given more than once",
            ));
        }
    }
    Ok(out)
}

fn parse<T: FromStr>(p: &HashMap<String, String>, name: &str) -> Result<Option<T>, ApiError>
where
    T::Err: std::fmt::Display,
{
    p.get(name)
        .map(|v| {
            v.parse::<T>().map_err(|e| {
                ApiError::bad_param(format!("query parameter {name:?}"), e.to_string())
            })
        })
        .transpose()
}

/// RFC 3339, or a duration ago: `30s`, `15m`, `2h`, `7d`.
fn parse_time(
    p: &HashMap<String, String>,
    name: &str,
    now: OffsetDateTime,
) -> Result<Option<OffsetDateTime>, ApiError> {
    let Some(v) = p.get(name) else {
        return Ok(None);
    };
    if let Ok(t) = OffsetDateTime::parse(v, &Rfc3339) {
        return Ok(Some(t.to_offset(time::UtcOffset::UTC)));
    }
    let bad = || {
        ApiError::bad_param(
            format!("query parameter {name:?}"),
            format!(
                "{:?} is neither an RFC 3339 time nor a duration ago like 15m, 2h, 7d",
                v.chars().take(64).collect::<String>()
            ),
        )
    };
    let (n, unit) = v.split_at(v.len().saturating_sub(1));
    let n: i64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        "d" => n.checked_mul(86_400),
        _ => None,
    }
    .filter(|s| (0..=100 * 365 * 86_400).contains(s))
    .ok_or_else(bad)?;
    Ok(Some(now - time::Duration::seconds(secs)))
}

fn limit(p: &HashMap<String, String>, default: u32, max: u32) -> Result<u32, ApiError> {
    match parse::<u32>(p, "limit")? {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::bad_param(
            "query parameter \"limit\"",
            format!("{n} is out of range 1..={max}"),
        )),
    }
}

/// Most events one page returns.
pub const MAX_PAGE: u32 = 1_000;

const EVENT_PARAMS: &[&str] = &[
    "agent",
    "session",
    "kind",
    "target",
    "tool",
    "outcome",
    "decision",
    "verdict",
    "min_threat",
    "since",
    "until",
    "limit",
    "cursor",
    "order",
];

/// The filter and page of `GET /api/events` (public for the binary's reuse and tests).
pub fn event_query(
    raw: Option<String>,
    now: OffsetDateTime,
) -> Result<(EventFilter, PageRequest), ApiError> {
    let p = params(raw, EVENT_PARAMS)?;
    let one_of = |a: &str, b: &str| -> Result<Option<&str>, ApiError> {
        match (p.get(a), p.get(b)) {
            (Some(_), Some(_)) => Err(ApiError::bad_param(
                format!("query parameter {b:?}"),
                format!("is another name for {a:?}; give one of them"),
            )),
            (Some(v), None) | (None, Some(v)) => Ok(Some(v.as_str())),
            (None, None) => Ok(None),
        }
    };
    let target = one_of("target", "tool")?.map(str::to_owned);
    let decision = one_of("decision", "verdict")?
        .map(|v| {
            v.parse::<Decision>()
                .map_err(|e| ApiError::bad_param("query parameter \"decision\"", e))
        })
        .transpose()?;
    let filter = EventFilter {
        agent: parse::<AgentId>(&p, "agent")?,
        session: parse::<SessionId>(&p, "session")?,
        kind: parse::<EventKind>(&p, "kind")?,
        target,
        outcome: parse::<Outcome>(&p, "outcome")?,
        decision,
        min_threat: parse::<ThreatLevel>(&p, "min_threat")?,
        since: parse_time(&p, "since", now)?,
        until: parse_time(&p, "until", now)?,
    };
    if let (Some(s), Some(u)) = (filter.since, filter.until)
        && u <= s
    {
        return Err(ApiError::bad_param(
            "query parameter \"until\"",
            "must be after \"since\"",
        ));
    }
    let order = match p.get("order").map(String::as_str) {
        None | Some("newest" | "newest_first") => Order::NewestFirst,
        Some("oldest" | "oldest_first") => Order::OldestFirst,
        Some(other) => {
            return Err(ApiError::bad_param(
                "query parameter \"order\"",
                format!(
                    "{:?} is not newest or oldest",
                    other.chars().take(64).collect::<String>()
                ),
            ));
        }
    };
    let page = PageRequest {
        limit: limit(&p, 100, MAX_PAGE)?,
        cursor: parse::<u64>(&p, "cursor")?,
        order,
    };
    Ok((filter, page))
}

async fn list_events(
    _: Reader,
    State(state): State<ApiState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<EventPage>, ApiError> {
    let (filter, page) = event_query(raw, state.clock.now())?;
    Ok(Json(state.store.query(&filter, page).await?))
}

async fn get_event(
    _: Reader,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<StoredEvent>, ApiError> {
    let id: EventId = id.parse().map_err(|e: harombe_core::IdError| {
        ApiError::bad_param("path segment \"id\"", e.to_string())
    })?;
    state
        .store
        .get(id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no event with id {id}")))
}

async fn list_agents(
    _: Reader,
    State(state): State<ApiState>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let agents = state
        .insights
        .list()
        .await
        .map_err(|e| ApiError::Insights(e.to_string()))?;
    Ok(Json(serde_json::json!({ "agents": agents })))
}

async fn get_agent(
    _: Reader,
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let agent = AgentId::new(name)
        .map_err(|e| ApiError::bad_param("path segment \"name\"", e.to_string()))?;
    state
        .insights
        .get(&agent)
        .await
        .map_err(|e| ApiError::Insights(e.to_string()))?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no agent {agent} is known")))
}

async fn list_approvals(
    _: Reader,
    State(state): State<ApiState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    let p = params(raw, &["state", "limit"])?;
    let st = parse::<ApprovalState>(&p, "state")?;
    let limit = limit(&p, 100, MAX_PAGE)?;
    let approvals = state.approvals.list(st, limit).await?;
    Ok(Json(serde_json::json!({ "approvals": approvals })))
}

fn approval_id(id: &str) -> Result<ApprovalId, ApiError> {
    id.parse().map_err(|e: harombe_core::IdError| {
        ApiError::bad_param("path segment \"id\"", e.to_string())
    })
}

async fn get_approval(
    _: Reader,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Approval>, ApiError> {
    let id = approval_id(&id)?;
    state
        .approvals
        .get(id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no approval with id {id}")))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DecideBody {
    #[serde(default)]
    reason: Option<String>,
}

/// Longest accepted decision reason, in bytes.
pub const MAX_REASON: usize = 1024;

async fn decide(
    state: ApiState,
    admin: Admin,
    id: &str,
    body: &Bytes,
    approve: bool,
) -> Result<Json<Approval>, ApiError> {
    let id = approval_id(id)?;
    let reason = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        serde_json::from_slice::<DecideBody>(body)
            .map_err(|e| ApiError::bad_param("request body", e.to_string()))?
            .reason
    };
    if let Some(r) = &reason
        && r.len() > MAX_REASON
    {
        return Err(ApiError::bad_param(
            "request body field \"reason\"",
            format!("is {} bytes; the maximum is {MAX_REASON}", r.len()),
        ));
    }
    let decision = ApprovalDecision {
        approve,
        by: admin.0.decided_by(),
        reason,
        at: state.clock.now(),
    };
    let a = crate::decide::decide_and_audit(
        state.approvals.as_ref(),
        state.store.as_ref(),
        state.clock.as_ref(),
        id,
        decision,
    )
    .await?;
    Ok(Json(a))
}

async fn approve(
    admin: Admin,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Approval>, ApiError> {
    decide(state, admin, &id, &body, true).await
}

async fn deny(
    admin: Admin,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Approval>, ApiError> {
    decide(state, admin, &id, &body, false).await
}

async fn metrics(
    _: Reader,
    State(state): State<ApiState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<MetricsSnapshot>, ApiError> {
    params(raw, &[])?;
    Ok(Json(state.metrics.snapshot(state.clock.now())))
}

async fn trends(
    _: Reader,
    State(state): State<ApiState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Trend>, ApiError> {
    let p = params(raw, &["hours"])?;
    let hours = match parse::<u32>(&p, "hours")? {
        None => 24,
        Some(h) if (1..=MAX_TREND_HOURS).contains(&h) => h,
        Some(h) => {
            return Err(ApiError::bad_param(
                "query parameter \"hours\"",
                format!("{h} is out of range 1..={MAX_TREND_HOURS}"),
            ));
        }
    };
    Ok(Json(state.metrics.trend(state.clock.now(), hours)))
}

async fn healthz(State(state): State<ApiState>) -> Result<Json<serde_json::Value>, ApiError> {
    let head = state.store.head().await?;
    Ok(Json(serde_json::json!({
        "status": "ok",
        "head_seq": head.map_or(0, |h| h.seq),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn event_query_parses_every_filter() {
        let now = datetime!(2026-05-01 12:00 UTC);
        let (f, p) = event_query(
            Some("agent=bot&session=s1&kind=tool_call&tool=fs.read&outcome=denied&verdict=deny&min_threat=high&since=2h&until=2026-05-01T11:30:00Z&limit=5&cursor=9&order=oldest".into()),
            now,
        )
        .unwrap();
        assert_eq!(f.agent.unwrap().as_str(), "bot");
        assert_eq!(f.kind, Some(EventKind::ToolCall));
        assert_eq!(f.target.as_deref(), Some("fs.read"));
        assert_eq!(f.decision, Some(Decision::Deny));
        assert_eq!(f.min_threat, Some(ThreatLevel::High));
        assert_eq!(f.since, Some(datetime!(2026-05-01 10:00 UTC)));
        assert_eq!(f.until, Some(datetime!(2026-05-01 11:30 UTC)));
        assert_eq!(
            (p.limit, p.cursor, p.order),
            (5, Some(9), Order::OldestFirst)
        );
        let (f, p) = event_query(None, now).unwrap();
        assert_eq!(f, EventFilter::default());
        assert_eq!(p, PageRequest::newest(100));
    }

    #[test]
    fn bad_parameters_are_named() {
        let now = datetime!(2026-05-01 12:00 UTC);
        for (q, name) in [
            ("limit=0", "\"limit\""),
            ("limit=1001", "\"limit\""),
            ("limit=x", "\"limit\""),
            ("kind=nope", "\"kind\""),
            ("agent=a%20b", "\"agent\""),
            ("since=yesterday", "\"since\""),
            ("cursor=-1", "\"cursor\""),
            ("order=up", "\"order\""),
            ("bogus=1", "\"bogus\""),
            ("kind=auth&kind=alert", "\"kind\""),
            ("tool=a&target=b", "\"tool\""),
            ("since=1h&until=2h", "\"until\""),
        ] {
            let e = event_query(Some(q.into()), now).unwrap_err();
            assert_eq!(e.reason(), "bad_request");
            assert!(e.to_string().contains(name), "{q}: {e}");
        }
    }
}
