//! Versioned persistence of an [`IsolationForest`], as compact bytes or as JSON.
//!
//! Bytes: `b"HRBMLIF\0"` · format version (`u32` LE) · FNV-1a-64 checksum of the payload
//! (`u64` LE) · payload (postcard). JSON: `{"format", "version", "checksum", "model"}` with
//! the same payload, trees as base64 strings. Both carry the feature schema. Loading checks,
//! in this order: the format marker, the version, the checksum, then every structural
//! invariant of every tree, so a model that loads can be scored without a panic.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Contamination, FeatureSchema, IsolationForest, IsolationTree, ModelOrigin};
use crate::error::{MlError, Result};

/// Version of the persisted format that this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

const MAGIC: &[u8; 8] = b"HRBMLIF\0";
const JSON_FORMAT: &str = "harombe-ml/isolation-forest";
const HEADER_LEN: usize = 8 + 4 + 8;

/// One tree's compact encoding: bytes in binary formats, base64 in human-readable ones.
#[derive(Debug, Clone, PartialEq)]
struct TreeBytes(Vec<u8>);

impl Serialize for TreeBytes {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&BASE64.encode(&self.0))
        } else {
            s.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for TreeBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            BASE64
                .decode(s.as_bytes())
                .map(TreeBytes)
                .map_err(serde::de::Error::custom)
        } else {
            Vec::<u8>::deserialize(d).map(TreeBytes)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Payload {
    feature_names: Vec<String>,
    max_samples: u64,
    contamination: Contamination,
    offset: f64,
    origin: ModelOrigin,
    trees: Vec<TreeBytes>,
}

#[derive(Debug, Serialize, Deserialize)]
struct JsonHeader {
    format: String,
    version: u32,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonEnvelope {
    format: String,
    version: u32,
    checksum: String,
    model: Payload,
}

/// FNV-1a, 64 bits: catches corruption (not tampering: a model file is not a secret).
pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn encode_payload(p: &Payload) -> Result<Vec<u8>> {
    postcard::to_stdvec(p).map_err(|e| MlError::corrupted(format!("cannot encode model: {e}")))
}

impl IsolationForest {
    fn to_payload(&self) -> Payload {
        Payload {
            feature_names: self.schema.names().to_vec(),
            max_samples: self.max_samples as u64,
            contamination: self.contamination,
            offset: self.offset,
            origin: self.origin.clone(),
            trees: self
                .trees
                .iter()
                .map(|t| {
                    let mut b = Vec::with_capacity(t.node_count() * 4);
                    t.encode(&mut b);
                    TreeBytes(b)
                })
                .collect(),
        }
    }

    fn from_payload(p: Payload) -> Result<Self> {
        let schema = FeatureSchema::new(p.feature_names)
            .map_err(|e| MlError::corrupted(format!("feature schema: {e}")))?;
        let max_samples = usize::try_from(p.max_samples)
            .ok()
            .filter(|&m| m >= 1 && m <= u32::MAX as usize)
            .ok_or_else(|| MlError::corrupted(format!("max_samples {}", p.max_samples)))?;
        let trees = p
            .trees
            .iter()
            .enumerate()
            .map(|(i, b)| decode_tree(&b.0, max_samples).map_err(|e| in_tree(i, &e)))
            .collect::<Result<Vec<_>>>()?;
        Self::from_parts(
            schema,
            max_samples,
            trees,
            p.contamination,
            p.offset,
            p.origin,
        )
    }

    /// The model as compact bytes (see the module doc for the layout).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let payload = encode_payload(&self.to_payload())?;
        let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&fnv1a64(&payload).to_le_bytes());
        out.extend_from_slice(&payload);
        Ok(out)
    }

    /// Loads bytes written by [`to_bytes`](Self::to_bytes).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.len() < HEADER_LEN || &bytes[..8] != MAGIC {
            return Err(MlError::WrongFormat {
                expected: "harombe-ml isolation forest (bytes)",
                reason: "missing HRBMLIF header".into(),
            });
        }
        let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        if version != FORMAT_VERSION {
            return Err(MlError::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let mut stored = [0u8; 8];
        stored.copy_from_slice(&bytes[12..20]);
        let stored = u64::from_le_bytes(stored);
        let payload = &bytes[HEADER_LEN..];
        let computed = fnv1a64(payload);
        if stored != computed {
            return Err(MlError::ChecksumMismatch { stored, computed });
        }
        let (p, rest): (Payload, &[u8]) = postcard::take_from_bytes(payload)
            .map_err(|e| MlError::corrupted(format!("cannot decode model: {e}")))?;
        if !rest.is_empty() {
            return Err(MlError::corrupted(format!(
                "{} trailing bytes after the model",
                rest.len()
            )));
        }
        Self::from_payload(p)
    }

    /// The model as JSON (trees base64-encoded).
    pub fn to_json(&self) -> Result<String> {
        let model = self.to_payload();
        let checksum = format!("{:016x}", fnv1a64(&encode_payload(&model)?));
        let env = JsonEnvelope {
            format: JSON_FORMAT.into(),
            version: FORMAT_VERSION,
            checksum,
            model,
        };
        serde_json::to_string(&env)
            .map_err(|e| MlError::corrupted(format!("cannot encode model as JSON: {e}")))
    }

    /// Loads JSON written by [`to_json`](Self::to_json).
    pub fn from_json(json: &str) -> Result<Self> {
        let wrong = |reason: String| MlError::WrongFormat {
            expected: "harombe-ml isolation forest (JSON)",
            reason,
        };
        let header: JsonHeader = serde_json::from_str(json).map_err(|e| wrong(e.to_string()))?;
        if header.format != JSON_FORMAT {
            return Err(wrong(format!("format is {:?}", header.format)));
        }
        if header.version != FORMAT_VERSION {
            return Err(MlError::UnsupportedVersion {
                found: header.version,
                supported: FORMAT_VERSION,
            });
        }
        let env: JsonEnvelope = serde_json::from_str(json)
            .map_err(|e| MlError::corrupted(format!("model JSON: {e}")))?;
        let stored = u64::from_str_radix(&env.checksum, 16)
            .map_err(|_| MlError::corrupted(format!("checksum {:?} is not hex", env.checksum)))?;
        let computed = fnv1a64(&encode_payload(&env.model)?);
        if stored != computed {
            return Err(MlError::ChecksumMismatch { stored, computed });
        }
        Self::from_payload(env.model)
    }
}

/// Decodes one tree and checks that its leaves hold exactly `max_samples` samples (which
/// also bounds its size: at most `2 · max_samples - 1` nodes).
pub(crate) fn decode_tree(bytes: &[u8], max_samples: usize) -> Result<IsolationTree> {
    let tree = IsolationTree::decode(bytes, 2 * max_samples - 1)?;
    if tree.root_samples() as usize != max_samples {
        return Err(MlError::corrupted(format!(
            "leaves hold {} samples, expected max_samples = {max_samples}",
            tree.root_samples()
        )));
    }
    Ok(tree)
}

fn in_tree(i: usize, e: &MlError) -> MlError {
    match e {
        MlError::Corrupted { reason } => MlError::corrupted(format!("tree {i}: {reason}")),
        other => other.clone(),
    }
}
