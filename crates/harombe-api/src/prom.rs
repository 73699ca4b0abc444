//! `GET /metrics`: the OpenMetrics 1.0 text exposition, written by hand (a few families,
//! no exposition crate needed).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use harombe_core::{ApprovalState, Decision, EventKind};

use crate::ApiState;
use crate::auth::Reader;
use crate::error::ApiError;
use crate::instrumented::{APPEND_BOUNDS_S, StoreTelemetrySnapshot};
use crate::metrics::{LATENCY_BOUNDS_US, Totals};

pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Most pending approvals counted for the gauge.
const PENDING_LIMIT: u32 = 10_000;

/// Escapes a label value (`\`, `"` and newlines).
pub fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

fn family(out: &mut String, name: &str, kind: &str, unit: Option<&str>, help: &str) {
    let _ = writeln!(out, "# TYPE {name} {kind}");
    if let Some(u) = unit {
        let _ = writeln!(out, "# UNIT {name} {u}");
    }
    let _ = writeln!(out, "# HELP {name} {help}");
}

/// Writes a histogram from per-bucket (non-cumulative) counts; `bounds` are the finite
/// upper bounds, and `counts` has one more entry (+Inf).
fn histogram(out: &mut String, name: &str, bounds: &[f64], counts: &[u64], sum: f64) {
    let mut cum = 0u64;
    for (i, c) in counts.iter().enumerate() {
        cum += c;
        match bounds.get(i) {
            Some(b) => {
                let _ = writeln!(out, "{name}_bucket{{le=\"{b:?}\"}} {cum}");
            }
            None => {
                let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cum}");
            }
        }
    }
    let _ = writeln!(out, "{name}_sum {sum:?}");
    let _ = writeln!(out, "{name}_count {cum}");
}

/// Everything `/metrics` reports.
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    pub totals: Totals,
    pub store: StoreTelemetrySnapshot,
    pub approvals_pending: u64,
    pub ws_clients: i64,
}

/// Renders the OpenMetrics text (ending with `# EOF`).
pub fn render(x: &Exposition) -> String {
    let mut out = String::with_capacity(4096);
    let t = &x.totals;

    family(
        &mut out,
        "harombe_gateway_latency_seconds",
        "histogram",
        Some("seconds"),
        "Latency the gateway added to tool calls (from tool_call audit events).",
    );
    let bounds: Vec<f64> = LATENCY_BOUNDS_US.iter().map(|&b| b as f64 / 1e6).collect();
    histogram(
        &mut out,
        "harombe_gateway_latency_seconds",
        &bounds,
        &t.latency.counts,
        t.latency.sum_us as f64 / 1e6,
    );

    family(
        &mut out,
        "harombe_decisions",
        "counter",
        None,
        "Verdicts of tool calls.",
    );
    for (i, d) in Decision::ALL.iter().enumerate() {
        let _ = writeln!(
            out,
            "harombe_decisions_total{{decision=\"{}\"}} {}",
            d.as_str(),
            t.by_decision[i]
        );
    }

    family(
        &mut out,
        "harombe_findings",
        "counter",
        None,
        "Content-inspection findings by rule.",
    );
    for (rule, n) in &t.findings_by_rule {
        let _ = writeln!(
            out,
            "harombe_findings_total{{rule=\"{}\"}} {n}",
            escape_label(rule)
        );
    }

    family(
        &mut out,
        "harombe_audit_events",
        "counter",
        None,
        "Audit events read from the log, by kind.",
    );
    for (i, k) in EventKind::ALL.iter().enumerate() {
        let _ = writeln!(
            out,
            "harombe_audit_events_total{{kind=\"{}\"}} {}",
            k.as_str(),
            t.by_kind[i]
        );
    }

    family(
        &mut out,
        "harombe_store_append_seconds",
        "histogram",
        Some("seconds"),
        "Time an audit append took until durable (one observation per append call).",
    );
    let counts = if x.store.buckets.len() == APPEND_BOUNDS_S.len() + 1 {
        x.store.buckets.clone()
    } else {
        vec![0; APPEND_BOUNDS_S.len() + 1]
    };
    histogram(
        &mut out,
        "harombe_store_append_seconds",
        &APPEND_BOUNDS_S,
        &counts,
        x.store.sum_seconds,
    );
    family(
        &mut out,
        "harombe_store_append_failures",
        "counter",
        None,
        "Append calls that returned an error.",
    );
    let _ = writeln!(
        out,
        "harombe_store_append_failures_total {}",
        x.store.failures
    );
    family(
        &mut out,
        "harombe_store_appends_in_flight",
        "gauge",
        None,
        "Append calls waiting to be durable.",
    );
    let _ = writeln!(out, "harombe_store_appends_in_flight {}", x.store.in_flight);

    family(
        &mut out,
        "harombe_approvals_pending",
        "gauge",
        None,
        "Held calls waiting for a human.",
    );
    let _ = writeln!(out, "harombe_approvals_pending {}", x.approvals_pending);

    family(
        &mut out,
        "harombe_live_clients",
        "gauge",
        None,
        "Connected dashboard WebSocket clients.",
    );
    let _ = writeln!(out, "harombe_live_clients {}", x.ws_clients);

    out.push_str("# EOF\n");
    out
}

pub(crate) async fn handler(
    _: Reader,
    State(state): State<ApiState>,
) -> Result<Response, ApiError> {
    let pending = state
        .approvals
        .list(Some(ApprovalState::Pending), PENDING_LIMIT)
        .await?
        .len() as u64;
    let x = Exposition {
        totals: state.metrics.totals(),
        store: state.store_telemetry.snapshot(),
        approvals_pending: pending,
        ws_clients: state.ws_clients.load(Ordering::Relaxed),
    };
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], render(&x)).into_response())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Checks the OpenMetrics text grammar the exposition uses: metadata before samples,
    /// one family per name, sample names that belong to their family, numeric values,
    /// cumulative histogram buckets ending at +Inf whose count matches `_count`, and the
    /// final `# EOF`. Returns the samples as `(name{labels}, value)`.
    pub(crate) fn check_openmetrics(text: &str) -> Vec<(String, f64)> {
        assert!(text.ends_with("# EOF\n"), "must end with # EOF");
        let mut families: std::collections::HashMap<String, String> = Default::default();
        let mut current: Option<(String, String)> = None;
        let mut samples = Vec::new();
        let mut last_bucket: Option<f64> = None;
        let mut inf_count: Option<f64> = None;
        let lines: Vec<&str> = text.lines().collect();
        for (n, line) in lines.iter().enumerate() {
            let at = format!("line {}: {line:?}", n + 1);
            if *line == "# EOF" {
                assert_eq!(n, lines.len() - 1, "# EOF must be last ({at})");
                continue;
            }
            if let Some(rest) = line.strip_prefix("# ") {
                let mut parts = rest.splitn(3, ' ');
                let (kw, name) = (parts.next().unwrap(), parts.next().expect(&at));
                assert!(valid_name(name), "{at}");
                match kw {
                    "TYPE" => {
                        let ty = parts.next().expect(&at);
                        assert!(["counter", "gauge", "histogram"].contains(&ty), "{at}");
                        assert!(
                            families.insert(name.into(), ty.into()).is_none(),
                            "family declared twice ({at})"
                        );
                        current = Some((name.into(), ty.into()));
                        last_bucket = None;
                    }
                    "UNIT" => assert!(name.ends_with(&format!("_{}", parts.next().unwrap()))),
                    "HELP" => assert!(parts.next().is_some_and(|h| !h.is_empty()), "{at}"),
                    _ => panic!("unknown metadata ({at})"),
                }
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect(&at);
            let v: f64 = value.parse().expect(&at);
            let (name, labels) = match series.split_once('{') {
                Some((n, l)) => {
                    assert!(l.ends_with('}'), "{at}");
                    (n, &l[..l.len() - 1])
                }
                None => (series, ""),
            };
            assert!(valid_name(name), "{at}");
            for pair in split_labels(labels) {
                let (k, val) = pair.split_once('=').expect(&at);
                assert!(valid_name(k), "{at}");
                assert!(
                    val.starts_with('"') && val.ends_with('"') && val.len() >= 2,
                    "{at}"
                );
            }
            let (fam, ty) = current.clone().expect("sample before any # TYPE");
            let suffix = name.strip_prefix(fam.as_str()).expect(&at);
            match ty.as_str() {
                "counter" => {
                    assert_eq!(suffix, "_total", "{at}");
                    assert!(v >= 0.0, "{at}");
                }
                "gauge" => assert_eq!(suffix, "", "{at}"),
                _ => match suffix {
                    "_bucket" => {
                        let le = labels
                            .strip_prefix("le=\"")
                            .and_then(|l| l.strip_suffix('"'))
                            .expect(&at);
                        if let Some(prev) = last_bucket {
                            assert!(v >= prev, "buckets must be cumulative ({at})");
                        }
                        last_bucket = Some(v);
                        if le == "+Inf" {
                            inf_count = Some(v);
                        } else {
                            le.parse::<f64>().expect(&at);
                        }
                    }
                    "_sum" => assert!(v >= 0.0),
                    "_count" => assert_eq!(Some(v), inf_count.take(), "{at}"),
                    _ => panic!("unexpected histogram sample ({at})"),
                },
            }
            samples.push((series.to_owned(), v));
        }
        samples
    }

    fn valid_name(n: &str) -> bool {
        let mut c = n.chars();
        c.next()
            .is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
            && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || x == ':')
    }

    fn split_labels(l: &str) -> Vec<String> {
        let mut out = Vec::new();
        let (mut cur, mut quoted, mut esc) = (String::new(), false, false);
        for ch in l.chars() {
            match ch {
                _ if esc => {
                    cur.push(ch);
                    esc = false;
                }
                '\\' => {
                    cur.push(ch);
                    esc = true;
                }
                '"' => {
                    cur.push(ch);
                    quoted = !quoted;
                }
                ',' if !quoted => out.push(std::mem::take(&mut cur)),
                _ => cur.push(ch),
            }
        }
        if !cur.is_empty() {
            out.push(cur);
        }
        out
    }

    #[test]
    fn exposition_is_valid_openmetrics() {
        let mut x = Exposition::default();
        x.totals.latency.record(150);
        x.totals.latency.record(3_000_000_000);
        x.totals.by_decision = [5, 1, 2];
        x.totals
            .findings_by_rule
            .insert("odd \"rule\"\\with\nnewline".into(), 2);
        x.totals.findings_by_rule.insert("aws-key".into(), 7);
        x.store.buckets = vec![0; APPEND_BOUNDS_S.len() + 1];
        x.store.buckets[3] = 4;
        x.store.count = 4;
        x.store.sum_seconds = 0.002;
        x.approvals_pending = 3;
        let text = render(&x);
        let samples = check_openmetrics(&text);
        let get = |k: &str| samples.iter().find(|(s, _)| s == k).map(|(_, v)| *v);
        assert_eq!(get("harombe_gateway_latency_seconds_count"), Some(2.0));
        assert_eq!(
            get("harombe_gateway_latency_seconds_bucket{le=\"0.0002\"}"),
            Some(1.0)
        );
        assert_eq!(
            get("harombe_decisions_total{decision=\"allow\"}"),
            Some(5.0)
        );
        assert_eq!(get("harombe_findings_total{rule=\"aws-key\"}"), Some(7.0));
        assert_eq!(
            get("harombe_findings_total{rule=\"odd \\\"rule\\\"\\\\with\\nnewline\"}"),
            Some(2.0)
        );
        assert_eq!(get("harombe_store_append_seconds_count"), Some(4.0));
        assert_eq!(get("harombe_approvals_pending"), Some(3.0));
        assert_eq!(get("harombe_store_appends_in_flight"), Some(0.0));
    }
}
