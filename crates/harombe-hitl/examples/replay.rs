//! Runs the HITL replay and prints the report (the numbers in `docs/hitl-replay.md`).
//!
//! ```text
//! cargo run --release -p harombe-hitl --example replay            # default: seed 20260105
//! cargo run --release -p harombe-hitl --example replay -- 42 0.02 # seed, attack rate
//! cargo run --release -p harombe-hitl --example replay -- --with-unfamiliar-rule
//! ```
//!
//! `--with-unfamiliar-rule` (anywhere among the arguments) adds the optional, stricter
//! `unfamiliar_or_elevated_risk` rule to the shipped rules.

use harombe_core::fake::MemoryAuditStore;
use harombe_hitl::replay::{self, ReplayConfig};

const WITH_UNFAMILIAR: &str = "--with-unfamiliar-rule";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let all: Vec<String> = std::env::args().skip(1).collect();
    let strict = all.iter().any(|a| a == WITH_UNFAMILIAR);
    let mut args = all.into_iter().filter(|a| a != WITH_UNFAMILIAR);
    let mut config = ReplayConfig::default();
    if strict {
        config
            .hitl
            .rules
            .push(harombe_hitl::unfamiliar_or_elevated_risk());
    }
    if let Some(seed) = args.next() {
        config.seed = seed.parse()?;
    }
    if let Some(rate) = args.next() {
        config.attack_rate = rate.parse()?;
    }
    let store = MemoryAuditStore::new();
    let r = replay::run(&config, &store).await?;
    println!(
        "seed {}, {} days, {}..={} calls per agent-day, attack rate {}, rules: {}",
        config.seed,
        config.days,
        config.calls_per_day.0,
        config.calls_per_day.1,
        config.attack_rate,
        if strict {
            "defaults + unfamiliar_or_elevated_risk"
        } else {
            "defaults"
        }
    );
    println!("{}", r.to_markdown());
    println!("| week | calls | auto-approved | held (engine) | held (baseline) |");
    println!("|---|---|---|---|---|");
    for (i, w) in r.weeks.iter().enumerate() {
        println!(
            "| {} | {} | {} | {} | {} |",
            i + 1,
            w.calls,
            w.auto_approved,
            w.held,
            w.baseline_held
        );
    }
    println!("\nrules fired: {:?}", r.by_rule);
    println!("attacks by kind: {:?}", r.by_attack);
    println!("final trust: {:?}", r.final_trust);
    Ok(())
}
