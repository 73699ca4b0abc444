//! The error type of the behavioural detectors (features, baselines, anomaly, threat
//! scoring, traffic, scenarios). Threat intelligence has its own (`intel::IntelError`).

/// What can go wrong while training, scoring, saving or loading a behavioural model.
/// An anomaly is a result, not an error; an error means no score could be computed the
/// way the caller asked, and says which fallback applies.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DetectError {
    /// Fewer observations than the configured minimum. The observations were still kept
    /// (nothing accepted is lost); the agent scores in learning or baseline-only mode.
    #[error("agent {agent}: {have} usable events, at least {need} needed")]
    InsufficientSamples {
        /// Agent.
        agent: String,
        /// Usable events seen.
        have: u64,
        /// Events required.
        need: u64,
    },
    /// Training data the forest cannot learn from (empty, or every row identical).
    #[error("agent {agent}: training data unusable for the forest: {reason}")]
    DegenerateTrainingData {
        /// Agent.
        agent: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A feature value is NaN or infinite.
    #[error("feature {feature}: value {value} is not finite")]
    NonFinite {
        /// Feature name.
        feature: &'static str,
        /// The value.
        value: f64,
    },
    /// No detector or baseline for this agent.
    #[error("no model for agent {agent}")]
    UnknownAgent {
        /// Agent.
        agent: String,
    },
    /// A configuration value outside its domain.
    #[error("invalid configuration {field}: {reason}")]
    InvalidConfig {
        /// Field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// A model file written by another format version.
    #[error("model format version {found} is not supported (this build reads {supported})")]
    ModelVersion {
        /// Version in the file.
        found: u32,
        /// Version this build reads.
        supported: u32,
    },
    /// A model file that is damaged (checksum, truncation, inconsistent contents).
    #[error("corrupted model: {reason}")]
    ModelCorrupted {
        /// What is broken.
        reason: String,
    },
    /// Bytes that are not a harombe detector model at all.
    #[error("not a harombe detector model: {reason}")]
    WrongFormat {
        /// What was found.
        reason: String,
    },
    /// Reading or writing a model file failed.
    #[error("model file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The numeric layer refused the data.
    #[error(transparent)]
    Ml(#[from] harombe_ml::MlError),
}

impl DetectError {
    /// A short, stable label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InsufficientSamples { .. } => "insufficient_samples",
            Self::DegenerateTrainingData { .. } => "degenerate_training_data",
            Self::NonFinite { .. } => "non_finite",
            Self::UnknownAgent { .. } => "unknown_agent",
            Self::InvalidConfig { .. } => "invalid_config",
            Self::ModelVersion { .. } => "model_version",
            Self::ModelCorrupted { .. } => "model_corrupted",
            Self::WrongFormat { .. } => "wrong_format",
            Self::Io { .. } => "io",
            Self::Ml(e) => e.reason(),
        }
    }

    /// Whether the same call could succeed later: only I/O, and too little data (more
    /// events will arrive).
    pub fn is_retriable(&self) -> bool {
        matches!(self, Self::Io { .. } | Self::InsufficientSamples { .. })
    }
}
