//! Audit store figures for docs/benchmarks.md: durable append throughput (1 and 64
//! producers, one-at-a-time and pipelined), and over a large log: the latest 100 events of
//! one agent, 24 hourly counts, and verify throughput. SQLite in a temporary directory and
//! PostgreSQL in a throwaway cluster with fsync on, in the same run.
//!
//! `cargo bench -p harombe-store --bench store` (HAROMBE_BENCH_EVENTS sets the size of the
//! large log, default 1,000,000; HAROMBE_BENCH_BACKENDS=sqlite,postgres picks backends).

use std::sync::Arc;
use std::time::{Duration, Instant};

use harombe_core::{
    AgentId, AuditEvent, AuditStore, EventFilter, EventKind, Outcome, PageRequest, ThreatLevel,
};
use harombe_store::{Location, StoreOptions};
use time::OffsetDateTime;

fn event(i: u64, at: OffsetDateTime) -> AuditEvent {
    let mut e = AuditEvent::new(
        at,
        if i.is_multiple_of(5) {
            EventKind::Decision
        } else {
            EventKind::ToolCall
        },
        Outcome::Success,
    )
    .with_agent(AgentId::new(format!("agent-{}", i % 50)).unwrap())
    .with_target(format!("tool.{}", i % 40));
    e.arguments = Some(serde_json::json!({ "path": format!("/srv/data/{i}.json"), "limit": 100 }));
    e.duration_us = Some(1_000 + i % 900);
    e.bytes_in = 180;
    e.bytes_out = 2_400;
    e.threat_level = Some(ThreatLevel::ALL[(i % 3) as usize]);
    e.scores.insert("anomaly".into(), (i % 100) as f64 / 100.0);
    e
}

fn quantiles(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort_unstable();
    (v[v.len() / 2], v[(v.len() * 99 / 100).min(v.len() - 1)])
}

/// Events per second from `producers` tasks, each appending `per_producer` events one at
/// a time (`chunk` 1) or in `append_many` groups of `chunk`, with up to `in_flight` groups
/// submitted and not yet acknowledged.
async fn appends(
    store: Arc<dyn AuditStore>,
    producers: u64,
    per_producer: u64,
    chunk: u64,
    in_flight: usize,
) -> f64 {
    let start = Instant::now();
    let now = OffsetDateTime::now_utc();
    let mut tasks = Vec::new();
    for p in 0..producers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut pending = std::collections::VecDeque::new();
            let mut i = 0;
            while i < per_producer {
                let n = chunk.min(per_producer - i);
                if n == 1 {
                    store
                        .append(event(p * per_producer + i, now))
                        .await
                        .unwrap();
                } else {
                    let batch: Vec<_> = (i..i + n)
                        .map(|j| event(p * per_producer + j, now))
                        .collect();
                    let store = store.clone();
                    pending.push_back(tokio::spawn(async move { store.append_many(batch).await }));
                    if pending.len() >= in_flight {
                        for r in pending.pop_front().unwrap().await.unwrap() {
                            r.unwrap();
                        }
                    }
                }
                i += n;
            }
            for group in pending {
                for r in group.await.unwrap() {
                    r.unwrap();
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (producers * per_producer) as f64 / start.elapsed().as_secs_f64()
}

async fn run(name: &str, open: impl AsyncFn() -> Arc<dyn AuditStore>, big: u64) {
    println!("\n## {name}");
    for (label, producers, per, chunk, in_flight) in [
        ("1 producer, one append at a time", 1, 2_000, 1, 1),
        ("1 producer, append_many of 1,000", 1, 200_000, 1_000, 1),
        (
            "1 producer, append_many of 1,000, 16 in flight",
            1,
            400_000,
            1_000,
            16,
        ),
        ("64 producers, one append at a time each", 64, 500, 1, 1),
        ("64 producers, append_many of 256 each", 64, 3_125, 256, 1),
    ] {
        let store = open().await;
        let rate = appends(store.clone(), producers, per, chunk, in_flight).await;
        store.close().await.unwrap();
        println!(
            "append  {label:<48} {rate:>10.0} events/s  ({} events)",
            producers * per
        );
    }

    // A large log spread over the last 48 hours.
    let store = open().await;
    let now = OffsetDateTime::now_utc();
    let t = Instant::now();
    let mut i = 0;
    while i < big {
        let n = 10_000.min(big - i);
        let batch: Vec<_> = (i..i + n)
            .map(|j| {
                event(
                    j,
                    now - time::Duration::seconds(((big - j) * 172_800 / big) as i64),
                )
            })
            .collect();
        for r in store.append_many(batch).await {
            r.unwrap();
        }
        i += n;
    }
    println!("load    {big} events in {:.1} s", t.elapsed().as_secs_f64());

    let filter = EventFilter {
        agent: Some(AgentId::new("agent-7").unwrap()),
        ..Default::default()
    };
    let mut lat = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        let page = store
            .query(&filter, PageRequest::newest(100))
            .await
            .unwrap();
        lat.push(t.elapsed());
        assert_eq!(page.events.len(), 100);
    }
    let (p50, p99) = quantiles(lat);
    println!(
        "query   latest 100 events of one agent         p50 {:>8.3} ms  p99 {:>8.3} ms",
        ms(p50),
        ms(p99)
    );

    let mut lat = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        let b = store
            .hourly_counts(now - time::Duration::hours(24), now, None)
            .await
            .unwrap();
        lat.push(t.elapsed());
        assert_eq!(b.len(), 25);
    }
    let (p50, p99) = quantiles(lat);
    println!(
        "query   24 hourly counts                        p50 {:>8.3} ms  p99 {:>8.3} ms",
        ms(p50),
        ms(p99)
    );

    let t = Instant::now();
    let report = store.verify().await.unwrap();
    let secs = t.elapsed().as_secs_f64();
    assert!(report.is_intact());
    println!(
        "verify  {} events in {secs:.2} s = {:.0} events/s",
        report.checked,
        report.checked as f64 / secs
    );
    store.close().await.unwrap();
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    // `cargo bench` passes --bench; a filter argument is not used here.
    let big: u64 = std::env::var("HAROMBE_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let backends =
        std::env::var("HAROMBE_BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        if backends.contains("sqlite") {
            let dir = tempfile::tempdir().unwrap();
            let n = std::sync::atomic::AtomicU64::new(0);
            let path = dir.path().to_path_buf();
            run(
                "SQLite (WAL, fsynced before each answer)",
                async || {
                    let k = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    harombe_store::open(
                        &Location::Sqlite(path.join(format!("audit-{k}.db"))),
                        StoreOptions::default(),
                    )
                    .await
                    .unwrap()
                },
                big,
            )
            .await;
        }
        if backends.contains("postgres") {
            let cluster = harombe_testkit::PgCluster::start(true);
            let n = std::sync::atomic::AtomicU64::new(0);
            run(
                "PostgreSQL 15 (fsync on, synchronous_commit on)",
                async || {
                    let k = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let admin = cluster.url("postgres");
                    use sqlx::Connection;
                    let mut c = sqlx::PgConnection::connect(&admin).await.unwrap();
                    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE bench_{k}")))
                        .execute(&mut c)
                        .await
                        .unwrap();
                    harombe_store::open(
                        &Location::Postgres(cluster.url(&format!("bench_{k}")).into()),
                        StoreOptions::default(),
                    )
                    .await
                    .unwrap()
                },
                big,
            )
            .await;
        }
    });
}
