//! Encoded runs that go on past a stream's chunk: a base64 run or percent-encoded token
//! that a chunk ends inside is decoded piece by piece as the chunks come, each encoded
//! byte once, and a compressed body inside it is inflated as it streams. The decoded text
//! is handed out for scanning as a stream of its own: a stretch of new text with the
//! `overlap` bytes before it as context, a match starting in the last `overlap` bytes
//! left to the next stretch (as the chunks of the outer stream do).

use std::io::{self, Write};

use flate2::write::{MultiGzDecoder, ZlibDecoder};

use super::decode::{self, B64, Caps};
use super::finding::Encoding;

/// Decoded bytes are fed to an inflater this many at a time, so what one step gives
/// stays near a megabyte at most (deflate expands a byte at most about 1,032 times).
const INFLATE_STEP: usize = 1 << 10;

/// How decoded text is handed out.
#[derive(Clone, Copy)]
pub(crate) struct Limits {
    pub caps: Caps,
    /// Bytes of context kept before new text, and held back at its end while it goes on.
    pub overlap: usize,
    /// New decoded bytes gathered before a stretch is handed out (bounds memory when a
    /// compressed body inflates to far more than its chunk).
    pub batch: usize,
}

/// What a run gives as it is fed.
pub(crate) enum Event<'a> {
    /// Decoded text to scan, reporting matches that start in `lo..hi`; `more`: the text
    /// goes on past `data`. `inner` is the compression the text came out of.
    Text {
        data: &'a [u8],
        /// Offset of `data` in the run's decoded text.
        base: u64,
        lo: usize,
        hi: usize,
        more: bool,
        inner: Option<Encoding>,
        /// Stream offset the run is decoded up to.
        upto: u64,
        /// The runs nested in the text that earlier stretches of it ended inside.
        nested: &'a mut Carried,
    },
    /// The compressed body inside tripped a cap; the rest of the run is skipped.
    Bomb {
        inner: Encoding,
        limit: u64,
        upto: u64,
    },
}

/// What a stream's scan carries from one chunk to the next for its encoded runs (the
/// stream's own, or the decoded text of a run: runs nest).
#[derive(Default)]
pub(crate) struct Carried {
    /// The runs the last chunk ended inside.
    pub open: Vec<OpenRun>,
    /// End of the last percent-encoded token a chunk decoded to its end: a later chunk
    /// holding an escape of it but not its first (more than the overlap before) decodes
    /// its tail again.
    pub finished: u64,
}

/// A run's decoded text not handed out in full yet.
#[derive(Default)]
struct Text {
    /// Context, then bytes whose matches are not reported yet (from `pending`).
    bytes: Vec<u8>,
    pending: usize,
    /// Offset of `bytes[0]` in the decoded text.
    base: u64,
    nested: Carried,
}

/// A run a stream's chunk ended inside.
pub(crate) struct OpenRun {
    /// Stream offset where the run starts, and its line.
    pub start: u64,
    pub line: u64,
    pub encoding: Encoding,
    /// Stream offset the run is decoded up to (for base64 a whole number of quads past
    /// `start`, so each piece decodes as in the whole run).
    fed: u64,
    mode: Mode,
    text: Text,
}

enum Mode {
    /// Nothing decoded yet: the first piece tells whether a compressed body starts here.
    New,
    Text,
    Inflate(Box<Inflater>),
    /// Its compressed body tripped a cap or broke off: the rest of the run is skipped.
    Stopped,
}

struct Inflater {
    kind: Encoding,
    sink: Sink,
    consumed: u64,
    produced: u64,
}

enum Sink {
    Gzip(MultiGzDecoder<Vec<u8>>),
    Zlib(ZlibDecoder<Vec<u8>>),
}

impl Sink {
    fn new(kind: Encoding) -> Self {
        match kind {
            Encoding::Deflate => Self::Zlib(ZlibDecoder::new(Vec::new())),
            _ => Self::Gzip(MultiGzDecoder::new(Vec::new())),
        }
    }

    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Self::Gzip(d) => d.write_all(data),
            Self::Zlib(d) => d.write_all(data),
        }
    }

    fn finish(&mut self) -> io::Result<()> {
        match self {
            Self::Gzip(d) => d.try_finish(),
            Self::Zlib(d) => d.try_finish(),
        }
    }

    fn out(&mut self) -> &mut Vec<u8> {
        match self {
            Self::Gzip(d) => d.get_mut(),
            Self::Zlib(d) => d.get_mut(),
        }
    }
}

/// Whether an encoded run of `encoding` ending at `end` in `buf`, a chunk of a stream
/// that goes on past it, goes on past it too: it reaches the chunk's end, and (base64)
/// has no `=` padding there.
pub(crate) fn goes_on(buf: &[u8], end: usize, encoding: Encoding) -> bool {
    end == buf.len() && !(encoding == Encoding::Base64 && buf.last() == Some(&b'='))
}

/// The runs `buf` (a chunk at stream offset `base`, starting on line `line`, of a stream
/// that goes on past it) ends inside that a chunk up to stream offset `owned` opens: a
/// base64 run of at least `min_b64` bytes so far starting before `owned`, a
/// percent-encoded token whose first escape lies before `owned`; unless the run of that
/// kind `buf` ends inside is one an earlier chunk opened (`carried`, those going on past
/// `buf`). A base64 run going on at `buf`'s start is always one an earlier chunk opened
/// (or `buf` starts the stream); a token is owned by the chunk holding its first escape,
/// so one going on at `buf`'s start with no escape in earlier chunks is new.
pub(crate) fn new_runs(
    buf: &[u8],
    base: u64,
    owned: u64,
    line: u64,
    carried: &[OpenRun],
    min_b64: usize,
) -> Vec<OpenRun> {
    let carries = |encoding| carried.iter().any(|r| r.encoding == encoding);
    let line_at = |i: usize| line + memchr::memchr_iter(b'\n', &buf[..i]).count() as u64;
    let mut open = Vec::new();
    let b64_from = buf
        .iter()
        .rposition(|&b| !B64[usize::from(b)])
        .map_or(0, |p| p + 1);
    if b64_from < buf.len()
        && !carries(Encoding::Base64)
        && (b64_from > 0 || base == 0)
        && buf.len() - b64_from >= min_b64
        && base + (b64_from as u64) < owned
    {
        open.push(OpenRun::new(
            base + b64_from as u64,
            line_at(b64_from),
            Encoding::Base64,
        ));
    }
    let token_from = decode::memrchr_token_end(buf).map_or(0, |p| p + 1);
    if token_from < buf.len()
        && !carries(Encoding::Percent)
        && memchr::memchr_iter(b'%', &buf[token_from..])
            .map(|p| token_from + p)
            .find(|&p| decode::is_escape(buf, p))
            .is_some_and(|p| base + (p as u64) < owned)
    {
        open.push(OpenRun::new(
            base + token_from as u64,
            line_at(token_from),
            Encoding::Percent,
        ));
    }
    open
}

impl OpenRun {
    fn new(start: u64, line: u64, encoding: Encoding) -> Self {
        Self {
            start,
            line,
            encoding,
            fed: start,
            mode: Mode::New,
            text: Text::default(),
        }
    }

    /// Stream offset the run is decoded up to (its end, once it ended).
    pub(crate) fn fed(&self) -> u64 {
        self.fed
    }

    /// Decodes what `buf` (a chunk at stream offset `base`; `more`: the stream goes on
    /// past it) holds of the run past what earlier chunks decoded, handing out text and
    /// bombs to `out`. Returns whether the run goes on past `buf`; when it does not, all
    /// its text has been handed out.
    pub(crate) fn feed(
        &mut self,
        buf: &[u8],
        base: u64,
        more: bool,
        limits: Limits,
        out: &mut dyn FnMut(Event<'_>),
    ) -> bool {
        let from = usize::try_from(self.fed.saturating_sub(base))
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let (end, going) = self.piece(buf, from, more);
        self.fed = base + end as u64;
        let raw = &buf[from..end];
        let first = matches!(self.mode, Mode::New);
        let decoded = match self.encoding {
            Encoding::Base64 => decode::decode_b64(raw),
            _ => Some(decode::percent_decode(raw)),
        };
        if first {
            self.mode = match decoded.as_deref().and_then(decode::compression_of) {
                Some(kind) => Mode::Inflate(Box::new(Inflater {
                    kind,
                    sink: Sink::new(kind),
                    consumed: 0,
                    produced: 0,
                })),
                None => Mode::Text,
            };
        }
        let upto = self.fed;
        if matches!(self.mode, Mode::Text) {
            match decoded {
                Some(d) if decode::mostly_text(&d) => {
                    self.text.bytes.extend_from_slice(&d);
                    self.text.hand_out(going, None, limits, upto, out);
                }
                // Not text: the text before it ends here.
                _ => self.text.hand_out(false, None, limits, upto, out),
            }
        } else if matches!(self.mode, Mode::Inflate(_)) {
            let d = decoded.unwrap_or_default();
            if self.inflate(&d, going, limits, upto, out) {
                self.mode = Mode::Stopped;
                if first {
                    // Only the magic bytes were a compressed body's (text starting
                    // `x^`): the run is text.
                    self.mode = Mode::Text;
                    if decode::mostly_text(&d) {
                        self.text.bytes.extend_from_slice(&d);
                        self.text.hand_out(going, None, limits, upto, out);
                    }
                }
            }
        }
        going
    }

    /// Where this run's piece of `buf` ends (from `from`), and whether the run goes on
    /// past `buf`. A going base64 piece is a whole number of quads; a going token's piece
    /// stops before an escape `buf`'s end cuts.
    fn piece(&self, buf: &[u8], from: usize, more: bool) -> (usize, bool) {
        match self.encoding {
            Encoding::Base64 => {
                let alpha = from
                    + buf[from..]
                        .iter()
                        .take_while(|&&b| B64[usize::from(b)])
                        .count();
                let end = alpha
                    + buf[alpha..]
                        .iter()
                        .take(2)
                        .take_while(|&&b| b == b'=')
                        .count();
                if more && goes_on(buf, end, Encoding::Base64) {
                    (from + (end - from) / 4 * 4, true)
                } else {
                    (end, false)
                }
            }
            _ => {
                let end = buf[from..]
                    .iter()
                    .position(|&b| decode::is_token_end(b))
                    .map_or(buf.len(), |p| from + p);
                if !(more && end == buf.len()) {
                    return (end, false);
                }
                let tail = &buf[from..end];
                let cut = match tail {
                    [.., b'%'] => 1,
                    [.., b'%', h] if h.is_ascii_hexdigit() => 2,
                    _ => 0,
                };
                (end - cut, true)
            }
        }
    }

    /// Feeds decoded bytes `d` to the inflater, handing out text as it gathers; at the
    /// run's end (`!going`) the rest. Returns whether the compressed body broke off or
    /// turned corrupt (what came out before is handed out).
    fn inflate(
        &mut self,
        d: &[u8],
        going: bool,
        limits: Limits,
        upto: u64,
        out: &mut dyn FnMut(Event<'_>),
    ) -> bool {
        let Mode::Inflate(inf) = &mut self.mode else {
            return false;
        };
        let kind = inf.kind;
        let mut broke = false;
        let mut steps = d.chunks(INFLATE_STEP);
        loop {
            let step = steps.next();
            let written = match step {
                Some(step) => inf.sink.write_all(step).map(|()| step.len()),
                None if going => Ok(0),
                None => inf.sink.finish().map(|()| 0),
            };
            match written {
                Ok(n) => inf.consumed += n as u64,
                Err(_) => broke = true,
            }
            let new = inf.sink.out();
            inf.produced += new.len() as u64;
            let limit = limits.caps.limit_for(inf.consumed);
            if inf.produced > limit {
                self.text.hand_out(false, Some(kind), limits, upto, out);
                self.mode = Mode::Stopped;
                out(Event::Bomb {
                    inner: kind,
                    limit,
                    upto,
                });
                return false;
            }
            self.text.bytes.append(new);
            // Broken, or all of `d` fed: the text goes on only with the run.
            let done = broke || step.is_none();
            let gathered = self.text.bytes.len() - self.text.pending;
            if done || gathered >= limits.batch + limits.overlap {
                let text_goes_on = !done || (going && !broke);
                self.text
                    .hand_out(text_goes_on, Some(kind), limits, upto, out);
            }
            if done {
                return broke;
            }
        }
    }
}

impl Text {
    /// Hands out the text not reported yet: while it goes on, up to `overlap` before its
    /// end, keeping `overlap` bytes of context before what is left; else all of it
    /// (and the runs nested in it end), keeping nothing.
    fn hand_out(
        &mut self,
        going: bool,
        inner: Option<Encoding>,
        limits: Limits,
        upto: u64,
        out: &mut dyn FnMut(Event<'_>),
    ) {
        let hi = if going {
            self.bytes.len().saturating_sub(limits.overlap)
        } else {
            self.bytes.len()
        };
        if hi > self.pending || (!going && !self.nested.open.is_empty()) {
            out(Event::Text {
                data: &self.bytes,
                base: self.base,
                lo: self.pending,
                hi: hi.max(self.pending),
                more: going,
                inner,
                upto,
                nested: &mut self.nested,
            });
            self.pending = hi.max(self.pending);
        }
        let keep = if going {
            self.pending.saturating_sub(limits.overlap)
        } else {
            self.bytes.len()
        };
        self.bytes.drain(..keep);
        self.pending -= keep;
        self.base += keep as u64;
    }
}
