//! How far from a keyword hit a rule's regex needs to look.
//!
//! A rule's regex runs over windows of [`super::RuleSpec::window`] bytes either side of
//! its keyword hits. When every string the regex can match holds one of the rule's
//! keywords and no match is longer than `L` bytes, a match holding the hit `[s, e)` lies
//! within `[e - L, s + L)`, so `min(window, L)` bytes either side find the same matches
//! for less work. When the regex is a sequence with a part that always holds a keyword,
//! the bound is tighter on each side: the longest the parts before and after it can
//! be. The generic assignment rule, whose keywords (`token`, `secret`, ...) are common
//! words in code and logs, reads 38 bytes before a hit and 163 after it instead of 512
//! either side.
//!
//! Whether every match holds a keyword is decided on the regex's syntax tree: a node's
//! language is spelled out while it stays small (literals, small classes, short
//! repetitions of those, alternations and concatenations of them), and a concatenation
//! is covered when one contiguous run of spelled-out items is. Anything the analysis
//! cannot show keeps the rule's full window.

use regex_syntax::hir::{Class, Hir, HirKind, Repetition};

/// Most strings a spelled-out language may hold.
const MAX_STRINGS: usize = 1024;
/// Largest class (after case folding) spelled out byte by byte.
const MAX_CLASS: usize = 16;
/// Longest bounded repetition spelled out.
const MAX_REPEAT: u32 = 8;

/// Bytes a rule's regex looks at before and after each keyword hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Reach {
    pub(crate) before: usize,
    pub(crate) after: usize,
}

impl Reach {
    /// `window` bytes on both sides.
    pub(crate) fn both(window: usize) -> Self {
        Self {
            before: window,
            after: window,
        }
    }

    /// The larger side.
    pub(crate) fn max(self) -> usize {
        self.before.max(self.after)
    }

    /// `window` bytes, or less on a side where [`proven_sides`] shows that every match
    /// holding the hit ends sooner.
    pub(crate) fn within(sides: Option<(usize, usize)>, window: usize) -> Self {
        match sides {
            Some((before, after)) => Self {
                before: before.min(window),
                after: after.min(window),
            },
            None => Self::both(window),
        }
    }
}

/// The most bytes a match of `pattern` (Rust syntax) can have, when that is bounded.
pub(crate) fn longest_match(pattern: &str) -> Option<usize> {
    parse(pattern)?.properties().maximum_len()
}

/// `pattern` parsed as the rule compiles it (bytes first, Unicode when that fails).
fn parse(pattern: &str) -> Option<Hir> {
    super::rule::parse_hir(pattern, false).or_else(|| super::rule::parse_hir(pattern, true))
}

/// The most bytes a match of `pattern` (Rust syntax) can have before and after the
/// keyword it holds, when every match provably holds one of `keywords` (compared
/// ASCII-case-insensitively unless `exact`) and is bounded. Nothing before it means every
/// match starts where a keyword does, so a search anchored at each keyword hit finds it.
pub(crate) fn proven_sides(
    pattern: &str,
    keywords: &[String],
    exact: bool,
) -> Option<(usize, usize)> {
    let hir = parse(pattern)?;
    let longest = hir.properties().maximum_len()?;
    let analysis = Analysis::new(keywords, exact)?;
    let (before, after) = match analysis.sides(&hir) {
        Some(sides) => sides,
        None if analysis.covered(&analysis.lang(&hir)) => (longest, longest),
        None => return None,
    };
    Some((before.min(longest), after.min(longest)))
}

/// The most bytes a match of `pattern` can have before the first keyword it holds, when
/// every match provably holds one of `keywords` within a bounded start (a sequence whose
/// leading items are bounded and hold a keyword, whatever follows them: a private key
/// block's `-----BEGIN … PRIVATE KEY-----` before its unbounded body).
pub(crate) fn proven_lead(pattern: &str, keywords: &[String], exact: bool) -> Option<usize> {
    let mut hir = parse(pattern)?;
    while let HirKind::Capture(c) = hir.kind() {
        hir = (*c.sub).clone();
    }
    let HirKind::Concat(items) = hir.kind() else {
        return None;
    };
    let analysis = Analysis::new(keywords, exact)?;
    (1..=items.len()).rev().find_map(|k| {
        let prefix = Hir::concat(items[..k].to_vec());
        let longest = prefix.properties().maximum_len()?;
        let before = match analysis.sides(&prefix) {
            Some((before, _)) => before,
            None if analysis.covered(&analysis.lang(&prefix)) => longest,
            None => return None,
        };
        Some(before.min(longest))
    })
}

/// The strings a node matches, as far as the analysis needs them.
enum Lang {
    /// All of them (lower-cased when folding), deduplicated.
    Strings(Vec<Vec<u8>>),
    /// Too many to spell out; `true` when each is known to hold a keyword.
    Many(bool),
}

struct Analysis {
    keywords: Vec<Vec<u8>>,
    /// Compare ASCII-case-insensitively (keywords are lower-cased already).
    fold: bool,
}

impl Analysis {
    /// For `keywords` (compared ASCII-case-insensitively unless `exact`); `None` without
    /// any.
    fn new(keywords: &[String], exact: bool) -> Option<Self> {
        let keywords: Vec<Vec<u8>> = keywords
            .iter()
            .map(|k| {
                let k = k.as_bytes().to_vec();
                if exact { k } else { k.to_ascii_lowercase() }
            })
            .collect();
        (!keywords.is_empty()).then_some(Self {
            keywords,
            fold: !exact,
        })
    }

    fn holds(&self, s: &[u8]) -> bool {
        self.keywords
            .iter()
            .any(|k| memchr::memmem::find(s, k).is_some())
    }

    fn all_hold(&self, strings: &[Vec<u8>]) -> bool {
        strings.iter().all(|s| self.holds(s))
    }

    fn covered(&self, lang: &Lang) -> bool {
        match lang {
            Lang::Strings(v) => self.all_hold(v),
            Lang::Many(covered) => *covered,
        }
    }

    /// For a regex that is a sequence (possibly in a group) with a run of items whose
    /// every string holds a keyword: the most bytes a match can have before that
    /// keyword occurrence and after it. `None` when there is no such run or a side is
    /// unbounded.
    fn sides(&self, hir: &Hir) -> Option<(usize, usize)> {
        let mut hir = hir;
        while let HirKind::Capture(c) = hir.kind() {
            hir = &c.sub;
        }
        if !matches!(hir.kind(), HirKind::Concat(_)) {
            return None;
        }
        // Groups do not move bytes: a group's sequence is read as part of the one
        // around it (`\b(AIza[...]{35})` starts at its keyword like `\bAIza[...]{35}`).
        let mut items = Vec::new();
        flatten(hir, &mut items);
        let items = items.as_slice();
        let mut run = vec![Vec::new()];
        let mut run_start = 0;
        for (j, item) in items.iter().enumerate() {
            match self.lang(item) {
                Lang::Strings(v) => {
                    if let Some(p) = product(&run, &v) {
                        run = p;
                        continue;
                    }
                    if let Some(sides) = self.run_sides(items, run_start, j, &run) {
                        return Some(sides);
                    }
                    run = v;
                    run_start = j;
                }
                Lang::Many(covered) => {
                    if let Some(sides) = self.run_sides(items, run_start, j, &run) {
                        return Some(sides);
                    }
                    if covered {
                        // The keyword is somewhere inside this item.
                        let own = max_len(std::slice::from_ref(item))?;
                        return Some((
                            max_len(&items[..j])? + own,
                            own + max_len(&items[j + 1..])?,
                        ));
                    }
                    run = vec![Vec::new()];
                    run_start = j + 1;
                }
            }
        }
        self.run_sides(items, run_start, items.len(), &run)
    }

    /// [`Self::sides`] for the run `items[start..end]` spelled out as `run`, when each
    /// of its strings holds a keyword.
    fn run_sides(
        &self,
        items: &[Hir],
        start: usize,
        end: usize,
        run: &[Vec<u8>],
    ) -> Option<(usize, usize)> {
        let (mut before, mut after) = (0, 0);
        for s in run {
            // The first keyword occurrence in `s`: the hit whose window must hold it.
            let (at, len) = self
                .keywords
                .iter()
                .filter_map(|k| memchr::memmem::find(s, k).map(|at| (at, k.len())))
                .min()?;
            before = before.max(at);
            after = after.max(s.len() - at - len);
        }
        Some((
            max_len(&items[..start])? + before,
            after + max_len(&items[end..])?,
        ))
    }

    fn fold(&self, b: u8) -> u8 {
        if self.fold { b.to_ascii_lowercase() } else { b }
    }

    fn lang(&self, hir: &Hir) -> Lang {
        match hir.kind() {
            HirKind::Empty | HirKind::Look(_) => Lang::Strings(vec![Vec::new()]),
            HirKind::Literal(l) => Lang::Strings(vec![l.0.iter().map(|&b| self.fold(b)).collect()]),
            HirKind::Class(c) => self.class(c),
            HirKind::Capture(c) => self.lang(&c.sub),
            HirKind::Repetition(r) => self.repetition(r),
            HirKind::Concat(items) => self.concat(items),
            HirKind::Alternation(alts) => {
                let langs: Vec<Lang> = alts.iter().map(|a| self.lang(a)).collect();
                let mut all = Vec::new();
                for l in &langs {
                    match l {
                        Lang::Strings(v) if all.len() + v.len() <= MAX_STRINGS => {
                            all.extend(v.iter().cloned());
                        }
                        _ => return Lang::Many(langs.iter().all(|l| self.covered(l))),
                    }
                }
                Lang::Strings(dedup(all))
            }
        }
    }

    fn class(&self, class: &Class) -> Lang {
        let mut bytes = Vec::new();
        let mut push_range = |lo: u32, hi: u32| -> bool {
            if hi > 0x7f && !matches!(class, Class::Bytes(_)) || hi - lo >= 256 {
                return false;
            }
            for b in lo..=hi {
                bytes.push(self.fold(b as u8));
            }
            true
        };
        let spelled = match class {
            Class::Bytes(c) => c
                .ranges()
                .iter()
                .all(|r| push_range(u32::from(r.start()), u32::from(r.end()))),
            Class::Unicode(c) => c
                .ranges()
                .iter()
                .all(|r| push_range(u32::from(r.start()), u32::from(r.end()))),
        };
        bytes.sort_unstable();
        bytes.dedup();
        if !spelled || bytes.len() > MAX_CLASS {
            return Lang::Many(false);
        }
        Lang::Strings(bytes.into_iter().map(|b| vec![b]).collect())
    }

    fn repetition(&self, r: &Repetition) -> Lang {
        let sub = self.lang(&r.sub);
        let fallback = |sub: &Lang| Lang::Many(r.min >= 1 && self.covered(sub));
        let (Lang::Strings(parts), Some(max)) = (&sub, r.max) else {
            return fallback(&sub);
        };
        if max > MAX_REPEAT {
            return fallback(&sub);
        }
        let mut out = Vec::new();
        let mut power = vec![Vec::new()];
        for k in 0..=max {
            if k >= r.min {
                out.extend(power.iter().cloned());
                if out.len() > MAX_STRINGS {
                    return fallback(&sub);
                }
            }
            if k < max {
                let Some(next) = product(&power, parts) else {
                    return fallback(&sub);
                };
                power = next;
            }
        }
        Lang::Strings(dedup(out))
    }

    /// A concatenation: runs of spelled-out items are multiplied out while small; the
    /// whole is covered when one run, or one item that is not spelled out, is.
    fn concat(&self, items: &[Hir]) -> Lang {
        let mut run = vec![Vec::new()];
        let mut covered = false;
        let mut whole = true;
        for item in items {
            match self.lang(item) {
                Lang::Strings(v) => {
                    if let Some(p) = product(&run, &v) {
                        run = p;
                    } else {
                        covered |= self.all_hold(&run);
                        run = v;
                        whole = false;
                    }
                }
                Lang::Many(c) => {
                    covered |= c || self.all_hold(&run);
                    run = vec![Vec::new()];
                    whole = false;
                }
            }
            if covered {
                return Lang::Many(true);
            }
        }
        if whole {
            Lang::Strings(run)
        } else {
            Lang::Many(covered || self.all_hold(&run))
        }
    }
}

/// The longest match of a sequence of items, when bounded.
/// `hir` as the sequence it matches, groups and nested sequences spliced in.
fn flatten(hir: &Hir, out: &mut Vec<Hir>) {
    match hir.kind() {
        HirKind::Capture(c) => flatten(&c.sub, out),
        HirKind::Concat(items) => items.iter().for_each(|i| flatten(i, out)),
        _ => out.push(hir.clone()),
    }
}

fn max_len(items: &[Hir]) -> Option<usize> {
    items.iter().try_fold(0usize, |sum, h| {
        sum.checked_add(h.properties().maximum_len()?)
    })
}

/// Every `a` followed by every `b`, when there are at most [`MAX_STRINGS`].
fn product(a: &[Vec<u8>], b: &[Vec<u8>]) -> Option<Vec<Vec<u8>>> {
    if a.len().saturating_mul(b.len()) > MAX_STRINGS {
        return None;
    }
    let mut out = Vec::with_capacity(a.len() * b.len());
    for x in a {
        for y in b {
            let mut s = x.clone();
            s.extend_from_slice(y);
            out.push(s);
        }
    }
    Some(dedup(out))
}

fn dedup(mut v: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    v.sort_unstable();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kw(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| (*w).to_owned()).collect()
    }

    fn sides(before: usize, after: usize) -> Reach {
        Reach { before, after }
    }

    fn reach(pattern: &str, keywords: &[String], exact: bool, window: usize) -> Reach {
        Reach::within(proven_sides(pattern, keywords, exact), window)
    }

    #[test]
    fn sequences_around_a_keyword_need_only_what_can_precede_and_follow_it() {
        // A prefix keyword: nothing before the hit, the token after it.
        assert_eq!(
            reach(r"\bghp_[A-Za-z0-9]{36}\b", &kw(&["ghp_"]), false, 512),
            sides(0, 36)
        );
        // Case-insensitive names with optional separators, each spelling a keyword.
        assert_eq!(
            reach(
                r"(?i)api[_\-]?key=\w{8}",
                &kw(&["api_key", "api-key", "apikey"]),
                false,
                512
            ),
            sides(0, 9)
        );
        assert_eq!(
            reach(
                r"\b(?:AKIA|ASIA)[A-Z2-7]{16}\b",
                &kw(&["AKIA", "ASIA"]),
                true,
                512
            ),
            sides(0, 16)
        );
        // A keyword in the middle: a bounded prefix before it, the rest after it.
        assert_eq!(
            reach(
                r"[a-z]{0,10}token[ =]{1,3}[a-z]{4}",
                &kw(&["token"]),
                false,
                512
            ),
            sides(10, 7)
        );
        // Keywords compared without case unless exact.
        assert_eq!(
            reach(r"TOKEN=[a-z]{4}", &kw(&["token"]), false, 512),
            sides(0, 5)
        );
        // A part too large to spell out that holds a keyword somewhere inside.
        assert_eq!(
            reach(
                r"=(?:token[a-z]{3}|[0-9]{2}secret)=[0-9]{4}",
                &kw(&["token", "secret"]),
                false,
                512
            ),
            sides(9, 13)
        );
        // Never more than the window.
        assert_eq!(
            reach(r"[a-z]{0,100}token=[a-z]{300}", &kw(&["token"]), false, 256),
            sides(100, 256)
        );
    }

    #[test]
    fn anything_short_of_proof_keeps_the_window() {
        let full = Reach::both(512);
        // A branch without a keyword ("api-key" when only "api_key" is a keyword).
        assert_eq!(
            reach(r"(?i)api[_\-]key=\w{8}", &kw(&["api_key"]), false, 512),
            full
        );
        // An optional keyword.
        assert_eq!(
            reach(r"(?:token)?=[a-z]{8}", &kw(&["token"]), false, 512),
            full
        );
        // Exact keywords: other cases of the same letters do not count.
        assert_eq!(
            reach(r"(?i)token=[a-z]{4}", &kw(&["token"]), true, 512),
            full
        );
        // Unbounded, or longer than the window.
        assert_eq!(reach(r"token=[a-z]+", &kw(&["token"]), false, 512), full);
        assert_eq!(
            reach(r"[a-z]*token=[a-z]{8}", &kw(&["token"]), false, 512),
            full
        );
        // A keyword that only forms across a class too large to spell out.
        assert_eq!(reach(r"to[a-z]en", &kw(&["token"]), false, 512), full);
        // No keywords, or a pattern that does not parse.
        assert_eq!(reach(r"token", &[], false, 512), full);
        assert_eq!(reach(r"(token", &kw(&["token"]), false, 512), full);
    }

    #[test]
    fn alternations_need_every_branch_covered() {
        assert_eq!(
            reach(r"(?:xoxb|xoxp)-\d{10}", &kw(&["xoxb", "xoxp"]), false, 512),
            sides(0, 11)
        );
        assert_eq!(
            reach(r"(?:xoxb|xoxp)-\d{10}", &kw(&["xoxb"]), false, 512),
            Reach::both(512)
        );
        // Branches too large to spell out are judged one by one; an alternation at the
        // top bounds both sides by its longest match.
        assert_eq!(
            reach(
                r"(?:token[a-z]{3}|[0-9]{2}secret)",
                &kw(&["token", "secret"]),
                false,
                512
            ),
            sides(8, 8)
        );
    }
}
