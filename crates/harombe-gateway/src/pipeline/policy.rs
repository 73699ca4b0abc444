//! Stage 2: per-agent allow/deny globs (deny beats allow) and token-bucket rate limits
//! per agent and per tool. Buckets run on the injected clock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use globset::{Glob, GlobSet, GlobSetBuilder};
use harombe_core::{AgentId, Clock};

use crate::config::{AgentPolicy, PolicyConfig, RateLimit};
use crate::error::GatewayError;

#[derive(Debug)]
struct Compiled {
    allow: GlobSet,
    deny: GlobSet,
    rate: Option<RateLimit>,
    tool_rates: Vec<(GlobSet, RateLimit)>,
}

fn globset(globs: &[String]) -> Result<GlobSet, GatewayError> {
    let mut b = GlobSetBuilder::new();
    for g in globs {
        b.add(Glob::new(g).map_err(|e| GatewayError::Config(format!("bad glob {g:?}: {e}")))?);
    }
    b.build().map_err(|e| GatewayError::Config(e.to_string()))
}

impl Compiled {
    fn new(p: &AgentPolicy) -> Result<Self, GatewayError> {
        Ok(Self {
            allow: globset(&p.allow)?,
            deny: globset(&p.deny)?,
            rate: p.rate_limit,
            tool_rates: p
                .tool_rate_limits
                .iter()
                .map(|(g, r)| Ok((globset(std::slice::from_ref(g))?, *r)))
                .collect::<Result<_, GatewayError>>()?,
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    /// Unix time in seconds (f64) of the last refill.
    at: f64,
}

impl Bucket {
    fn full(r: RateLimit, now: f64) -> Self {
        Self {
            tokens: f64::from(r.burst),
            at: now,
        }
    }
}

/// Refills `b` up to `now`; whether a token is there to take.
fn refill(b: &mut Bucket, r: RateLimit, now: f64) -> bool {
    let elapsed = (now - b.at).max(0.0);
    b.tokens = (b.tokens + elapsed * r.per_second).min(f64::from(r.burst));
    b.at = now;
    b.tokens >= 1.0
}

#[derive(Debug, Default)]
struct AgentBuckets {
    agent: Option<Bucket>,
    tools: HashMap<String, Bucket>,
}

/// The compiled policy with its rate-limit state.
#[derive(Debug)]
pub struct Policy {
    default: Compiled,
    agents: HashMap<String, Compiled>,
    /// Per agent: its own bucket and one per tool name with a tool limit.
    buckets: Mutex<HashMap<String, AgentBuckets>>,
    clock: Arc<dyn Clock>,
}

impl Policy {
    pub fn new(cfg: &PolicyConfig, clock: Arc<dyn Clock>) -> Result<Self, GatewayError> {
        Ok(Self {
            default: Compiled::new(&cfg.default)?,
            agents: cfg
                .agents
                .iter()
                .map(|(k, v)| Ok((k.clone(), Compiled::new(v)?)))
                .collect::<Result<_, GatewayError>>()?,
            buckets: Mutex::new(HashMap::new()),
            clock,
        })
    }

    fn of(&self, agent: &AgentId) -> &Compiled {
        self.agents.get(agent.as_str()).unwrap_or(&self.default)
    }

    /// Whether the agent may see and call the tool (deny beats allow).
    pub fn allows(&self, agent: &AgentId, tool: &str) -> bool {
        let p = self.of(agent);
        !p.deny.is_match(tool) && p.allow.is_match(tool)
    }

    /// The policy stage: `Denied` or `RateLimited`, or `Ok`.
    pub fn check(&self, agent: &AgentId, tool: &str) -> Result<(), GatewayError> {
        let p = self.of(agent);
        if p.deny.is_match(tool) {
            return Err(GatewayError::Denied(format!(
                "agent {agent} may not call {tool:?} (denied by policy)"
            )));
        }
        if !p.allow.is_match(tool) {
            return Err(GatewayError::Denied(format!(
                "agent {agent} may not call {tool:?} (not in its allow list)"
            )));
        }
        let now = self.clock.now().unix_timestamp_nanos() as f64 / 1e9;
        let tool_rate = p
            .tool_rates
            .iter()
            .find(|(g, _)| g.is_match(tool))
            .map(|(_, r)| *r);
        if p.rate.is_none() && tool_rate.is_none() {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        // Looked up by `&str`: a known agent costs no allocation.
        if !buckets.contains_key(agent.as_str()) {
            buckets.insert(agent.as_str().to_owned(), AgentBuckets::default());
        }
        let Some(mine) = buckets.get_mut(agent.as_str()) else {
            return Ok(());
        };
        let limited = |what: &str, r: RateLimit| {
            GatewayError::RateLimited(format!(
                "agent {agent}: {what} limit of {} calls/s (burst {}) reached for {tool:?}",
                r.per_second, r.burst
            ))
        };
        // Check both before taking from either, so a refusal costs nothing.
        if let Some(r) = p.rate
            && !refill(
                mine.agent.get_or_insert_with(|| Bucket::full(r, now)),
                r,
                now,
            )
        {
            return Err(limited("agent", r));
        }
        if let Some(r) = tool_rate {
            if !mine.tools.contains_key(tool) {
                mine.tools.insert(tool.to_owned(), Bucket::full(r, now));
            }
            if let Some(b) = mine.tools.get_mut(tool)
                && !refill(b, r, now)
            {
                return Err(limited("tool", r));
            }
            if let Some(b) = mine.tools.get_mut(tool) {
                b.tokens -= 1.0;
            }
        }
        if p.rate.is_some()
            && let Some(b) = &mut mine.agent
        {
            b.tokens -= 1.0;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use harombe_core::ManualClock;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn policy(p: AgentPolicy, clock: &ManualClock) -> Policy {
        let mut agents = BTreeMap::new();
        agents.insert("bot".to_owned(), p);
        Policy::new(
            &PolicyConfig {
                default: AgentPolicy::default(),
                agents,
            },
            Arc::new(clock.clone()),
        )
        .unwrap()
    }

    fn clock() -> ManualClock {
        ManualClock::new(time::macros::datetime!(2026-01-01 00:00 UTC))
    }

    #[test]
    fn deny_beats_allow_and_default_applies() {
        let c = clock();
        let p = policy(
            AgentPolicy {
                allow: vec!["fs__*".into(), "echo".into()],
                deny: vec!["*delete*".into()],
                ..AgentPolicy::default()
            },
            &c,
        );
        let bot = AgentId::new("bot").unwrap();
        assert!(p.check(&bot, "fs__read").is_ok());
        assert_eq!(p.check(&bot, "fs__delete").unwrap_err().code(), -32001);
        assert_eq!(p.check(&bot, "web").unwrap_err().code(), -32001);
        assert!(p.check(&AgentId::new("other").unwrap(), "web").is_ok());
    }

    #[test]
    fn token_buckets_refill_on_the_clock() {
        let c = clock();
        let mut tool_rate_limits = BTreeMap::new();
        tool_rate_limits.insert(
            "slow".to_owned(),
            RateLimit {
                per_second: 1.0,
                burst: 1,
            },
        );
        let p = policy(
            AgentPolicy {
                rate_limit: Some(RateLimit {
                    per_second: 2.0,
                    burst: 3,
                }),
                tool_rate_limits,
                ..AgentPolicy::default()
            },
            &c,
        );
        let bot = AgentId::new("bot").unwrap();
        assert!(p.check(&bot, "slow").is_ok());
        assert_eq!(p.check(&bot, "slow").unwrap_err().code(), -32005);
        assert!(p.check(&bot, "a").is_ok());
        assert!(p.check(&bot, "a").is_ok());
        assert_eq!(p.check(&bot, "a").unwrap_err().code(), -32005);
        c.advance(time::Duration::milliseconds(500));
        assert!(p.check(&bot, "a").is_ok());
        assert!(p.check(&bot, "a").is_err());
        c.advance(time::Duration::seconds(1));
        assert!(p.check(&bot, "slow").is_ok());
    }

    /// Token buckets as first written (one map keyed by agent and optional tool), the
    /// reference the allocation-free buckets must agree with.
    #[derive(Default)]
    struct ReferenceBuckets(HashMap<(String, Option<String>), Bucket>);

    impl ReferenceBuckets {
        fn take(&mut self, p: &AgentPolicy, agent: &str, tool: &str, now: f64) -> bool {
            let tool_rate = p
                .tool_rate_limits
                .iter()
                .find(|(g, _)| globset(std::slice::from_ref(*g)).unwrap().is_match(tool))
                .map(|(_, r)| *r);
            let mut keys = Vec::new();
            if let Some(r) = p.rate_limit {
                keys.push(((agent.to_owned(), None), r));
            }
            if let Some(r) = tool_rate {
                keys.push(((agent.to_owned(), Some(tool.to_owned())), r));
            }
            for (key, r) in &keys {
                let b = self.0.entry(key.clone()).or_insert(Bucket {
                    tokens: f64::from(r.burst),
                    at: now,
                });
                let elapsed = (now - b.at).max(0.0);
                b.tokens = (b.tokens + elapsed * r.per_second).min(f64::from(r.burst));
                b.at = now;
                if b.tokens < 1.0 {
                    return false;
                }
            }
            for (key, _) in &keys {
                if let Some(b) = self.0.get_mut(key) {
                    b.tokens -= 1.0;
                }
            }
            true
        }
    }

    proptest! {
        #[test]
        fn buckets_agree_with_the_reference(
            agent_rate in proptest::option::of((1u32..5, 1u32..4)),
            tool_rate in proptest::option::of((1u32..5, 1u32..4)),
            calls in proptest::collection::vec((0usize..2, 0usize..3, 0i64..900), 1..60),
        ) {
            let c = clock();
            let mut tool_rate_limits = BTreeMap::new();
            if let Some((per, burst)) = tool_rate {
                tool_rate_limits.insert("s*".to_owned(), RateLimit { per_second: f64::from(per), burst });
            }
            let ap = AgentPolicy {
                rate_limit: agent_rate.map(|(per, burst)| RateLimit { per_second: f64::from(per), burst }),
                tool_rate_limits,
                ..AgentPolicy::default()
            };
            let mut agents = BTreeMap::new();
            agents.insert("bot".to_owned(), ap.clone());
            agents.insert("bob".to_owned(), ap.clone());
            let p = Policy::new(
                &PolicyConfig { default: AgentPolicy::default(), agents },
                Arc::new(c.clone()),
            ).unwrap();
            let mut reference = ReferenceBuckets::default();
            for (a, t, ms) in calls {
                c.advance(time::Duration::milliseconds(ms));
                let agent = ["bot", "bob"][a];
                let tool = ["slow", "sharp", "a"][t];
                let now = c.now().unix_timestamp_nanos() as f64 / 1e9;
                let got = p.check(&AgentId::new(agent).unwrap(), tool);
                prop_assert_eq!(got.is_ok(), reference.take(&ap, agent, tool, now));
                if let Err(e) = got {
                    prop_assert_eq!(e.code(), -32005);
                }
            }
        }

        #[test]
        fn deny_always_wins(tool in "[a-z_]{1,12}", deny_it in any::<bool>()) {
            let c = clock();
            let p = policy(AgentPolicy {
                allow: vec!["*".into()],
                deny: if deny_it { vec![tool.clone()] } else { vec![] },
                ..AgentPolicy::default()
            }, &c);
            let bot = AgentId::new("bot").unwrap();
            prop_assert_eq!(p.check(&bot, &tool).is_ok(), !deny_it);
            prop_assert_eq!(p.allows(&bot, &tool), !deny_it);
        }
    }
}
