//! The scanner: keyword prefilter → windowed regexes → secret extraction and checks →
//! decoders, over a whole buffer ([`Scanner::scan_bytes`]) or a stream in overlapping
//! chunks ([`Scanner::scan_reader`]) with bounded memory. The passes that read all of a
//! buffer (keyword prefilter, PII guards, encoded-run finders) share one read of it, 16 KiB
//! at a time, so a large buffer streams from memory once.
//!
//! Chunking: each chunk is scanned together with `overlap` bytes of context before it and
//! `overlap` bytes of look-ahead after it, and only findings whose match *starts* inside
//! the chunk are reported. `overlap` is derived from the rules (twice the widest keyword
//! window plus the longest keyword), so every keyword-gated match is whole in some
//! buffer and reported exactly once. The passes over a chunk (or a part of a large
//! payload) look only at the `near` context most rules need; the rules whose matches
//! reach far past their keyword (a private key block) have their keywords searched over
//! the whole `overlap` instead.

use std::cell::Cell;
use std::io::Read;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use regex_automata::Input;
use serde::{Deserialize, Serialize};

use super::decode::{self, Capped, SegmentSweep};
use super::finding::{Encoding, Finding, Span, preview};
use super::prefilter::{Guard, KeywordDfa, KeywordPrefilter, PiiRuns, PiiSweep};
use super::rule::{Rule, RuleSpec, Severity, Validator, shannon_entropy};
use super::runs;
use super::{DECODE_BOMB_RULE_ID, InspectError};

/// Scanner limits and switches. Defaults suit a gateway; every field has one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScanConfig {
    /// New bytes scanned per chunk by [`Scanner::scan_reader`] (plus `2 * overlap` context);
    /// a stream is read `threads` chunks at a time, one for each thread. Also what
    /// [`Scanner::scan_bytes`] holds of a compressed body: one that inflates to more than
    /// `threads * chunk_size` bytes is inflated again and scanned as a stream.
    pub chunk_size: usize,
    /// How many decoding layers to peel (base64 in percent in gzip = 3). 0 disables.
    pub max_decode_depth: usize,
    /// Shortest base64 run worth decoding.
    pub min_base64_len: usize,
    /// Cap on the decompressed size of any one compressed body; beyond it the body is a
    /// decompression bomb and a [`DECODE_BOMB_RULE_ID`] finding is reported.
    pub max_decompressed_bytes: u64,
    /// Cap on decompressed/compressed ratio for bodies over 1 MiB decompressed.
    pub max_compression_ratio: u64,
    /// Threads that share the scan of one large in-memory payload
    /// ([`Scanner::scan_bytes`], parts of `part_size` bytes) or of a stream
    /// ([`Scanner::scan_reader`], chunks of `chunk_size`), each taking parts in turn; 0: one
    /// per core available to the process. The findings are the same whatever the number.
    pub threads: usize,
    /// Bytes per part when [`Scanner::scan_bytes`] splits a payload among several threads;
    /// a payload of at most one part, or a scanner with one thread, scans it whole. Each
    /// part also looks at a little context on either side (about 1 KB for the built-in
    /// rules; the private-key rule's keywords are searched `overlap` bytes either side).
    pub part_size: usize,
}

impl Default for ScanConfig {
    fn default() -> Self {
        Self {
            chunk_size: 1 << 20,
            max_decode_depth: 2,
            min_base64_len: 24,
            max_decompressed_bytes: 1 << 30,
            max_compression_ratio: 1000,
            threads: 0,
            part_size: 1 << 20,
        }
    }
}

/// A compiled, immutable rule set ready to scan. Cheap to share (`Arc<Scanner>`); every
/// method takes `&self`.
pub struct Scanner {
    rules: Vec<Rule>,
    keywords: Option<KeywordDfa>,
    /// keyword pattern index → (rule indices, exact bytes when case-sensitive).
    keyword_rules: Vec<(Vec<usize>, Option<Vec<u8>>)>,
    /// SIMD prefilter narrowing where `keywords` runs (`None`: it runs everywhere).
    prefilter: Option<KeywordPrefilter>,
    /// Rules without keywords: their regex runs over everything their guard lets through.
    unkeyed: Vec<(usize, Guard)>,
    overlap: usize,
    /// Context a region's scan looks at on either side for every rule but the far-reaching
    /// ones (`far`): at most `overlap`.
    near: usize,
    /// Keyword search for the specific rules whose matches reach far past their keyword
    /// (a private key block), when `near` leaves them out: their matches reaching into a
    /// region from further back than `near` are found from it.
    far: Option<FarKeywords>,
    /// How far past its start a generic rule's match can reach: the specific matches a
    /// generic match starting in a region yields to start before that far past it.
    generic_reach: usize,
    /// `config.threads`, with 0 resolved.
    threads: usize,
    config: ScanConfig,
}

impl std::fmt::Debug for Scanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scanner")
            .field("rules", &self.rules.len())
            .field("overlap", &self.overlap)
            .field("near", &self.near)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A specific rule whose matches may reach further than this from their keyword, but
/// start within this of the first keyword they hold, is a far-reaching one (see
/// [`Scanner::near_and_far`]).
const FAR_REACH: usize = 4 << 10;

/// Whether a keyword-less rule's matches are short enough for the `near` context
/// (otherwise it searches the whole `overlap`, as in a stream's chunk).
fn stays_near(rule: &Rule) -> bool {
    rule.longest.is_some_and(|l| l <= FAR_REACH)
}

/// The keywords of the far-reaching rules.
struct FarKeywords {
    /// Per keyword: its searcher, and the far-reaching rules it stands for.
    keys: Vec<(FarKey, Vec<usize>)>,
    longest: usize,
}

/// A far-reaching rule's keyword: searched with SIMD as it is when case-sensitive,
/// ASCII-case-insensitively otherwise.
enum FarKey {
    Exact(Box<memchr::memmem::Finder<'static>>),
    Folded(aho_corasick::AhoCorasick),
}

impl FarKey {
    /// Calls `f(start, end)` for every occurrence lying wholly in `hay[from..to]`.
    fn each(&self, hay: &[u8], from: usize, to: usize, mut f: impl FnMut(usize, usize)) {
        match self {
            Self::Exact(finder) => {
                let len = finder.needle().len();
                let mut at = from;
                while let Some(i) = finder.find(&hay[at..to]) {
                    f(at + i, at + i + len);
                    at += i + 1;
                }
            }
            Self::Folded(ac) => {
                let input = aho_corasick::Input::new(&hay[..to]).range(from..to);
                for m in ac.find_overlapping_iter(input) {
                    f(m.start(), m.end());
                }
            }
        }
    }
}

/// How much of a buffer [`Scanner::sweep`] hands each pass at a time (the keyword
/// searchers run over a lowercased copy of it): fits in L1/L2 with the searchers' tables.
const STRETCH: usize = 16 << 10;

/// What [`Scanner::sweep`] found in a buffer.
struct Swept {
    /// Sorted, disjoint regions holding every keyword occurrence that matters.
    keywords: Vec<(usize, usize)>,
    /// The PII guards' runs, when a rule needs them.
    pii: Option<PiiRuns>,
    /// Decoded runs in order of their start, unless decoding is off at this depth.
    segments: Option<Vec<decode::Segment>>,
}

/// Where a buffer being scanned lies: what its findings are reported against.
#[derive(Clone, Copy)]
struct At<'e> {
    /// Stream offset of the buffer's first byte.
    base: u64,
    /// A position in the buffer and its line number (see [`LineCounter`]).
    lines: (usize, u64),
    /// Decoding layers already peeled.
    depth: usize,
    /// Their encodings, reported with each finding.
    encodings: &'e [Encoding],
    /// The input goes on past the buffer (a stream's chunk that is not the last).
    more: bool,
}

impl<'e> At<'e> {
    /// The start of a whole input, `depth` layers down.
    fn start(depth: usize, encodings: &'e [Encoding]) -> Self {
        Self {
            base: 0,
            lines: (0, 1),
            depth,
            encodings,
            more: false,
        }
    }
}

/// One accepted match, in buffer coordinates.
struct Hit {
    rule: usize,
    secret: (usize, usize),
    matched: (usize, usize),
}

impl Scanner {
    /// Compiles `specs` (ids must be unique).
    pub fn new(specs: Vec<RuleSpec>, config: ScanConfig) -> Result<Self, InspectError> {
        let mut rules = Vec::with_capacity(specs.len());
        let mut seen = std::collections::HashSet::new();
        for spec in specs {
            if !seen.insert(spec.id.clone()) {
                return Err(InspectError::DuplicateRule {
                    rule_id: spec.id,
                    line: spec.line,
                });
            }
            rules.push(Rule::compile(spec)?);
        }
        Self::from_rules(rules, config)
    }

    /// The built-in rules (secrets, prompt injection, PII) with default limits.
    pub fn builtin() -> Self {
        Self::builtin_with(ScanConfig::default())
    }

    /// The built-in rules with `config`.
    pub fn builtin_with(config: ScanConfig) -> Self {
        Self::new(super::builtin_rules(), config)
            .expect("built-in rules compile (covered by tests)")
    }

    /// Builds a scanner from already compiled rules.
    pub fn from_rules(rules: Vec<Rule>, config: ScanConfig) -> Result<Self, InspectError> {
        let mut patterns: Vec<Vec<u8>> = Vec::new();
        let mut keyword_rules: Vec<(Vec<usize>, Option<Vec<u8>>)> = Vec::new();
        let mut unkeyed = Vec::new();
        let mut max_window = 0;
        let mut max_keyword = 0;
        for (i, rule) in rules.iter().enumerate() {
            let spec = &rule.spec;
            if spec.keywords.is_empty() {
                let guard = match spec.dialect {
                    super::rule::RegexDialect::Rust => Guard::for_regex(&spec.regex),
                    super::rule::RegexDialect::Go => Guard::None,
                };
                unkeyed.push((i, guard));
                continue;
            }
            max_window = max_window.max(rule.reach.max());
            for kw in &spec.keywords {
                max_keyword = max_keyword.max(kw.len());
                let exact = spec.case_sensitive_keywords.then(|| kw.as_bytes().to_vec());
                let key = kw.as_bytes().to_ascii_lowercase();
                match patterns.iter().position(|p| *p == key) {
                    Some(p) if keyword_rules[p].1 == exact => keyword_rules[p].0.push(i),
                    _ => {
                        patterns.push(key);
                        keyword_rules.push((vec![i], exact));
                    }
                }
            }
        }
        let keywords = if patterns.is_empty() {
            None
        } else {
            Some(
                KeywordDfa::new(&patterns).map_err(|e| InspectError::RuleFile {
                    line: None,
                    message: e.to_string(),
                })?,
            )
        };
        let overlap = 2 * max_window + max_keyword + 64;
        // A keyed match lies in a window around its keyword hit; a keyword-less one is
        // bounded only by the context a chunk keeps.
        let generic_reach = rules
            .iter()
            .filter(|r| r.generic)
            .map(|r| match r.spec.keywords.iter().map(String::len).max() {
                Some(kw) => r.reach.before + kw + r.reach.after,
                None => overlap,
            })
            .max()
            .unwrap_or(0);
        let (near, far) = Self::near_and_far(
            &rules,
            &patterns,
            &keyword_rules,
            &unkeyed,
            overlap,
            generic_reach,
            max_keyword,
        )?;
        let prefilter = keywords.as_ref().and_then(|_| {
            let keys: Vec<(Vec<u8>, Option<Vec<u8>>)> = patterns
                .iter()
                .zip(&keyword_rules)
                .map(|(p, (_, exact))| (p.clone(), exact.clone()))
                .collect();
            KeywordPrefilter::new(&keys)
        });
        Ok(Self {
            rules,
            keywords,
            prefilter,
            keyword_rules,
            unkeyed,
            overlap,
            near,
            far,
            generic_reach,
            threads: match config.threads {
                0 => std::thread::available_parallelism().map_or(1, usize::from),
                n => n,
            },
            config,
        })
    }

    /// The context a region's scan needs on either side (`near`), and the keyword search
    /// for the rules left out of it. A specific rule whose matches start at most
    /// `FAR_REACH` before their keyword but may reach much further after it (a private
    /// key block, up to 64 KiB) is left out: its matches starting in a region hold a
    /// keyword hit within `near` of it, and those reaching into it from further back are
    /// found by searching its keywords there alone. A keyword-less rule whose matches
    /// may be longer than `FAR_REACH` searches the whole `overlap` ([`stays_near`]).
    /// Every other rule's matches lie within `near`.
    #[allow(clippy::too_many_arguments)]
    fn near_and_far(
        rules: &[Rule],
        patterns: &[Vec<u8>],
        keyword_rules: &[(Vec<usize>, Option<Vec<u8>>)],
        unkeyed: &[(usize, Guard)],
        overlap: usize,
        generic_reach: usize,
        max_keyword: usize,
    ) -> Result<(usize, Option<FarKeywords>), InspectError> {
        let lead = |r: &Rule| r.lead.filter(|&lead| lead <= FAR_REACH);
        let far_reaching = |r: &Rule| !r.generic && r.reach.max() > FAR_REACH && lead(r).is_some();
        let keyed = rules.iter().filter(|r| !r.spec.keywords.is_empty());
        let window = keyed
            .map(|r| match lead(r) {
                Some(lead) if far_reaching(r) => lead,
                _ => r.reach.max(),
            })
            .max()
            .unwrap_or(0);
        let unkeyed_window = unkeyed
            .iter()
            .filter(|&&(i, _)| stays_near(&rules[i]))
            .filter_map(|&(i, _)| rules[i].longest)
            .max()
            .unwrap_or(0);
        let near = 2 * window.max(unkeyed_window) + max_keyword + 64;
        if near >= overlap || generic_reach > near {
            return Ok((overlap, None));
        }
        let mut keys = Vec::new();
        for (p, (ids, exact)) in keyword_rules.iter().enumerate() {
            let ids: Vec<usize> = ids
                .iter()
                .copied()
                .filter(|&i| far_reaching(&rules[i]))
                .collect();
            if ids.is_empty() {
                continue;
            }
            let key = match exact {
                Some(exact) => {
                    FarKey::Exact(Box::new(memchr::memmem::Finder::new(exact).into_owned()))
                }
                None => FarKey::Folded(
                    aho_corasick::AhoCorasick::builder()
                        .ascii_case_insensitive(true)
                        .build([&patterns[p]])
                        .map_err(|e| InspectError::RuleFile {
                            line: None,
                            message: e.to_string(),
                        })?,
                ),
            };
            keys.push((key, ids));
        }
        if keys.is_empty() {
            return Ok((near, None));
        }
        let longest = keys
            .iter()
            .flat_map(|(_, ids)| ids)
            .flat_map(|&i| &rules[i].spec.keywords)
            .map(String::len)
            .max()
            .unwrap_or(0);
        Ok((near, Some(FarKeywords { keys, longest })))
    }

    /// The compiled rules.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The limits in force.
    pub fn config(&self) -> &ScanConfig {
        &self.config
    }

    /// Bytes of context kept between chunks when streaming.
    pub fn overlap(&self) -> usize {
        self.overlap
    }

    /// Scans an in-memory payload. A gzip or zlib body (by magic bytes) is inflated with
    /// the caps of [`ScanConfig`]; its findings' spans are then offsets in the inflated
    /// body and carry [`Encoding::Gzip`] / [`Encoding::Deflate`]. A compressed body (the
    /// payload, or one inside an encoded run) that inflates past a stream's chunk buffer
    /// is scanned as a stream as it inflates, so the scan holds about that much memory
    /// whatever the body inflates to; the findings are those of inflating it whole (but
    /// for encoded runs longer than a chunk inside it, reported as by
    /// [`Self::scan_reader`]). A compressed body that breaks off or turns corrupt is
    /// scanned as far as it inflates, and as it is (it may only start like one). A payload longer than [`ScanConfig::part_size`] is scanned in
    /// parts by [`ScanConfig::threads`] threads.
    pub fn scan_bytes(&self, data: &[u8]) -> Vec<Finding> {
        let part = self.config.part_size;
        let mut out = Vec::new();
        if self.config.max_decode_depth > 0
            && let Some(kind) = decode::compression_of(data)
        {
            let layers = [kind];
            let inflated =
                |body: &[u8]| self.scan_parts(body, 0, body.len(), At::start(1, &layers), part);
            let bomb = |limit| vec![bomb_finding(0, data.len() as u64, 1, &layers, limit)];
            let limit = self.decompress_limit(data.len() as u64);
            match decode::inflate(kind, data, limit.min(self.in_memory())) {
                decode::Inflated::Whole(body) => return inflated(&body),
                // More than is inflated in memory: again, as a stream.
                decode::Inflated::Bomb(held) if held < limit => {
                    match self.scan_inflating(kind, data, limit, 1, &layers, &mut out) {
                        Ok(true) => return out,
                        Ok(false) => {}
                        Err(limit) => return bomb(limit),
                    }
                }
                decode::Inflated::Bomb(limit) => return bomb(limit),
                decode::Inflated::Cut(body) => out = inflated(&body),
            }
        }
        let at = At::start(0, &[]);
        let mut raw = self.scan_parts(data, 0, data.len(), at, part);
        if out.is_empty() {
            return raw;
        }
        raw.append(&mut out);
        raw
    }

    /// [`Self::scan_buffer`] over `[lo, hi)` of `data` (`at.lines`: `data[0]`'s): at once
    /// when it is one part long, else part by part, the parts shared out among the
    /// threads. A part's scan reports the findings of a scan of the whole that start in it
    /// (its passes look at the part and `overlap` bytes either side, and further where a
    /// run or token goes on); put back in order, they are the whole scan's.
    fn scan_parts(
        &self,
        data: &[u8],
        lo: usize,
        hi: usize,
        at: At<'_>,
        part: usize,
    ) -> Vec<Finding> {
        let part = part.max(1);
        let parts = hi.saturating_sub(lo).div_ceil(part);
        let threads = self.threads.clamp(1, parts.max(1));
        let mut out = Vec::new();
        // One thread scans the whole at once: parts would only add their margins.
        if threads == 1 {
            self.scan_buffer(data, lo, hi, at, &mut out);
            return out;
        }
        let bounds = |k: usize| (lo + k * part, (lo + (k + 1) * part).min(hi));
        // Part `k`'s findings, with line numbers counted from its start (1 there), and
        // where those in decoded runs begin among them.
        let scan_part = |k: usize| {
            let (lo, hi) = bounds(k);
            let mut found = Vec::new();
            let decoded = self.scan_buffer(
                data,
                lo,
                hi,
                At {
                    lines: (lo, 1),
                    ..at
                },
                &mut found,
            );
            (found, decoded)
        };
        let next = AtomicUsize::new(0);
        let work = || {
            let mut mine = Vec::new();
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= parts {
                    return mine;
                }
                mine.push((k, scan_part(k)));
            }
        };
        let mut done: Vec<(usize, (Vec<Finding>, usize))> = std::thread::scope(|scope| {
            let helpers: Vec<_> = (1..threads).map(|_| scope.spawn(work)).collect();
            let mut all = work();
            for helper in helpers {
                all.extend(
                    helper
                        .join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                );
            }
            all
        });
        done.sort_unstable_by_key(|(k, _)| *k);
        // A whole scan reports the direct findings in order, then those in decoded runs
        // by where their run starts (a percent-encoded token is decoded with the part
        // holding its first escape, which may come after a part holding a later run).
        let mut decoded = Vec::new();
        debug_assert_eq!(at.lines.0, 0);
        let mut lines_before =
            at.lines.1 - 1 + memchr::memchr_iter(b'\n', &data[..lo]).count() as u64;
        let last = done.iter().rposition(|(_, (found, _))| !found.is_empty());
        let total: usize = done.iter().map(|(_, (found, _))| found.len()).sum();
        out.reserve_exact(total);
        for (k, (mut found, split)) in done.into_iter().take(last.map_or(0, |l| l + 1)) {
            for f in &mut found {
                // Lines before the part's start were counted down from 1 there.
                f.line = f.line.wrapping_add(lines_before);
            }
            decoded.extend(found.drain(split..));
            out.append(&mut found);
            let (lo, hi) = bounds(k);
            lines_before += memchr::memchr_iter(b'\n', &data[lo..hi]).count() as u64;
        }
        decoded.sort_by_key(|f| f.span.start);
        out.append(&mut decoded);
        out
    }

    /// Scans a stream of any length in overlapping chunks, calling `on_finding` for each
    /// finding in order of its span's start (within a chunk) as soon as its chunk is done.
    /// Memory stays within about `threads * chunk_size + 2 * overlap`, and as much again
    /// for each encoded run going on past a chunk (see below). Compressed bodies are
    /// inflated as they stream, under the same caps as [`Self::scan_bytes`]. As there, a
    /// body that only looks compressed (magic bytes, then no valid stream in its first
    /// 64 KiB, or all of it when shorter) is scanned as it is and as far as it inflates.
    /// A read error (including a compressed
    /// stream that breaks off or turns corrupt) ends the scan with that error, after the
    /// findings in what was read before it.
    ///
    /// A base64 run or percent-encoded token that goes on past a chunk is decoded piece by
    /// piece as the chunks come (a compressed body inside it inflated as it streams, under
    /// the same caps), and its text scanned as a stream of its own, so each finding in it
    /// is reported once. Such a finding's span runs from the run's start to where the run
    /// was decoded up to when it was found, and its line is the run's. Runs nest: a long
    /// run inside such a run's text (a base64 attachment in a percent-encoded form body)
    /// is followed through that text the same way, down to `max_decode_depth` layers.
    pub fn scan_reader<R: Read>(
        &self,
        mut reader: R,
        mut on_finding: impl FnMut(Finding),
    ) -> Result<(), InspectError> {
        const HEAD: usize = 64 << 10;
        let mut head = Vec::with_capacity(HEAD);
        let failed = (&mut reader).take(HEAD as u64).read_to_end(&mut head).err();
        let whole = failed.is_some() || head.len() < HEAD;
        let looks = (self.config.max_decode_depth > 0)
            .then(|| decode::compression_of(&head))
            .flatten();
        let kind = looks.filter(|&kind| decode::starts_stream(kind, &head, whole));
        // A body that only starts like a compressed one, or breaks off or turns corrupt
        // within its head, is scanned as it is and as far as it inflates (as by
        // `scan_bytes`).
        let cut = match (looks, kind) {
            (Some(looks), None) => {
                match decode::inflate(looks, &head, self.decompress_limit(head.len() as u64)) {
                    decode::Inflated::Cut(body) if !body.is_empty() => Some((looks, body)),
                    _ => None,
                }
            }
            _ => None,
        };
        let rest = match failed {
            Some(e) => Rest::Failed(Some(e)),
            None => Rest::Reader(reader),
        };
        let reader = std::io::Cursor::new(head).chain(rest);
        let Some(kind) = kind else {
            let raw = self.scan_chunks(reader, 0, &[], &mut on_finding);
            if let Some((looks, body)) = cut {
                self.scan_chunks(&body[..], 0, &[looks], &mut on_finding)?;
            }
            return raw.map(|_| ());
        };
        let consumed = Rc::new(Cell::new(0));
        let counted = CountingReader {
            inner: reader,
            count: Rc::clone(&consumed),
        };
        let limit = self.config.max_decompressed_bytes;
        let inflater = Capped::new(decode::decompressor(kind, counted), limit)
            .with_ratio(Rc::clone(&consumed), self.config.max_compression_ratio);
        match self.scan_chunks(inflater, 0, &[kind], &mut on_finding) {
            Err(InspectError::Io(e)) if decode::is_bomb(&e).is_some() => {
                let limit = decode::is_bomb(&e).unwrap_or(limit);
                on_finding(bomb_finding(0, consumed.get(), 1, &[kind], limit));
                Ok(())
            }
            other => other.map(|_| ()),
        }
    }

    /// [`Self::scan_reader`] collecting the findings.
    pub fn scan_reader_to_vec<R: Read>(&self, reader: R) -> Result<Vec<Finding>, InspectError> {
        let mut out = Vec::new();
        self.scan_reader(reader, |f| out.push(f))?;
        Ok(out)
    }

    fn decompress_limit(&self, compressed: u64) -> u64 {
        self.caps().limit_for(compressed)
    }

    /// Most bytes an in-memory compressed body is inflated to in memory: the size of a
    /// stream's chunk buffer. A body that inflates further is inflated again as a stream
    /// ([`Self::scan_inflating`]), so a scan holds about that much whatever the body
    /// inflates to (up to the caps).
    fn in_memory(&self) -> u64 {
        let chunk = self.config.chunk_size.max(1);
        chunk.saturating_mul(self.threads.max(1)) as u64
    }

    /// Scans what `compressed` (a `kind` body) inflates to, at most `limit` bytes, as a
    /// stream at `depth` (its findings carry `encodings` first), into `out`. `Ok(true)`
    /// when it inflated whole, `Ok(false)` when it broke off or turned corrupt (after the
    /// findings in what came out before), `Err(cap)` when it would inflate past the caps.
    fn scan_inflating(
        &self,
        kind: Encoding,
        compressed: &[u8],
        limit: u64,
        depth: usize,
        encodings: &[Encoding],
        out: &mut Vec<Finding>,
    ) -> Result<bool, u64> {
        let inflater = Capped::new(decode::decompressor(kind, compressed), limit);
        match self.scan_chunks(inflater, depth, encodings, &mut |f| out.push(f)) {
            Ok(_) => Ok(true),
            Err(InspectError::Io(e)) => decode::is_bomb(&e).map_or(Ok(false), Err),
            Err(_) => Ok(false),
        }
    }

    /// The chunk loop over a stream whose bytes are at `depth` (see [`At`]). Returns the
    /// number of bytes scanned.
    fn scan_chunks<R: Read>(
        &self,
        mut reader: R,
        depth: usize,
        encodings: &[Encoding],
        on_finding: &mut dyn FnMut(Finding),
    ) -> Result<u64, InspectError> {
        // Each thread scans a chunk of `chunk_size`: the buffer holds one per thread.
        let part = self.config.chunk_size.max(1);
        let chunk = part.saturating_mul(self.threads.max(1));
        // Zeroed once (and lazily, by the allocator, for large sizes) and then reused:
        // `buf[..filled]` is the data; reads go straight into the rest, instead of
        // zero-filling the rest of the chunk before every read.
        let mut buf: Vec<u8> = vec![0; chunk + 2 * self.overlap];
        let mut filled = 0;
        let mut base: u64 = 0; // absolute offset of buf[0]
        let mut line: u64 = 1; // line number at buf[0]
        let mut from = 0; // first buffer index not yet reported
        // Encoded runs the last chunk ended inside: this one decodes what it holds of them.
        let mut carried = runs::Carried::default();
        loop {
            // `from` is at most `overlap`, so this is within the buffer.
            let want = from + chunk + self.overlap;
            let mut eof = false;
            // A read error ends the stream: what was read is scanned first.
            let mut failed = None;
            while filled < want {
                match reader.read(&mut buf[filled..want]) {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        failed = Some(e);
                        eof = true;
                        break;
                    }
                }
            }
            let to = if eof { filled } else { filled - self.overlap };
            let data = &buf[..filled];
            let at = At {
                base,
                lines: (0, line),
                depth,
                encodings,
                more: !eof,
            };
            let mut found = self.scan_chunk(data, from, to, at, part, &mut carried);
            found.sort_by_key(|f| (f.span.start, f.span.end));
            for f in found.drain(..) {
                on_finding(f);
            }
            if let Some(e) = failed {
                return Err(e.into());
            }
            if eof {
                return Ok(base + filled as u64);
            }
            let keep_from = to.saturating_sub(self.overlap);
            line += memchr::memchr_iter(b'\n', &buf[..keep_from]).count() as u64;
            buf.copy_within(keep_from..filled, 0);
            filled -= keep_from;
            base += keep_from as u64;
            from = to - keep_from;
        }
    }

    /// Scans a chunk of a stream: `data` (as `at` says; `at.lines` is `data[0]`'s),
    /// reporting matches that start in `[from, to)`, and decoding what it holds of the
    /// encoded runs earlier chunks ended inside (`carried`) and of those it ends inside
    /// (kept in `carried` for the next).
    fn scan_chunk(
        &self,
        data: &[u8],
        from: usize,
        to: usize,
        at: At<'_>,
        part: usize,
        carried: &mut runs::Carried,
    ) -> Vec<Finding> {
        let base = at.base;
        let token_layer =
            |f: &Finding| f.encodings.get(at.encodings.len()) == Some(&Encoding::Percent);
        let mut found = self.scan_parts(data, from, to, at, part);
        // Tokens are disjoint: one this chunk decoded that ends by `finished`, or that
        // starts at the chunk's start while an earlier chunk's token goes on, is that one.
        let carried_token = carried.open.iter().any(|r| r.encoding == Encoding::Percent);
        let finished = carried.finished;
        found.retain(|f| {
            !token_layer(f) || (f.span.end > finished && !(carried_token && f.span.start == base))
        });
        let buf_end = base + data.len() as u64;
        carried.finished = found
            .iter()
            .filter(|f| token_layer(f) && f.span.end < buf_end)
            .map(|f| f.span.end)
            .fold(carried.finished, u64::max);
        let mut going = Vec::new();
        for mut run in carried.open.drain(..) {
            if self.feed_run(data, at, &mut run, &mut found) {
                going.push(run);
            } else if run.encoding == Encoding::Percent {
                carried.finished = carried.finished.max(run.fed());
            }
        }
        if at.more && at.depth < self.config.max_decode_depth {
            let min_b64 = self.config.min_base64_len;
            let owned = base + to as u64;
            let line = at.lines.1;
            for mut run in runs::new_runs(data, base, owned, line, &going, min_b64) {
                self.feed_run(data, at, &mut run, &mut found);
                going.push(run);
            }
        }
        carried.open = going;
        found
    }

    /// Decodes what `buf` (a chunk, as `at` says) holds of `run`, adding the findings in
    /// it to `found`, each with the span of the run so far and the run's line. Returns
    /// whether the run goes on past `buf`.
    fn feed_run(
        &self,
        buf: &[u8],
        at: At<'_>,
        run: &mut runs::OpenRun,
        found: &mut Vec<Finding>,
    ) -> bool {
        let (start, line) = (run.start, run.line);
        let mut layers = at.encodings.to_vec();
        layers.push(run.encoding);
        let limits = runs::Limits {
            caps: self.caps(),
            overlap: self.overlap,
            batch: self
                .config
                .chunk_size
                .max(1)
                .saturating_mul(self.threads.max(1)),
        };
        run.feed(buf, at.base, at.more, limits, &mut |event| match event {
            runs::Event::Text {
                data,
                base,
                lo,
                hi,
                more,
                inner,
                upto,
                nested,
            } => {
                // The text is a stream of its own, with runs nested in it.
                let text_at = At {
                    base,
                    lines: (0, 1),
                    depth: at.depth + 1 + usize::from(inner.is_some()),
                    encodings: &[],
                    more,
                };
                let span = Span { start, end: upto };
                let part = self.config.chunk_size;
                let mut all = layers.clone();
                all.extend(inner);
                let text = self.scan_chunk(data, lo, hi, text_at, part, nested);
                found.extend(text.into_iter().map(|f| decoded(f, &all, span, line)));
            }
            runs::Event::Bomb { inner, limit, upto } => {
                let mut all = layers.clone();
                all.push(inner);
                found.push(bomb_finding(start, upto, line, &all, limit));
            }
        })
    }

    /// Scans `buf`, reporting findings whose match starts in `[lo, hi)`: first those in
    /// `buf` itself, in order, then those in decoded runs, in order of their runs; returns
    /// the length `out` had between the two.
    fn scan_buffer(
        &self,
        buf: &[u8],
        lo: usize,
        hi: usize,
        at: At<'_>,
        out: &mut Vec<Finding>,
    ) -> usize {
        if lo >= hi {
            return out.len();
        }
        let At {
            base,
            lines: (line_pos, line),
            depth,
            encodings,
            ..
        } = at;
        let swept = self.sweep(buf, lo, hi, depth, at.more);
        let mut hits = Vec::new();
        self.raw_hits(buf, lo, hi, &swept.keywords, swept.pii, &mut hits);
        let mut lines = LineCounter {
            buf,
            pos: line_pos,
            line,
        };
        // Same order as the rules ran before generic rules were deferred: keyed rules by
        // index, then the keyword-less ones.
        hits.sort_by_key(|h| {
            let r = &self.rules[h.rule];
            (h.matched.0, r.spec.keywords.is_empty(), h.rule)
        });
        out.reserve(hits.len());
        for hit in hits {
            let compiled = &self.rules[hit.rule];
            let rule = &compiled.spec;
            let secret = &buf[hit.secret.0..hit.secret.1];
            out.push(Finding {
                rule_id: rule.id.clone(),
                severity: rule.severity,
                tags: Arc::clone(&compiled.tags),
                span: Span {
                    start: base + hit.secret.0 as u64,
                    end: base + hit.secret.1 as u64,
                },
                match_span: Span {
                    start: base + hit.matched.0 as u64,
                    end: base + hit.matched.1 as u64,
                },
                line: lines.line_at(hit.secret.0),
                preview: preview(secret),
                encodings: encodings.to_vec(),
            });
        }
        let direct = out.len();
        let Some(segments) = swept.segments else {
            return direct;
        };
        self.scan_segments(buf, segments, at, out);
        direct
    }

    /// Scans the decoded runs `segments` of `buf` (as in [`Self::scan_buffer`]), adding
    /// their findings to `out`, each with the run's span and line. (Runs a stream's chunk
    /// ends inside are not among them: the stream follows those, [`Self::feed_run`].)
    fn scan_segments(
        &self,
        buf: &[u8],
        segments: Vec<decode::Segment>,
        at: At<'_>,
        out: &mut Vec<Finding>,
    ) {
        let At {
            base,
            lines: (pos, line),
            depth,
            encodings,
            ..
        } = at;
        let caps = self.caps();
        let mut lines = LineCounter { buf, pos, line };
        for seg in segments {
            let mut layers = encodings.to_vec();
            layers.push(seg.encoding);
            layers.extend(seg.inner);
            let span = Span {
                start: base + seg.start as u64,
                end: base + seg.end as u64,
            };
            let seg_line = lines.line_at(seg.start);
            let bomb = |limit| bomb_finding(span.start, span.end, seg_line, &layers, limit);
            let mut inner = Vec::new();
            let inner_depth = (depth + 1 + usize::from(seg.inner.is_some())).max(1);
            match seg.body {
                decode::Body::Text(data) => {
                    let inner_at = At::start(inner_depth, &[]);
                    self.scan_buffer(&data, 0, data.len(), inner_at, &mut inner);
                }
                decode::Body::Compressed(kind, body) => {
                    let limit = caps.limit_for(body.len() as u64);
                    if let Err(limit) =
                        self.scan_inflating(kind, &body, limit, inner_depth, &[], &mut inner)
                    {
                        out.push(bomb(limit));
                        continue;
                    }
                }
                decode::Body::Bomb(limit) => {
                    out.push(bomb(limit));
                    continue;
                }
            }
            out.extend(
                inner
                    .into_iter()
                    .map(|f| decoded(f, &layers, span, seg_line)),
            );
        }
    }

    /// The decompression caps of the config.
    fn caps(&self) -> decode::Caps {
        decode::Caps {
            max_bytes: self.config.max_decompressed_bytes,
            max_ratio: self.config.max_compression_ratio,
            in_memory: self.in_memory(),
        }
    }

    /// The context of `[lo, hi)` in a buffer of `len` bytes: keyword matches, and matches of
    /// keyword-less rules, that can matter for it lie within `near` of it (but those of
    /// the far-reaching rules, see [`Self::far_windows`]).
    fn context(&self, len: usize, lo: usize, hi: usize) -> (usize, usize) {
        (
            lo.saturating_sub(self.near),
            hi.saturating_add(self.near).min(len),
        )
    }

    /// Adds to `windows` those of the far-reaching rules' keyword hits up to `overlap`
    /// either side of `[lo, hi)` that its context leaves out: their windows, merged with
    /// those around hits in the context, are the ones a scan of the whole has there (a
    /// match reaching into `[lo, hi)` from before it, where a generic match yields to it;
    /// a block whose end lies further than `near` past its start).
    fn far_windows(
        &self,
        buf: &[u8],
        lo: usize,
        hi: usize,
        windows: &mut Vec<(usize, usize, usize)>,
    ) {
        let Some(far) = &self.far else { return };
        let (kw_from, kw_to) = self.context(buf.len(), lo, hi);
        let reach = far.longest.saturating_sub(1);
        let back = (
            lo.saturating_sub(self.overlap),
            (kw_from + reach).min(buf.len()),
        );
        let ahead = (
            kw_to.saturating_sub(reach),
            hi.saturating_add(self.overlap).min(buf.len()),
        );
        let mut add = |start: usize, end: usize, rules: &[usize]| {
            for &r in rules {
                let reach = self.rules[r].reach;
                windows.push((
                    r,
                    start.saturating_sub(reach.before),
                    (end + reach.after).min(buf.len()),
                ));
            }
        };
        for (key, rules) in &far.keys {
            if back.0 < kw_from {
                key.each(buf, back.0, back.1, |start, end| {
                    if start < kw_from {
                        add(start, end, rules);
                    }
                });
            }
            if ahead.1 > kw_to {
                key.each(buf, ahead.0, ahead.1, |start, end| {
                    if end > kw_to {
                        add(start, end, rules);
                    }
                });
            }
        }
    }

    /// One read of `buf` for the passes that look at all of it (keyword prefilter, PII
    /// guards, encoded runs): each looks at a 16 KiB stretch while it is in cache, instead
    /// of each streaming the whole buffer from memory in turn.
    fn sweep(&self, buf: &[u8], lo: usize, hi: usize, depth: usize, more: bool) -> Swept {
        let (kw_from, kw_to) = self.context(buf.len(), lo, hi);
        let mut keywords = self
            .keywords
            .as_ref()
            .and(self.prefilter.as_ref())
            .map(|pre| pre.sweep(kw_from, kw_to));
        // What can matter for [lo, hi) lies in [kw_from, kw_to): the passes look there,
        // from a 64-byte block boundary, to the end of a block (or of the buffer).
        let (start, end) = (kw_from / 64 * 64, (kw_to.div_ceil(64) * 64).min(buf.len()));
        let mut pii = self
            .unkeyed
            .iter()
            .any(|(_, g)| g.needs_runs())
            .then(|| PiiSweep::new(buf, start));
        let mut segments = (depth < self.config.max_decode_depth).then(|| {
            let min_b64 = self.config.min_base64_len;
            SegmentSweep::new(buf, lo, hi, min_b64, self.caps(), more)
        });
        // Encoded runs start in [lo, hi): they are looked for from the 64-byte block
        // holding `lo`.
        let seg_from = lo / 64 * 64;
        for from in (start..end).step_by(STRETCH) {
            let to = (from + STRETCH).min(end);
            if let Some(k) = &mut keywords {
                k.feed(buf, from, to);
            }
            if let Some(p) = &mut pii {
                p.feed(from, to);
            }
            if let Some(s) = &mut segments
                && to > seg_from
            {
                s.feed(from.max(seg_from), to);
            }
        }
        let keywords = match (keywords, &self.keywords) {
            (Some(k), _) => {
                let mut regions = Vec::new();
                k.finish(&mut regions);
                regions
            }
            (None, Some(_)) => vec![(kw_from, kw_to)],
            (None, None) => Vec::new(),
        };
        Swept {
            keywords,
            pii: pii.map(PiiSweep::finish),
            segments: segments.map(SegmentSweep::finish),
        }
    }

    /// Runs the regexes over the swept regions, collecting accepted matches starting in
    /// `[lo, hi)`.
    ///
    /// Specific rules' matches are also collected where they reach into `[lo, hi)` from
    /// before it or start up to `generic_reach` past it, and dropped at the end: a generic
    /// match starting in `[lo, hi)` yields to every specific match its secret overlaps,
    /// wherever that one starts, as in a scan of the whole input at once.
    fn raw_hits(
        &self,
        buf: &[u8],
        lo: usize,
        hi: usize,
        keyword_regions: &[(usize, usize)],
        mut pii: Option<PiiRuns>,
        hits: &mut Vec<Hit>,
    ) {
        let far = hi.saturating_add(self.generic_reach).min(buf.len()).max(hi);
        // Where a rule's matches may start: generic ones in [lo, hi), specific ones on to
        // `far` (for the yield check).
        let until_for = |rule: usize| if self.rules[rule].generic { hi } else { far };
        // Windows (rule, start, end) around keyword hits that can matter for [lo, hi).
        let mut windows: Vec<(usize, usize, usize)> = Vec::new();
        if let Some(ac) = &self.keywords {
            // Exact overlapping search, but only over regions the prefilter says can hold
            // a keyword (each occurrence lies wholly in one region, regions are disjoint).
            for &(from, to) in keyword_regions {
                ac.overlapping(buf, from, to, |p, start, end| {
                    let (rules, exact) = &self.keyword_rules[p];
                    if let Some(exact) = exact
                        && &buf[start..end] != exact.as_slice()
                    {
                        return;
                    }
                    for &r in rules {
                        let reach = self.rules[r].reach;
                        windows.push((
                            r,
                            start.saturating_sub(reach.before),
                            (end + reach.after).min(buf.len()),
                        ));
                    }
                });
            }
        }
        self.far_windows(buf, lo, hi, &mut windows);
        self.sort_windows(&mut windows);
        // Generic rules whose secret's position is partly known from the match alone run
        // after every specific rule, so that matches sure to yield skip capture groups.
        let mut deferred = Vec::new();
        let mut starts = Vec::new();
        let mut i = 0;
        while i < windows.len() {
            let (rule, start, mut end) = windows[i];
            starts.clear();
            starts.push(start);
            i += 1;
            while i < windows.len() && windows[i].0 == rule && windows[i].1 <= end {
                end = end.max(windows[i].2);
                starts.push(windows[i].1);
                i += 1;
            }
            let to = until_for(rule);
            if self.rules[rule].secret_tail.is_some() {
                deferred.push((rule, start, end));
            } else if self.rules[rule].starts_at_keyword && self.rules[rule].reach.before == 0 {
                // Matches start at hits, and each window starts at its hit.
                self.run_rule_at(rule, buf, &starts, end, lo, to, hits);
            } else {
                self.run_rule(rule, buf, start, end, lo, to, hits);
            }
        }
        // Keyword-less rules search the context of [lo, hi), as in a chunk of a stream.
        let near = self.context(buf.len(), lo, hi);
        let wide = (
            lo.saturating_sub(self.overlap),
            hi.saturating_add(self.overlap).min(buf.len()),
        );
        let mut regions = Vec::new();
        for &(rule, guard) in &self.unkeyed {
            let (from, until) = if stays_near(&self.rules[rule]) {
                near
            } else {
                wide
            };
            let to = until_for(rule);
            regions.clear();
            guard.regions(buf, &mut pii, &mut regions);
            for &(start, end) in &regions {
                let (start, end) = (start.max(from), end.min(until));
                if start < end {
                    self.run_rule(rule, buf, start, end, lo, to, hits);
                }
            }
        }
        // Deferred generic rules add only generic hits: the specific ones are known now.
        let mut specific = None;
        if !deferred.is_empty() {
            let specific = specific.get_or_insert_with(|| Specific::of(&self.rules, hits));
            for (rule, start, end) in deferred {
                self.run_generic_rule(rule, buf, start, end, lo, hi, specific, hits);
            }
        }
        // A generic rule yields to a specific rule that found overlapping bytes.
        if hits.iter().any(|h| self.rules[h.rule].generic) {
            let specific = specific.get_or_insert_with(|| Specific::of(&self.rules, hits));
            hits.retain(|h| !self.rules[h.rule].generic || !specific.overlaps(h.secret));
        }
        hits.retain(|h| lo <= h.matched.0 && h.matched.0 < hi);
    }

    /// Sorts windows `(rule, start, end)`. Many windows come grouped by rule in one
    /// counting pass: each rule's windows keep the order of their hits (ascending ends,
    /// so starts nearly ascending), which a stable sort of each group then finishes in
    /// little more than one pass.
    fn sort_windows(&self, windows: &mut Vec<(usize, usize, usize)>) {
        if windows.len() <= 64 {
            windows.sort_unstable();
            return;
        }
        let mut ends = vec![0usize; self.rules.len()];
        for w in windows.iter() {
            ends[w.0] += 1;
        }
        let mut total = 0;
        for n in &mut ends {
            total += *n;
            *n = total - *n; // where the rule's group starts, for now
        }
        let mut grouped = vec![(0, 0, 0); windows.len()];
        for &w in windows.iter() {
            grouped[ends[w.0]] = w;
            ends[w.0] += 1;
        }
        let mut start = 0;
        for &end in &ends {
            grouped[start..end].sort();
            start = end;
        }
        *windows = grouped;
    }

    /// [`Self::run_rule`] for a rule with a [`super::rule::SecretTail`]: a match whose
    /// sure part of the secret overlaps a specific finding would yield to it, so it is
    /// dropped before its capture groups are extracted.
    #[allow(clippy::too_many_arguments)]
    fn run_generic_rule(
        &self,
        idx: usize,
        buf: &[u8],
        start: usize,
        end: usize,
        lo: usize,
        hi: usize,
        specific: &Specific,
        hits: &mut Vec<Hit>,
    ) {
        let rule = &self.rules[idx];
        let Some(tail) = &rule.secret_tail else {
            return;
        };
        if rule.by_hand {
            super::assign::find_iter(buf, start, end, |matched, secret| {
                if matched.0 >= hi {
                    return false;
                }
                // The secret is known exactly here: one overlapping a specific finding
                // would yield to it, so it is dropped before its checks.
                if matched.0 >= lo && !specific.overlaps(secret) {
                    self.keep(idx, buf, matched, secret, hits);
                }
                true
            });
            return;
        }
        let mut caps = rule.regex.create_captures();
        for m in rule.regex.find_iter(Input::new(buf).range(start..end)) {
            if m.start() >= hi {
                break;
            }
            let matched = (m.start(), m.end());
            if matched.0 < lo || specific.overlaps(tail.core(buf, matched)) {
                continue;
            }
            // The same leftmost-first match, anchored, yields the same groups.
            let input = Input::new(buf)
                .range(m.start()..m.end())
                .anchored(regex_automata::Anchored::Yes);
            rule.regex.search_captures(&input, &mut caps);
            let Some(secret) = secret_of(rule, &caps) else {
                continue;
            };
            self.keep(idx, buf, matched, secret, hits);
        }
    }

    /// Collects the accepted matches of rule `idx` in `buf[start..end]` that start before
    /// `hi` and end after `lo`.
    #[allow(clippy::too_many_arguments)]
    fn run_rule(
        &self,
        idx: usize,
        buf: &[u8],
        start: usize,
        end: usize,
        lo: usize,
        hi: usize,
        hits: &mut Vec<Hit>,
    ) {
        let rule = &self.rules[idx];
        let input = Input::new(buf).range(start..end);
        let mut accept = |matched: (usize, usize), secret: (usize, usize)| {
            if lo < matched.1 && matched.0 < hi {
                self.keep(idx, buf, matched, secret, hits);
            }
        };
        if !rule.has_groups {
            for m in rule.regex.find_iter(input) {
                if m.start() >= hi {
                    break;
                }
                accept((m.start(), m.end()), (m.start(), m.end()));
            }
            return;
        }
        for caps in rule.regex.captures_iter(input) {
            let Some(m) = caps.get_match() else { continue };
            if m.start() >= hi {
                break;
            }
            if let Some(s) = secret_of(rule, &caps) {
                accept((m.start(), m.end()), s);
            }
        }
    }

    /// [`Self::run_rule`] over `[starts[0], end)` for a rule whose every match starts
    /// where a keyword hit of it does ([`Rule::starts_at_keyword`]; its windows then
    /// start at their hits): `starts` are those hits, ascending. The leftmost match at or
    /// after a position is then the anchored match at the first hit from there that has
    /// one, so anchored searches at the hits, skipping those inside the previous match,
    /// find what `find_iter` over the window finds, without searching for where matches
    /// start.
    #[allow(clippy::too_many_arguments)]
    fn run_rule_at(
        &self,
        idx: usize,
        buf: &[u8],
        starts: &[usize],
        end: usize,
        lo: usize,
        hi: usize,
        hits: &mut Vec<Hit>,
    ) {
        let rule = &self.rules[idx];
        let mut caps =
            (rule.has_groups && rule.shapes.is_none()).then(|| rule.regex.create_captures());
        let mut from = 0;
        for &at in starts {
            if at < from {
                continue;
            }
            if at >= hi {
                break;
            }
            let found = if let Some(shapes) = &rule.shapes {
                shapes
                    .iter()
                    .find_map(|s| s.match_at(buf, at, end, rule.secret_is))
                    .map(|(matched, secret)| (matched, Some(secret)))
            } else {
                let input = Input::new(buf)
                    .range(at..end)
                    .anchored(regex_automata::Anchored::Yes);
                match &mut caps {
                    None => rule
                        .regex
                        .search(&input)
                        .map(|m| ((m.start(), m.end()), Some((m.start(), m.end())))),
                    Some(caps) => {
                        rule.regex.search_captures(&input, caps);
                        caps.get_match()
                            .map(|m| ((m.start(), m.end()), secret_of(rule, caps)))
                    }
                }
            };
            let Some((matched, secret)) = found else {
                continue;
            };
            from = matched.1.max(at + 1);
            if let Some(secret) = secret
                && matched.1 > lo
            {
                self.keep(idx, buf, matched, secret, hits);
            }
        }
    }

    /// Adds the match of rule `idx` to `hits` when its secret is not empty and the rule's
    /// checks accept it.
    fn keep(
        &self,
        idx: usize,
        buf: &[u8],
        matched: (usize, usize),
        secret: (usize, usize),
        hits: &mut Vec<Hit>,
    ) {
        if secret.0 < secret.1 && self.accepted(&self.rules[idx], buf, matched, secret) {
            hits.push(Hit {
                rule: idx,
                secret,
                matched,
            });
        }
    }

    fn accepted(
        &self,
        rule: &Rule,
        buf: &[u8],
        matched: (usize, usize),
        secret: (usize, usize),
    ) -> bool {
        let spec = &rule.spec;
        let value = &buf[secret.0..secret.1];
        if let Some(min) = spec.entropy
            && shannon_entropy(value) <= min
        {
            return false;
        }
        let valid = match spec.validator {
            Validator::None => true,
            Validator::Luhn => super::rule::valid_card(value),
            Validator::Iban => super::rule::valid_iban(value),
            Validator::LettersAndDigits => {
                value.iter().any(u8::is_ascii_digit) && value.iter().any(u8::is_ascii_alphabetic)
            }
        };
        if !valid {
            return false;
        }
        let line = || {
            let start = memchr::memrchr(b'\n', &buf[..matched.0]).map_or(0, |p| p + 1);
            let end = memchr::memchr(b'\n', &buf[matched.1..]).map_or(buf.len(), |p| p + matched.1);
            &buf[start..end]
        };
        !rule.allowed(value, &buf[matched.0..matched.1], line)
    }
}

/// The secret span of a match's capture groups: the rule's secret group, else the first
/// non-empty group, else the whole match.
fn secret_of(
    rule: &Rule,
    caps: &regex_automata::util::captures::Captures,
) -> Option<(usize, usize)> {
    let m = caps.get_match()?;
    let span = match rule.spec.secret_group {
        Some(0) => Some(m.span()),
        Some(g) => caps.get_group(g),
        None => (1..caps.group_len())
            .filter_map(|g| caps.get_group(g))
            .find(|s| !s.is_empty())
            .or(Some(m.span())),
    };
    span.map(|s| (s.start, s.end))
}

/// Secret spans of the specific (non-generic) hits, for overlap queries.
struct Specific {
    /// Sorted by start.
    spans: Vec<(usize, usize)>,
    /// `reach[i]`: furthest end among `spans[..=i]`.
    reach: Vec<usize>,
}

impl Specific {
    fn of(rules: &[Rule], hits: &[Hit]) -> Self {
        let mut spans: Vec<(usize, usize)> = hits
            .iter()
            .filter(|h| !rules[h.rule].generic)
            .map(|h| h.secret)
            .collect();
        spans.sort();
        let mut reach = Vec::with_capacity(spans.len());
        let mut max_end = 0;
        for s in &spans {
            max_end = max_end.max(s.1);
            reach.push(max_end);
        }
        Self { spans, reach }
    }

    /// Whether a span overlaps `[span.0, span.1)`: spans starting before it ends overlap
    /// it iff one of them reaches past its start.
    fn overlaps(&self, span: (usize, usize)) -> bool {
        if span.0 >= span.1 {
            return false;
        }
        let n = self.spans.partition_point(|s| s.0 < span.1);
        n > 0 && self.reach[n - 1] > span.0
    }
}

/// A finding in decoded bytes, reported against the encoded run holding them: the run's
/// span and line, the run's layers before the finding's own.
fn decoded(mut f: Finding, layers: &[Encoding], span: Span, line: u64) -> Finding {
    let mut all = layers.to_vec();
    all.append(&mut f.encodings);
    f.encodings = all;
    f.span = span;
    f.match_span = span;
    f.line = line;
    f
}

fn bomb_finding(start: u64, end: u64, line: u64, layers: &[Encoding], limit: u64) -> Finding {
    Finding {
        rule_id: DECODE_BOMB_RULE_ID.to_owned(),
        severity: Severity::High,
        tags: Arc::from(["decoder".to_owned(), "decompression-bomb".to_owned()]),
        span: Span { start, end },
        match_span: Span { start, end },
        line,
        preview: format!("decompressed output exceeded {limit} bytes"),
        encodings: layers.to_vec(),
    }
}

/// Incremental line numbers for ascending offsets in one buffer. Counting down from a
/// line number below the true one (a part's lines, numbered from its start) wraps, and is
/// put right by adding the lines before it.
struct LineCounter<'a> {
    buf: &'a [u8],
    pos: usize,
    line: u64,
}

impl LineCounter<'_> {
    fn line_at(&mut self, offset: usize) -> u64 {
        if offset >= self.pos {
            self.line += memchr::memchr_iter(b'\n', &self.buf[self.pos..offset]).count() as u64;
            self.pos = offset;
            self.line
        } else {
            self.line.wrapping_sub(
                memchr::memchr_iter(b'\n', &self.buf[offset..self.pos]).count() as u64,
            )
        }
    }
}

/// What follows the head [`Scanner::scan_reader`] sniffed: the rest of the reader, or the
/// error that cut the head short (returned once the head is scanned).
enum Rest<R> {
    Reader(R),
    Failed(Option<std::io::Error>),
}

impl<R: Read> Read for Rest<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Self::Reader(r) => r.read(buf),
            Self::Failed(e) => e.take().map_or(Ok(0), Err),
        }
    }
}

/// Counts the compressed bytes consumed, for the ratio cap and the bomb finding's span.
struct CountingReader<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::builtin_rules;
    use super::super::reach::Reach;
    use super::super::rule::{DEFAULT_WINDOW, RuleSpec};
    use super::*;

    /// The built-in rules, with the generic rules' deferred fast path and the rules matched
    /// by hand on or off.
    fn scanner(specs: Vec<RuleSpec>, fast: bool) -> Scanner {
        let mut rules: Vec<Rule> = specs
            .into_iter()
            .map(|s| Rule::compile(s).unwrap())
            .collect();
        if !fast {
            for r in &mut rules {
                r.secret_tail = None;
                r.by_hand = false;
                r.shapes = None;
            }
        }
        Scanner::from_rules(rules, ScanConfig::default()).unwrap()
    }

    /// The built-in rules with every regex (none matched by hand) running over its rule's
    /// full window.
    fn full_window_scanner() -> Scanner {
        let mut rules: Vec<Rule> = builtin_rules()
            .into_iter()
            .map(|s| Rule::compile(s).unwrap())
            .collect();
        for r in &mut rules {
            r.reach = Reach::both(r.spec.window);
            r.by_hand = false;
        }
        Scanner::from_rules(rules, ScanConfig::default()).unwrap()
    }

    #[test]
    fn builtin_rules_look_no_further_from_a_hit_than_a_match_holding_it_reaches() {
        let s = scanner(builtin_rules(), true);
        let reach = |id: &str| s.rules().iter().find(|r| r.id() == id).unwrap().reach;
        let sides = |before, after| Reach { before, after };
        // `(?:\A|[^a-z0-9])[a-z0-9_.\-]{0,30}` and up to `private` of `private-key` (hit
        // `-key`) before the hit; the assignment after it.
        assert_eq!(reach("generic-secret-assignment"), sides(38, 163));
        assert_eq!(reach("aws-secret-access-key"), sides(30, 105));
        // A prefix keyword: nothing before it, also when it opens the secret group.
        assert_eq!(reach("npm-access-token").before, 0);
        assert_eq!(reach("gcp-api-key").before, 0);
        assert_eq!(reach("sendgrid-api-key").before, 0);
        // Unbounded matches keep the window.
        assert_eq!(reach("jwt"), Reach::both(DEFAULT_WINDOW));
        assert_eq!(reach("private-key"), Reach::both(64 << 10));
        assert!(s.rules().iter().all(|r| r.reach.max() <= r.spec.window));
    }

    /// A window cut to nothing before the hit is no proof that matches start there.
    #[test]
    fn a_window_of_zero_is_searched_not_anchored() {
        let mut spec = RuleSpec::new("b", "test", "b");
        spec.keywords = vec!["ab".into()];
        spec.window = 0;
        let s = scanner(vec![spec], true);
        assert_eq!(s.rules()[0].reach.before, 0);
        assert!(!s.rules()[0].starts_at_keyword);
        let spans: Vec<(u64, u64)> = s
            .scan_bytes(b"xab")
            .iter()
            .map(|f| (f.match_span.start, f.match_span.end))
            .collect();
        assert_eq!(spans, [(2, 3)]);
    }

    /// A rule whose matches start at its hits searches anchored at each hit; a hit inside
    /// an earlier match starts nothing, as with `find_iter`.
    #[test]
    fn hits_inside_an_earlier_match_of_a_prefix_rule_start_no_match() {
        let mut spec = RuleSpec::new("ab-run", "test", "ab[a-z]{2,8}");
        spec.keywords = vec!["ab".into()];
        let s = scanner(vec![spec.clone()], true);
        assert!(s.rules()[0].starts_at_keyword);
        let text = b"ababababab abab xab abcd";
        let spans: Vec<(u64, u64)> = s
            .scan_bytes(text)
            .iter()
            .map(|f| (f.match_span.start, f.match_span.end))
            .collect();
        assert_eq!(spans, [(0, 10), (11, 15), (20, 24)]);
        // What the regex alone finds.
        let re = Rule::compile(spec).unwrap().regex;
        let by_regex: Vec<(u64, u64)> = re
            .find_iter(text)
            .map(|m| (m.start() as u64, m.end() as u64))
            .collect();
        assert_eq!(spans, by_regex);
    }

    #[test]
    fn builtin_generic_rule_has_a_secret_tail() {
        let s = scanner(builtin_rules(), true);
        let generic: Vec<&Rule> = s.rules().iter().filter(|r| r.generic).collect();
        assert!(!generic.is_empty());
        assert!(generic.iter().all(|r| r.secret_tail.is_some()));
    }

    #[test]
    fn secret_tail_needs_a_terminator_outside_the_class() {
        let spec = |re: &str| {
            let mut s = RuleSpec::new("g", "g", re);
            s.keywords = vec!["key".into()];
            s.tags = vec!["generic".into()];
            Rule::compile(s).unwrap()
        };
        assert!(
            spec(r"key=([a-z0-9]{8,64})(?:[^a-z0-9]|\z)")
                .secret_tail
                .is_some()
        );
        assert!(spec(r"key=([a-z0-9]{8,64})").secret_tail.is_some());
        // `;` may be the terminator or part of the value: the secret's end is unknown.
        assert!(spec(r"key=([a-z0-9;]{8,64})(?:;|\z)").secret_tail.is_none());
        assert!(spec(r"key=([a-z0-9]{8,64})x?").secret_tail.is_none());
        assert!(spec(r"key=([a-z0-9]{0,64})").secret_tail.is_none());
    }

    const FRAGS: [&str; 16] = [
        "password = ",
        "api_key: \"",
        "GITHUB_TOKEN=",
        "ghp_aB3dE5gH7jK9mN1pQ3sT5vX7zA9cE1gI3kM5",
        "sk_live_4eC39HqLyjWDarjtT1zdp7dc0000",
        "AKIAIOSFODNN7EXAMPLE",
        "Xk29aQ7zLm4PqR8s",
        "npm_",
        "\n",
        " ",
        "=",
        "\"",
        "7q",
        "secret_token==",
        "4111 1111 1111 1111",
        "xoxb-123456789012-123456789012-aB3dE5gH7jK9mN1pQ3sT5vX7",
    ];

    const REACH_FRAGS: [&str; 19] = [
        "password = ",
        "AUTH-KEY: '",
        "secret_accesskey=",
        "aws_secret_access_key = ",
        "wJalrXUtnFEMI/K7MDENGbPxRfiCYzEXAMPLEKEY",
        "ghp_aB3dE5gH7jK9mN1pQ3sT5vX7zA9cE1gI3kM5",
        "Xk29aQ7zLm4PqR8s",
        "token",
        "\n",
        " ",
        "=",
        "\"",
        "npm_aB3dE5gH7jK9mN1pQ3sT5vX7zA9cE1gI3kM5",
        "private-key==",
        "AKIAIOSFODNN7EXAMPLF",
        "xoxb-123456789012-123456789012-aB3dE5gH7jK9mN1pQ3sT5vX7",
        "AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q",
        "SG.aB3dE5gH7jK9mN1pQ3sT5v.",
        "xW7yZ9aB1cD3eF5gH7iJ9kL1mN3oP5qR7sT9uV1wX3yZ5a-_",
    ];

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Windows grouped by rule, then sorted within each group, come out as sorting
        /// them whole would.
        #[test]
        fn windows_sort_as_a_whole(
            mut windows in prop::collection::vec((0usize..48, 0usize..400, 0usize..400), 0..300),
        ) {
            thread_local! {
                static SCANNER: Scanner = scanner(builtin_rules(), true);
            }
            SCANNER.with(|s| {
                for w in &mut windows {
                    w.0 %= s.rules.len();
                }
                let mut expected = windows.clone();
                expected.sort_unstable();
                s.sort_windows(&mut windows);
                prop_assert_eq!(windows, expected);
                Ok(())
            })?;
        }

        /// Deferring generic rules, skipping the captures of matches sure to yield,
        /// matching the assignment rule by hand and the token rules' shapes report exactly
        /// what running every rule's regex with captures reports.
        #[test]
        fn deferred_generic_rules_find_the_same(parts in prop::collection::vec((0usize..FRAGS.len(), any::<u8>()), 0..60)) {
            thread_local! {
                static PAIR: (Scanner, Scanner) = (scanner(builtin_rules(), true), scanner(builtin_rules(), false));
            }
            let mut text = Vec::new();
            for (i, b) in parts {
                text.extend_from_slice(FRAGS[i].as_bytes());
                if b % 4 == 0 {
                    text.push(b"aZ09_-+/=.:;\"' "[usize::from(b) % 15]);
                }
            }
            PAIR.with(|(fast, slow)| {
                prop_assert_eq!(fast.scan_bytes(&text), slow.scan_bytes(&text));
                Ok(())
            })?;
        }

        /// Regexes over windows cut to what a match holding the hit can reach report what
        /// they report over the rules' full windows, near and far from other hits.
        #[test]
        fn windows_cut_to_what_a_match_can_reach_find_the_same(parts in prop::collection::vec((0usize..REACH_FRAGS.len(), any::<u8>()), 0..40)) {
            thread_local! {
                static PAIR: (Scanner, Scanner) = (scanner(builtin_rules(), true), full_window_scanner());
            }
            let mut text = Vec::new();
            for (i, b) in parts {
                text.extend_from_slice(REACH_FRAGS[i].as_bytes());
                match b % 4 {
                    0 => text.push(b"aZ09_-+/=.:;\"' "[usize::from(b) % 15]),
                    // Prose between hits: 0 to ~760 bytes, across the cut windows' edges.
                    1 => text.extend_from_slice(&b"the gateway logs each call. ".repeat(usize::from(b) / 9)),
                    _ => {}
                }
            }
            PAIR.with(|(cut, full)| {
                prop_assert_eq!(cut.scan_bytes(&text), full.scan_bytes(&text));
                Ok(())
            })?;
        }
    }
}
