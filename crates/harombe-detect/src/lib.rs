//! harombe-detect: detection for the harombe gateway.
//!
//! Owns content inspection ([`inspect`]: secret rules, prompt-injection markers, PII);
//! later feature extraction, anomaly detection, threat scoring and intelligence. Must not
//! depend on anything async: every detector here is a pure, synchronous function of its
//! input so the gateway can run it inline or on a blocking pool with a deadline.

pub mod anomaly;
pub mod baseline;
pub mod features;
pub mod inspect;
pub mod intel;
pub mod scenario;
pub mod threat;
pub mod traffic;
