//! scikit-learn as the oracle for the Isolation Forest.
//!
//! Runs `tests/oracle/sklearn_oracle.py` with `$HAROMBE_PYTHON` (set by
//! `scripts/setup/10-python.sh`; scikit-learn installed by `scripts/setup/20-sklearn.sh`).
//! Without the oracle these tests fail: run `scripts/test.sh`.

use std::path::{Path, PathBuf};
use std::process::Command;

use harombe_ml::math::roc_auc;
use harombe_ml::{Contamination, FeatureSchema, IsolationForest, IsolationForestConfig};
use serde::Deserialize;

fn python() -> String {
    std::env::var("HAROMBE_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Runs the oracle script; panics with instructions when scikit-learn is not there.
fn oracle(args: &[&str]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracle/sklearn_oracle.py");
    let py = python();
    let out = Command::new(&py)
        .arg(&script)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {py} ({e}): the scikit-learn oracle is missing; run scripts/test.sh")
        });
    assert!(
        out.status.success(),
        "the scikit-learn oracle failed with {py}: is scikit-learn installed? HAROMBE_PYTHON \
         is {:?}; run scripts/test.sh (it sets up the venv with scikit-learn).\nstderr:\n{}",
        std::env::var("HAROMBE_PYTHON").ok(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[derive(Deserialize)]
struct CaseData {
    x: Vec<Vec<f64>>,
    probes: Vec<Vec<f64>>,
    score_x: Vec<f64>,
    score_probes: Vec<f64>,
    offset: f64,
    contamination: serde_json::Value,
}

fn max_abs_diff(ours: &[f64], theirs: &[f64]) -> f64 {
    assert_eq!(ours.len(), theirs.len());
    ours.iter()
        .zip(theirs)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max)
}

#[test]
fn rescoring_sklearn_trees_matches_score_samples_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    oracle(&["export", dir.path().to_str().unwrap()]);
    let mut cases: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".model.json"))
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 16,
        "the oracle exported only {} models",
        cases.len()
    );
    let mut worst = 0.0f64;
    for model_path in &cases {
        let name = model_path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .replace(".model.json", "");
        let data: CaseData =
            serde_json::from_str(&read(&dir.path().join(format!("{name}.data.json")))).unwrap();
        let model = IsolationForest::from_sklearn_json(&read(model_path))
            .unwrap_or_else(|e| panic!("{name}: import failed: {e}"));

        let on_x = model.score_samples_batch(&data.x).unwrap();
        let on_probes = model.score_samples_batch(&data.probes).unwrap();
        let diff =
            max_abs_diff(&on_x, &data.score_x).max(max_abs_diff(&on_probes, &data.score_probes));
        println!("{name}: max |ours - sklearn| = {diff:e}");
        assert!(diff <= 1e-9, "{name}: score_samples differ by {diff:e}");
        worst = worst.max(diff);

        // offset_: the imported one, and ours recomputed from the training rows.
        assert_eq!(model.offset(), data.offset, "{name}");
        let contamination = match data.contamination.as_f64() {
            Some(c) => Contamination::Fraction(c),
            None => Contamination::Auto,
        };
        let mut recomputed = model.clone();
        recomputed
            .set_contamination(contamination, &data.x)
            .unwrap();
        let d = (recomputed.offset() - data.offset).abs();
        assert!(
            d <= 1e-9,
            "{name}: offset {} vs sklearn {}",
            recomputed.offset(),
            data.offset
        );

        // decision_function / predict follow from the offset.
        for (row, s) in data.probes.iter().zip(&data.score_probes) {
            let dec = model.decision_function(row).unwrap();
            assert!((dec - (s - data.offset)).abs() <= 1e-9, "{name}");
        }

        // An imported model survives persistence bit for bit.
        let back = IsolationForest::from_bytes(&model.to_bytes().unwrap()).unwrap();
        assert_eq!(back, model, "{name}");
    }
    println!("worst difference over all cases: {worst:e}");
}

#[derive(Deserialize)]
struct AucData {
    x: Vec<Vec<f64>>,
    labels: Vec<bool>,
    seeds: Vec<u64>,
    sklearn_auc: Vec<f64>,
    sklearn_mean_score: Vec<f64>,
    sklearn_offset: Vec<f64>,
}

fn mean(v: &[f64]) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let n = v.len() as f64;
    v.iter().sum::<f64>() / n
}

#[test]
fn our_training_matches_sklearn_auc_and_score_level() {
    let dir = tempfile::tempdir().unwrap();
    oracle(&["auc", dir.path().to_str().unwrap()]);
    for name in ["blobs", "near_outliers", "mixed_scales"] {
        let data: AucData =
            serde_json::from_str(&read(&dir.path().join(format!("{name}.auc.json")))).unwrap();
        let schema = FeatureSchema::anonymous(data.x[0].len()).unwrap();
        let (mut aucs, mut means, mut offsets) = (Vec::new(), Vec::new(), Vec::new());
        for &seed in &data.seeds {
            let config = IsolationForestConfig {
                seed: seed + 1000,
                contamination: Contamination::Fraction(0.05),
                ..IsolationForestConfig::default()
            };
            let model = IsolationForest::fit(&config, schema.clone(), &data.x).unwrap();
            let scores = model.score_samples_batch(&data.x).unwrap();
            let anomaly: Vec<f64> = scores.iter().map(|s| -s).collect();
            aucs.push(roc_auc(&anomaly, &data.labels).unwrap());
            means.push(mean(&scores));
            offsets.push(model.offset());
        }
        let (ours, theirs) = (mean(&aucs), mean(&data.sklearn_auc));
        println!("{name}: AUC ours {ours:.4} sklearn {theirs:.4}");
        assert!(
            (ours - theirs).abs() <= 0.01,
            "{name}: AUC ours {ours} vs sklearn {theirs}"
        );
        // AUC ignores any monotone distortion of the scores; the score level does not.
        let (ours, theirs) = (mean(&means), mean(&data.sklearn_mean_score));
        println!("{name}: mean score_samples ours {ours:.4} sklearn {theirs:.4}");
        assert!(
            (ours - theirs).abs() <= 0.005,
            "{name}: mean score {ours} vs {theirs}"
        );
        let (ours, theirs) = (mean(&offsets), mean(&data.sklearn_offset));
        println!("{name}: offset_ (contamination 0.05) ours {ours:.4} sklearn {theirs:.4}");
        assert!(
            (ours - theirs).abs() <= 0.01,
            "{name}: offset {ours} vs {theirs}"
        );
    }
}
