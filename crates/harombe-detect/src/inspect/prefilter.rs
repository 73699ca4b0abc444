//! Fast guards in front of the exact matchers, each a *superset* filter: it only narrows
//! where the exact (slow) matcher runs, never what it reports.
//!
//! - [`KeywordPrefilter`]: SIMD substring search (Teddy, from `aho-corasick::packed`) for
//!   keywords of 3+ bytes over an ASCII-lowercased copy of the input, plus `memchr` on a
//!   rare byte of each shorter keyword. Every keyword occurrence lies inside one of the
//!   regions it returns, so running the exact overlapping Aho-Corasick over those regions
//!   finds exactly the occurrences a run over the whole input would. What it searches for
//!   (a 3–4 byte anchor per keyword, and which anchors share a Teddy bucket) is chosen to
//!   flag few positions of a built-in sample of ordinary text (`ordinary.txt`).
//! - [`Guard`]: for the keyword-less built-in PII rules (payment cards, IBANs), a
//!   necessary condition (a run of 13 digits or single separators between digits; a run
//!   of capitals, digits and single spaces starting with an `AA00` quad), found only
//!   inside long runs of bytes up to `Z` ([`super::classes`]), so the regex runs only over
//!   regions that can hold a match. See [`Guard::regions`] for why the results equal a run
//!   over the whole input.

use aho_corasick::automaton::{Automaton, StateID};
use aho_corasick::{Anchored, MatchKind, StartKind, dfa, packed};

use super::classes::LongRuns;

/// The exact keyword search: an ASCII-case-insensitive Aho-Corasick DFA walked by hand.
/// `AhoCorasick::find_overlapping_iter` returns to its caller at every match and keeps
/// its position in a state struct it writes per byte; over text dense with keywords that
/// loop cost ~21 instructions a byte, and walking the DFA here took 6 % off a scan.
pub(crate) struct KeywordDfa {
    dfa: dfa::DFA,
    start: StateID,
}

impl KeywordDfa {
    pub(crate) fn new<P: AsRef<[u8]>>(patterns: &[P]) -> Result<Self, aho_corasick::BuildError> {
        let dfa = dfa::DFA::builder()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .start_kind(StartKind::Unanchored)
            // No prefilter: start states are then not special, so only matches stop
            // the walk below.
            .prefilter(false)
            .build(patterns)?;
        let start = dfa
            .start_state(Anchored::No)
            .expect("an unanchored start state was asked for");
        Ok(Self { dfa, start })
    }

    /// Calls `f(pattern, start, end)` for every occurrence of every keyword lying
    /// wholly in `hay[from..to]`, as `find_overlapping_iter` over that range reports them
    /// (by end, then in the automaton's order for one end). Kept out of line: inlined
    /// into the scan, whose state fills the registers, the walk spilled its own to the
    /// stack on every byte (4 % of a scan of text dense with secrets).
    #[inline(never)]
    pub(crate) fn overlapping(
        &self,
        hay: &[u8],
        from: usize,
        to: usize,
        mut f: impl FnMut(usize, usize, usize),
    ) {
        let d = &self.dfa;
        let mut sid = self.start;
        for (i, &b) in hay[from..to].iter().enumerate() {
            sid = d.next_state(Anchored::No, sid, b);
            // Without a prefilter the start state is not special: special is a match or
            // the dead state (which standard semantics never reach unanchored).
            if d.is_special(sid) {
                if d.is_dead(sid) {
                    return;
                }
                let end = from + i + 1;
                for k in 0..d.match_len(sid) {
                    let p = d.match_pattern(sid, k);
                    f(p.as_usize(), end - d.pattern_len(p), end);
                }
            }
        }
    }
}

/// A byte to `memchr` for, with the (exact bytes, offset of the byte) keyword variants it
/// stands for.
type RareByte = (u8, Vec<(Vec<u8>, usize)>);

/// See the module doc.
pub(crate) struct KeywordPrefilter {
    teddies: Vec<packed::Searcher>,
    /// Short keywords: groups of up to 3 rare bytes for `memchr3`, each byte with the
    /// (exact bytes, offset of the rare byte) variants to verify.
    rare: Vec<Vec<RareByte>>,
    /// Longest keyword: a region reaches this far either side of a hit.
    max_kw: usize,
}

/// Share of each byte in ordinary prose and code, before lowercasing: English letter
/// frequencies as about 60 % of the text in lowercase and 5 % in capitals, then spaces,
/// line breaks, digits and punctuation. The prefilter uses it to pick what it searches
/// for; it only affects speed.
fn text_share(b: u8) -> f64 {
    // Per cent of English letters, a to z.
    const LETTERS: [f64; 26] = [
        8.2, 1.5, 2.8, 4.3, 12.7, 2.2, 2.0, 6.1, 7.0, 0.15, 0.8, 4.0, 2.4, 6.7, 7.5, 1.9, 0.1, 6.0,
        6.3, 9.1, 2.8, 1.0, 2.4, 0.15, 2.0, 0.07,
    ];
    let per_cent = match b {
        b'a'..=b'z' => LETTERS[usize::from(b - b'a')] * 0.6,
        b'A'..=b'Z' => LETTERS[usize::from(b - b'A')] * 0.05,
        b' ' => 15.0,
        b'\n' => 2.0,
        b'0'..=b'9' => 0.3,
        b'.' | b',' | b'_' | b'"' | b'(' | b')' | b':' | b'/' | b'-' | b'=' => 0.8,
        b'\'' | b';' | b'{' | b'}' | b'[' | b']' | b'<' | b'>' | b'&' | b'*' | b'#' | b'\t' => 0.3,
        0x21..=0x7e => 0.05,
        _ => 0.01,
    };
    per_cent / 100.0
}

/// A sample of ordinary prose, data, code and logs (no secrets): the prefilter picks the
/// anchors and Teddy buckets that flag few of its positions.
const ORDINARY: &[u8] = include_bytes!("ordinary.txt");
/// Fingerprint positions in [`ORDINARY`] (4-byte windows), and 64-bit words to hold one bit
/// per position.
const POSITIONS: usize = ORDINARY.len() - 3;
const WORDS: usize = POSITIONS.div_ceil(64);

/// What a Teddy bucket costs on ordinary text. For each fingerprint byte `j` and nibble
/// value `n`, `lo[j][n]` (`hi[j][n]`) holds the positions of the lowercased sample whose
/// byte at `+j` has low (high) nibble `n`; `cells` is [`text_share`] after lowercasing,
/// by (low, high) nibble.
struct Sample {
    lo: [[[u64; WORDS]; 16]; 4],
    hi: [[[u64; WORDS]; 16]; 4],
    cells: [[f64; 16]; 16],
}

impl Sample {
    fn get() -> &'static Self {
        static SAMPLE: std::sync::LazyLock<Box<Sample>> = std::sync::LazyLock::new(Sample::build);
        &SAMPLE
    }

    fn build() -> Box<Self> {
        let mut s = Box::new(Self {
            lo: [[[0; WORDS]; 16]; 4],
            hi: [[[0; WORDS]; 16]; 4],
            cells: [[0.0; 16]; 16],
        });
        let text: Vec<u8> = ORDINARY.iter().map(u8::to_ascii_lowercase).collect();
        for p in 0..POSITIONS {
            for j in 0..4 {
                let b = text[p + j];
                s.lo[j][usize::from(b & 15)][p / 64] |= 1 << (p % 64);
                s.hi[j][usize::from(b >> 4)][p / 64] |= 1 << (p % 64);
            }
        }
        for b in 0..=255u8 {
            let l = b.to_ascii_lowercase();
            s.cells[usize::from(l & 15)][usize::from(l >> 4)] += text_share(b);
        }
        s
    }

    /// Positions of a sample-sized ordinary text that a bucket holding `anchors` flags,
    /// fingerprinting `len` bytes: at each, Teddy lets through every byte whose low nibble
    /// occurs there in one of the anchors and whose high nibble does too. Counted on the
    /// sample, plus the rate [`text_share`] predicts times the sample's length, which
    /// ranks what the sample happens not to hold. An empty bucket flags nothing.
    fn flags(&self, anchors: &[&[u8]], len: usize) -> f64 {
        let mut hit = [u64::MAX; WORDS];
        let mut rate = 1.0;
        for j in 0..len {
            let (lo, hi) = anchors.iter().fold((0u16, 0u16), |(lo, hi), a| {
                (lo | 1 << (a[j] & 15), hi | 1 << (a[j] >> 4))
            });
            let nibbles = |m: u16| (0..16).filter(move |n| m >> n & 1 == 1);
            let (mut l, mut h) = ([0u64; WORDS], [0u64; WORDS]);
            for n in nibbles(lo) {
                l.iter_mut().zip(&self.lo[j][n]).for_each(|(x, y)| *x |= y);
            }
            for n in nibbles(hi) {
                h.iter_mut().zip(&self.hi[j][n]).for_each(|(x, y)| *x |= y);
            }
            for ((x, l), h) in hit.iter_mut().zip(l).zip(h) {
                *x &= l & h;
            }
            rate *= nibbles(lo)
                .flat_map(|l| nibbles(hi).map(move |h| self.cells[l][h]))
                .sum::<f64>();
        }
        f64::from(hit.iter().map(|w| w.count_ones()).sum::<u32>()) + rate * POSITIONS as f64
    }
}

/// Teddy's slim searcher has 8 buckets; with more than 32 patterns it turns fat (16 buckets,
/// half the bytes per step), so anchors go in searchers of at most 32.
const TEDDY_BUCKETS: usize = 8;
const TEDDY_PER_SEARCHER: usize = 32;

/// Splits `anchors` (fingerprint length `len`) into searchers of up to 32, each as 8
/// buckets, so that few positions of ordinary text are flagged: anchors are placed most
/// common first, each in the bucket where it adds the fewest flags ([`Sample::flags`]);
/// every flag costs a verification. Returns each searcher's patterns in insertion order:
/// `aho-corasick`'s Teddy puts pattern `i` in bucket `7 - i % 8` (unless an earlier pattern
/// has the same low nibbles), so patterns are inserted bucket by bucket in turn, larger
/// buckets first. That placement only affects speed: any order finds the same matches.
fn teddy_groups<'a>(anchors: &[&'a [u8]], len: usize) -> Vec<Vec<&'a [u8]>> {
    if anchors.is_empty() {
        return Vec::new();
    }
    let sample = Sample::get();
    let searchers = anchors.len().div_ceil(TEDDY_PER_SEARCHER);
    let cap = anchors.len().div_ceil(searchers * TEDDY_BUCKETS);
    let cost = |b: &[&[u8]]| sample.flags(b, len);
    let mut order: Vec<(f64, &[u8])> = anchors
        .iter()
        .map(|a| (sample.flags(&[a], len), *a))
        .collect();
    order.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(y.1)));
    let mut buckets: Vec<Vec<&[u8]>> = vec![Vec::new(); searchers * TEDDY_BUCKETS];
    for (_, a) in order {
        let mut best: Option<(f64, usize)> = None;
        for (i, b) in buckets.iter_mut().enumerate() {
            if b.len() >= cap {
                continue;
            }
            let before = cost(b);
            b.push(a);
            let added = cost(b) - before;
            b.pop();
            if best.is_none_or(|(c, _)| added < c) {
                best = Some((added, i));
            }
        }
        let (_, i) = best.expect("searchers * 8 * cap >= anchors");
        buckets[i].push(a);
    }
    buckets
        .chunks_mut(TEDDY_BUCKETS)
        .map(|group| {
            group.sort_by_key(|b| std::cmp::Reverse(b.len()));
            let rounds = group.first().map_or(0, Vec::len);
            (0..rounds)
                .flat_map(|r| group.iter().filter_map(move |b| b.get(r).copied()))
                .collect::<Vec<_>>()
        })
        .filter(|g| !g.is_empty())
        .collect()
}

/// All ASCII case variants of `lower` (at most 4 for the 1–2 byte keywords used here).
fn case_variants(lower: &[u8]) -> Vec<Vec<u8>> {
    let mut out = vec![Vec::new()];
    for &b in lower {
        let alts: &[u8] = if b.is_ascii_alphabetic() {
            &[b.to_ascii_lowercase(), b.to_ascii_uppercase()]
        } else {
            std::slice::from_ref(&b)
        };
        out = out
            .into_iter()
            .flat_map(|p| {
                alts.iter().map(move |&a| {
                    let mut q = p.clone();
                    q.push(a);
                    q
                })
            })
            .collect();
    }
    out
}

/// Keywords shorter than this are found through a rare byte (`memchr`), longer ones
/// through Teddy anchors of this length or one more.
const SHORT: usize = 3;

/// A Teddy searcher's anchors and the length it fingerprints.
type SearcherGroup<'a> = (Vec<&'a [u8]>, usize);

/// The anchors of each Teddy searcher, with the length it fingerprints, for `keywords`
/// (see [`KeywordPrefilter::new`]); `None` when there are too many.
fn searcher_groups(keywords: &[(Vec<u8>, Option<Vec<u8>>)]) -> Option<Vec<SearcherGroup<'_>>> {
    // Each long keyword is searched for through its tail from its rarest 4-byte (3 for
    // 3-byte keywords) substring, the "anchor": Teddy fingerprints a pattern's first
    // bytes, so a rare anchor keeps candidates few on ordinary text, and verifying the
    // whole tail rejects the candidates that only share the anchor. Regions reach
    // max_kw either side, so the whole keyword is covered. Anchors of 4 bytes or more go
    // in searchers that fingerprint 4 bytes, except those the 3-byte searcher takes
    // (below).
    let sample = Sample::get();
    let anchors_of = |len: usize| {
        let mut anchors: Vec<&[u8]> = keywords
            .iter()
            .map(|k| k.0.as_slice())
            .filter(|k| k.len() >= SHORT && k.len().min(SHORT + 1) == len)
            .map(|k| {
                let rate = |i: usize| sample.flags(&[&k[i..]], len);
                let at = (0..=k.len() - len)
                    .min_by(|&x, &y| rate(x).total_cmp(&rate(y)))
                    .expect("long keyword");
                &k[at..]
            })
            .collect();
        anchors.sort_unstable();
        anchors.dedup();
        anchors
    };
    let (mut short, mut long) = (anchors_of(SHORT), anchors_of(SHORT + 1));
    // Every searcher is a pass over the text: when the short anchors' searcher has
    // room, it takes the long anchors whose first three bytes flag the fewest
    // positions, as many as it takes to need one searcher fewer in all.
    if !short.is_empty() {
        let searchers = (short.len() + long.len()).div_ceil(TEDDY_PER_SEARCHER);
        let room = (searchers - 1) * TEDDY_PER_SEARCHER;
        if long.len() > room {
            let rate = |a: &&[u8]| sample.flags(&[a], SHORT);
            long.sort_by(|x, y| rate(x).total_cmp(&rate(y)).then(x.cmp(y)));
            let moved = long.len() - room;
            short.extend(long.drain(..moved));
            short.sort_unstable();
            long.sort_unstable();
        }
    }
    let mut groups = Vec::new();
    for (anchors, len) in [(short, SHORT), (long, SHORT + 1)] {
        if anchors.len() > 4 * TEDDY_PER_SEARCHER {
            return None;
        }
        groups.extend(teddy_groups(&anchors, len).into_iter().map(|g| (g, len)));
    }
    Some(groups)
}

impl KeywordPrefilter {
    /// Builds the prefilter for `keywords` (lowercased bytes, and the exact bytes when the
    /// keyword is case-sensitive). `None` when the set does not suit it (too many
    /// patterns, no SIMD searcher): the caller then scans everything.
    pub(crate) fn new(keywords: &[(Vec<u8>, Option<Vec<u8>>)]) -> Option<Self> {
        let max_kw = keywords.iter().map(|k| k.0.len()).max()?;
        let mut teddies = Vec::new();
        for (group, len) in searcher_groups(keywords)? {
            debug_assert!(group.iter().all(|a| a.len() >= len));
            let searcher = packed::Config::new()
                .match_kind(packed::MatchKind::LeftmostFirst)
                .only_teddy(true)
                .builder()
                .extend(group)
                .build()?;
            teddies.push(searcher);
        }
        let mut by_byte: Vec<RareByte> = Vec::new();
        for (lower, exact) in keywords.iter().filter(|k| k.0.len() < SHORT) {
            let variants = match exact {
                Some(e) => vec![e.clone()],
                None => case_variants(lower),
            };
            for v in variants {
                let (offset, &byte) = v
                    .iter()
                    .enumerate()
                    .min_by(|x, y| text_share(*x.1).total_cmp(&text_share(*y.1)))
                    .expect("keywords are not empty");
                match by_byte.iter_mut().find(|(b, _)| *b == byte) {
                    Some((_, vs)) => vs.push((v.clone(), offset)),
                    None => by_byte.push((byte, vec![(v.clone(), offset)])),
                }
            }
        }
        if by_byte.len() > 9 {
            return None;
        }
        let rare = by_byte.chunks(3).map(<[_]>::to_vec).collect();
        Some(Self {
            teddies,
            rare,
            max_kw,
        })
    }

    /// Finds regions within `[from, to)` of a buffer that contain every keyword occurrence
    /// lying wholly in `[from, to)`: [`KeywordSweep::feed`] stretches of the buffer that
    /// together cover the range, then [`KeywordSweep::finish`].
    pub(crate) fn sweep(&self, from: usize, to: usize) -> KeywordSweep<'_> {
        KeywordSweep {
            pre: self,
            from,
            to,
            lower: Vec::new(),
            raw: Vec::new(),
            dense: false,
        }
    }
}

/// Stretches with more than one anchor per `DENSE_BYTES` bytes are dense: the exact
/// search over the whole stretch costs less than finding, sorting and searching that
/// many small regions. Measured with 40 to 800 bytes of prose between secrets: the whole-stretch
/// search wins up to about one secret per 200 bytes and loses from one per 250 on.
const DENSE_BYTES: usize = 96;
/// After a dense stretch, the next one is judged by its first `PROBE` bytes.
const PROBE: usize = 1 << 10;

/// See [`KeywordPrefilter::sweep`].
pub(crate) struct KeywordSweep<'a> {
    pre: &'a KeywordPrefilter,
    from: usize,
    to: usize,
    /// The stretch, lowercased.
    lower: Vec<u8>,
    /// Regions found so far, unsorted.
    raw: Vec<(usize, usize)>,
    /// Whether the last stretch fed was dense.
    dense: bool,
}

impl KeywordSweep<'_> {
    /// Looks for the anchors, and the short keywords' rare bytes, starting in `buf[a..b]`
    /// (clipped to the sweep's range); stretches may come in any order, as long as
    /// together they cover the range.
    pub(crate) fn feed(&mut self, buf: &[u8], a: usize, b: usize) {
        let (from, to) = (self.from, self.to);
        let (a, b) = (a.max(from), b.min(to));
        if a >= b {
            return;
        }
        let reach = self.pre.max_kw;
        let raw = &mut self.raw;
        let mut push = |s: usize, e: usize| {
            raw.push((s.saturating_sub(reach).max(from), (e + reach).min(to)));
        };
        if !self.pre.teddies.is_empty() {
            let lower = &mut self.lower;
            if self.dense {
                // Still dense: the whole stretch is one region, which holds every keyword
                // starting in it (short ones included). Whatever starts in the probe
                // ends before `probe + reach`.
                let probe = (a + PROBE).min(b);
                lower_case(lower, &buf[a..(probe + reach - 1).min(to)]);
                let anchors: usize = self
                    .pre
                    .teddies
                    .iter()
                    .map(|t| t.find_iter(&lower[..]).count())
                    .sum();
                if anchors * DENSE_BYTES > probe - a {
                    push(a, b);
                    return;
                }
            }
            // An anchor starting in the stretch ends within `reach - 1` bytes past it.
            lower_case(lower, &buf[a..(b + reach - 1).min(to)]);
            // Teddy reports non-overlapping matches: an occurrence it skips starts
            // inside a reported match [s, e), so its keyword lies within
            // [s - max_kw, e + max_kw), the region pushed for that match.
            let mut anchors = 0;
            for teddy in &self.pre.teddies {
                for m in teddy.find_iter(&lower[..]) {
                    push(a + m.start(), a + m.end());
                    anchors += 1;
                }
            }
            self.dense = anchors * DENSE_BYTES > b - a;
        }
        for group in &self.pre.rare {
            let hay = &buf[a..b];
            let mut check = |p: usize| {
                let pos = a + p;
                for (v, off) in group.iter().filter(|g| g.0 == buf[pos]).flat_map(|g| &g.1) {
                    if pos >= from + off
                        && pos - off + v.len() <= to
                        && buf[pos - off..pos - off + v.len()] == v[..]
                    {
                        push(pos - off, pos - off + v.len());
                    }
                }
            };
            match group.as_slice() {
                [(a, _)] => memchr::memchr_iter(*a, hay).for_each(&mut check),
                [(a, _), (b, _)] => memchr::memchr2_iter(*a, *b, hay).for_each(&mut check),
                [(a, _), (b, _), (c, _), ..] => {
                    memchr::memchr3_iter(*a, *b, *c, hay).for_each(&mut check);
                }
                [] => {}
            }
        }
    }

    /// Appends the regions, sorted and disjoint, to `out`.
    pub(crate) fn finish(mut self, out: &mut Vec<(usize, usize)>) {
        merge_into(&mut self.raw, out);
    }
}

/// `src`, lower-cased, into `dst`.
fn lower_case(dst: &mut Vec<u8>, src: &[u8]) {
    dst.clear();
    dst.extend(src.iter().map(u8::to_ascii_lowercase));
}

/// Sorts `raw` and appends its union (overlapping or touching ranges merged) to `out`.
fn merge_into(raw: &mut [(usize, usize)], out: &mut Vec<(usize, usize)>) {
    raw.sort_unstable();
    for &(s, e) in raw.iter() {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
}

/// A cheap necessary condition for a keyword-less rule, chosen by its exact regex.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Guard {
    /// No guard: the regex runs over everything.
    None,
    /// [`super::inspectors::CARD_REGEX`]: at least 13 bytes in a row that are digits or
    /// single spaces or dashes between two digits.
    Card,
    /// [`super::inspectors::IBAN_REGEX`]: starts with two capitals and two digits, at
    /// most 44 bytes long.
    Iban,
}

const CARD_MIN_DIGITS: usize = 13;
/// Shortest IBAN match: the `AA00` lead and two groups of four.
const IBAN_MIN_LEN: usize = 12;

impl Guard {
    /// Whether [`Self::regions`] reads [`PiiRuns`].
    pub(crate) fn needs_runs(self) -> bool {
        matches!(self, Self::Card | Self::Iban)
    }

    pub(crate) fn for_regex(regex: &str) -> Self {
        if regex == super::inspectors::CARD_REGEX {
            Self::Card
        } else if regex == super::inspectors::IBAN_REGEX {
            Self::Iban
        } else {
            Self::None
        }
    }

    /// Appends to `out` sorted, disjoint regions of `buf` outside which no match of the
    /// regex can lie, wholly or partly. `runs` holds [`pii_runs`] of `buf` once computed
    /// (both guards come from one pass).
    ///
    /// Why the regex over the regions finds what it finds over the whole buffer: every
    /// possible match lies inside one region, so a whole-buffer search positioned anywhere
    /// before a region finds no match until the region starts, and a search inside a
    /// region is never cut short by its end. Look-around (`\b`) still sees the bytes
    /// outside the region because the search keeps the whole haystack.
    pub(crate) fn regions(
        self,
        buf: &[u8],
        runs: &mut Option<PiiRuns>,
        out: &mut Vec<(usize, usize)>,
    ) {
        match self {
            Self::None => out.push((0, buf.len())),
            Self::Card => out.extend_from_slice(&runs.get_or_insert_with(|| pii_runs(buf)).card),
            Self::Iban => out.extend_from_slice(&runs.get_or_insert_with(|| pii_runs(buf)).iban),
        }
    }
}

/// The regions of both PII guards over one buffer.
pub(crate) struct PiiRuns {
    card: Vec<(usize, usize)>,
    iban: Vec<(usize, usize)>,
}

/// Card numbers are a digit followed by 12 to 18 (optional space or dash, digit), so every
/// match lies in a run of *members* (see [`Runs`]: core bytes digits, links space and
/// dash) holding at least 13 digits; dates, times and version numbers (`2024-05-17 12:30`,
/// `2.4.1`) make no such run. IBAN matches are runs of capitals and digits with single
/// spaces between groups, at least 12 of them capitals or digits, starting with
/// `[A-Z]{2}[0-9]{2}`: their regions start at a run's first such quad, and a run without
/// one holds none.
///
/// Members of both are bytes up to `Z`, so every such run lies in a run of at least 12
/// bytes up to `Z`: [`LongRuns`] finds those (in prose a lowercase letter breaks them
/// every few bytes), and only they are looked at. A member run of `min` or more inside one
/// holds a position `min - 1`, `2 * min - 1`, ... past its start, so runs are walked only
/// from members found there.
fn pii_runs(buf: &[u8]) -> PiiRuns {
    let mut sweep = PiiSweep::new(buf, 0);
    sweep.feed(0, buf.len());
    sweep.finish()
}

/// [`pii_runs`] a stretch at a time: [`Self::feed`] consecutive stretches from the start
/// (ends multiples of 64 but the last), then [`Self::finish`].
pub(crate) struct PiiSweep<'a> {
    long: LongRuns<IBAN_MIN_LEN, 0, b'Z'>,
    card: Runs<'a, false>,
    iban: Runs<'a, true>,
    /// End of the last stretch fed.
    fed: usize,
}

impl<'a> PiiSweep<'a> {
    /// A sweep to be fed from `start`, a multiple of 64.
    pub(crate) fn new(buf: &'a [u8], start: usize) -> Self {
        const _: () = assert!(IBAN_MIN_LEN <= CARD_MIN_DIGITS);
        Self {
            long: LongRuns::new(),
            card: Runs::new(buf, CARD_MIN_DIGITS, b"- "),
            iban: Runs::new(buf, IBAN_MIN_LEN, b" "),
            fed: start,
        }
    }

    /// Looks at `buf[from..to]`, where `from` is the end of the previous stretch.
    pub(crate) fn feed(&mut self, from: usize, to: usize) {
        debug_assert_eq!(from, self.fed);
        self.fed = to;
        let Self {
            long, card, iban, ..
        } = self;
        long.feed(card.buf, from, to, |s, e| visit_runs(card, iban, s, e));
    }

    /// Both guards' regions, once every stretch is fed.
    pub(crate) fn finish(self) -> PiiRuns {
        let Self {
            long,
            mut card,
            mut iban,
            ..
        } = self;
        long.finish(|s, e| visit_runs(&mut card, &mut iban, s, e));
        let buf = card.buf;
        let quad = |w: &[u8]| {
            w[0].is_ascii_uppercase()
                && w[1].is_ascii_uppercase()
                && w[2].is_ascii_digit()
                && w[3].is_ascii_digit()
        };
        let iban = iban
            .out
            .into_iter()
            .filter_map(|(s, e)| Some((s + buf[s..e].windows(4).position(quad)?, e)))
            .collect();
        PiiRuns {
            card: card.out,
            iban,
        }
    }
}

/// Walks the card and IBAN member runs inside a long run `s..e` of bytes up to `Z`.
fn visit_runs(card: &mut Runs<'_, false>, iban: &mut Runs<'_, true>, s: usize, e: usize) {
    (s + CARD_MIN_DIGITS - 1..e)
        .step_by(CARD_MIN_DIGITS)
        .for_each(|p| card.visit(p));
    (s + IBAN_MIN_LEN - 1..e)
        .step_by(IBAN_MIN_LEN)
        .for_each(|p| iban.visit(p));
}

/// Maximal runs of *member* bytes holding at least `min` core bytes, found from sampled
/// positions: a member is a *core* byte (a digit, or with `UPPER` also a capital), or one
/// of `links` between two core bytes.
struct Runs<'a, const UPPER: bool> {
    buf: &'a [u8],
    min: usize,
    links: &'static [u8],
    /// End of the last run walked: positions before it are done.
    next: usize,
    out: Vec<(usize, usize)>,
}

impl<'a, const UPPER: bool> Runs<'a, UPPER> {
    fn new(buf: &'a [u8], min: usize, links: &'static [u8]) -> Self {
        Self {
            buf,
            min,
            links,
            next: 0,
            out: Vec::new(),
        }
    }

    fn core(&self, i: usize) -> bool {
        self.buf
            .get(i)
            .is_some_and(|&b| b.is_ascii_digit() || (UPPER && b.is_ascii_uppercase()))
    }

    fn member(&self, i: usize) -> bool {
        self.core(i)
            || (self.links.contains(&self.buf[i]) && i > 0 && self.core(i - 1) && self.core(i + 1))
    }

    /// Walks the run holding `p`, if `p` is a member not in a run walked before, and keeps
    /// it when it is long enough.
    fn visit(&mut self, p: usize) {
        if p < self.next || !self.member(p) {
            return;
        }
        let mut start = p;
        while start > 0 && self.member(start - 1) {
            start -= 1;
        }
        let mut end = p + 1;
        while end < self.buf.len() && self.member(end) {
            end += 1;
        }
        // A match needs `min` core bytes, not just `min` members: a date and a time
        // (`2024-05-17 12`) are 13 members but 10 digits.
        if end - start >= self.min && (start..end).filter(|&i| self.core(i)).count() >= self.min {
            self.out.push((start, end));
        }
        self.next = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aho_corasick::{AhoCorasick, MatchKind};
    use proptest::prelude::*;
    use regex_automata::Input;

    use crate::inspect::rule::{RegexDialect, compile_regex};

    /// Text built from fragments that make near-misses and planted matches likely.
    fn text(parts: &[(usize, u8)], frags: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        for &(i, salt) in parts {
            let f = frags[i % frags.len()].as_bytes();
            out.extend(f.iter().map(|&b| {
                if salt % 5 == 0 {
                    b.to_ascii_uppercase()
                } else {
                    b
                }
            }));
        }
        out
    }

    fn guarded_equals_whole(regex: &str, guard: Guard, hay: &[u8]) -> Result<(), TestCaseError> {
        let re = compile_regex(regex, RegexDialect::Rust).unwrap();
        let whole: Vec<_> = re.find_iter(Input::new(hay)).map(|m| m.range()).collect();
        let mut regions = Vec::new();
        guard.regions(hay, &mut None, &mut regions);
        let guarded: Vec<_> = regions
            .iter()
            .flat_map(|&(s, e)| re.find_iter(Input::new(hay).range(s..e)).map(|m| m.range()))
            .collect();
        prop_assert_eq!(whole, guarded);
        Ok(())
    }

    #[test]
    fn teddy_groups_hold_every_anchor_once_in_searchers_of_at_most_32() {
        let owned: Vec<Vec<u8>> = (0..87u8)
            .map(|i| vec![b'a' + i % 26, b'_', b'0' + i % 10, b'a' + i / 26])
            .collect();
        let anchors: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
        let groups = teddy_groups(&anchors, 4);
        assert_eq!(groups.len(), 3);
        assert!(groups.iter().all(|g| g.len() <= TEDDY_PER_SEARCHER));
        let mut all: Vec<&[u8]> = groups.concat();
        all.sort_unstable();
        let mut want = anchors.clone();
        want.sort_unstable();
        assert_eq!(all, want);
        assert!(teddy_groups(&[], 4).is_empty());
    }

    #[test]
    fn the_built_in_anchors_take_as_few_searchers_as_fit_them() {
        let keys = builtin_keywords();
        let groups = searcher_groups(&keys).expect("built-in keywords suit the prefilter");
        let anchors: usize = groups.iter().map(|(g, _)| g.len()).sum();
        assert!(anchors > 2 * TEDDY_PER_SEARCHER, "{anchors}");
        assert_eq!(groups.len(), anchors.div_ceil(TEDDY_PER_SEARCHER));
        for (group, len) in &groups {
            assert!(group.len() <= TEDDY_PER_SEARCHER);
            assert!(group.iter().all(|a| a.len() >= *len));
        }
        // Every keyword of 3 bytes or more has an anchor, its tail, in some searcher.
        for (k, _) in keys.iter().filter(|k| k.0.len() >= 3) {
            assert!(
                groups.iter().flat_map(|(g, _)| g).any(|a| k.ends_with(a)),
                "{k:?}"
            );
        }
    }

    #[test]
    fn ordinary_words_flag_more_than_token_prefixes() {
        let sample = Sample::get();
        for (common, rare) in [
            (&b"the "[..], &b"ghp_"[..]),
            (b"tion", b"xoxb"),
            (b"ing ", b"_key"),
        ] {
            assert!(
                sample.flags(&[common], 4) > 10.0 * sample.flags(&[rare], 4),
                "{common:?} vs {rare:?}"
            );
        }
        assert!(
            sample.flags(&[], 4).abs() < f64::EPSILON,
            "an empty bucket flags nothing"
        );
    }

    #[test]
    fn dates_times_and_versions_are_no_card_region_but_cards_are_at_any_offset() {
        // Dates followed by a time (`2024-05-17 12`) and dashed short numbers are 13 or
        // more digits, dashes and spaces in a row but fewer than 13 digits.
        let prose = b"deploy version 2.4.1 on 2024-05-17 at 12:30 UTC, build 20240517 ok, \
            logged 2024-05-17 12:30:00.123 and 2024-05-17 1234, case 1-2-3-4-5-6-7 "
            .repeat(20);
        let mut regions = Vec::new();
        Guard::Card.regions(&prose, &mut None, &mut regions);
        assert!(regions.is_empty(), "{regions:?}");
        let card = b"4111 1111 1111 1111";
        for at in [0, 1, 50, 60, 63, 64, 120, 127, 128, 1000] {
            let mut hay = vec![b'x'; at];
            hay.extend_from_slice(card);
            hay.extend_from_slice(b" tail");
            regions.clear();
            Guard::Card.regions(&hay, &mut None, &mut regions);
            assert_eq!(regions, [(at, at + card.len())], "card at {at}");
        }
    }

    /// The built-in rules' keywords as the scanner hands them to the prefilter.
    fn builtin_keywords() -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        let mut keys = Vec::new();
        for spec in crate::inspect::builtin_rules() {
            for kw in &spec.keywords {
                let k = (
                    kw.to_ascii_lowercase().into_bytes(),
                    spec.case_sensitive_keywords.then(|| kw.as_bytes().to_vec()),
                );
                if !keys.contains(&k) {
                    keys.push(k);
                }
            }
        }
        keys
    }

    /// [`Runs`] visited at every position, and at every `min`-th, find the runs of a walk
    /// over every byte.
    fn member_runs_equal_a_walk<const UPPER: bool>(
        bytes: &[u8],
        min: usize,
    ) -> Result<(), TestCaseError> {
        let core = |b: u8| b.is_ascii_digit() || (UPPER && b.is_ascii_uppercase());
        let n = bytes.len();
        let is_core = |i: usize| i < n && core(bytes[i]);
        let member: Vec<bool> = (0..n)
            .map(|i| {
                core(bytes[i])
                    || (b"- ".contains(&bytes[i]) && i > 0 && is_core(i - 1) && is_core(i + 1))
            })
            .collect();
        let mut walk = Vec::new();
        let mut i = 0;
        while i < n {
            let s = i;
            while i < n && member[i] {
                i += 1;
            }
            if (s..i).filter(|&j| core(bytes[j])).count() >= min {
                walk.push((s, i));
            }
            i += 1;
        }
        let mut all = Runs::<UPPER>::new(bytes, min, b"- ");
        (0..n).for_each(|p| all.visit(p));
        prop_assert_eq!(&all.out, &walk);
        let mut sampled = Runs::<UPPER>::new(bytes, min, b"- ");
        (min - 1..n).step_by(min).for_each(|p| sampled.visit(p));
        prop_assert_eq!(sampled.out, walk);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn card_guard_finds_what_the_regex_finds(parts in prop::collection::vec((0usize..12, any::<u8>()), 0..400)) {
            let frags = ["4111", " ", "-", "1111 1111 1111 1111", "5500", "x", "0", "\n", "2024-05-17 ", "--", "9", "12:30"];
            guarded_equals_whole(super::super::inspectors::CARD_REGEX, Guard::Card, &text(&parts, &frags))?;
        }

        #[test]
        fn iban_guard_finds_what_the_regex_finds(parts in prop::collection::vec((0usize..8, any::<u8>()), 0..200)) {
            let frags = ["DE89", "3704 0044", "0532013000", " ", "GB82", "WEST", "a", "12"];
            guarded_equals_whole(super::super::inspectors::IBAN_REGEX, Guard::Iban, &text(&parts, &frags))?;
        }

        /// Runs walked from sampled positions equal the maximal runs found by classifying
        /// every byte.
        #[test]
        fn member_runs_equal_a_walk_over_every_byte(
            bytes in prop::collection::vec(prop::sample::select(&b"0123 -xA"[..]), 0..300),
            min in 1usize..40,
        ) {
            member_runs_equal_a_walk::<false>(&bytes, min)?;
            member_runs_equal_a_walk::<true>(&bytes, min)?;
        }

        /// The hand-walked DFA reports what `find_overlapping_iter` reports over the same
        /// range, in the same order: the built-in keywords (nested ones such as `key` in
        /// `access_key`, several ending at one byte) and any of a few short words.
        #[test]
        fn keyword_dfa_reports_what_overlapping_search_reports(
            parts in prop::collection::vec((0usize..12, any::<u8>()), 0..300),
            from_frac in 0usize..=100,
            to_frac in 0usize..=100,
            extra in prop::collection::vec(prop::sample::select(&["ke", "key", "y_i", "ab", "b", "xx_", "_"][..]), 0..4),
        ) {
            let frags = ["secret_access_key", "token", " ", "sk_live_", "SK", "key", "q~Q~", "<|", "ab", "password", "api_key_id", "xx_"];
            let hay = text(&parts, &frags);
            let mut keys: Vec<Vec<u8>> = builtin_keywords().into_iter().map(|k| k.0).collect();
            keys.extend(extra.iter().map(|w| w.as_bytes().to_vec()));
            let ac = AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::Standard)
                .build(&keys)
                .unwrap();
            let dfa = KeywordDfa::new(&keys).unwrap();
            let (a, b) = (hay.len() * from_frac / 100, hay.len() * to_frac / 100);
            let (from, to) = (a.min(b), a.max(b));
            let expected: Vec<(usize, usize, usize)> = ac
                .find_overlapping_iter(aho_corasick::Input::new(&hay[..to]).range(from..to))
                .map(|m| (m.pattern().as_usize(), m.start(), m.end()))
                .collect();
            let mut walked = Vec::new();
            dfa.overlapping(&hay, from, to, |p, s, e| walked.push((p, s, e)));
            prop_assert_eq!(walked, expected);
        }

        /// Overlapping keyword search over the prefilter's regions equals the search over
        /// the whole range, for the built-in keywords.
        #[test]
        fn keyword_regions_hold_every_occurrence(
            parts in prop::collection::vec((0usize..12, any::<u8>()), 0..300),
            from_frac in 0usize..50,
            to_frac in 50usize..=100,
            stretch in 1usize..200,
        ) {
            let frags = ["secret_access_key", "token", " ", "sk_live_", "SK", "sk", "q~Q~", "<|", "@", "password", "ignore", "xx_"];
            let hay = text(&parts, &frags);
            let keys = builtin_keywords();
            let pre = KeywordPrefilter::new(&keys).expect("built-in keywords suit the prefilter");
            let ac = AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::Standard)
                .build(keys.iter().map(|k| &k.0))
                .unwrap();
            let (from, to) = (hay.len() * from_frac / 100, hay.len() * to_frac / 100);
            let find = |s: usize, e: usize| -> Vec<(usize, usize, usize)> {
                ac.find_overlapping_iter(aho_corasick::Input::new(&hay[..e]).range(s..e))
                    .map(|m| (m.pattern().as_usize(), m.start(), m.end()))
                    .filter(|&(p, s, e)| keys[p].1.as_ref().is_none_or(|x| x[..] == hay[s..e]))
                    .collect()
            };
            let mut whole = find(from, to);
            // Stretches of any length, fed last first: together they cover the buffer.
            let mut sweep = pre.sweep(from, to);
            let starts: Vec<usize> = (0..hay.len()).step_by(stretch).collect();
            for &a in starts.iter().rev() {
                sweep.feed(&hay, a, (a + stretch).min(hay.len()));
            }
            let mut regions = Vec::new();
            sweep.finish(&mut regions);
            let mut narrowed: Vec<_> = regions.iter().flat_map(|&(s, e)| find(s, e)).collect();
            whole.sort_unstable();
            narrowed.sort_unstable();
            prop_assert_eq!(whole, narrowed);
        }
    }
}
