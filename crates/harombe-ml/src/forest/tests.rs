use super::*;
use proptest::prelude::*;

/// A deterministic little data set: a cloud around the origin plus a few far points.
fn data(n: usize, d: usize, seed: u64) -> Vec<Vec<f64>> {
    use rand::Rng;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let far = i % 50 == 0;
            (0..d)
                .map(|_| {
                    let v: f64 = rng.random_range(-1.0..1.0);
                    if far { v * 8.0 + 10.0 } else { v }
                })
                .collect()
        })
        .collect()
}

fn fit(rows: &[Vec<f64>], seed: u64, contamination: Contamination) -> IsolationForest {
    let config = IsolationForestConfig {
        seed,
        contamination,
        ..IsolationForestConfig::default()
    };
    let schema = FeatureSchema::anonymous(rows[0].len()).unwrap();
    IsolationForest::fit(&config, schema, rows).unwrap()
}

#[test]
fn max_depth_is_ceil_log2() {
    assert_eq!(max_depth_for(1), 1);
    assert_eq!(max_depth_for(2), 1);
    assert_eq!(max_depth_for(3), 2);
    assert_eq!(max_depth_for(4), 2);
    assert_eq!(max_depth_for(5), 3);
    assert_eq!(max_depth_for(256), 8);
    assert_eq!(max_depth_for(257), 9);
}

#[test]
fn psi_and_depth_follow_sklearn() {
    let rows = data(1000, 3, 1);
    let f = fit(&rows, 0, Contamination::Auto);
    assert_eq!(f.max_samples(), 256);
    assert_eq!(f.n_estimators(), 100);
    for t in f.trees() {
        assert_eq!(t.root_samples(), 256);
        let deepest = 8.0 + average_path_length(256.0);
        assert!((0..t.node_count()).all(|i| t.leaf_path(i) <= deepest));
    }
    let small = fit(&rows[..40], 0, Contamination::Auto);
    assert_eq!(small.max_samples(), 40);
}

#[test]
fn far_points_score_as_outliers() {
    let rows = data(1000, 4, 2);
    let f = fit(&rows, 3, Contamination::Fraction(0.05));
    let inlier = f.anomaly_score(&[0.0, 0.0, 0.0, 0.0]).unwrap();
    let outlier = f.anomaly_score(&[30.0, -30.0, 30.0, 30.0]).unwrap();
    assert!(outlier > inlier + 0.1, "{outlier} vs {inlier}");
    assert!(f.is_outlier(&[30.0, -30.0, 30.0, 30.0]).unwrap());
    assert!(!f.is_outlier(&[0.0, 0.0, 0.0, 0.0]).unwrap());
    // contamination 0.05: about 5% of the training rows fall under the offset.
    let scores = f.score_samples_batch(&rows).unwrap();
    let below = scores.iter().filter(|&&s| s < f.offset()).count();
    assert!((40..=60).contains(&below), "{below}");
}

#[test]
fn auto_contamination_offset_is_minus_half() {
    let rows = data(300, 2, 4);
    let f = fit(&rows, 0, Contamination::Auto);
    assert_eq!(f.offset(), -0.5);
    let x = [0.1, 0.2];
    assert_eq!(
        f.decision_function(&x).unwrap(),
        f.score_samples(&x).unwrap() + 0.5
    );
}

#[test]
fn set_contamination_matches_fit() {
    let rows = data(500, 3, 5);
    let fitted = fit(&rows, 9, Contamination::Fraction(0.1));
    let mut reset = fit(&rows, 9, Contamination::Auto);
    reset
        .set_contamination(Contamination::Fraction(0.1), &rows)
        .unwrap();
    assert_eq!(fitted, reset);
}

#[test]
fn one_row_and_constant_rows_give_minus_half_everywhere() {
    let one = vec![vec![1.0, 2.0]];
    let f = fit(&one, 0, Contamination::Auto);
    assert_eq!(f.score_samples(&[1.0, 2.0]).unwrap(), -0.5);
    assert_eq!(f.score_samples(&[100.0, -2.0]).unwrap(), -0.5);
    let same = vec![vec![3.0, 3.0, 3.0]; 100];
    let f = fit(&same, 0, Contamination::Fraction(0.05));
    assert!(f.trees().iter().all(|t| t.node_count() == 1));
    // Σ c(100) / (100 c(100)) is 1 up to rounding.
    for x in [[3.0, 3.0, 3.0], [9.0, 0.0, 1.0]] {
        assert!((f.score_samples(&x).unwrap() + 0.5).abs() < 1e-12);
    }
    assert!((f.offset() + 0.5).abs() < 1e-12);
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let schema = FeatureSchema::anonymous(2).unwrap();
    let cfg = IsolationForestConfig::default();
    let empty: Vec<Vec<f64>> = Vec::new();
    assert_eq!(
        IsolationForest::fit(&cfg, schema.clone(), &empty).unwrap_err(),
        MlError::EmptyData { what: "rows" }
    );
    let nan = vec![vec![1.0, 2.0], vec![f64::NAN, 0.0]];
    assert!(matches!(
        IsolationForest::fit(&cfg, schema.clone(), &nan),
        Err(MlError::NonFinite {
            row: 1,
            column: 0,
            ..
        })
    ));
    let huge = vec![vec![1.0, 1e300]];
    assert!(matches!(
        IsolationForest::fit(&cfg, schema.clone(), &huge),
        Err(MlError::OutOfRange {
            row: 0,
            column: 1,
            ..
        })
    ));
    let ragged = vec![vec![1.0, 2.0], vec![1.0]];
    assert!(matches!(
        IsolationForest::fit(&cfg, schema.clone(), &ragged),
        Err(MlError::DimensionMismatch {
            row: 1,
            expected: 2,
            found: 1
        })
    ));
    for bad in [
        IsolationForestConfig {
            n_estimators: 0,
            ..cfg
        },
        IsolationForestConfig {
            contamination: Contamination::Fraction(0.7),
            ..cfg
        },
        IsolationForestConfig {
            max_samples: MaxSamples::Fraction(0.0),
            ..cfg
        },
        IsolationForestConfig {
            max_samples: MaxSamples::Count(0),
            ..cfg
        },
    ] {
        let rows = data(10, 2, 0);
        let err = IsolationForest::fit(&bad, schema.clone(), &rows).unwrap_err();
        assert_eq!(err.reason(), "invalid_parameter");
    }
    let f = fit(&data(50, 2, 0), 0, Contamination::Auto);
    assert!(matches!(
        f.score_samples(&[f64::INFINITY, 0.0]),
        Err(MlError::NonFinite { column: 0, .. })
    ));
    assert!(matches!(
        f.score_samples(&[0.0]),
        Err(MlError::DimensionMismatch {
            expected: 2,
            found: 1,
            ..
        })
    ));
    assert!(matches!(
        f.score_samples_batch(&[vec![0.0, 0.0], vec![0.0, f64::NAN]]),
        Err(MlError::NonFinite {
            row: 1,
            column: 1,
            ..
        })
    ));
    assert!(FeatureSchema::new(["a", "a"]).is_err());
    assert!(FeatureSchema::new(Vec::<String>::new()).is_err());
}

#[test]
fn wide_rows_use_the_heap_path() {
    let rows = data(300, 70, 6);
    let f = fit(&rows, 1, Contamination::Auto);
    let s = f.score_samples(&rows[0]).unwrap();
    assert!((-1.0..0.0).contains(&s));
}

#[test]
fn persistence_round_trips_exactly_and_detects_damage() {
    let rows = data(600, 5, 7);
    let schema = FeatureSchema::new(["a", "b", "c", "d", "e"]).unwrap();
    let cfg = IsolationForestConfig {
        contamination: Contamination::Fraction(0.05),
        seed: 11,
        ..IsolationForestConfig::default()
    };
    let f = IsolationForest::fit(&cfg, schema, &rows).unwrap();
    let bytes = f.to_bytes().unwrap();
    let json = f.to_json().unwrap();
    assert_eq!(IsolationForest::from_bytes(&bytes).unwrap(), f);
    assert_eq!(IsolationForest::from_json(&json).unwrap(), f);

    // A flipped byte anywhere in the payload is caught.
    for pos in [25, bytes.len() / 2, bytes.len() - 1] {
        let mut bad = bytes.clone();
        bad[pos] ^= 0x10;
        assert_eq!(
            IsolationForest::from_bytes(&bad).unwrap_err().reason(),
            "checksum_mismatch"
        );
    }
    // Another version, another format, truncation.
    let mut v2 = bytes.clone();
    v2[8] = 2;
    assert_eq!(
        IsolationForest::from_bytes(&v2).unwrap_err(),
        MlError::UnsupportedVersion {
            found: 2,
            supported: FORMAT_VERSION
        }
    );
    assert_eq!(
        IsolationForest::from_bytes(b"not a model")
            .unwrap_err()
            .reason(),
        "wrong_format"
    );
    assert!(IsolationForest::from_bytes(&bytes[..bytes.len() - 3]).is_err());
    let json_v9 = json.replacen("\"version\":1", "\"version\":9", 1);
    assert!(matches!(
        IsolationForest::from_json(&json_v9),
        Err(MlError::UnsupportedVersion { found: 9, .. })
    ));
    let json_bad_offset = json.replacen("\"offset\":-", "\"offset\":-1", 1);
    assert_eq!(
        IsolationForest::from_json(&json_bad_offset)
            .unwrap_err()
            .reason(),
        "checksum_mismatch"
    );
    assert_eq!(
        IsolationForest::from_json("{\"format\":\"other\",\"version\":1}")
            .unwrap_err()
            .reason(),
        "wrong_format"
    );
    assert_eq!(
        IsolationForest::from_json("[1,2").unwrap_err().reason(),
        "wrong_format"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn training_is_deterministic_for_a_seed(seed in any::<u64>(), n in 2usize..300) {
        let rows = data(n, 3, seed ^ 0x55);
        let a = fit(&rows, seed, Contamination::Fraction(0.1));
        let b = fit(&rows, seed, Contamination::Fraction(0.1));
        prop_assert_eq!(&a, &b);
        let c = fit(&rows, seed.wrapping_add(1), Contamination::Fraction(0.1));
        prop_assert!(n < 4 || a != c);
    }

    #[test]
    fn positive_scores_are_in_unit_interval(
        seed in any::<u64>(),
        n in 1usize..300,
        probe in proptest::collection::vec(-1e6f64..1e6, 3),
    ) {
        let rows = data(n, 3, seed);
        let f = fit(&rows, seed, Contamination::Auto);
        let s = f.anomaly_score(&probe).unwrap();
        prop_assert!(s > 0.0 && s <= 1.0, "{}", s);
        let inside = f.anomaly_score(&rows[0]).unwrap();
        prop_assert!(inside > 0.0 && inside <= 1.0);
    }

    #[test]
    fn serialization_round_trip_is_exact(seed in any::<u64>(), n in 1usize..200, d in 1usize..8) {
        let rows = data(n, d, seed);
        let f = fit(&rows, seed, Contamination::Fraction(0.05));
        let back = IsolationForest::from_bytes(&f.to_bytes().unwrap()).unwrap();
        prop_assert_eq!(&back, &f);
        let back = IsolationForest::from_json(&f.to_json().unwrap()).unwrap();
        prop_assert_eq!(&back, &f);
        for r in &rows {
            prop_assert_eq!(back.score_samples(r).unwrap().to_bits(), f.score_samples(r).unwrap().to_bits());
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = IsolationForest::from_bytes(&bytes);
        // With a valid header and checksum, so the payload decoder itself is exercised.
        let mut with_header = b"HRBMLIF\0\x01\0\0\0".to_vec();
        with_header.extend_from_slice(&persist::fnv1a64(&bytes).to_le_bytes());
        with_header.extend_from_slice(&bytes);
        let _ = IsolationForest::from_bytes(&with_header);
        let _ = IsolationTree::decode(&bytes, 1000);
    }
}

/// Probes that hit every threshold exactly and one `f32` ulp on each side, where a
/// layout that mixed up `<=` and `<` would send them the wrong way.
fn threshold_probes(f: &IsolationForest, base: &[f64]) -> Vec<Vec<f64>> {
    let mut out = Vec::new();
    for tree in f.trees() {
        for n in tree.nodes.iter().filter(|n| !n.is_leaf()).take(6) {
            for t in [
                n.threshold,
                f32::from_bits(n.threshold.to_bits().wrapping_add(1)),
                f32::from_bits(n.threshold.to_bits().wrapping_sub(1)),
            ] {
                if t.is_finite() {
                    let mut p = base.to_vec();
                    p[n.feature as usize] = f64::from(t);
                    out.push(p);
                }
            }
        }
    }
    out
}

#[test]
fn fit_scored_equals_fit_then_scoring() {
    let rows = data(300, 3, 11);
    for contamination in [Contamination::Auto, Contamination::Fraction(0.07)] {
        let config = IsolationForestConfig {
            seed: 4,
            contamination,
            ..IsolationForestConfig::default()
        };
        let schema = FeatureSchema::anonymous(3).unwrap();
        let f = IsolationForest::fit(&config, schema.clone(), &rows).unwrap();
        let (g, scores) = IsolationForest::fit_scored(&config, schema, &rows).unwrap();
        assert_eq!(f, g);
        assert_eq!(scores, f.score_samples_batch(&rows).unwrap());
    }
}

#[test]
fn flat_layout_is_used_for_trained_forests_and_not_for_deep_ones() {
    let rows = data(400, 4, 3);
    assert!(fit(&rows, 1, Contamination::Auto).is_flat());
    // 5,000 rows per tree: depth 13, past the flat layout; the pointer walk scores it.
    let rows = data(5000, 2, 4);
    let config = IsolationForestConfig {
        n_estimators: 3,
        max_samples: MaxSamples::Count(5000),
        ..IsolationForestConfig::default()
    };
    let f = IsolationForest::fit(&config, FeatureSchema::anonymous(2).unwrap(), &rows).unwrap();
    assert!(!f.is_flat());
    let x = [0.1f32, -0.2];
    assert_eq!(
        f.score_samples(&[0.1, -0.2]).unwrap().to_bits(),
        f.score_f32_walk(&x).to_bits()
    );
}

#[test]
fn forests_past_the_flat_feature_limit_keep_the_pointer_walk() {
    let rows = data(300, 70, 5);
    let f = fit(&rows, 2, Contamination::Auto);
    let wide = f.trees().iter().any(|t| {
        t.nodes
            .iter()
            .any(|n| !n.is_leaf() && n.feature as usize >= flat::MAX_FLAT_FEATURES)
    });
    assert!(
        wide,
        "the data must make some tree split on a feature past the limit"
    );
    assert!(!f.is_flat());
    let x: Vec<f32> = rows[0].iter().map(|&v| v as f32).collect();
    assert_eq!(
        f.score_samples(&rows[0]).unwrap().to_bits(),
        f.score_f32_walk(&x).to_bits()
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn flat_scores_equal_the_pointer_walk_to_the_bit(
        seed in any::<u64>(),
        n in 1usize..600,
        d in 1usize..10,
        trees in 1usize..21,
        psi in 2usize..300,
        probes in proptest::collection::vec(proptest::collection::vec(-12f64..12.0, 10), 1..20),
    ) {
        let rows = data(n, d, seed);
        let config = IsolationForestConfig {
            n_estimators: trees,
            max_samples: MaxSamples::Count(psi),
            seed,
            ..IsolationForestConfig::default()
        };
        let f = IsolationForest::fit(&config, FeatureSchema::anonymous(d).unwrap(), &rows).unwrap();
        prop_assert!(f.is_flat());
        let mut all: Vec<Vec<f64>> = probes.iter().map(|p| p[..d].to_vec()).collect();
        all.extend(threshold_probes(&f, &all[0].clone()));
        all.extend(rows.iter().take(50).cloned());
        for p in &all {
            let x: Vec<f32> = p.iter().map(|&v| v as f32).collect();
            prop_assert_eq!(f.score_samples(p).unwrap().to_bits(), f.score_f32_walk(&x).to_bits());
        }
    }
}
