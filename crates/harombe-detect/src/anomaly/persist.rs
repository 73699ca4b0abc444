//! The per-agent model file.
//!
//! ```text
//! "HRBDETM\0" | version u32 LE | state length u32 LE | FNV-1a-64 of state u64 LE
//! | state (postcard: schema, config, extractor, baseline, calibration, threshold, feedback)
//! | forest (harombe-ml's own versioned, checksummed bytes; empty when untrained)
//! ```
//!
//! The state and the forest are checked separately: a damaged forest section still loads
//! the baseline (the agent scores baseline-only and says why); a damaged header or state,
//! another format version, or a different feature schema is an error.

use std::io::Write;
use std::path::Path;

use harombe_ml::IsolationForest;
use serde::{Deserialize, Serialize};

use super::model::Calibration;
use super::{AgentDetector, DetectError, DetectorConfig, DualModel, FeedbackState};
use crate::baseline::WindowedBaseline;
use crate::features::{FEATURE_NAMES, FeatureExtractor, N_FEATURES, fnv1a64};

/// Magic bytes of a model file.
pub const MAGIC: &[u8; 8] = b"HRBDETM\0";
/// Format version written and read by this build.
pub const FORMAT_VERSION: u32 = 2;
const HEADER: usize = 24;

#[derive(Serialize, Deserialize)]
struct State {
    schema: Vec<String>,
    agent: String,
    config: DetectorConfig,
    extractor: FeatureExtractor,
    baseline: WindowedBaseline,
    calibration: Option<Calibration>,
    fallback: Option<String>,
    threshold: f64,
    feedback: FeedbackState,
}

impl AgentDetector {
    /// The model as bytes (see the module doc).
    pub fn to_bytes(&self) -> Result<Vec<u8>, DetectError> {
        let state = State {
            schema: FEATURE_NAMES.iter().map(|s| (*s).to_owned()).collect(),
            agent: self.agent.to_string(),
            config: self.config,
            extractor: self.extractor.clone(),
            baseline: self.model.baseline.clone(),
            calibration: self.model.calibration,
            fallback: self.model.fallback.clone(),
            threshold: self.threshold,
            feedback: self.feedback.clone(),
        };
        let corrupt = |e: String| DetectError::ModelCorrupted { reason: e };
        let body = postcard::to_stdvec(&state).map_err(|e| corrupt(e.to_string()))?;
        let forest = match &self.model.forest {
            Some(f) => f.to_bytes()?,
            None => Vec::new(),
        };
        let len = u32::try_from(body.len()).map_err(|_| corrupt("state too large".into()))?;
        let mut out = Vec::with_capacity(HEADER + body.len() + forest.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&fnv1a64(&body).to_le_bytes());
        out.extend_from_slice(&body);
        out.extend_from_slice(&forest);
        Ok(out)
    }

    /// Loads bytes written by [`to_bytes`](Self::to_bytes).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DetectError> {
        if bytes.len() < HEADER || &bytes[..8] != MAGIC {
            return Err(DetectError::WrongFormat {
                reason: "missing HRBDETM header".into(),
            });
        }
        let u32_at =
            |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let version = u32_at(8);
        if version != FORMAT_VERSION {
            return Err(DetectError::ModelVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let len = u32_at(12) as usize;
        let corrupt = |reason: String| DetectError::ModelCorrupted { reason };
        let end = HEADER
            .checked_add(len)
            .filter(|&e| e <= bytes.len())
            .ok_or_else(|| {
                corrupt(format!(
                    "state of {len} bytes overruns the file ({} bytes)",
                    bytes.len()
                ))
            })?;
        let mut sum = [0u8; 8];
        sum.copy_from_slice(&bytes[16..24]);
        let stored = u64::from_le_bytes(sum);
        let body = &bytes[HEADER..end];
        let computed = fnv1a64(body);
        if stored != computed {
            return Err(corrupt(format!(
                "state checksum mismatch (stored {stored:016x}, computed {computed:016x})"
            )));
        }
        let state: State =
            postcard::from_bytes(body).map_err(|e| corrupt(format!("state: {e}")))?;
        if state
            .schema
            .iter()
            .map(String::as_str)
            .ne(FEATURE_NAMES.iter().copied())
        {
            return Err(corrupt(format!(
                "feature schema {:?} differs from this build's",
                state.schema
            )));
        }
        if state.baseline.n_features() != N_FEATURES {
            return Err(corrupt("baseline width differs from the schema".into()));
        }
        state.config.validate()?;
        let agent = harombe_core::AgentId::new(state.agent.clone())
            .map_err(|e| corrupt(format!("agent id: {e}")))?;
        let mut model = DualModel::new(state.config.model, N_FEATURES);
        model.baseline = state.baseline;
        model.fallback = state.fallback;
        let forest_bytes = &bytes[end..];
        if !forest_bytes.is_empty() {
            match IsolationForest::from_bytes(forest_bytes) {
                Ok(f) if f.schema().len() == N_FEATURES && state.calibration.is_some() => {
                    model.forest = Some(f);
                    model.calibration = state.calibration;
                    model.fallback = None;
                }
                Ok(_) => model.set_fallback("forest section does not match the schema".into()),
                Err(e) => model.set_fallback(format!("forest section unusable: {e}")),
            }
        }
        Ok(Self {
            agent,
            config: state.config,
            extractor: state.extractor,
            model,
            threshold: state
                .threshold
                .clamp(state.config.threshold, state.config.max_threshold),
            feedback: state.feedback,
        })
    }
}

/// Writes `bytes` to `path` atomically (a temporary file in the same directory, synced,
/// then renamed).
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), DetectError> {
    let io = |source| DetectError::Io {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Reads a model file.
pub fn read_file(path: &Path) -> Result<Vec<u8>, DetectError> {
    std::fs::read(path).map_err(|source| DetectError::Io {
        path: path.display().to_string(),
        source,
    })
}
