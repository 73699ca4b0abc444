//! The one error type of this crate.

/// Everything that can go wrong in `harombe-ml`. Nothing in this crate panics on bad input:
/// bad data, bad parameters and bad model files all come back as one of these.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum MlError {
    /// Training was asked to learn from zero rows (or zero features).
    #[error("no training data: {what}")]
    EmptyData {
        /// What was empty ("rows", "features").
        what: &'static str,
    },
    /// A row does not have the number of features the model or the first row has.
    #[error("row {row} has {found} features, expected {expected}")]
    DimensionMismatch {
        /// Index of the offending row (0 when scoring a single row).
        row: usize,
        /// Number of features expected.
        expected: usize,
        /// Number of features found.
        found: usize,
    },
    /// NaN or an infinity in the input.
    #[error("row {row}, feature {column}: value {value} is not finite")]
    NonFinite {
        /// Index of the offending row.
        row: usize,
        /// Index of the offending feature.
        column: usize,
        /// The value itself (NaN or ±inf).
        value: f64,
    },
    /// A finite `f64` too large for `f32` (the Isolation Forest works in `f32`, as sklearn).
    #[error("row {row}, feature {column}: value {value} overflows f32")]
    OutOfRange {
        /// Index of the offending row.
        row: usize,
        /// Index of the offending feature.
        column: usize,
        /// The value itself.
        value: f64,
    },
    /// A parameter outside its domain.
    #[error("invalid parameter {name}: {reason}")]
    InvalidParameter {
        /// Parameter name.
        name: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// The bytes or JSON are not a model of the expected kind at all.
    #[error("not a {expected} model: {reason}")]
    WrongFormat {
        /// The format that was expected.
        expected: &'static str,
        /// What was found instead.
        reason: String,
    },
    /// A model written by another format version of this crate.
    #[error("unsupported model format version {found} (this build reads version {supported})")]
    UnsupportedVersion {
        /// Version found in the file.
        found: u32,
        /// Version this build reads and writes.
        supported: u32,
    },
    /// The model's checksum does not match its contents.
    #[error(
        "model checksum mismatch (stored {stored:016x}, computed {computed:016x}): file corrupted"
    )]
    ChecksumMismatch {
        /// Checksum stored in the file.
        stored: u64,
        /// Checksum computed over the contents.
        computed: u64,
    },
    /// The model decodes but is not internally consistent (bad child index, feature out of
    /// range, non-finite threshold, ...).
    #[error("corrupted model: {reason}")]
    Corrupted {
        /// Which invariant is broken, and where.
        reason: String,
    },
}

impl MlError {
    /// A short, stable label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::EmptyData { .. } => "empty_data",
            Self::DimensionMismatch { .. } => "dimension_mismatch",
            Self::NonFinite { .. } => "non_finite",
            Self::OutOfRange { .. } => "out_of_range",
            Self::InvalidParameter { .. } => "invalid_parameter",
            Self::WrongFormat { .. } => "wrong_format",
            Self::UnsupportedVersion { .. } => "unsupported_version",
            Self::ChecksumMismatch { .. } => "checksum_mismatch",
            Self::Corrupted { .. } => "corrupted",
        }
    }

    /// Whether retrying the same call could succeed. Never: everything here is a pure
    /// function of its input.
    pub fn is_retriable(&self) -> bool {
        false
    }

    pub(crate) fn corrupted(reason: impl Into<String>) -> Self {
        Self::Corrupted {
            reason: reason.into(),
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = MlError> = std::result::Result<T, E>;

/// Checks one value for training or scoring with the Isolation Forest: finite and
/// representable as `f32` (sklearn casts its input to `float32`). Returns the `f32`.
pub(crate) fn to_f32_checked(value: f64, row: usize, column: usize) -> Result<f32> {
    if !value.is_finite() {
        return Err(MlError::NonFinite { row, column, value });
    }
    #[allow(clippy::cast_possible_truncation)]
    let v = value as f32;
    if !v.is_finite() {
        return Err(MlError::OutOfRange { row, column, value });
    }
    Ok(v)
}

/// Checks that a value is finite (for the statistics that stay in `f64`).
pub(crate) fn check_finite(value: f64, row: usize, column: usize) -> Result<f64> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(MlError::NonFinite { row, column, value })
    }
}
