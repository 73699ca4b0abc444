//! Isolation Forest benchmarks: score one event, train on 1,000 events, model size, and
//! scikit-learn side by side when `$HAROMBE_PYTHON` (with scikit-learn) is available.
//!
//! `CARGO_TARGET_DIR=... cargo bench -j1 -p harombe-ml --bench forest`
//! Targets: p99 ≤ 5 µs per event, ≥ 200,000 events/s per core, training ≤ 10 ms,
//! serialized model ≤ 200 KB.

use std::hint::black_box;
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use harombe_ml::{Contamination, FeatureSchema, IsolationForest, IsolationForestConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn events(n: usize, d: usize, seed: u64) -> Vec<Vec<f64>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| (0..d).map(|_| rng.random_range(-3.0..3.0)).collect())
        .collect()
}

fn fit(rows: &[Vec<f64>], seed: u64) -> IsolationForest {
    let config = IsolationForestConfig {
        contamination: Contamination::Fraction(0.05),
        seed,
        ..IsolationForestConfig::default()
    };
    IsolationForest::fit(
        &config,
        FeatureSchema::anonymous(rows[0].len()).unwrap(),
        rows,
    )
    .unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

/// Per-event latency distribution, timed one call at a time.
fn figures() {
    println!("\n== harombe-ml Isolation Forest figures ==");
    for d in [6usize, 12] {
        let train = events(1000, d, 1);
        let model = fit(&train, 2);
        let probes = events(20_000, d, 3);
        for p in probes.iter().take(2000) {
            black_box(model.score_samples(p).unwrap());
        }
        let mut lat = Vec::with_capacity(probes.len());
        for p in &probes {
            let t = Instant::now();
            black_box(model.score_samples(black_box(p)).unwrap());
            lat.push(t.elapsed());
        }
        lat.sort();
        let t = Instant::now();
        for p in &probes {
            black_box(model.score_samples(black_box(p)).unwrap());
        }
        let per_s = probes.len() as f64 / t.elapsed().as_secs_f64();
        println!(
            "score one event, {d} features: p50 {:?} p99 {:?} -> {:.0} events/s (one core)",
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            per_s
        );
        let mut train_t: Vec<Duration> = (0..20)
            .map(|s| {
                let t = Instant::now();
                black_box(fit(&train, s));
                t.elapsed()
            })
            .collect();
        train_t.sort();
        println!(
            "train 1,000 events x {d} features (100 trees, contamination 0.05): median {:?} max {:?}",
            percentile(&train_t, 0.5),
            train_t[train_t.len() - 1]
        );
        let bytes = model.to_bytes().unwrap().len();
        let json = model.to_json().unwrap().len();
        println!(
            "serialized model, {d} features: {:.1} KB bytes, {:.1} KB JSON",
            bytes as f64 / 1024.0,
            json as f64 / 1024.0
        );
    }
    sklearn_side_by_side();
}

fn sklearn_side_by_side() {
    let Ok(py) = std::env::var("HAROMBE_PYTHON") else {
        println!("sklearn: HAROMBE_PYTHON not set, no side-by-side figures");
        return;
    };
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/oracle/sklearn_oracle.py"
    );
    match Command::new(&py).arg(script).arg("bench").output() {
        Ok(out) if out.status.success() => {
            let v: serde_json::Value = match serde_json::from_slice(&out.stdout) {
                Ok(v) => v,
                Err(e) => return println!("sklearn: unreadable output: {e}"),
            };
            let get = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
            let train = events(1000, 8, 1);
            let model = fit(&train, 2);
            let probes = events(20_000, 8, 3);
            let t = Instant::now();
            for p in &probes {
                black_box(model.score_samples(black_box(p)).unwrap());
            }
            let ours_one = t.elapsed().as_secs_f64() / probes.len() as f64;
            let t = Instant::now();
            for s in 0..5 {
                black_box(fit(&train, s));
            }
            let ours_fit = t.elapsed().as_secs_f64() / 5.0;
            println!(
                "sklearn {} (8 features): score_samples on 1 row {:.1} µs (ours {:.2} µs, x{:.0}); \
                 per row in a 20,000-row batch {:.2} µs; fit 1,000 rows {:.1} ms (ours {:.2} ms, x{:.0})",
                v["sklearn_version"].as_str().unwrap_or("?"),
                get("score_one_row_s") * 1e6,
                ours_one * 1e6,
                get("score_one_row_s") / ours_one,
                get("score_batch_per_row_s") * 1e6,
                get("fit_1000x8_s") * 1e3,
                ours_fit * 1e3,
                get("fit_1000x8_s") / ours_fit,
            );
        }
        Ok(out) => println!(
            "sklearn: oracle failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => println!("sklearn: cannot run {py}: {e}"),
    }
}

fn bench(c: &mut Criterion) {
    figures();
    let train = events(1000, 8, 1);
    let model = fit(&train, 2);
    let probe = events(1, 8, 9).remove(0);
    c.bench_function("score_one_event_8f", |b| {
        b.iter(|| model.score_samples(black_box(&probe)).unwrap());
    });
    c.bench_function("train_1000x8", |b| b.iter(|| fit(black_box(&train), 5)));
    let bytes = model.to_bytes().unwrap();
    c.bench_function("load_model_bytes", |b| {
        b.iter(|| IsolationForest::from_bytes(black_box(&bytes)).unwrap());
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
