//! Token rules matched by hand: a regex that is a fixed sequence of byte classes, each
//! repeated a bounded number of times, between optional boundary checks, such as
//! `\bghp_[A-Za-z0-9]{36}\b` or `\b(AIza[0-9A-Za-z_\-]{35})(?:[^A-Za-z0-9_\-]|\z)`.
//!
//! Such a rule is searched anchored at each keyword hit ([`super::rule::Rule::
//! starts_at_keyword`]); where every repetition is followed by bytes it cannot take
//! (the next class, or a boundary its class cannot satisfy), the match at a start is
//! forced: each repetition takes the whole run of its class, which must be within its
//! bounds. [`Shape::match_at`] then reports what the regex's anchored search reports,
//! match and secret, reading each byte once instead of running the regex engine. A
//! pattern of any other form, or one that is not forced, gets no shape and keeps its
//! regex. Alternations of literals (`(?:AKIA|ASIA)`, `(?:live|test)`) are spelled out
//! into one shape each when no alternative is a prefix of another (then at most one
//! matches at a start).

use regex_syntax::hir::{Hir, HirKind, Look};

use super::rule::{byte_class, parse_hir};

/// Most shapes an alternation of literals is spelled out into.
const MAX_SHAPES: usize = 16;

/// Bytes `\w` matches without Unicode: `[0-9A-Za-z_]`.
fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// A set of bytes: a table read per byte of a run, boxed so that shapes stay small.
#[derive(Clone, Debug, PartialEq)]
struct ByteSet(Box<[bool; 256]>);

impl ByteSet {
    fn new() -> Self {
        Self(Box::new([false; 256]))
    }

    fn insert(&mut self, b: u8) {
        self.0[usize::from(b)] = true;
    }

    #[inline]
    fn contains(&self, b: u8) -> bool {
        self.0[usize::from(b)]
    }

    fn disjoint(&self, other: &Self) -> bool {
        self.0.iter().zip(other.0.iter()).all(|(&a, &b)| !(a && b))
    }

    fn bytes(&self) -> impl Iterator<Item = u8> + '_ {
        (0..=255u8).filter(|&b| self.contains(b))
    }
}

/// One element of a shape: a byte of `class`, `min` to `max` times.
#[derive(Clone, Debug, PartialEq)]
struct Item {
    class: ByteSet,
    min: usize,
    max: usize,
}

/// What may follow the last item.
#[derive(Clone, Debug, PartialEq)]
enum After {
    Nothing,
    /// `\b` (ASCII).
    WordBoundary,
    /// `(?:[set]|\z)`: one byte of `set`, taken into the match, or the haystack's end.
    ByteOrEnd(ByteSet),
}

/// A rule's regex as one forced sequence; see the module doc.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Shape {
    /// `\b` before the first item.
    boundary_before: bool,
    /// The items as matched: runs of single bytes joined into literals.
    steps: Vec<Step>,
    after: After,
    /// Steps `[from, to)` are the secret group; `None`: the whole match is.
    group: Option<(usize, usize)>,
}

/// A literal (single-byte items in a row), or one item.
#[derive(Clone, Debug, PartialEq)]
enum Step {
    Literal(Vec<u8>),
    Run(Item),
}

impl Item {
    /// The one byte the item always matches, if that is all it does.
    fn single_byte(&self) -> Option<u8> {
        let mut bytes = self.class.bytes();
        match (self.min, self.max, bytes.next(), bytes.next()) {
            (1, 1, Some(b), None) => Some(b),
            _ => None,
        }
    }
}

/// How the secret is taken from a match, as the engine's `secret_of` does.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum SecretIs {
    /// The whole match (no group, or secret group 0).
    Match,
    /// Group 1 even when empty (secret group 1).
    Group,
    /// Group 1 when not empty, else the whole match (no secret group given).
    GroupOrMatch,
}

/// Element sequences before they become items: one per alternative spelled out.
type Seqs = Vec<Vec<Elem>>;

#[derive(Clone, Debug)]
enum Elem {
    Item(Item),
    WordBoundary,
    ByteOrEnd(ByteSet),
    GroupStart,
    GroupEnd,
}

fn class_of(hir: &Hir) -> Option<ByteSet> {
    byte_class(hir).map(|set| ByteSet(Box::new(set)))
}

/// Each of `alternatives` appended to every sequence (their cross product); `None` past
/// [`MAX_SHAPES`].
fn extend(seqs: Seqs, alternatives: &[Vec<Elem>]) -> Option<Seqs> {
    let mut out = Vec::new();
    for s in &seqs {
        for a in alternatives {
            let mut joined = s.clone();
            joined.extend(a.iter().cloned());
            out.push(joined);
        }
    }
    (out.len() <= MAX_SHAPES).then_some(out)
}

/// The sequences `hir` spells, appended to `seqs`.
fn walk(hir: &Hir, seqs: Seqs) -> Option<Seqs> {
    match hir.kind() {
        HirKind::Literal(l) => {
            let items: Vec<Elem> =
                l.0.iter()
                    .map(|&b| {
                        let mut class = ByteSet::new();
                        class.insert(b);
                        Elem::Item(Item {
                            class,
                            min: 1,
                            max: 1,
                        })
                    })
                    .collect();
            extend(seqs, &[items])
        }
        HirKind::Class(_) => extend(
            seqs,
            &[vec![Elem::Item(Item {
                class: class_of(hir)?,
                min: 1,
                max: 1,
            })]],
        ),
        HirKind::Repetition(rep) => {
            let max = rep.max.map_or(usize::MAX, |m| m as usize);
            let min = rep.min as usize;
            // A lazy repetition of variable length prefers fewer bytes: not forced.
            if !rep.greedy && min != max {
                return None;
            }
            let class = class_of(&rep.sub)?;
            extend(seqs, &[vec![Elem::Item(Item { class, min, max })]])
        }
        HirKind::Empty => Some(seqs),
        HirKind::Look(Look::WordAscii) => extend(seqs, &[vec![Elem::WordBoundary]]),
        HirKind::Capture(cap) => {
            let seqs = extend(seqs, &[vec![Elem::GroupStart]])?;
            let seqs = walk(&cap.sub, seqs)?;
            extend(seqs, &[vec![Elem::GroupEnd]])
        }
        HirKind::Concat(parts) => parts.iter().try_fold(seqs, |s, p| walk(p, s)),
        HirKind::Alternation(alts) => {
            // `(?:[set]|\z)` in either order.
            if let [a, b] = alts.as_slice() {
                let end = |h: &Hir| matches!(h.kind(), HirKind::Look(Look::End));
                let set = match (end(a), end(b)) {
                    (false, true) => class_of(a),
                    (true, false) => class_of(b),
                    _ => None,
                };
                if let Some(set) = set {
                    return extend(seqs, &[vec![Elem::ByteOrEnd(set)]]);
                }
            }
            // Literals, none a prefix of another.
            let words: Vec<&[u8]> = alts
                .iter()
                .map(|a| match a.kind() {
                    HirKind::Literal(l) => Some(&l.0[..]),
                    _ => None,
                })
                .collect::<Option<_>>()?;
            for (i, w) in words.iter().enumerate() {
                if words
                    .iter()
                    .enumerate()
                    .any(|(j, v)| i != j && (v.starts_with(w) || w.starts_with(v)))
                {
                    return None;
                }
            }
            let spelled: Vec<Vec<Elem>> = alts
                .iter()
                .map(|a| walk(a, vec![Vec::new()]).and_then(|mut v| v.pop()))
                .collect::<Option<_>>()?;
            extend(seqs, &spelled)
        }
        _ => None,
    }
}

impl Shape {
    /// The shapes of `pattern` (Rust syntax, as compiled without Unicode), or `None`
    /// when it is not of this form or not forced. `groups` counts the regex's groups
    /// with group 0.
    pub(crate) fn analyse(pattern: &str, groups: usize) -> Option<Vec<Shape>> {
        if groups > 2 {
            return None;
        }
        let hir = parse_hir(pattern, false)?;
        walk(&hir, vec![Vec::new()])?
            .into_iter()
            .map(Shape::from_elems)
            .collect()
    }

    fn from_elems(elems: Vec<Elem>) -> Option<Shape> {
        let mut boundary_before = false;
        let mut items: Vec<Item> = Vec::new();
        let mut after = After::Nothing;
        // Items `[from, to)` of the secret group.
        let mut group = None;
        let mut group_start = None;
        for (i, e) in elems.iter().enumerate() {
            let last =
                i + 1 == elems.len() || elems[i + 1..].iter().all(|e| matches!(e, Elem::GroupEnd));
            match e {
                Elem::Item(item) => {
                    if item.max == 0 || item.min > item.max {
                        return None;
                    }
                    // An optional repetition (min 0) would let what follows it start at
                    // once: only the last item may be one, after an item of fixed length.
                    if item.min == 0 && !(last && items.last().is_none_or(|p| p.min == p.max)) {
                        return None;
                    }
                    if !matches!(after, After::Nothing) {
                        return None;
                    }
                    items.push(item.clone());
                }
                Elem::WordBoundary if items.is_empty() && !boundary_before => {
                    boundary_before = true;
                }
                Elem::WordBoundary if last && !items.is_empty() => {
                    after = After::WordBoundary;
                }
                // Inside the secret group the terminator's byte would belong to it.
                Elem::ByteOrEnd(set) if last && !items.is_empty() && group_start.is_none() => {
                    after = After::ByteOrEnd(set.clone());
                }
                Elem::GroupStart if group_start.is_none() && group.is_none() => {
                    group_start = Some(items.len());
                }
                Elem::GroupEnd => {
                    group = Some((group_start.take()?, items.len()));
                }
                _ => return None,
            }
        }
        if items.is_empty() || group_start.is_some() {
            return None;
        }
        // Forced: every repetition of variable length is followed by bytes it cannot
        // take, so it must take its whole run.
        for (i, item) in items.iter().enumerate() {
            if item.min == item.max {
                continue;
            }
            let forced = match items.get(i + 1) {
                Some(next) => item.class.disjoint(&next.class),
                None => match &after {
                    // The regex takes as many as it may.
                    After::Nothing => true,
                    // Stopping early leaves a word byte on both sides.
                    After::WordBoundary => item.class.bytes().all(is_word),
                    After::ByteOrEnd(set) => item.class.disjoint(set),
                },
            };
            if !forced {
                return None;
            }
        }
        // Steps: a group edge starts a new one.
        let edges = group.map_or([usize::MAX; 2], |(a, b)| [a, b]);
        let mut step_edges = [0usize; 2];
        let mut steps = Vec::new();
        for (i, item) in items.iter().enumerate() {
            for (k, &e) in edges.iter().enumerate() {
                if e == i {
                    step_edges[k] = steps.len();
                }
            }
            match (item.single_byte(), steps.last_mut()) {
                (Some(b), Some(Step::Literal(lit))) if !edges.contains(&i) => lit.push(b),
                (Some(b), _) => steps.push(Step::Literal(vec![b])),
                (None, _) => steps.push(Step::Run(item.clone())),
            }
        }
        for (k, &e) in edges.iter().enumerate() {
            if e == items.len() {
                step_edges[k] = steps.len();
            }
        }
        Some(Shape {
            boundary_before,
            steps,
            after,
            group: group.map(|_| (step_edges[0], step_edges[1])),
        })
    }

    /// The anchored match at `at` within `buf[..end]` (look-arounds see all of `buf`),
    /// as `(match, secret)`: what the regex's anchored search over `at..end` finds.
    pub(crate) fn match_at(
        &self,
        buf: &[u8],
        at: usize,
        end: usize,
        secret: SecretIs,
    ) -> Option<((usize, usize), (usize, usize))> {
        if at > end {
            return None;
        }
        if self.boundary_before {
            let before = at.checked_sub(1).is_some_and(|p| is_word(buf[p]));
            let here = buf.get(at).is_some_and(|&b| is_word(b));
            if before == here {
                return None;
            }
        }
        let mut pos = at;
        let (mut group_from, mut group_to) = (at, at);
        for (i, step) in self.steps.iter().enumerate() {
            if self.group.is_some_and(|(g, _)| g == i) {
                group_from = pos;
            }
            match step {
                Step::Literal(lit) => {
                    if end - pos < lit.len() || !buf[pos..].starts_with(lit) {
                        return None;
                    }
                    pos += lit.len();
                }
                Step::Run(item) => {
                    // As many bytes of the class as the item may take within the range:
                    // when the run goes on past `max`, what follows (which cannot take
                    // its bytes) fails.
                    let cap = end.min(pos.saturating_add(item.max));
                    let run = buf[pos..cap]
                        .iter()
                        .position(|&b| !item.class.contains(b))
                        .unwrap_or(cap - pos);
                    if run < item.min {
                        return None;
                    }
                    pos += run;
                }
            }
            if self.group.is_some_and(|(_, g)| g == i + 1) {
                group_to = pos;
            }
        }
        // An empty group after the last step.
        if self.group.is_some_and(|(g, _)| g == self.steps.len()) {
            group_from = pos;
        }
        let matched_end = match &self.after {
            After::Nothing => pos,
            After::WordBoundary => {
                let before = pos.checked_sub(1).is_some_and(|p| is_word(buf[p]));
                let next = buf.get(pos).is_some_and(|&b| is_word(b));
                if before == next {
                    return None;
                }
                pos
            }
            After::ByteOrEnd(set) => {
                if pos < end && set.contains(buf[pos]) {
                    pos + 1
                } else if pos == buf.len() {
                    pos
                } else {
                    return None;
                }
            }
        };
        let matched = (at, matched_end);
        let group = self.group.map(|_| (group_from, group_to));
        let secret = match (secret, group) {
            (SecretIs::Match, _) | (_, None) => matched,
            (SecretIs::Group, Some(g)) => g,
            (SecretIs::GroupOrMatch, Some(g)) => {
                if g.0 < g.1 {
                    g
                } else {
                    matched
                }
            }
        };
        Some((matched, secret))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use regex_automata::{Anchored, Input};

    use crate::inspect::rule::{RegexDialect, compile_regex};

    /// The regex's anchored search at `at` over `at..end`, with the secret as the
    /// engine takes it.
    fn by_regex(
        re: &regex_automata::meta::Regex,
        buf: &[u8],
        at: usize,
        end: usize,
        secret: SecretIs,
    ) -> Option<((usize, usize), (usize, usize))> {
        let mut caps = re.create_captures();
        re.search_captures(
            &Input::new(buf).range(at..end).anchored(Anchored::Yes),
            &mut caps,
        );
        let m = caps.get_match()?;
        let whole = (m.start(), m.end());
        let group = caps.get_group(1).map(|g| (g.start, g.end));
        let s = match (secret, group) {
            (SecretIs::Match, _) => whole,
            (SecretIs::Group, g) => g?,
            (SecretIs::GroupOrMatch, Some(g)) if g.0 < g.1 => g,
            (SecretIs::GroupOrMatch, _) => whole,
        };
        Some((whole, s))
    }

    /// Patterns of the form, and of other forms that must get no shape.
    const SHAPED: &[&str] = &[
        r"\bghp_[A-Za-z0-9]{36}\b",
        r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}\b",
        r"\b[rs]k_(?:live|test)_[0-9A-Za-z]{24,99}\b",
        r"\bxoxb-[0-9]{10,13}-[0-9]{10,13}-[A-Za-z0-9]{24}\b",
        r"\b(AIza[0-9A-Za-z_\-]{35})(?:[^A-Za-z0-9_\-]|\z)",
        r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*",
        r"\b(glrt-[0-9A-Za-z_\-]{20,})(?:[^A-Za-z0-9_\-]|\z)",
        r"ab+c",
        r"\bk([a-z]{2,4})\b",
        r"x()y",
        r"ab()",
    ];
    const NOT_SHAPED: &[&str] = &[
        r"a[a-z]{2,5}ab",             // the run could stop early
        r"\b[a-z\-]{3,8}\b",          // `-` is no word byte: \b can come early
        r"x(?:ab|abc)y",              // one alternative is a prefix of another
        r"x[a-z]*?y",                 // lazy
        r"(?:\A|[^a-z])k[a-z]{3}",    // a consumed byte before the start
        r"a(b)(c)",                   // two groups
        r"k[a-z]{2,}(?:[a-z0-9]|\z)", // the terminator can take the run's bytes
        r"k(?:x[0-9]{2}|y)z",         // an alternation of more than literals
        r"(k[a-z]{2}(?:[^a-z]|\z))",  // a terminator inside the group
    ];

    /// Groups of `pattern`'s regex, group 0 included.
    fn groups(pattern: &str) -> usize {
        compile_regex(pattern, RegexDialect::Rust)
            .unwrap()
            .group_info()
            .group_len(regex_automata::PatternID::ZERO)
    }

    #[test]
    fn which_patterns_get_a_shape() {
        for p in SHAPED {
            assert!(Shape::analyse(p, groups(p)).is_some(), "{p}");
        }
        for p in NOT_SHAPED {
            assert!(Shape::analyse(p, groups(p)).is_none(), "{p}");
        }
        assert_eq!(
            Shape::analyse(SHAPED[1], 1).map(|s| s.len()),
            Some(4),
            "one shape per literal"
        );
        // A fixed item takes its count and leaves the rest of its class to what follows.
        let abc = Shape::analyse("ab+c", 1).unwrap();
        assert_eq!(
            abc[0].match_at(b"abbcc", 0, 5, SecretIs::Match),
            Some(((0, 4), (0, 4)))
        );
        // A run past its maximum fails at the boundary after it.
        let ghp = Shape::analyse(SHAPED[0], 1).unwrap();
        let token = format!("ghp_{}", "a".repeat(36));
        let at = |t: &str| ghp[0].match_at(t.as_bytes(), 0, t.len(), SecretIs::Match);
        assert_eq!(at(&token), Some(((0, 40), (0, 40))));
        assert_eq!(at(&format!("{token}a")), None);
        assert_eq!(at(&format!("{token}-")), Some(((0, 40), (0, 40))));
    }

    /// Text from pieces that make near misses likely for the patterns above, and from
    /// `keywords`.
    fn text(parts: &[usize], keywords: &[Vec<u8>]) -> Vec<u8> {
        const PIECES: &[&str] = &[
            "ghp_",
            "AKIA",
            "ASIA",
            "sk_",
            "live_",
            "test_",
            "xoxb-",
            "AIza",
            "eyJ",
            "glrt-",
            "abc",
            "a",
            "b",
            "c",
            "0123456789",
            "ABCDEFGHIJ",
            "klmnop",
            "_",
            "-",
            ".",
            " ",
            "\n",
            "=",
            "é",
            "\u{0}",
            "Z7",
            "234567",
            "abcdef",
            "0a1b2c3d4e5f",
        ];
        parts
            .iter()
            .flat_map(|&i| match i.checked_sub(PIECES.len()) {
                Some(k) if !keywords.is_empty() => keywords[k % keywords.len()].as_slice(),
                _ => PIECES[i % PIECES.len()].as_bytes(),
            })
            .copied()
            .collect()
    }

    /// Strings a shape matches, and near misses: each run at its minimum and at its
    /// maximum (when small), the last one a byte short and a byte long.
    fn examples(shape: &Shape) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for long in [false, true] {
            let mut e = Vec::new();
            for step in &shape.steps {
                match step {
                    Step::Literal(lit) => e.extend_from_slice(lit),
                    Step::Run(item) => {
                        let bytes: Vec<u8> = item.class.bytes().collect();
                        let n = if long && item.max <= 100 {
                            item.max
                        } else {
                            item.min.max(3)
                        };
                        e.extend((0..n).map(|i| bytes[(i * 7) % bytes.len()]));
                    }
                }
            }
            let last = e.last().copied().unwrap_or(b'a');
            out.push(e[..e.len() - 1].to_vec());
            out.push([&e[..], &[last]].concat());
            out.push(e);
        }
        out
    }

    /// A pattern, its compiled regex, its shapes and pieces of text for it.
    type Case = (
        String,
        regex_automata::meta::Regex,
        Vec<Shape>,
        Vec<Vec<u8>>,
    );

    /// `(pattern, compiled regex, shapes, extra pieces)` of the patterns above and of
    /// every built-in rule that gets shapes; the pieces are the rule's keywords and
    /// [`examples`] of its shapes.
    fn cases() -> Vec<Case> {
        let mut out = Vec::new();
        let mut add = |pattern: &str, shapes: Vec<Shape>, keywords: &[String]| {
            let re = compile_regex(pattern, RegexDialect::Rust).unwrap();
            let mut pieces: Vec<Vec<u8>> = keywords.iter().map(|k| k.as_bytes().to_vec()).collect();
            pieces.extend(shapes.iter().flat_map(examples));
            out.push((pattern.to_owned(), re, shapes, pieces));
        };
        for p in SHAPED {
            add(p, Shape::analyse(p, groups(p)).unwrap(), &[]);
        }
        for spec in crate::inspect::builtin_rules() {
            let rule = crate::inspect::Rule::compile(spec).unwrap();
            if let Some(shapes) = rule.shapes.clone() {
                add(&rule.spec.regex, shapes, &rule.spec.keywords);
            }
        }
        out
    }

    /// Each shape matches its own examples where the regex does (so the property test
    /// below sees matches, not only misses), spaced out by blanks.
    #[test]
    fn shapes_match_their_examples_as_the_regex_does() {
        let mut matched = 0;
        for (p, re, shapes, _) in cases() {
            for shape in &shapes {
                for e in examples(shape) {
                    let buf = [&b" "[..], &e, b" "].concat();
                    let expected = by_regex(&re, &buf, 1, buf.len(), SecretIs::Match);
                    let got = shapes
                        .iter()
                        .find_map(|s| s.match_at(&buf, 1, buf.len(), SecretIs::Match));
                    assert_eq!(got, expected, "{p} on {:?}", String::from_utf8_lossy(&e));
                    matched += usize::from(got.is_some());
                }
            }
        }
        assert!(matched > 40, "only {matched} examples matched");
    }

    #[test]
    fn the_dense_benchs_token_rules_get_shapes() {
        let shaped: Vec<String> = crate::inspect::builtin_rules()
            .into_iter()
            .map(|s| crate::inspect::Rule::compile(s).unwrap())
            .filter(|r| r.shapes.is_some())
            .map(|r| r.spec.id.clone())
            .collect();
        for id in [
            "github-pat",
            "aws-access-key-id",
            "stripe-secret-key",
            "slack-bot-token",
            "npm-access-token",
        ] {
            assert!(shaped.iter().any(|s| s == id), "{id} not in {shaped:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// At every start and for any end of the range, the shapes (tried in order, the
        /// first match taken) report the regex's anchored match and its secret.
        #[test]
        fn shapes_match_what_the_regex_matches(
            parts in prop::collection::vec(0usize..60, 0..60),
            end_cut in 0usize..40,
        ) {
            thread_local! {
                static CASES: Vec<Case> = cases();
            }
            CASES.with(|cases| {
            for (p, re, shapes, pieces) in cases {
                let buf = text(&parts, pieces);
                let groups = re.group_info().group_len(regex_automata::PatternID::ZERO);
                let end = buf.len().saturating_sub(end_cut);
                for secret in [SecretIs::Match, SecretIs::Group, SecretIs::GroupOrMatch] {
                    if groups == 1 && secret == SecretIs::Group {
                        continue;
                    }
                    for at in 0..=end {
                        // The drawn end of the range, and ends around where a match over
                        // the whole haystack ends (a terminator at or past the range end).
                        let mut ends = vec![end];
                        if let Some(((_, e), _)) = by_regex(re, &buf, at, buf.len(), secret) {
                            ends.extend([e - 1, e, e + 1].into_iter().filter(|&x| x >= at && x <= buf.len()));
                        }
                        for end in ends {
                            let expected = by_regex(re, &buf, at, end, secret);
                            let got = shapes.iter().find_map(|s| s.match_at(&buf, at, end, secret));
                            prop_assert_eq!(got, expected, "{} at {} end {}", p, at, end);
                        }
                    }
                }
            }
            Ok(())
            })?;
        }
    }
}
