//! [`Finding`]: what a scan reports. It holds offsets and a redacted preview, never the
//! secret itself, so it is safe to log, serialise and store in the audit log.

use std::sync::Arc;

use serde::Serialize;

use super::rule::Severity;

/// A half-open byte range `[start, end)` in the scanned input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Span {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

impl Span {
    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Whether the span is empty.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// The span as a `usize` range (for slices held in memory).
    pub fn range(&self) -> std::ops::Range<usize> {
        usize::try_from(self.start).unwrap_or(usize::MAX)
            ..usize::try_from(self.end).unwrap_or(usize::MAX)
    }
}

/// An encoding a finding was found under (outermost first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// Standard or URL-safe base64.
    Base64,
    /// `%XX` percent encoding.
    Percent,
    /// gzip stream.
    Gzip,
    /// zlib / HTTP `deflate` stream.
    Deflate,
}

/// One match of one rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Id of the rule that matched.
    pub rule_id: String,
    /// Severity of the rule.
    pub severity: Severity,
    /// Tags of the rule (policy keys), shared by every finding of the rule.
    pub tags: Arc<[String]>,
    /// Bytes to redact: the secret, or for an encoded finding the whole encoded run.
    pub span: Span,
    /// The whole regex match (same as `span` for encoded findings).
    pub match_span: Span,
    /// 1-based line of `span.start`.
    pub line: u64,
    /// Redacted preview (a short prefix, an ellipsis and the length); never the secret.
    pub preview: String,
    /// Decoding layers the secret was found under, outermost first; empty = plain text.
    pub encodings: Vec<Encoding>,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} at line {} bytes {}..{}: {}",
            self.rule_id, self.line, self.span.start, self.span.end, self.preview
        )?;
        if !self.encodings.is_empty() {
            let layers: Vec<&str> = self
                .encodings
                .iter()
                .map(|e| match e {
                    Encoding::Base64 => "base64",
                    Encoding::Percent => "percent",
                    Encoding::Gzip => "gzip",
                    Encoding::Deflate => "deflate",
                })
                .collect();
            write!(f, " (in {})", layers.join("/"))?;
        }
        Ok(())
    }
}

/// A preview that identifies a finding without revealing it: at most an eighth of the
/// secret (capped at 4 bytes, printable ASCII only) followed by `…` and the length.
pub(crate) fn preview(secret: &[u8]) -> String {
    let shown = (secret.len() / 8).min(4);
    // Built by hand: one per finding, and `format!` costs several times as much.
    let mut out = String::with_capacity(shown + 32);
    out.extend(secret[..shown].iter().map(|&b| {
        if b.is_ascii_graphic() {
            char::from(b)
        } else {
            '?'
        }
    }));
    out.push_str("…[");
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = secret.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend(digits[at..].iter().map(|&d| char::from(d)));
    out.push_str(" bytes]");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preview_reveals_at_most_an_eighth() {
        assert_eq!(
            preview(b"ghp_abcdefghijklmnopqrstuvwxyz0123456789"),
            "ghp_…[40 bytes]"
        );
        assert_eq!(preview(b"hunter2"), "…[7 bytes]");
        assert_eq!(preview(b"0123456789abcdef"), "01…[16 bytes]");
        assert_eq!(preview(b""), "…[0 bytes]");
    }

    proptest::proptest! {
        /// The preview is the first eighth (at most 4 bytes, non-graphic bytes as `?`),
        /// an ellipsis and the length.
        #[test]
        fn preview_is_prefix_ellipsis_and_length(secret in proptest::collection::vec(proptest::num::u8::ANY, 0..2000)) {
            let shown: String = secret[..(secret.len() / 8).min(4)]
                .iter()
                .map(|&b| if b.is_ascii_graphic() { char::from(b) } else { '?' })
                .collect();
            proptest::prop_assert_eq!(preview(&secret), format!("{shown}…[{} bytes]", secret.len()));
        }
    }
}
