//! Online intel clients against local fakes of AbuseIPDB v2, VirusTotal v3 and OTX that
//! follow the providers' documented request and response formats, errors included.
#![cfg(feature = "online")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::{Path, Query as AxQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use harombe_core::ManualClock;
use harombe_detect::intel::online::{OnlineIntel, ProviderConfig, ProviderKind, Query};
use serde_json::json;
use time::macros::datetime;

const KEY: &str = "test-key-123";
const BAD_IP: &str = "198.51.100.66";
const LIMITED_IP: &str = "203.0.113.9";
const SLOW_IP: &str = "192.0.2.200";
const BROKEN_IP: &str = "192.0.2.250";
const HUGE_IP: &str = "192.0.2.251";

#[derive(Clone, Default)]
struct Hits(Arc<AtomicUsize>);

async fn abuseipdb(
    State(h): State<Hits>,
    headers: HeaderMap,
    AxQuery(q): AxQuery<std::collections::HashMap<String, String>>,
) -> Response {
    h.0.fetch_add(1, Ordering::SeqCst);
    if headers.get("Key").and_then(|v| v.to_str().ok()) != Some(KEY) {
        return (StatusCode::UNAUTHORIZED, Json(json!({"errors": [{"detail": "Authentication failed. Your API key is either missing, incorrect, or revoked. Note: The APIv2 key differs from the APIv1 key.", "status": 401}]}))).into_response();
    }
    let ip = q.get("ipAddress").cloned().unwrap_or_default();
    match ip.as_str() {
        LIMITED_IP => (StatusCode::TOO_MANY_REQUESTS, [("Retry-After", "120"), ("X-RateLimit-Limit", "1000"), ("X-RateLimit-Remaining", "0")], Json(json!({"errors": [{"detail": "Daily rate limit of 1000 requests exceeded for this endpoint. See headers for additional details.", "status": 429}]}))).into_response(),
        SLOW_IP => {
            tokio::time::sleep(Duration::from_secs(2)).await;
            Json(json!({"data": {"ipAddress": ip, "abuseConfidenceScore": 0}})).into_response()
        }
        BROKEN_IP => (StatusCode::INTERNAL_SERVER_ERROR, "upstream error").into_response(),
        // Valid JSON, padded past any sane answer.
        HUGE_IP => Json(json!({"data": {"abuseConfidenceScore": 0, "pad": "x".repeat(2 << 20)}})).into_response(),
        _ => {
            let score = if ip == BAD_IP { 100 } else { 0 };
            Json(json!({"data": {"ipAddress": ip, "isPublic": true, "ipVersion": 4, "isWhitelisted": false, "abuseConfidenceScore": score, "countryCode": "US", "usageType": "Data Center/Web Hosting/Transit", "isp": "Example", "domain": "example.com", "hostnames": [], "isTor": false, "totalReports": score / 2, "numDistinctUsers": 3, "lastReportedAt": "2025-01-05T12:00:00+00:00"}})).into_response()
        }
    }
}

fn vt_auth(headers: &HeaderMap) -> Option<Response> {
    (headers.get("x-apikey").and_then(|v| v.to_str().ok()) != Some(KEY)).then(|| {
        (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": {"code": "WrongCredentialsError", "message": "Wrong API key"}})),
        )
            .into_response()
    })
}

fn vt_object(id: &str, kind: &str, malicious: u32) -> Response {
    Json(json!({"data": {"id": id, "type": kind, "links": {"self": "x"}, "attributes": {"last_analysis_stats": {"harmless": 60, "malicious": malicious, "suspicious": 0, "undetected": 25, "timeout": 0}, "reputation": -(malicious as i64)}}})).into_response()
}

async fn vt_ip(State(h): State<Hits>, headers: HeaderMap, Path(ip): Path<String>) -> Response {
    h.0.fetch_add(1, Ordering::SeqCst);
    if let Some(r) = vt_auth(&headers) {
        return r;
    }
    vt_object(&ip, "ip_address", if ip == BAD_IP { 12 } else { 0 })
}

async fn vt_domain(State(h): State<Hits>, headers: HeaderMap, Path(d): Path<String>) -> Response {
    h.0.fetch_add(1, Ordering::SeqCst);
    if let Some(r) = vt_auth(&headers) {
        return r;
    }
    match d.as_str() {
        "unknown.example" => (StatusCode::NOT_FOUND, Json(json!({"error": {"code": "NotFoundError", "message": "Domain \"unknown.example\" not found"}}))).into_response(),
        "evil.example" => vt_object(&d, "domain", 3),
        _ => vt_object(&d, "domain", 0),
    }
}

async fn otx(
    State(h): State<Hits>,
    headers: HeaderMap,
    Path((kind, v)): Path<(String, String)>,
) -> Response {
    h.0.fetch_add(1, Ordering::SeqCst);
    if headers.get("X-OTX-API-KEY").and_then(|v| v.to_str().ok()) != Some(KEY) {
        return (
            StatusCode::FORBIDDEN,
            Json(json!({"detail": "Authentication credentials were not provided."})),
        )
            .into_response();
    }
    let count = if v == BAD_IP || v == "evil.example" {
        4
    } else {
        0
    };
    Json(json!({"indicator": v, "type": kind, "type_title": kind, "pulse_info": {"count": count, "pulses": [], "references": []}, "sections": ["general"]})).into_response()
}

async fn serve() -> (String, Hits) {
    let hits = Hits::default();
    let app = Router::new()
        .route("/api/v2/check", get(abuseipdb))
        .route("/api/v3/ip_addresses/{ip}", get(vt_ip))
        .route("/api/v3/domains/{d}", get(vt_domain))
        .route("/api/v1/indicators/{kind}/{v}/general", get(otx))
        .with_state(hits.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), hits)
}

fn cfg(kind: ProviderKind, base: &str, key: &str) -> ProviderConfig {
    let mut c = ProviderConfig::new(kind, key);
    c.base_url = base.to_owned();
    c.timeout = Duration::from_millis(300);
    c.burst = 100;
    c.per_second = 10.0;
    c
}

fn all(base: &str, key: &str) -> Vec<ProviderConfig> {
    [
        ProviderKind::AbuseIpDb,
        ProviderKind::VirusTotal,
        ProviderKind::Otx,
    ]
    .into_iter()
    .map(|k| cfg(k, base, key))
    .collect()
}

#[tokio::test]
async fn malicious_and_clean_answers_are_scored_and_cached_for_an_hour() {
    let (base, hits) = serve().await;
    let clock = ManualClock::new(datetime!(2025-01-05 12:00 UTC));
    let intel = OnlineIntel::new(all(&base, KEY), Arc::new(clock.clone())).unwrap();
    let ip = BAD_IP.parse().unwrap();
    let (v, errs) = intel.lookup(&Query::Ip(ip)).await;
    assert!(errs.is_empty(), "{errs:?}");
    assert_eq!(v.score, Some(1.0));
    let sources: Vec<_> = v.matches.iter().map(|m| m.source.as_str()).collect();
    assert_eq!(sources.len(), 3, "{v:?}");
    assert_eq!(hits.0.load(Ordering::SeqCst), 3);
    // Cached: no new request within the hour.
    clock.advance(time::Duration::minutes(59));
    let (v2, _) = intel.lookup(&Query::Ip(ip)).await;
    assert_eq!(v2.score, Some(1.0));
    assert_eq!(hits.0.load(Ordering::SeqCst), 3);
    clock.advance(time::Duration::minutes(2));
    intel.lookup(&Query::Ip(ip)).await;
    assert_eq!(hits.0.load(Ordering::SeqCst), 6);
    // A clean IP is known-clean (0), not unknown.
    let (clean, _) = intel.lookup(&Query::Ip("192.0.2.1".parse().unwrap())).await;
    assert_eq!(clean.score, Some(0.0));
    // Domains: AbuseIPDB is skipped; VT 404 is "no data"; OTX answers.
    let (d, errs) = intel.lookup(&Query::Domain("Evil.Example")).await;
    assert!(errs.is_empty());
    assert_eq!(d.score, Some(0.7));
    let (u, _) = intel.lookup(&Query::Domain("unknown.example")).await;
    assert_eq!(u.score, Some(0.0));
    assert!(u.notes.iter().any(|n| n.contains("virustotal: no data")));
}

#[tokio::test]
async fn bad_key_is_unknown_never_clean_and_never_cached() {
    let (base, hits) = serve().await;
    let clock = ManualClock::new(datetime!(2025-01-05 12:00 UTC));
    let intel = OnlineIntel::new(all(&base, "wrong"), Arc::new(clock)).unwrap();
    let q = Query::Ip(BAD_IP.parse().unwrap());
    let (v, errs) = intel.lookup(&q).await;
    assert_eq!(v.score, None, "{v:?}");
    assert_eq!(errs.len(), 3);
    assert!(
        errs.iter()
            .all(|e| e.reason() == "unauthorized" && !e.is_retriable()),
        "{errs:?}"
    );
    intel.lookup(&q).await;
    assert_eq!(hits.0.load(Ordering::SeqCst), 6, "failures are not cached");
    // Debug output never shows the key.
    assert!(!format!("{intel:?}").contains("wrong"));
}

#[tokio::test]
async fn rate_limit_opens_the_breaker_for_retry_after() {
    let (base, hits) = serve().await;
    let clock = ManualClock::new(datetime!(2025-01-05 12:00 UTC));
    let intel = OnlineIntel::new(
        vec![cfg(ProviderKind::AbuseIpDb, &base, KEY)],
        Arc::new(clock.clone()),
    )
    .unwrap();
    let (v, errs) = intel.lookup(&Query::Ip(LIMITED_IP.parse().unwrap())).await;
    assert_eq!(v.score, None);
    assert!(
        matches!(errs[0], harombe_detect::intel::IntelError::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(120)),
        "{errs:?}"
    );
    // Breaker open: even a different IP is not sent, and is unknown.
    let (v, errs) = intel.lookup(&Query::Ip("192.0.2.1".parse().unwrap())).await;
    assert_eq!(v.score, None);
    assert_eq!(errs[0].reason(), "circuit_open");
    assert_eq!(hits.0.load(Ordering::SeqCst), 1);
    clock.advance(time::Duration::seconds(121));
    let (v, _) = intel.lookup(&Query::Ip("192.0.2.1".parse().unwrap())).await;
    assert_eq!(v.score, Some(0.0));
}

#[tokio::test]
async fn timeouts_server_errors_and_quota_are_unknown() {
    let (base, hits) = serve().await;
    let clock = ManualClock::new(datetime!(2025-01-05 12:00 UTC));
    let mut c = cfg(ProviderKind::AbuseIpDb, &base, KEY);
    c.breaker_threshold = 2;
    let intel = OnlineIntel::new(vec![c], Arc::new(clock.clone())).unwrap();
    let (v, errs) = intel.lookup(&Query::Ip(SLOW_IP.parse().unwrap())).await;
    assert_eq!(v.score, None);
    assert_eq!(errs[0].reason(), "timeout");
    let (v, errs) = intel.lookup(&Query::Ip(BROKEN_IP.parse().unwrap())).await;
    assert_eq!(v.score, None);
    assert!(matches!(
        errs[0],
        harombe_detect::intel::IntelError::Http { status: 500, .. }
    ));
    assert!(errs[0].is_retriable());
    // Two consecutive failures: open.
    let (_, errs) = intel.lookup(&Query::Ip("192.0.2.3".parse().unwrap())).await;
    assert_eq!(errs[0].reason(), "circuit_open");
    assert_eq!(hits.0.load(Ordering::SeqCst), 2);

    // Quota: a bucket of 2 with no refill.
    let mut q = cfg(ProviderKind::VirusTotal, &base, KEY);
    q.burst = 2;
    q.per_second = 0.0;
    let intel = OnlineIntel::new(vec![q], Arc::new(clock)).unwrap();
    for i in 1..=2 {
        let (v, _) = intel
            .lookup(&Query::Ip(format!("192.0.2.{i}").parse().unwrap()))
            .await;
        assert_eq!(v.score, Some(0.0));
    }
    let (v, errs) = intel.lookup(&Query::Ip("192.0.2.9".parse().unwrap())).await;
    assert_eq!(v.score, None);
    assert_eq!(errs[0].reason(), "quota_exhausted");
}

#[tokio::test]
async fn an_oversized_answer_is_unknown_not_read_whole() {
    let (base, _) = serve().await;
    let clock = ManualClock::new(datetime!(2025-01-05 12:00 UTC));
    let intel = OnlineIntel::new(
        vec![cfg(ProviderKind::AbuseIpDb, &base, KEY)],
        Arc::new(clock),
    )
    .unwrap();
    let (v, errs) = intel.lookup(&Query::Ip(HUGE_IP.parse().unwrap())).await;
    assert_eq!(v.score, None, "{v:?}");
    assert_eq!(errs[0].reason(), "bad_response");
    assert!(errs[0].to_string().contains("larger than"), "{}", errs[0]);
}
