//! Decoders: find encoded runs inside a buffer (base64, percent encoding) and inflate
//! gzip/zlib bodies, all with caps. A cap that trips is reported by the caller as a
//! [`super::DECODE_BOMB_RULE_ID`] finding, never swallowed.

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use flate2::read::{MultiGzDecoder, ZlibDecoder};

use super::classes::LongRuns;
use super::finding::Encoding;

/// A decoded run of a buffer.
pub(crate) struct Segment {
    /// Range of the encoded run in the buffer.
    pub start: usize,
    pub end: usize,
    pub encoding: Encoding,
    pub body: Body,
    /// Set when the run was compressed inside (e.g. base64 of gzip).
    pub inner: Option<Encoding>,
}

/// What a decoded run holds for scanning.
pub(crate) enum Body {
    /// Its decoded (and inflated) bytes.
    Text(Vec<u8>),
    /// A compressed body (of this kind) that inflates past what is inflated in memory
    /// ([`Caps::in_memory`]), still compressed: the scan inflates it as a stream.
    Compressed(Encoding, Vec<u8>),
    /// A compressed body that would inflate past this many bytes, its cap.
    Bomb(u64),
}

impl Segment {
    /// The decoded bytes, when they are held as such.
    #[cfg(test)]
    pub fn text(&self) -> Option<&[u8]> {
        match &self.body {
            Body::Text(t) => Some(t),
            _ => None,
        }
    }
}

/// Compression format recognised from a body's first bytes.
pub(crate) fn compression_of(data: &[u8]) -> Option<Encoding> {
    match data {
        [0x1f, 0x8b, ..] => Some(Encoding::Gzip),
        [0x78, 0x01 | 0x5e | 0x9c | 0xda, ..] => Some(Encoding::Deflate),
        _ => None,
    }
}

/// A reader that fails with [`BombError`] once more than `limit` bytes came out.
pub(crate) struct Capped<R> {
    inner: R,
    produced: u64,
    limit: u64,
    /// Compressed bytes consumed so far and the largest allowed output/input ratio.
    ratio: Option<(Rc<Cell<u64>>, u64)>,
}

/// Marker carried inside an `io::Error` when a decompression cap trips.
#[derive(Debug)]
pub(crate) struct BombError {
    pub limit: u64,
}

impl std::fmt::Display for BombError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "decompressed output exceeded {} bytes", self.limit)
    }
}
impl std::error::Error for BombError {}

pub(crate) fn is_bomb(err: &io::Error) -> Option<u64> {
    err.get_ref()
        .and_then(|e| e.downcast_ref::<BombError>())
        .map(|b| b.limit)
}

impl<R: Read> Capped<R> {
    pub fn new(inner: R, limit: u64) -> Self {
        Self {
            inner,
            produced: 0,
            limit,
            ratio: None,
        }
    }

    /// Also refuse output beyond `ratio` times the compressed input (past 1 MiB).
    pub fn with_ratio(mut self, consumed: Rc<Cell<u64>>, ratio: u64) -> Self {
        self.ratio = Some((consumed, ratio));
        self
    }
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.produced += n as u64;
        if self.produced > self.limit {
            return Err(io::Error::other(BombError { limit: self.limit }));
        }
        if let Some((consumed, ratio)) = &self.ratio {
            let allowed = consumed.get().saturating_mul(*ratio).max(1 << 20);
            if self.produced > allowed {
                return Err(io::Error::other(BombError { limit: allowed }));
            }
        }
        Ok(n)
    }
}

/// A decompressing reader over `r` for `kind`.
pub(crate) fn decompressor<'a, R: Read + 'a>(kind: Encoding, r: R) -> Box<dyn Read + 'a> {
    match kind {
        Encoding::Deflate => Box::new(ZlibDecoder::new(r)),
        _ => Box::new(MultiGzDecoder::new(r)),
    }
}

/// Whether `head`, the first bytes of a body whose magic bytes say `kind`, really starts
/// such a stream (text that happens to start with `x^` is not a zlib stream): decoding it
/// fails only for want of the rest, and not even that when `head` is the `whole` body.
/// Decodes at most 1 MiB.
pub(crate) fn starts_stream(kind: Encoding, head: &[u8], whole: bool) -> bool {
    let mut decoder = decompressor(kind, head);
    let mut sink = [0u8; 8 << 10];
    let mut produced = 0;
    loop {
        match decoder.read(&mut sink) {
            Ok(0) => return true,
            Ok(n) if produced + n >= 1 << 20 => return true,
            Ok(n) => produced += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return !whole && e.kind() == io::ErrorKind::UnexpectedEof,
        }
    }
}

/// An in-memory body inflated under a cap.
pub(crate) enum Inflated {
    /// The whole stream.
    Whole(Vec<u8>),
    /// What came out before the stream broke off or turned out corrupt (maybe nothing:
    /// the body was not compressed at all, only started with the magic bytes).
    Cut(Vec<u8>),
    /// More than this many bytes would have come out.
    Bomb(u64),
}

/// Inflates an in-memory body with an output cap.
pub(crate) fn inflate(kind: Encoding, data: &[u8], limit: u64) -> Inflated {
    let mut out = Vec::new();
    match Capped::new(decompressor(kind, data), limit).read_to_end(&mut out) {
        Ok(_) => Inflated::Whole(out),
        Err(e) => match is_bomb(&e) {
            Some(limit) => Inflated::Bomb(limit),
            None => Inflated::Cut(out),
        },
    }
}

const fn b64_table() -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'-' || b == b'_';
        i += 1;
    }
    t
}
pub(crate) static B64: [bool; 256] = b64_table();

/// Whether decoded bytes look like text worth scanning: at least 90% printable, where a
/// byte at or above 0x80 counts only inside a valid UTF-8 sequence. Text in any language
/// passes (so does Latin-1 with a few accented letters); the bytes a random token decodes
/// to do not (about half of them are high bytes that do not form UTF-8).
/// Stops at the first byte past the 10 % allowed, which for binary comes within the first
/// few chunks.
pub(crate) fn mostly_text(data: &[u8]) -> bool {
    // `printable * 10 >= len * 9` is `bad * 10 <= len`, with `bad = len - printable`.
    let mut bad = 0usize;
    for c in data.utf8_chunks() {
        bad += c.invalid().len() + control_bytes(c.valid());
        if bad * 10 > data.len() {
            return false;
        }
    }
    !data.is_empty()
}

/// Bytes of valid UTF-8 `text` that [`mostly_text`] counts against it: ASCII that is
/// neither graphic nor whitespace.
fn control_bytes(text: &str) -> usize {
    text.bytes()
        .filter(|&b| !(b.is_ascii_graphic() || b.is_ascii_whitespace() || b >= 0x80))
        .count()
}

/// Value of each base64 symbol, standard or URL-safe alike (a run mixing the two
/// alphabets does not decode at all).
const fn b64_values() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0u8;
    while i < 26 {
        t[(b'A' + i) as usize] = i;
        t[(b'a' + i) as usize] = 26 + i;
        i += 1;
    }
    let mut d = 0u8;
    while d < 10 {
        t[(b'0' + d) as usize] = 52 + d;
        d += 1;
    }
    t[b'+' as usize] = 62;
    t[b'-' as usize] = 62;
    t[b'/' as usize] = 63;
    t[b'_' as usize] = 63;
    t
}
static B64_VALUE: [u8; 256] = b64_values();

/// Whether [`push_decoded`] is sure to drop what the base64 `run` decodes to, told from
/// its first 32 symbols: they do not start a compressed stream, and the bytes they
/// decode to already hold more bytes counted against text (by [`mostly_text`]) than a
/// tenth of the whole decoded length allows. The bytes a random token decodes to usually
/// do; they are then neither decoded in full nor copied.
fn surely_binary(run: &[u8]) -> bool {
    let trimmed = run
        .strip_suffix(b"==")
        .or_else(|| run.strip_suffix(b"="))
        .unwrap_or(run);
    // As [`decode_b64`] decodes it: a dangling sextet dropped, 2 or 3 trailing symbols
    // giving 1 or 2 bytes.
    let usable = trimmed.len() - usize::from(trimmed.len() % 4 == 1);
    let total = usable / 4 * 3 + [0, 0, 1, 2][usable % 4];
    let quads = (usable / 4).min(8);
    let mut head = [0u8; 24];
    for (q, quad) in trimmed.chunks_exact(4).take(quads).enumerate() {
        let v = quad
            .iter()
            .fold(0u32, |v, &c| v << 6 | u32::from(B64_VALUE[usize::from(c)]));
        head[q * 3..q * 3 + 3].copy_from_slice(&v.to_be_bytes()[1..]);
    }
    let head = &head[..quads * 3];
    if head.is_empty() || compression_of(head).is_some() {
        return false;
    }
    // More than a tenth of the decoded length, so counting may stop past that.
    let limit = total / 10;
    surely_bad(head, limit) > limit
}

/// Bytes of `head` that [`mostly_text`] counts against whatever text `head` starts:
/// ASCII controls and the bytes of invalid UTF-8 sequences, leaving out a sequence cut
/// by the end of `head` (the rest may complete it). Counts as `utf8_chunks` does: an
/// invalid sequence is its longest valid prefix, and the byte after it starts anew.
/// Counting stops once past `limit` (the count returned is then above it): bytes counted
/// in a prefix of `head` are counted in `head` too, so what follows can only add.
fn surely_bad(head: &[u8], limit: usize) -> usize {
    let mut bad = 0;
    let mut i = 0;
    while i < head.len() && bad <= limit {
        let b = head[i];
        if b < 0x80 {
            bad += usize::from(!(b.is_ascii_graphic() || b.is_ascii_whitespace()));
            i += 1;
            continue;
        }
        // The sequence's length and the range of its second byte (RFC 3629).
        let (len, second) = match b {
            0xc2..=0xdf => (2, 0x80..=0xbf),
            0xe0 => (3, 0xa0..=0xbf),
            0xe1..=0xec | 0xee..=0xef => (3, 0x80..=0xbf),
            0xed => (3, 0x80..=0x9f),
            0xf0 => (4, 0x90..=0xbf),
            0xf1..=0xf3 => (4, 0x80..=0xbf),
            0xf4 => (4, 0x80..=0x8f),
            _ => {
                bad += 1;
                i += 1;
                continue;
            }
        };
        let mut k = 1;
        while k < len {
            let Some(&c) = head.get(i + k) else {
                return bad;
            };
            let fits = if k == 1 {
                second.contains(&c)
            } else {
                (0x80..=0xbf).contains(&c)
            };
            if !fits {
                break;
            }
            k += 1;
        }
        if k == len {
            i += len;
        } else {
            // Its lead byte; the continuation bytes after it count on their own.
            bad += 1;
            i += 1;
        }
    }
    bad
}

/// Decodes a base64 run (standard or URL-safe, padding optional).
pub(crate) fn decode_b64(run: &[u8]) -> Option<Vec<u8>> {
    const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent);
    const STD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
    const URL: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);
    let trimmed = run
        .strip_suffix(b"==")
        .or_else(|| run.strip_suffix(b"="))
        .unwrap_or(run);
    let url = trimmed.iter().any(|&b| b == b'-' || b == b'_');
    let std = trimmed.iter().any(|&b| b == b'+' || b == b'/');
    if url && std {
        return None;
    }
    // Drop a dangling sextet so a run cut at a non-multiple of 4 still decodes.
    let usable = if trimmed.len() % 4 == 1 {
        &trimmed[..trimmed.len() - 1]
    } else {
        trimmed
    };
    if url {
        URL.decode(usable)
    } else {
        STD.decode(usable)
    }
    .ok()
}

/// Caps for nested decompression: absolute bytes and output/input ratio (past 1 MiB),
/// and how much of a body is inflated in memory (past that, it is streamed).
#[derive(Clone, Copy)]
pub(crate) struct Caps {
    pub max_bytes: u64,
    pub max_ratio: u64,
    pub in_memory: u64,
}

impl Caps {
    pub fn limit_for(self, compressed: u64) -> u64 {
        compressed
            .saturating_mul(self.max_ratio)
            .max(1 << 20)
            .min(self.max_bytes)
    }
}

/// Finds encoded runs starting in `[lo, hi)` and decodes them. `min_b64` is the shortest
/// base64 run considered; `caps` bound nested decompression.
#[cfg(test)]
pub(crate) fn segments(
    buf: &[u8],
    lo: usize,
    hi: usize,
    min_b64: usize,
    caps: Caps,
) -> Vec<Segment> {
    let mut sweep = SegmentSweep::new(buf, lo, hi, min_b64, caps, false);
    sweep.feed(0, buf.len());
    sweep.finish()
}

/// [`segments`] a stretch at a time: [`Self::feed`] consecutive stretches from a multiple
/// of 64 at or before `lo` (ends multiples of 64 but the last), then [`Self::finish`].
/// Segments come out in the order of their start, a base64 run before a percent-encoded
/// token starting at the same byte.
pub(crate) struct SegmentSweep<'a> {
    scope: Scope<'a>,
    /// Runs of `+` to `z`, the bytes of base64 runs and their padding (see
    /// [`Self::feed`]).
    long: LongRuns<15, b'+', b'z'>,
    /// Percent-encoded tokens end before this (a token is decoded once, from its first
    /// escape).
    done: usize,
    base64: Vec<Segment>,
    percent: Vec<Segment>,
}

/// What a [`SegmentSweep`] looks for, and where.
#[derive(Clone, Copy)]
struct Scope<'a> {
    buf: &'a [u8],
    lo: usize,
    hi: usize,
    min_b64: usize,
    caps: Caps,
    /// `buf` is a stream's chunk that goes on: a run reaching its end is left to the
    /// stream, which follows it across chunks (see [`super::runs`]).
    more: bool,
}

impl Scope<'_> {
    /// Decodes the base64 runs starting in `from..to` and in `[lo, hi)`.
    fn base64(self, from: usize, to: usize, out: &mut Vec<Segment>) {
        let (from, to) = (from.max(self.lo), to.min(self.hi));
        base64_walk(self.buf, from, to, self.min_b64, self.caps, self.more, out);
    }
}

impl<'a> SegmentSweep<'a> {
    /// With `more`, `buf` is a stream's chunk that goes on: runs reaching its end are not
    /// decoded here.
    pub(crate) fn new(
        buf: &'a [u8],
        lo: usize,
        hi: usize,
        min_b64: usize,
        caps: Caps,
        more: bool,
    ) -> Self {
        Self {
            scope: Scope {
                buf,
                lo,
                hi,
                min_b64,
                caps,
                more,
            },
            long: LongRuns::new(),
            done: 0,
            base64: Vec::new(),
            percent: Vec::new(),
        }
    }

    /// Looks at `buf[from..to]`, where `from` is the end of the previous stretch (or,
    /// at first, a multiple of 64 at or before `lo`).
    ///
    /// Base64: a run counts with up to two `=` after its alphabet part, so that part is
    /// at least `min_b64 - 2` bytes, all between `+` and `z`. With `min_b64` of 17 or more
    /// only runs of that range at least 15 long are walked (in prose a space breaks them
    /// every few bytes), from where they start in `[lo, hi)`; shorter minimums are walked
    /// byte by byte in [`Self::finish`].
    pub(crate) fn feed(&mut self, from: usize, to: usize) {
        let scope = self.scope;
        if scope.min_b64 >= 17 {
            let out = &mut self.base64;
            self.long
                .feed(scope.buf, from, to, |s, e| scope.base64(s, e, out));
        }
        let (from, to) = (from.max(scope.lo), to.min(scope.hi));
        if from < to {
            let (buf, caps) = (scope.buf, scope.caps);
            let more = scope.more;
            percent_tokens(buf, from, to, &mut self.done, caps, more, &mut self.percent);
        }
    }

    /// The segments, once every stretch is fed.
    pub(crate) fn finish(self) -> Vec<Segment> {
        let Self {
            scope,
            long,
            mut base64,
            percent,
            ..
        } = self;
        if scope.min_b64 >= 17 {
            long.finish(|s, e| scope.base64(s, e, &mut base64));
        } else {
            scope.base64(scope.lo, scope.hi, &mut base64);
        }
        if percent.is_empty() {
            return base64;
        }
        // Both lists are in order of their start; merge them, base64 first on a tie.
        let mut out = Vec::with_capacity(base64.len() + percent.len());
        let mut pct = percent.into_iter().peekable();
        for seg in base64 {
            while let Some(p) = pct.next_if(|p| p.start < seg.start) {
                out.push(p);
            }
            out.push(seg);
        }
        out.extend(pct);
        out
    }
}

/// Decodes the base64 runs starting in `[lo, hi)` (when `lo < hi`) that are at least
/// `min_len` long and hold a byte other than a letter.
fn base64_walk(
    buf: &[u8],
    lo: usize,
    hi: usize,
    min_len: usize,
    caps: Caps,
    more: bool,
    out: &mut Vec<Segment>,
) {
    if lo >= hi {
        return;
    }
    base64_runs_bytewise(buf, lo, hi, min_len, |start, end| {
        let run = &buf[start..end];
        if !(more && super::runs::goes_on(buf, end, Encoding::Base64))
            && run.iter().any(|b| !b.is_ascii_alphabetic())
            && !surely_binary(run)
            && let Some(decoded) = decode_b64(run)
        {
            push_decoded(out, start, end, Encoding::Base64, decoded, caps);
        }
    });
}

/// Decodes the percent-encoded tokens (no whitespace or quotes, at least one `%XX`
/// escape) whose first escape lies in `[from, to)`, wherever they start: a token belongs
/// to the chunk or part holding its first escape (the one it starts in may not reach
/// that far).
fn percent_tokens(
    buf: &[u8],
    from: usize,
    to: usize,
    done: &mut usize,
    caps: Caps,
    more: bool,
    out: &mut Vec<Segment>,
) {
    for pct in memchr::memchr_iter(b'%', &buf[from..to]).map(|p| p + from) {
        if pct < *done || !is_escape(buf, pct) {
            continue;
        }
        let token_start = memrchr_token_end(&buf[..pct]).map_or(0, |p| p + 1);
        let token_end = buf[pct..]
            .iter()
            .position(|&b| is_token_end(b))
            .map_or(buf.len(), |p| p + pct);
        *done = token_end;
        if buf[token_start..pct]
            .iter()
            .enumerate()
            .any(|(k, &b)| b == b'%' && is_escape(buf, token_start + k))
        {
            continue;
        }
        if more && super::runs::goes_on(buf, token_end, Encoding::Percent) {
            continue;
        }
        let decoded = percent_decode(&buf[token_start..token_end]);
        push_decoded(
            out,
            token_start,
            token_end,
            Encoding::Percent,
            decoded,
            caps,
        );
    }
}

/// Calls `f(start, end)` for every maximal base64 run (alphabet bytes plus up to two `=`)
/// that starts in `[lo, hi)` (a run already going at `lo` is not one) and is at least
/// `min_len` long, in order, walking every byte.
fn base64_runs_bytewise(
    buf: &[u8],
    lo: usize,
    hi: usize,
    min_len: usize,
    mut f: impl FnMut(usize, usize),
) {
    let run_end = |mut i: usize| {
        while i < buf.len() && B64[usize::from(buf[i])] {
            i += 1;
        }
        let core = i;
        while i < buf.len() && i - core < 2 && buf[i] == b'=' {
            i += 1;
        }
        i
    };
    let mut i = lo;
    while i < hi {
        if !B64[usize::from(buf[i])] {
            i += 1;
            continue;
        }
        // A run starts only at a non-alphabet byte (or the buffer start).
        let start = i;
        if start > 0 && B64[usize::from(buf[start - 1])] {
            i = run_end(i);
            continue;
        }
        let end = run_end(i);
        if end - start >= min_len {
            f(start, end);
        }
        i = end.max(start + 1);
    }
}

fn push_decoded(
    out: &mut Vec<Segment>,
    start: usize,
    end: usize,
    encoding: Encoding,
    decoded: Vec<u8>,
    caps: Caps,
) {
    let segment = |body, inner| Segment {
        start,
        end,
        encoding,
        body,
        inner,
    };
    if let Some(kind) = compression_of(&decoded) {
        let limit = caps.limit_for(decoded.len() as u64);
        match inflate(kind, &decoded, limit.min(caps.in_memory)) {
            Inflated::Whole(data) => return out.push(segment(Body::Text(data), Some(kind))),
            // Too much to hold: the scan inflates it again, as a stream.
            Inflated::Bomb(held) if held < limit => {
                return out.push(segment(Body::Compressed(kind, decoded), Some(kind)));
            }
            Inflated::Bomb(limit) => return out.push(segment(Body::Bomb(limit), Some(kind))),
            // A stream cut short still gives up what it holds; a body that only starts
            // like one (text beginning `x^`) is scanned as text below.
            Inflated::Cut(data) if !data.is_empty() => {
                out.push(segment(Body::Text(data), Some(kind)));
            }
            Inflated::Cut(_) => {}
        }
    }
    if mostly_text(&decoded) {
        out.push(segment(Body::Text(decoded), None));
    }
}

/// Last token-ending byte in `s` (whitespace, quotes, angle brackets, backtick).
pub(crate) fn memrchr_token_end(s: &[u8]) -> Option<usize> {
    s.iter().rposition(|&b| is_token_end(b))
}

pub(crate) fn is_token_end(b: u8) -> bool {
    b.is_ascii_whitespace() || matches!(b, b'"' | b'\'' | b'<' | b'>' | b'`')
}

pub(crate) fn is_escape(buf: &[u8], pct: usize) -> bool {
    buf.len() > pct + 2 && buf[pct + 1].is_ascii_hexdigit() && buf[pct + 2].is_ascii_hexdigit()
}

fn hex(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

pub(crate) fn percent_decode(token: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(token.len());
    let mut i = 0;
    while i < token.len() {
        if token[i] == b'%' && is_escape(token, i) {
            out.push(hex(token[i + 1]) << 4 | hex(token[i + 2]));
            i += 3;
        } else if token[i] == b'+' {
            out.push(b' ');
            i += 1;
        } else {
            out.push(token[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_base64_and_percent_runs() {
        let enc =
            base64::engine::general_purpose::STANDARD.encode(b"password = hunter2hunter2hunter2");
        let text = format!("x {enc} y a%3Db%20c z");
        let caps = Caps {
            max_bytes: 1 << 20,
            max_ratio: 100,
            in_memory: 1 << 20,
        };
        let segs = segments(text.as_bytes(), 0, text.len(), 24, caps);
        assert_eq!(segs.len(), 2);
        assert_eq!(&text.as_bytes()[segs[0].start..segs[0].end], enc.as_bytes());
        assert_eq!(
            segs[0].text(),
            Some(&b"password = hunter2hunter2hunter2"[..])
        );
        assert_eq!(segs[1].text(), Some(&b"a=b c"[..]));
    }

    proptest::proptest! {
        /// Fed in stretches, with the fast path over long runs, the sweep finds exactly
        /// the segments of a byte-wise walk over `[lo, hi)` followed by a percent pass,
        /// in the same order.
        #[test]
        fn sweep_in_stretches_equals_bytewise(
            parts in proptest::collection::vec((0usize..8, 1usize..40), 0..60),
            lo_frac in 0usize..100,
            hi_frac in 0usize..=100,
            min_len in 3usize..80,
            cuts in proptest::collection::vec(0usize..40, 0..5),
        ) {
            let pieces: [&[u8]; 8] = [b"aB3+/", b" ", b"==", b"-_x", b".,\n", b"Zq9", b"%41", b"%zz"];
            let mut buf = Vec::new();
            for (p, n) in parts {
                for i in 0..n {
                    buf.push(pieces[p][i % pieces[p].len()]);
                }
            }
            let lo = buf.len() * lo_frac / 100;
            let hi = (buf.len() * hi_frac / 100).max(lo);
            let caps = Caps { max_bytes: 1 << 20, max_ratio: 100, in_memory: 1 << 20 };
            let mut ends: Vec<usize> = cuts.iter().map(|c| (c * 64).min(buf.len())).collect();
            ends.push(buf.len());
            ends.sort_unstable();
            ends.dedup();
            let mut sweep = SegmentSweep::new(&buf, lo, hi, min_len, caps, false);
            // From the 64-byte block holding `lo`, as the scanner feeds it.
            let mut from = lo / 64 * 64;
            ends.retain(|&to| to > from);
            for to in ends {
                sweep.feed(from, to);
                from = to;
            }
            let fast: Vec<_> = sweep.finish().iter().map(|s| (s.start, s.end, s.encoding)).collect();
            let (mut b64, mut pct) = (Vec::new(), Vec::new());
            base64_walk(&buf, lo, hi, min_len, caps, false, &mut b64);
            percent_tokens(&buf, lo, hi, &mut 0, caps, false, &mut pct);
            let mut slow: Vec<_> = b64.iter().chain(&pct).map(|s| (s.start, s.end, s.encoding)).collect();
            slow.sort_by_key(|s| s.0);
            proptest::prop_assert_eq!(fast, slow);
        }
    }

    proptest::proptest! {
        /// A run judged binary from its head decodes to nothing `push_decoded` keeps.
        #[test]
        fn runs_judged_binary_from_their_head_would_be_dropped(
            data in proptest::collection::vec(
                proptest::prop_oneof![
                    4 => proptest::sample::select(b"the gateway logs 42 calls\n\t".to_vec()),
                    1 => proptest::sample::select(vec![0x00, 0x07, 0x1f, 0x8b, 0x78, 0x9c, 0xc3, 0xa9, 0xe5, 0x85, 0xff, 0x80]),
                    1 => proptest::num::u8::ANY,
                ],
                1..120,
            ),
            url in proptest::bool::ANY,
            pad in proptest::bool::ANY,
            cut in 0usize..4,
        ) {
            use base64::Engine as _;
            let mut run = if url {
                base64::engine::general_purpose::URL_SAFE.encode(&data)
            } else {
                base64::engine::general_purpose::STANDARD.encode(&data)
            }
            .into_bytes();
            if !pad {
                while run.last() == Some(&b'=') {
                    run.pop();
                }
            }
            run.truncate(run.len().saturating_sub(cut).max(1));
            if surely_binary(&run) {
                let mut out = Vec::new();
                if let Some(decoded) = decode_b64(&run) {
                    push_decoded(&mut out, 0, run.len(), Encoding::Base64, decoded, Caps { max_bytes: 1 << 20, max_ratio: 100, in_memory: 1 << 20 });
                }
                proptest::prop_assert!(out.is_empty());
            }
        }

        /// What a head is sure of is never more than the whole counts, whatever follows.
        #[test]
        fn surely_bad_is_at_most_what_the_whole_counts(
            head in proptest::collection::vec(
                proptest::sample::select(vec![b'a', b' ', 0x00, 0x7f, 0xc3, 0xa9, 0xe0, 0xa0, 0xed, 0x9f, 0xf0, 0x90, 0xf4, 0x8f, 0x80, 0xbf, 0xc0, 0xff]),
                0..24,
            ),
            tail in proptest::collection::vec(proptest::num::u8::ANY, 0..6),
        ) {
            let whole = [&head[..], &tail[..]].concat();
            let counted: usize = whole
                .utf8_chunks()
                .map(|c| c.invalid().len() + control_bytes(c.valid()))
                .sum();
            let in_head: usize = head
                .utf8_chunks()
                .map(|c| c.invalid().len() + control_bytes(c.valid()))
                .sum();
            let sure = surely_bad(&head, usize::MAX);
            proptest::prop_assert!(sure <= counted);
            // Stopping early changes no decision: past a limit only when the whole is.
            for limit in 0..head.len() {
                proptest::prop_assert_eq!(surely_bad(&head, limit) > limit, sure > limit);
            }
            // A prefix counts no more than the whole.
            for cut in 0..head.len() {
                proptest::prop_assert!(surely_bad(&head[..cut], usize::MAX) <= sure);
            }
            // Exact when no sequence can be cut at the end.
            if head.last().is_none_or(|&b| b < 0x80) {
                proptest::prop_assert_eq!(sure, in_head);
            }
        }

        /// The early exit decides as counting every byte would.
        #[test]
        fn mostly_text_equals_the_full_count(data in proptest::collection::vec(
            proptest::sample::select(vec![b'a', b' ', b'\n', 0x00, 0x07, 0xc3, 0xa9, 0xe5, 0x85, 0xff, 0x80]),
            0..64,
        )) {
            let printable: usize = data
                .utf8_chunks()
                .map(|c| {
                    c.valid()
                        .bytes()
                        .filter(|&b| b.is_ascii_graphic() || b.is_ascii_whitespace() || b >= 0x80)
                        .count()
                })
                .sum();
            let full = !data.is_empty() && printable * 10 >= data.len() * 9;
            proptest::prop_assert_eq!(mostly_text(&data), full);
        }
    }

    #[test]
    fn random_tokens_are_judged_binary_from_their_head_text_is_not() {
        for token in [
            &b"ghp_aB3dE5gH7jK9mN1pQ3sT5vX7zA9cE1gI3kM5"[..],
            b"npm_Zx81Qw0Er5Ty7Ui9Op2As4Df6Gh8Jk0Lz3Xc",
            b"sk_live_4eC39HqLyjWDarjtT1zdp7dcAbCdEfGh",
        ] {
            assert!(surely_binary(token), "{}", String::from_utf8_lossy(token));
        }
        use base64::Engine as _;
        // The head may end inside a character the rest completes.
        for text in [
            &b"password = hunter2hunter2, token = abc"[..],
            b"caf\xe9 cr\xc3\xa8me \x00 ok text",
            b"ab\xc3\xa9",
            "a\u{4e2d}\u{6587}".as_bytes(),
        ] {
            let run = base64::engine::general_purpose::STANDARD.encode(text);
            assert!(!surely_binary(run.as_bytes()));
        }
        // A gzip stream's head is never judged.
        let run = base64::engine::general_purpose::STANDARD
            .encode([0x1f, 0x8b, 0, 0xff, 0xfe, 0xfd, 1, 2, 3, 4, 5, 6, 7]);
        assert!(!surely_binary(run.as_bytes()));
    }

    #[test]
    fn decoded_binary_is_not_scanned_text_in_any_language_is() {
        assert!(mostly_text(
            "password: hunter2, naïve café, 密码 = 秘密".as_bytes()
        ));
        // Latin-1: one accented letter in a line of ASCII.
        assert!(mostly_text(b"caf\xe9 password = hunter2hunter2"));
        assert!(!mostly_text(b""));
        // Tokens shaped like the secrets they are: base64-decoded, they are binary.
        let caps = Caps {
            max_bytes: 1 << 20,
            max_ratio: 100,
            in_memory: 1 << 20,
        };
        for token in [
            "ghp_Zq9xB3mK7vT2pL8nR4sW1yC6dF0hJ5gA2eQ7",
            "npm_4kT9qLm2Vx8Rb3Nc7Wd1Yf6Gh0Js5Kp2Zt8Ua",
            "AKIAZ4Q7X2M9P3R8T5W6",
        ] {
            let text = format!("key {token} end");
            let segs = segments(text.as_bytes(), 0, text.len(), 16, caps);
            assert!(segs.is_empty(), "{token}: {:?}", segs.len());
        }
    }

    #[test]
    fn inflate_cap_trips() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![0u8; 1 << 20]).unwrap();
        let body = gz.finish().unwrap();
        assert!(matches!(
            inflate(Encoding::Gzip, &body, 1000),
            Inflated::Bomb(1000)
        ));
        assert!(matches!(
            inflate(Encoding::Gzip, &body, 2 << 20),
            Inflated::Whole(v) if v.len() == 1 << 20
        ));
        // Cut short: what came out before the end is kept.
        assert!(matches!(
            inflate(Encoding::Gzip, &body[..body.len() / 2], 2 << 20),
            Inflated::Cut(v) if !v.is_empty() && v.len() < 1 << 20
        ));
    }
}
