//! Detection accuracy on the synthetic scenario for any seeds, to check that figures hold
//! beyond the seeds the test pins (held-out seeds).
//!
//! `cargo run --release -p harombe-detect --example accuracy -- 1 2 3 [--misses]`
//!
//! Prints TPR per attack kind, overall TPR and FPR per seed; with `--misses`, the highest
//! combined score reached by each missed attack instance and its baseline / forest parts.

use std::collections::BTreeMap;

use harombe_detect::anomaly::{AgentDetector, DetectorConfig};
use harombe_detect::features::CallFeatures;
use harombe_detect::scenario::{self, AttackKind, ScenarioConfig};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let misses = args.iter().any(|a| a == "--misses");
    let seeds: Vec<u64> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let seeds = if seeds.is_empty() { vec![42, 7] } else { seeds };
    let mut header = String::from("seed");
    for k in AttackKind::ALL {
        header.push_str(&format!(" | {k:?}"));
    }
    println!("{header} | all | FPR");
    for seed in seeds {
        let s = scenario::generate(&ScenarioConfig {
            seed,
            ..ScenarioConfig::default()
        });
        let r = scenario::evaluate(&s, DetectorConfig::default()).expect("evaluate");
        let mut line = format!("{seed}");
        for k in AttackKind::ALL {
            line.push_str(&format!(" | {:.2}", r.by_kind[&k].tpr));
        }
        println!("{line} | {:.3} | {:.4}", r.tpr, r.fpr);
        if misses {
            print_misses(&s);
        }
    }
}

/// Per missed instance: the call with the highest combined score and its parts.
fn print_misses(s: &scenario::Scenario) {
    for (agent, train, test) in &s.agents {
        let mut d = AgentDetector::new(agent.clone(), DetectorConfig::default()).unwrap();
        d.train(train).unwrap();
        let mut best: BTreeMap<(AttackKind, u32), (bool, f64, String)> = BTreeMap::new();
        let mut fps = Vec::new();
        for le in test {
            let r = d.detect(&CallFeatures::from_event(&le.event)).unwrap();
            let parts = format!(
                "b {:.2} f {:.2} | {}",
                r.contributing_factors.get("baseline_score").unwrap_or(&0.0),
                r.contributing_factors.get("forest_score").unwrap_or(&-1.0),
                r.explanation
            );
            match le.attack {
                Some(key) => {
                    let e = best.entry(key).or_insert((false, -1.0, String::new()));
                    e.0 |= r.is_anomaly;
                    if r.anomaly_score > e.1 {
                        e.1 = r.anomaly_score;
                        e.2 = parts;
                    }
                }
                None if r.is_anomaly => fps.push(format!("{:.2} {parts}", r.anomaly_score)),
                None => {}
            }
        }
        for ((kind, i), (hit, score, parts)) in best {
            if !hit {
                println!("  miss {agent} {kind:?}#{i}: {score:.2} {parts}");
            }
        }
        for fp in fps.iter().take(5) {
            println!("  fp {agent}: {fp}");
        }
    }
}
