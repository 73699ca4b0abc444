//! Fast guards in front of the exact matchers, each a *superset* filter: it only narrows
//! where the exact (slow) matcher runs, never what it reports.
//!
//! - [`KeywordPrefilter`]: SIMD substring search (Teddy, from `aho-corasick::packed`) for
//!   keywords of 3+ bytes over an ASCII-lowercased copy of the input, plus `memchr` on a
//!   rare byte of each shorter keyword. Every keyword occurrence lies inside one of the
//!   regions it returns, so running the exact overlapping Aho-Corasick over those regions
//!   finds exactly the occurrences a run over the whole input would.
//! - [`Guard`]: for the keyword-less built-in PII rules (payment cards, IBANs), a
//!   necessary condition (a run of 13 digits or single separators between digits, an
//!   `AA00` quad near enough capitals and digits) so the
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
    /// [`super::inspectors::CARD_REGEX`]: at least 13 bytes in a row that are digits or
    /// single spaces or dashes between two digits.
    Card,
    /// [`super::inspectors::IBAN_REGEX`]: starts with two capitals and two digits, at
    /// most 44 bytes long.
    Iban,
}

const GUARD_BLOCK: usize = 32;
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
            Self::Card => card_regions(buf, out),
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

/// Every card match is a digit followed by 12 to 18 (optional space or dash, digit): each of
/// its bytes is a digit or a space or dash between two digits (a *link* byte), and it is
/// at least 13 bytes long. So it lies inside a run of at least 13 link bytes, and those
/// runs are the regions. Dates, times and version numbers (`2024-05-17`, `12:30`, `2.4.1`)
/// make no such run, where a digit count per block let most of a prose text through.
///
/// Per 64 bytes: a digit mask and a space-or-dash mask ([`digit_and_sep_bits`]), links
/// from them and the neighbouring chunks' edge digits, then the starts of 13-link runs by
/// shifting and AND-ing, on 128 bits so runs crossing into the next chunk count.
fn card_regions(buf: &[u8], out: &mut Vec<(usize, usize)>) {
    const RUN: usize = CARD_MIN_DIGITS;
    let chunks = buf.len().div_ceil(64);
    let masks = |k: usize| -> (u64, u64) {
        let at = (k * 64).min(buf.len());
        let mut padded = [0u8; 64];
        let chunk: &[u8; 64] = match buf[at..].first_chunk() {
            Some(full) => full,
            None => {
                padded[..buf.len() - at].copy_from_slice(&buf[at..]);
                &padded
            }
        };
        let (mut d, mut s) = (0u64, 0u64);
        for i in 0..8 {
            let w = u64::from_le_bytes(chunk[8 * i..8 * i + 8].try_into().expect("8 bytes"));
            let (wd, ws) = digit_and_sep_bits(w);
            d |= wd << (8 * i);
            s |= ws << (8 * i);
        }
        (d, s)
    };
    let links = |(d, s): (u64, u64), before: u64, after: u64| -> u64 {
        let left = (d << 1) | (before >> 63);
        let right = (d >> 1) | (after << 63);
        d | (s & left & right)
    };
    let mut raw: Vec<(usize, usize)> = Vec::new();
    // The masks of chunks k, k + 1 and k + 2 (zero past the end).
    let mut m = [masks(0), masks(1), masks(2)];
    let mut link = links(m[0], 0, m[1].0);
    for k in 0..chunks {
        let next_link = links(m[1], m[0].0, m[2].0);
        if link != 0 {
            let x = u128::from(link) | (u128::from(next_link) << 64);
            let r2 = x & (x >> 1);
            let r4 = r2 & (r2 >> 2);
            let r8 = r4 & (r4 >> 4);
            // Bit j: bytes j .. j + 13 are all links.
            #[allow(clippy::cast_possible_truncation)]
            let mut starts = (r8 & (r4 >> 8) & (x >> 12)) as u64;
            while starts != 0 {
                let j = starts.trailing_zeros() as usize;
                let len = (!(starts >> j)).trailing_zeros() as usize;
                let from = k * 64 + j;
                raw.push((from, (from + len - 1 + RUN).min(buf.len())));
                starts = if j + len >= 64 {
                    0
                } else {
                    starts & (u64::MAX << (j + len))
                };
            }
        }
        link = next_link;
        m = [m[1], m[2], masks(k + 3)];
    }
    merge_into(&mut raw, out);
}

/// For the 8 bytes of `w` (little-endian), one bit each: which are ASCII digits, and which
/// are a space or a dash. Word arithmetic without carries across bytes: with the high bit
/// masked off, adding 0x76 (0x80 - 10) to a byte sets its high bit exactly when it is 10 or
/// more, and adding 0x7f exactly when it is not zero; a byte whose own high bit is set is
/// neither. A multiply gathers the eight flags (bit 7 of each byte) into one byte.
fn digit_and_sep_bits(w: u64) -> (u64, u64) {
    const HI: u64 = 0x8080_8080_8080_8080;
    const LO7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const ONES: u64 = 0x0101_0101_0101_0101;
    let below = |v: u64, n: u64| !(((v & LO7) + ONES * (0x80 - n)) | v) & HI;
    let digit = below(w ^ (ONES * 0x30), 10);
    let sep = below(w ^ (ONES * u64::from(b' ')), 1) | below(w ^ (ONES * u64::from(b'-')), 1);
    let gather = |m: u64| ((m >> 7).wrapping_mul(0x0102_0408_1020_4080)) >> 56;
    (gather(digit), gather(sep))
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

    #[test]
    fn byte_classes_are_exact_for_every_byte_in_every_lane() {
        for filler in [
            0x00, b' ', b'-', b'/', b'0', b'9', b':', 0x80, 0xa0, 0xad, 0xb0, 0xb9, 0xff,
        ] {
            for b in 0..=255u8 {
                for lane in 0..8 {
                    let mut w = [filler; 8];
                    w[lane] = b;
                    let (d, s) = digit_and_sep_bits(u64::from_le_bytes(w));
                    for (i, &x) in w.iter().enumerate() {
                        assert_eq!(d >> i & 1 == 1, x.is_ascii_digit(), "{w:?} lane {i}");
                        assert_eq!(s >> i & 1 == 1, x == b' ' || x == b'-', "{w:?} lane {i}");
                    }
                }
            }
        }
    }

    #[test]
    fn dates_times_and_versions_are_no_card_region_but_cards_are_at_any_offset() {
        let prose =
            b"deploy version 2.4.1 on 2024-05-17 at 12:30 UTC, build 20240517 ok ".repeat(20);
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
