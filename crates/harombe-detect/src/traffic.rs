//! Traffic anomaly detection for the egress proxy: the same dual model (windowed
//! baseline + Isolation Forest, 60/40) on per-connection features.
//!
//! Features ([`TRAFFIC_FEATURES`]): bytes sent and received and duration (`ln(1 + x)`),
//! packets (`ln(1 + n)`, imputed when the proxy does not count them), port novelty and
//! destination-host novelty (`1 / (1 + times seen)`), hour of day and day of week (scored
//! by rarity). Training uses the same leave-one-out replay as tool calls.

use std::collections::HashMap;

use harombe_core::{AuditEvent, ThreatLevel};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::anomaly::{DetectError, DualConfig, DualModel, ScoringMode, TrainRow, level_for};
use crate::baseline::FeatureLayout;
use crate::features::fnv1a64;

/// Feature names of a connection.
pub const TRAFFIC_FEATURES: [&str; 8] = [
    "bytes_sent",
    "bytes_received",
    "duration",
    "packets",
    "port_novelty",
    "dest_novelty",
    "hour_of_day",
    "day_of_week",
];
const MIN_STD: [f64; 8] = [0.35, 0.35, 0.35, 0.35, 0.1, 0.1, 1.0, 1.0];
const HOUR: usize = 6;
const DOW: usize = 7;

/// One egress connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectionRecord {
    /// Start time.
    #[serde(with = "time::serde::rfc3339")]
    pub timestamp: OffsetDateTime,
    /// Destination host (or IP).
    pub host: String,
    /// Destination port.
    pub port: u16,
    /// Bytes from the agent to the destination.
    pub bytes_sent: u64,
    /// Bytes from the destination to the agent.
    pub bytes_received: u64,
    /// Duration in microseconds.
    pub duration_us: u64,
    /// Packets, when counted.
    pub packets: Option<u64>,
}

impl ConnectionRecord {
    /// From an `egress_connection` event: `target` is `host:port` (port 443 when absent),
    /// `bytes_out` the bytes sent upstream, `bytes_in` the bytes received,
    /// `details.packets` the packet count when present.
    pub fn from_event(e: &AuditEvent) -> Self {
        let target = e.target.clone().unwrap_or_default();
        let (host, port) = match target.rsplit_once(':') {
            Some((h, p)) if p.parse::<u16>().is_ok() => (
                h.trim_matches(['[', ']']).to_owned(),
                p.parse().unwrap_or(443),
            ),
            _ => (target, 443),
        };
        Self {
            timestamp: e.timestamp,
            host: host.to_ascii_lowercase(),
            port,
            bytes_sent: e.bytes_out,
            bytes_received: e.bytes_in,
            duration_us: e.duration_us.unwrap_or(0),
            packets: e
                .details
                .as_ref()
                .and_then(|d| d.get("packets"))
                .and_then(serde_json::Value::as_u64),
        }
    }
}

/// Hosts and ports an agent connects to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Seen {
    hosts: HashMap<u64, u32>,
    ports: HashMap<u16, u32>,
}

impl Seen {
    #[allow(clippy::cast_precision_loss)]
    fn vector(&self, c: &ConnectionRecord, loo: u32) -> ([f64; 8], u32) {
        let host = self
            .hosts
            .get(&fnv1a64(c.host.as_bytes()))
            .map_or(0, |n| n.saturating_sub(loo));
        let port = self.ports.get(&c.port).map_or(0, |n| n.saturating_sub(loo));
        let mut missing = 0;
        let packets = match c.packets {
            Some(p) => (p as f64).ln_1p(),
            None => {
                missing |= 1 << 3;
                0.0
            }
        };
        (
            [
                (c.bytes_sent as f64).ln_1p(),
                (c.bytes_received as f64).ln_1p(),
                (c.duration_us as f64 / 1000.0).ln_1p(),
                packets,
                1.0 / (1.0 + f64::from(port)),
                1.0 / (1.0 + f64::from(host)),
                f64::from(c.timestamp.hour()),
                f64::from(c.timestamp.weekday().number_days_from_monday()),
            ],
            missing,
        )
    }

    fn observe(&mut self, c: &ConnectionRecord) {
        *self.hosts.entry(fnv1a64(c.host.as_bytes())).or_insert(0) += 1;
        *self.ports.entry(c.port).or_insert(0) += 1;
    }
}

/// The outcome of scoring one connection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrafficResult {
    /// 0–1.
    pub anomaly_score: f64,
    /// `anomaly_score >= threshold`.
    pub is_anomaly: bool,
    /// Level of the score.
    pub threat_level: ThreatLevel,
    /// `|z|` of features at 2σ or more, `baseline_score`, `forest_score`.
    pub contributing_factors: Vec<(&'static str, f64)>,
    /// How it was scored.
    pub mode: ScoringMode,
}

/// One agent's (or one proxy's) traffic detector.
#[derive(Debug, Clone, PartialEq)]
pub struct TrafficDetector {
    seen: Seen,
    model: DualModel,
    threshold: f64,
}

fn layout() -> FeatureLayout {
    FeatureLayout {
        min_std: MIN_STD.to_vec(),
        hour_dow: Some((HOUR, DOW)),
        skip: 0,
    }
}

impl TrafficDetector {
    /// An untrained detector (learning mode until `config.min_samples` connections).
    pub fn new(config: DualConfig, threshold: f64) -> Result<Self, DetectError> {
        config.validate()?;
        if !(threshold > 0.0 && threshold < 1.0) {
            return Err(DetectError::InvalidConfig {
                field: "threshold",
                reason: format!("{threshold} not in (0, 1)"),
            });
        }
        Ok(Self {
            seen: Seen::default(),
            model: DualModel::new(config, TRAFFIC_FEATURES.len()),
            threshold,
        })
    }

    /// Trains on historical connections (replaces state).
    pub fn train(&mut self, conns: &[ConnectionRecord]) -> Result<(), DetectError> {
        let mut sorted: Vec<&ConnectionRecord> = conns.iter().collect();
        sorted.sort_by_key(|c| c.timestamp);
        let mut seen = Seen::default();
        sorted.iter().for_each(|c| seen.observe(c));
        let vectors: Vec<([f64; 8], u32)> = sorted.iter().map(|c| seen.vector(c, 1)).collect();
        let rows: Vec<TrainRow<'_>> = vectors
            .iter()
            .zip(&sorted)
            .map(|((v, m), c)| TrainRow {
                at: c.timestamp,
                kind: "egress_connection",
                values: v,
                missing: *m,
            })
            .collect();
        self.seen = seen;
        self.model.train("traffic", &TRAFFIC_FEATURES, &rows, &[])
    }

    /// Scores a connection, then records it (the baseline learns it when not flagged).
    pub fn detect(&mut self, c: &ConnectionRecord) -> Result<TrafficResult, DetectError> {
        let (v, missing) = self.seen.vector(c, 0);
        let s = self.model.score(c.timestamp, &v, missing, &layout());
        let is_anomaly =
            !matches!(s.mode, ScoringMode::Learning { .. }) && s.score >= self.threshold;
        let mut factors: Vec<(&'static str, f64)> = s
            .deviation
            .z
            .iter()
            .enumerate()
            .filter(|(_, z)| **z >= 2.0)
            .map(|(i, z)| (TRAFFIC_FEATURES[i], *z))
            .collect();
        factors.sort_by(|a, b| b.1.total_cmp(&a.1));
        factors.push(("baseline_score", s.deviation.score));
        if let Some(f) = s.forest {
            factors.push(("forest_score", f));
        }
        self.seen.observe(c);
        if !is_anomaly {
            self.model.baseline.record(
                c.timestamp,
                "egress_connection",
                &v,
                missing,
                &TRAFFIC_FEATURES,
            )?;
        }
        Ok(TrafficResult {
            anomaly_score: s.score,
            is_anomaly,
            threat_level: level_for(s.score, self.threshold),
            contributing_factors: factors,
            mode: s.mode,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use time::Duration;
    use time::macros::datetime;

    fn normal(n: usize, seed: u64) -> Vec<ConnectionRecord> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let t0 = datetime!(2025-03-03 00:00 UTC);
        (0..n)
            .map(|i| {
                let day = (i / 60) as i64 % 21;
                ConnectionRecord {
                    timestamp: t0
                        + Duration::days(day)
                        + Duration::hours(rng.random_range(9..18))
                        + Duration::seconds(rng.random_range(0..3600)),
                    host: format!("api{}.example.com", rng.random_range(0..8)),
                    port: 443,
                    bytes_sent: rng.random_range(500..3_000),
                    bytes_received: rng.random_range(2_000..60_000),
                    duration_us: rng.random_range(50_000..900_000),
                    packets: Some(rng.random_range(10..80)),
                }
            })
            .collect()
    }

    #[test]
    fn normal_traffic_passes_and_a_large_upload_to_a_new_host_is_flagged() {
        let mut d = TrafficDetector::new(DualConfig::default(), 0.7).unwrap();
        d.train(&normal(1200, 1)).unwrap();
        let test = normal(300, 2);
        let fps = test
            .iter()
            .filter(|c| d.detect(c).unwrap().is_anomaly)
            .count();
        assert!(fps <= 15, "{fps} false positives of 300");
        let exfil = ConnectionRecord {
            timestamp: datetime!(2025-03-25 03:10 UTC),
            host: "paste.evil.example".into(),
            port: 8443,
            bytes_sent: 80_000_000,
            bytes_received: 300,
            duration_us: 120_000_000,
            packets: Some(60_000),
        };
        let r = d.detect(&exfil).unwrap();
        assert!(r.is_anomaly, "{r:?}");
        assert_eq!(r.mode, ScoringMode::Dual);
        assert!(r.threat_level >= ThreatLevel::Medium);
        assert!(
            r.contributing_factors[0].1 > crate::baseline::Z_HIGH,
            "{r:?}"
        );
    }

    #[test]
    fn events_map_to_connections() {
        let mut e = AuditEvent::new(
            datetime!(2025-03-03 10:00 UTC),
            harombe_core::EventKind::EgressConnection,
            harombe_core::Outcome::Success,
        )
        .with_target("Files.Example.com:8080");
        e.bytes_out = 10;
        e.bytes_in = 20;
        e.details = Some(serde_json::json!({"packets": 7}));
        let c = ConnectionRecord::from_event(&e);
        assert_eq!(
            (
                c.host.as_str(),
                c.port,
                c.bytes_sent,
                c.bytes_received,
                c.packets
            ),
            ("files.example.com", 8080, 10, 20, Some(7))
        );
    }
}
