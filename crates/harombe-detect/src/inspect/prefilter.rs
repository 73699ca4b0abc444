//! Fast guards in front of the exact matchers, each a *superset* filter: it only narrows
//! where the exact (slow) matcher runs, never what it reports.
//!
//! - [`KeywordPrefilter`]: SIMD substring search (Teddy, from `aho-corasick::packed`) for
//!   keywords of 3+ bytes over an ASCII-lowercased copy of the input, plus `memchr` on a
//!   rare byte of each shorter keyword. Every keyword occurrence lies inside one of the
//!   regions it returns, so running the exact overlapping Aho-Corasick over those regions
//!   finds exactly the occurrences a run over the whole input would.
//! - [`Guard`]: for the keyword-less built-in PII rules (payment cards, IBANs), a
//!   necessary condition checked block by block (digit density, an `AA00` quad) so the
//!   regex runs only over regions that can hold a match. See [`Guard::regions`] for why
//!   the results equal a run over the whole input.

use aho_corasick::packed;

/// Lowercased-copy block size: fits in L1/L2 with the searcher's tables.
const BLOCK: usize = 16 << 10;

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

/// How common a byte is in text and code (higher = more common); picks the byte of a
/// short keyword to `memchr` for.
fn commonness(b: u8) -> u32 {
    const LOWER: &[u8] = b"etaoinsrhldcumfpgwybvkxjqz";
    match b {
        b' ' | b'\n' | b'\t' => 300,
        b'a'..=b'z' => 200 + (26 - LOWER.iter().position(|&c| c == b).unwrap_or(0) as u32),
        b'0'..=b'9' => 150,
        b'A'..=b'Z' => {
            100 + (26
                - LOWER
                    .iter()
                    .position(|&c| c == b.to_ascii_lowercase())
                    .unwrap_or(0) as u32)
        }
        b'.' | b',' | b'-' | b'_' | b'/' | b':' | b'=' | b'"' | b'\'' | b'(' | b')' | b';' => 90,
        _ => 10,
    }
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

impl KeywordPrefilter {
    /// Builds the prefilter for `keywords` (lowercased bytes, and the exact bytes when the
    /// keyword is case-sensitive). `None` when the set does not suit it (too many
    /// patterns, no SIMD searcher): the caller then scans everything.
    pub(crate) fn new(keywords: &[(Vec<u8>, Option<Vec<u8>>)]) -> Option<Self> {
        const SHORT: usize = 3;
        let max_kw = keywords.iter().map(|k| k.0.len()).max()?;
        // Each long keyword is searched for through its tail from its rarest 4-byte (3 for
        // 3-byte keywords) substring, the "anchor": Teddy fingerprints a pattern's first
        // bytes, so a rare anchor keeps candidates few on ordinary text, and verifying the
        // whole tail rejects the candidates that only share the anchor. Regions reach
        // max_kw either side, so the whole keyword is covered. Anchors of each length get
        // their own searcher so the longer ones use 4-byte fingerprints.
        let mut teddies = Vec::new();
        for len in [SHORT, SHORT + 1] {
            let mut anchors: Vec<&[u8]> = keywords
                .iter()
                .map(|k| k.0.as_slice())
                .filter(|k| k.len() >= SHORT && k.len().min(SHORT + 1) == len)
                .map(|k| {
                    let at = (0..=k.len() - len)
                        .min_by_key(|&i| k[i..i + len].iter().map(|&b| commonness(b)).sum::<u32>())
                        .expect("long keyword");
                    &k[at..]
                })
                .collect();
            anchors.sort_unstable();
            anchors.dedup();
            if anchors.len() > 2 * 64 {
                return None;
            }
            if anchors.is_empty() {
                continue;
            }
            // Equal groups of at most 64 patterns (Teddy's limit).
            let per_group = anchors.len().div_ceil(anchors.len().div_ceil(64));
            for group in anchors.chunks(per_group) {
                let searcher = packed::Config::new()
                    .match_kind(packed::MatchKind::LeftmostFirst)
                    .only_teddy(true)
                    .builder()
                    .extend(group)
                    .build()?;
                teddies.push(searcher);
            }
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
                    .min_by_key(|(_, b)| commonness(**b))
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

    /// Appends to `out` sorted, disjoint regions within `[from, to)` of `buf` that contain
    /// every keyword occurrence lying wholly in `[from, to)`.
    pub(crate) fn regions(
        &self,
        buf: &[u8],
        from: usize,
        to: usize,
        out: &mut Vec<(usize, usize)>,
    ) {
        let reach = self.max_kw;
        let mut raw: Vec<(usize, usize)> = Vec::new();
        let mut push = |s: usize, e: usize| {
            raw.push((s.saturating_sub(reach).max(from), (e + reach).min(to)));
        };
        if !self.teddies.is_empty() && to > from {
            let mut lower = vec![0u8; BLOCK.min(to - from) + reach];
            let mut a = from;
            while a < to {
                let b = (a + BLOCK).min(to);
                let e = (b + reach - 1).min(to);
                let dst = &mut lower[..e - a];
                for (d, s) in dst.iter_mut().zip(&buf[a..e]) {
                    *d = s.to_ascii_lowercase();
                }
                // Teddy reports non-overlapping matches: an occurrence it skips starts
                // inside a reported match [s, e), so its keyword lies within
                // [s - max_kw, e + max_kw), the region pushed for that match.
                for teddy in &self.teddies {
                    for m in teddy.find_iter(&*dst) {
                        push(a + m.start(), a + m.end());
                    }
                }
                a = b;
            }
        }
        for group in &self.rare {
            let hay = &buf[from..to];
            let mut check = |p: usize| {
                let pos = from + p;
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
        merge_into(&mut raw, out);
    }
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
    /// [`super::inspectors::CARD_REGEX`]: 13–19 digits within at most 37 bytes.
    Card,
    /// [`super::inspectors::IBAN_REGEX`]: starts with two capitals and two digits, at
    /// most 44 bytes long.
    Iban,
}

const GUARD_BLOCK: usize = 32;
/// Longest card match: `[2-6]` plus 18 × (separator, digit).
const CARD_MAX_LEN: usize = 37;
const CARD_MIN_DIGITS: usize = 13;
/// Longest IBAN match: 4 + 7 × 5 + 5.
const IBAN_MAX_LEN: usize = 44;

impl Guard {
    pub(crate) fn for_regex(regex: &str) -> Self {
        if regex == super::inspectors::CARD_REGEX {
            Self::Card
        } else if regex == super::inspectors::IBAN_REGEX {
            Self::Iban
        } else {
            Self::None
        }
    }

    /// Sorted, disjoint regions of `buf` (within `[0, buf.len())`) outside which no match
    /// of the regex can lie, wholly or partly.
    ///
    /// Why the regex over the regions finds what it finds over the whole buffer: every
    /// possible match lies inside one region, so a whole-buffer search positioned anywhere
    /// before a region finds no match until the region starts, and a search inside a
    /// region is never cut short by its end. Look-around (`\b`) still sees the bytes
    /// outside the region because the search keeps the whole haystack.
    /// `stats` is [`block_stats`] of `buf`, computed on first use.
    pub(crate) fn regions(
        self,
        buf: &[u8],
        stats: &mut Option<Vec<[u8; 2]>>,
        out: &mut Vec<(usize, usize)>,
    ) {
        match self {
            Self::None => out.push((0, buf.len())),
            Self::Card => card_regions(buf, stats.get_or_insert_with(|| block_stats(buf)), out),
            Self::Iban => iban_regions(buf, stats.get_or_insert_with(|| block_stats(buf)), out),
        }
    }
}

/// Per 32-byte block: (digits, capital letters). One vectorisable pass shared by guards.
pub(crate) fn block_stats(buf: &[u8]) -> Vec<[u8; 2]> {
    let count = |c: &[u8]| {
        let (mut d, mut u) = (0u8, 0u8);
        for &b in c {
            d += u8::from(b.wrapping_sub(b'0') < 10);
            u += u8::from(b.wrapping_sub(b'A') < 26);
        }
        [d, u]
    };
    let mut out = Vec::with_capacity(buf.len() / GUARD_BLOCK + 1);
    let mut chunks = buf.chunks_exact(GUARD_BLOCK);
    for c in &mut chunks {
        let c: &[u8; GUARD_BLOCK] = c.try_into().expect("exact chunk");
        out.push(count(c));
    }
    if !chunks.remainder().is_empty() {
        out.push(count(chunks.remainder()));
    }
    out
}

/// Blocks of 32 bytes; a card match (≤ 37 bytes) touches at most 3 consecutive blocks, and
/// holds ≥ 13 digits, so those 3 blocks hold ≥ 13 digits between them.
fn card_regions(buf: &[u8], stats: &[[u8; 2]], out: &mut Vec<(usize, usize)>) {
    const _: () = assert!(CARD_MAX_LEN <= 2 * GUARD_BLOCK + 1);
    let n = stats.len();
    let mut raw = Vec::new();
    for k in 0..n {
        let sum: usize = stats[k..(k + 3).min(n)]
            .iter()
            .map(|c| usize::from(c[0]))
            .sum();
        if sum >= CARD_MIN_DIGITS {
            raw.push((k * GUARD_BLOCK, ((k + 3) * GUARD_BLOCK).min(buf.len())));
        }
    }
    merge_into(&mut raw, out);
}

/// Every IBAN match starts with `[A-Z]{2}[0-9]{2}` and is at most 44 bytes long. A quad
/// starting in block k lies in blocks k and k + 1, which the counts check first.
fn iban_regions(buf: &[u8], stats: &[[u8; 2]], out: &mut Vec<(usize, usize)>) {
    let up = |b: u8| b.wrapping_sub(b'A') < 26;
    let dig = |b: u8| b.wrapping_sub(b'0') < 10;
    let n = stats.len();
    let mut raw = Vec::new();
    for k in 0..n {
        let pair = |j: usize| stats[k..(k + 2).min(n)].iter().map(|c| c[j]).sum::<u8>();
        if pair(0) < 2 || pair(1) < 2 {
            continue;
        }
        let start = k * GUARD_BLOCK;
        let end = (start + GUARD_BLOCK + 3).min(buf.len());
        let hit = match buf[start..end].try_into() {
            Ok(window) => has_quad(window),
            Err(_) => buf[start..end]
                .windows(4)
                .any(|w| up(w[0]) && up(w[1]) && dig(w[2]) && dig(w[3])),
        };
        if hit {
            raw.push((start, (start + GUARD_BLOCK + IBAN_MAX_LEN).min(buf.len())));
        }
    }
    merge_into(&mut raw, out);
}

/// Whether `[A-Z]{2}[0-9]{2}` starts at one of the first 32 bytes of `w`. Branch-free
/// over fixed-size arrays so it vectorises.
fn has_quad(w: &[u8; GUARD_BLOCK + 3]) -> bool {
    let mut up = [0u8; GUARD_BLOCK + 3];
    let mut dig = [0u8; GUARD_BLOCK + 3];
    for ((u, d), &b) in up.iter_mut().zip(&mut dig).zip(w) {
        *u = u8::from(b.wrapping_sub(b'A') < 26);
        *d = u8::from(b.wrapping_sub(b'0') < 10);
    }
    let mut any = 0u8;
    for i in 0..GUARD_BLOCK {
        any |= up[i] & up[i + 1] & dig[i + 2] & dig[i + 3];
    }
    any != 0
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

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn card_guard_finds_what_the_regex_finds(parts in prop::collection::vec((0usize..9, any::<u8>()), 0..200)) {
            let frags = ["4111", " ", "-", "1111 1111 1111 1111", "5500", "x", "0", "\n", "2024-05-17 "];
            guarded_equals_whole(super::super::inspectors::CARD_REGEX, Guard::Card, &text(&parts, &frags))?;
        }

        #[test]
        fn iban_guard_finds_what_the_regex_finds(parts in prop::collection::vec((0usize..8, any::<u8>()), 0..200)) {
            let frags = ["DE89", "3704 0044", "0532013000", " ", "GB82", "WEST", "a", "12"];
            guarded_equals_whole(super::super::inspectors::IBAN_REGEX, Guard::Iban, &text(&parts, &frags))?;
        }

        /// The vectorised quad check equals the plain window walk.
        #[test]
        fn has_quad_equals_window_walk(w in prop::collection::vec(prop::sample::select(&b"AZaz09 -"[..]), GUARD_BLOCK + 3)) {
            let walk = w.windows(4).any(|q| {
                q[0].is_ascii_uppercase() && q[1].is_ascii_uppercase() && q[2].is_ascii_digit() && q[3].is_ascii_digit()
            });
            prop_assert_eq!(has_quad(w.as_slice().try_into().unwrap()), walk);
        }

        /// Overlapping keyword search over the prefilter's regions equals the search over
        /// the whole range, for the built-in keywords.
        #[test]
        fn keyword_regions_hold_every_occurrence(
            parts in prop::collection::vec((0usize..12, any::<u8>()), 0..300),
            from_frac in 0usize..50,
            to_frac in 50usize..=100,
        ) {
            let frags = ["secret_access_key", "token", " ", "sk_live_", "SK", "sk", "q~Q~", "<|", "@", "password", "ignore", "xx_"];
            let hay = text(&parts, &frags);
            let mut keys: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
            for spec in crate::inspect::builtin_rules() {
                for kw in &spec.keywords {
                    let k = (kw.to_ascii_lowercase().into_bytes(), spec.case_sensitive_keywords.then(|| kw.as_bytes().to_vec()));
                    if !keys.contains(&k) {
                        keys.push(k);
                    }
                }
            }
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
            let mut regions = Vec::new();
            pre.regions(&hay, from, to, &mut regions);
            let mut narrowed: Vec<_> = regions.iter().flat_map(|&(s, e)| find(s, e)).collect();
            whole.sort_unstable();
            narrowed.sort_unstable();
            prop_assert_eq!(whole, narrowed);
        }
    }
}
