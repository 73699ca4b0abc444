//! Detection benchmarks: prints the figures issue 5 asks for and the ratio to the previous
//! Python implementation (62 ms to score one event, 350 ms to train on 1,000 events).
//!
//! `cargo bench -p harombe-detect --bench detection`

use std::hint::black_box;
use std::time::{Duration, Instant};

use harombe_detect::anomaly::{AgentDetector, DetectorConfig};
use harombe_detect::features::{CallFeatures, find_destinations};
use harombe_detect::intel::{self, IntelIndex};
use harombe_detect::scenario::{self, ScenarioConfig};
use harombe_detect::threat::{Signal, ThreatConfig, ThreatInputs, ThreatScorer};

const PY_DETECT_MS: f64 = 62.0;
const PY_TRAIN_MS: f64 = 350.0;

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

fn main() {
    let s = scenario::generate(&ScenarioConfig::default());
    let (agent, train, test) = s
        .agents
        .iter()
        .max_by_key(|(_, t, _)| t.len())
        .expect("agents");
    let train1000: Vec<_> = train.iter().take(1000).cloned().collect();
    println!(
        "agent {agent}: {} training events available, using {}",
        train.len(),
        train1000.len()
    );

    // Training on 1,000 events.
    let mut times = Vec::new();
    let mut det = AgentDetector::new(agent.clone(), DetectorConfig::default()).unwrap();
    for _ in 0..30 {
        let mut d = AgentDetector::new(agent.clone(), DetectorConfig::default()).unwrap();
        let t = Instant::now();
        d.train(black_box(&train1000)).unwrap();
        times.push(t.elapsed());
        det = d;
    }
    let train_p50 = pct(&mut times, 0.5);
    let train_max = pct(&mut times, 1.0);
    println!(
        "train 1,000 events: median {:.2} ms, max {:.2} ms (target <= 10 ms); Python 350 ms -> {:.0}x faster",
        train_p50.as_secs_f64() * 1e3,
        train_max.as_secs_f64() * 1e3,
        PY_TRAIN_MS / (train_p50.as_secs_f64() * 1e3)
    );

    // Model size.
    let bytes = det.to_bytes().unwrap();
    println!(
        "model size: {} bytes ({:.1} KB; target <= 200 KB)",
        bytes.len(),
        bytes.len() as f64 / 1024.0
    );

    // Detect: feature extraction from the audit event + baseline + forest, per event.
    let events: Vec<_> = test.iter().map(|l| l.event.clone()).collect();
    let n = 100_000;
    let mut lat = Vec::with_capacity(n);
    let mut d = det.clone();
    let start = Instant::now();
    for i in 0..n {
        let e = &events[i % events.len()];
        let t = Instant::now();
        let r = d.detect(black_box(&CallFeatures::from_event(e))).unwrap();
        lat.push(t.elapsed());
        black_box(r);
    }
    let total = start.elapsed();
    let p50 = pct(&mut lat, 0.5);
    let p99 = pct(&mut lat, 0.99);
    println!(
        "detect (extract + baseline + forest): p50 {:.2} us, p99 {:.2} us (target <= 5 us), {:.0} events/s on one core (target >= 200,000); Python 62 ms -> {:.0}x faster",
        p50.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6,
        n as f64 / total.as_secs_f64(),
        PY_DETECT_MS / (p50.as_secs_f64() * 1e3)
    );

    // Threat score with offline intel: 20,000 indicators, destinations of each event.
    let mut list = String::new();
    for i in 0..10_000 {
        list.push_str(&format!(
            "bad{i}.example.net\n10.{}.{}.0/24\n",
            i / 256 % 256,
            i % 256
        ));
    }
    let index: IntelIndex =
        IntelIndex::from_indicators(&intel::feeds::parse_plain(&list, "bench", 0.9).indicators);
    let dests: Vec<_> = events
        .iter()
        .map(|e| {
            e.arguments
                .as_ref()
                .map(find_destinations)
                .unwrap_or_default()
        })
        .collect();
    let scorer = ThreatScorer::new(ThreatConfig::default()).unwrap();
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        let v = intel::check_destinations(&index, black_box(&dests[i % dests.len()]));
        let s = scorer.score(&ThreatInputs {
            anomaly: Signal::known(0.3, "a"),
            rules: Signal::known(0.0, "r"),
            intel: v.signal(),
        });
        lat.push(t.elapsed());
        black_box(s);
    }
    println!(
        "threat score with offline intel ({} indicators): p50 {:.2} us, p99 {:.2} us (target <= 10 us)",
        index.len(),
        pct(&mut lat, 0.5).as_secs_f64() * 1e6,
        pct(&mut lat, 0.99).as_secs_f64() * 1e6
    );
}
