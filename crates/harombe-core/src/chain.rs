//! The hash chain over stored events, and the one verifier every store feeds.
//!
//! `hash_n = SHA-256(hash_{n-1} ‖ seq_n as 8 big-endian bytes ‖ body_n)` with
//! `hash_0 = [0; 32]` (or a retention checkpoint's hash). The sequence number is inside the
//! hash, so moving a row to another position breaks the chain even when its bytes are kept.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::event::AuditEvent;
use crate::ids::EventId;

/// A SHA-256 chain hash.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ChainHash(pub [u8; 32]);

impl ChainHash {
    pub const GENESIS: ChainHash = ChainHash([0; 32]);

    /// The hash of the event at `seq` whose canonical encoding is `body`.
    pub fn next(&self, seq: u64, body: &[u8]) -> ChainHash {
        let mut h = Sha256::new();
        h.update(self.0);
        h.update(seq.to_be_bytes());
        h.update(body);
        ChainHash(h.finalize().into())
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_slice(b: &[u8]) -> Option<ChainHash> {
        <[u8; 32]>::try_from(b).ok().map(ChainHash)
    }
}

impl fmt::Debug for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_hex())
    }
}

impl fmt::Display for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for ChainHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for ChainHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let v = hex::decode(&s).map_err(serde::de::Error::custom)?;
        ChainHash::from_slice(&v).ok_or_else(|| serde::de::Error::custom("hash must be 32 bytes"))
    }
}

/// The last link of the chain: recorded by the store in the same transaction as the events,
/// so a truncated tail is detected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    pub seq: u64,
    pub hash: ChainHash,
}

/// Where verification starts after retention removed older events: `seq` is the first
/// remaining event and `prev_hash` the hash of the last removed one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: u64,
    pub prev_hash: ChainHash,
}

impl Checkpoint {
    pub const START: Checkpoint = Checkpoint {
        seq: 1,
        prev_hash: ChainHash::GENESIS,
    };
}

/// One stored row as the verifier sees it.
#[derive(Debug, Clone, Copy)]
pub struct RawRow<'a> {
    pub seq: u64,
    pub body: &'a [u8],
    pub hash: ChainHash,
}

/// The first thing wrong with a chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "problem", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ChainProblem {
    #[error("event seq {seq} (id {id}) was changed: its hash does not match its contents")]
    Changed { seq: u64, id: String },
    #[error("event seq {seq} (id {id}) is out of order: it was written at position {original_seq}")]
    Reordered {
        seq: u64,
        id: String,
        original_seq: u64,
    },
    #[error("events seq {first_missing}..={last_missing} are missing (deleted)")]
    Missing {
        first_missing: u64,
        last_missing: u64,
    },
    #[error(
        "the log ends at seq {last_seq} but the chain head records seq {head_seq}: \
         events {}..={head_seq} were removed from the tail", last_seq + 1
    )]
    TruncatedTail { last_seq: u64, head_seq: u64 },
    #[error("the chain head (seq {head_seq}) does not match the last event (seq {last_seq})")]
    HeadMismatch { head_seq: u64, last_seq: u64 },
    #[error("event seq {seq} cannot be decoded: {reason}")]
    Undecodable { seq: u64, reason: String },
}

/// Walks rows in `seq` order and reports the first problem. Feed batches with
/// [`ChainVerifier::feed`], then call [`ChainVerifier::finish`] with the recorded head.
#[derive(Debug)]
pub struct ChainVerifier {
    expected_seq: u64,
    prev: ChainHash,
    checked: u64,
    problem: Option<ChainProblem>,
}

impl ChainVerifier {
    pub fn new(start: Checkpoint) -> Self {
        Self {
            expected_seq: start.seq,
            prev: start.prev_hash,
            checked: 0,
            problem: None,
        }
    }

    pub fn problem(&self) -> Option<&ChainProblem> {
        self.problem.as_ref()
    }

    pub fn checked(&self) -> u64 {
        self.checked
    }

    /// Verifies a batch; rows after it in the same batch are used to tell a reordered row
    /// from a changed one. Returns `false` once a problem was found (stop feeding).
    pub fn feed(&mut self, rows: &[RawRow<'_>]) -> bool {
        if self.problem.is_some() {
            return false;
        }
        for (i, row) in rows.iter().enumerate() {
            if row.seq != self.expected_seq {
                self.problem = Some(ChainProblem::Missing {
                    first_missing: self.expected_seq,
                    last_missing: row.seq.saturating_sub(1).max(self.expected_seq),
                });
                return false;
            }
            let h = self.prev.next(row.seq, row.body);
            if h != row.hash {
                self.problem = Some(self.explain_mismatch(row, &rows[i + 1..]));
                return false;
            }
            self.prev = h;
            self.expected_seq += 1;
            self.checked += 1;
        }
        true
    }

    fn explain_mismatch(&self, row: &RawRow<'_>, later: &[RawRow<'_>]) -> ChainProblem {
        let id = |body: &[u8]| match AuditEvent::decode(body) {
            Ok(e) => e.id.to_string(),
            Err(_) => String::from("undecodable"),
        };
        // A row that belongs here but was moved further down the log.
        for other in later.iter().take(64) {
            if self.prev.next(row.seq, other.body) == other.hash {
                return ChainProblem::Reordered {
                    seq: other.seq,
                    id: id(other.body),
                    original_seq: row.seq,
                };
            }
        }
        if let Err(e) = AuditEvent::decode(row.body) {
            return ChainProblem::Undecodable {
                seq: row.seq,
                reason: e.to_string(),
            };
        }
        ChainProblem::Changed {
            seq: row.seq,
            id: id(row.body),
        }
    }

    /// Compares the end of the walk with the head the store recorded.
    pub fn finish(mut self, head: Option<ChainHead>) -> (u64, Option<ChainProblem>) {
        if self.problem.is_none() {
            let last_seq = self.expected_seq - 1;
            match head {
                Some(head) if head.seq > last_seq => {
                    self.problem = Some(ChainProblem::TruncatedTail {
                        last_seq,
                        head_seq: head.seq,
                    });
                }
                Some(head) if head.seq != last_seq || head.hash != self.prev => {
                    self.problem = Some(ChainProblem::HeadMismatch {
                        head_seq: head.seq,
                        last_seq,
                    });
                }
                None if self.checked > 0 => {
                    self.problem = Some(ChainProblem::HeadMismatch {
                        head_seq: 0,
                        last_seq,
                    });
                }
                _ => {}
            }
        }
        (self.checked, self.problem)
    }
}

/// Returns the id of the event a chain problem names, when it names one.
pub fn problem_event(problem: &ChainProblem) -> Option<EventId> {
    match problem {
        ChainProblem::Changed { id, .. } | ChainProblem::Reordered { id, .. } => id.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventKind, Outcome};
    use proptest::prelude::*;

    fn chain(n: u64) -> Vec<(u64, Vec<u8>, ChainHash)> {
        let mut prev = ChainHash::GENESIS;
        let t0 = time::macros::datetime!(2026-01-01 00:00 UTC);
        (1..=n)
            .map(|seq| {
                let e = AuditEvent::new(
                    t0 + time::Duration::seconds(seq as i64),
                    EventKind::ToolCall,
                    Outcome::Success,
                )
                .with_target(format!("tool-{seq}"));
                let body = e.encode().unwrap();
                prev = prev.next(seq, &body);
                (seq, body, prev)
            })
            .collect()
    }

    fn verify(rows: &[(u64, Vec<u8>, ChainHash)], head: Option<ChainHead>) -> Option<ChainProblem> {
        let raw: Vec<RawRow<'_>> = rows
            .iter()
            .map(|(s, b, h)| RawRow {
                seq: *s,
                body: b,
                hash: *h,
            })
            .collect();
        let mut v = ChainVerifier::new(Checkpoint::START);
        v.feed(&raw);
        v.finish(head).1
    }

    fn head_of(rows: &[(u64, Vec<u8>, ChainHash)]) -> Option<ChainHead> {
        rows.last().map(|(s, _, h)| ChainHead { seq: *s, hash: *h })
    }

    #[test]
    fn intact_chain_verifies() {
        let rows = chain(10);
        assert_eq!(verify(&rows, head_of(&rows)), None);
        assert_eq!(verify(&[], None), None);
    }

    #[test]
    fn names_a_changed_event() {
        let mut rows = chain(10);
        let text = String::from_utf8(rows[4].1.clone())
            .unwrap()
            .replace("tool-5", "tool-X");
        rows[4].1 = text.into_bytes();
        let head = head_of(&rows);
        assert!(matches!(
            verify(&rows, head),
            Some(ChainProblem::Changed { seq: 5, .. })
        ));
    }

    #[test]
    fn names_a_deleted_event() {
        let mut rows = chain(10);
        let head = head_of(&rows);
        rows.remove(3);
        assert_eq!(
            verify(&rows, head),
            Some(ChainProblem::Missing {
                first_missing: 4,
                last_missing: 4
            })
        );
    }

    #[test]
    fn names_swapped_events() {
        let mut rows = chain(10);
        let head = head_of(&rows);
        // Swap the contents of seq 3 and 4, keeping the seq column in place.
        let (b3, h3) = (rows[2].1.clone(), rows[2].2);
        rows[2].1 = rows[3].1.clone();
        rows[2].2 = rows[3].2;
        rows[3].1 = b3;
        rows[3].2 = h3;
        assert!(matches!(
            verify(&rows, head),
            Some(ChainProblem::Reordered {
                seq: 4,
                original_seq: 3,
                ..
            })
        ));
    }

    #[test]
    fn names_a_truncated_tail() {
        let mut rows = chain(10);
        let head = head_of(&rows);
        rows.truncate(7);
        assert_eq!(
            verify(&rows, head),
            Some(ChainProblem::TruncatedTail {
                last_seq: 7,
                head_seq: 10
            })
        );
    }

    proptest! {
        #[test]
        fn any_single_byte_change_is_named(pos in any::<prop::sample::Index>(), bit in 0u8..8) {
            let mut rows = chain(20);
            let head = head_of(&rows);
            let total: usize = rows.iter().map(|r| r.1.len()).sum();
            let mut at = pos.index(total);
            let mut which = 0;
            while at >= rows[which].1.len() { at -= rows[which].1.len(); which += 1; }
            rows[which].1[at] ^= 1 << bit;
            let problem = verify(&rows, head).expect("a flipped bit must be detected");
            let seq = which as u64 + 1;
            let named = match problem {
                ChainProblem::Changed { seq: s, .. } | ChainProblem::Undecodable { seq: s, .. } => s,
                other => panic!("unexpected {other:?}"),
            };
            prop_assert_eq!(named, seq);
        }
    }
}
