//! The rule model: [`RuleSpec`] (plain data, from the built-in set or a rule file) and
//! [`Rule`] (compiled, immutable, shared by every scan).

use regex_automata::Input;
use regex_automata::meta::{self, Regex};
use regex_automata::util::syntax;
use serde::{Deserialize, Serialize};

use super::InspectError;
use super::reach::Reach;

/// How bad a finding of a rule is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth a log line.
    Low,
    /// Worth a look.
    Medium,
    /// A probable leak or attack.
    High,
    /// A live credential with broad reach.
    Critical,
}

/// Regex syntax a rule was written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RegexDialect {
    /// Rust `regex` syntax (built-in rules).
    #[default]
    Rust,
    /// Go RE2 syntax (gitleaks rule files); translated before compiling.
    Go,
}

/// What an allowlist regex is matched against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegexTarget {
    /// The secret (capture group) only.
    #[default]
    Secret,
    /// The whole regex match.
    Match,
    /// The line(s) holding the match.
    Line,
}

/// Extra check a candidate must pass after the regex (cuts false positives of PII rules).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Validator {
    /// No extra check.
    #[default]
    None,
    /// Payment card number: 13–19 digits, a known issuer prefix and a valid Luhn digit.
    Luhn,
    /// IBAN: known country length and ISO 7064 mod-97 == 1.
    Iban,
    /// Generic secrets: the value mixes letters and digits.
    LettersAndDigits,
}

/// Conditions under which a regex match is NOT a finding.
#[derive(Clone, Debug, Default)]
pub struct Allowlist {
    /// Regexes (same dialect as the rule); any match allows the candidate.
    pub regexes: Vec<String>,
    /// What [`Self::regexes`] are matched against.
    pub regex_target: RegexTarget,
    /// Case-insensitive substrings; a secret containing one is allowed.
    pub stopwords: Vec<String>,
    /// gitleaks `condition = "AND"`: every criterion given must match (default: any).
    pub require_all: bool,
}

/// A rule as written: plain data, validated and compiled by [`Rule::compile`].
#[derive(Clone, Debug)]
pub struct RuleSpec {
    /// Unique id, used in findings and `[REDACTED:<id>]` markers.
    pub id: String,
    /// One line for humans.
    pub description: String,
    /// The pattern.
    pub regex: String,
    /// Syntax of [`Self::regex`] and the allowlist regexes.
    pub dialect: RegexDialect,
    /// Case-insensitive prefilter; empty means the regex runs over all input.
    pub keywords: Vec<String>,
    /// Keywords that must also match case-sensitively (a subset of `keywords`).
    pub case_sensitive_keywords: bool,
    /// Minimum Shannon entropy (bits per byte) of the secret; `None` = no check.
    pub entropy: Option<f64>,
    /// Capture group holding the secret; `None` = first non-empty group, else whole match.
    pub secret_group: Option<usize>,
    /// Candidates to drop.
    pub allowlists: Vec<Allowlist>,
    /// Severity of findings.
    pub severity: Severity,
    /// Tags, used by [`super::InspectPolicy`] to pick block / redact / log.
    pub tags: Vec<String>,
    /// Bytes either side of a keyword hit that the regex may look at. When every match
    /// of the regex holds one of the keywords and is bounded, the engine looks only as
    /// far as such a match can reach on each side, never further than this.
    pub window: usize,
    /// Post-regex check.
    pub validator: Validator,
    /// 1-based line of the rule in its file, for error messages.
    pub line: Option<usize>,
}

/// Default [`RuleSpec::window`]: far enough for `name = "value"` assignments and long
/// tokens, short enough that a keyword costs little.
pub const DEFAULT_WINDOW: usize = 512;

impl RuleSpec {
    /// A spec with defaults (medium severity, default window, Rust dialect).
    pub fn new(id: &str, description: &str, regex: &str) -> Self {
        Self {
            id: id.to_owned(),
            description: description.to_owned(),
            regex: regex.to_owned(),
            dialect: RegexDialect::Rust,
            keywords: Vec::new(),
            case_sensitive_keywords: false,
            entropy: None,
            secret_group: None,
            allowlists: Vec::new(),
            severity: Severity::Medium,
            tags: Vec::new(),
            window: DEFAULT_WINDOW,
            validator: Validator::None,
            line: None,
        }
    }
}

pub(crate) struct CompiledAllowlist {
    regexes: Vec<Regex>,
    require_all: bool,
    target: RegexTarget,
    /// One searcher for all stopwords, ignoring ASCII case; `None` without stopwords.
    stopwords: Option<aho_corasick::AhoCorasick>,
}

/// A compiled rule.
pub struct Rule {
    pub(crate) spec: RuleSpec,
    pub(crate) regex: Regex,
    pub(crate) has_groups: bool,
    /// Tagged `generic`: yields to a specific rule reporting overlapping bytes.
    pub(crate) generic: bool,
    /// Where the secret group must lie relative to the match end, when the regex ends
    /// with it (see [`SecretTail`]).
    pub(crate) secret_tail: Option<SecretTail>,
    /// The regex is [`super::assign::PATTERN`] with its group as the secret: matched by
    /// hand ([`super::assign::find_iter`]), with the same results.
    pub(crate) by_hand: bool,
    /// Bytes before and after a keyword hit the regex runs over: the spec's window, or
    /// less where no match holding the hit reaches further ([`super::reach`]).
    pub(crate) reach: Reach,
    /// The most bytes a match can have, when that is bounded.
    pub(crate) longest: Option<usize>,
    /// The most bytes a match can have before the first keyword it holds, when that is
    /// bounded even if the match is not ([`super::reach::proven_lead`]).
    pub(crate) lead: Option<usize>,
    /// Every match provably starts where a keyword hit does (nothing before the keyword:
    /// [`super::reach::proven_sides`]): searched anchored at each hit.
    pub(crate) starts_at_keyword: bool,
    /// For a rule searched anchored at its hits: its regex as forced sequences matched by
    /// hand ([`super::shape`]), with the same results; `None` keeps the regex.
    pub(crate) shapes: Option<Vec<super::shape::Shape>>,
    /// Which bytes of a match are the secret, for [`Self::shapes`].
    pub(crate) secret_is: super::shape::SecretIs,
    /// The spec's tags, shared by the rule's findings.
    pub(crate) tags: std::sync::Arc<[String]>,
    allowlists: Vec<CompiledAllowlist>,
}

/// Shape of a regex ending in `(C{m,n})` optionally followed by a terminator whose
/// alternatives are single bytes outside `C` or zero-width assertions, with that group
/// being the secret.
///
/// Then, for a match `[s, e)`, the secret ends at `g1 = e` when the match's last byte
/// is in `C` (the terminator matched nothing: its bytes lie outside `C`) and at
/// `g1 = e - 1` otherwise (the group's last byte is in `C`, so the terminator took it),
/// and the secret holds at least `[g1 - m, g1)`. Known without running captures.
#[derive(Clone, Debug)]
pub(crate) struct SecretTail {
    min_len: usize,
    class: [bool; 256],
    terminated: bool,
}

impl SecretTail {
    /// Bytes the secret of the match `matched` is sure to cover.
    pub(crate) fn core(&self, buf: &[u8], matched: (usize, usize)) -> (usize, usize) {
        let e = matched.1;
        let end = if self.terminated && e > matched.0 && !self.class[usize::from(buf[e - 1])] {
            e - 1
        } else {
            e
        };
        (end.saturating_sub(self.min_len).max(matched.0), end)
    }

    /// Analyses `pattern` (already in Rust syntax); `None` when it is not of this shape
    /// or `group` is not its secret.
    fn analyse(pattern: &str, secret_group: Option<usize>, groups: usize) -> Option<Self> {
        use regex_syntax::hir::HirKind;
        let hir = parse_hir(pattern, false)?;
        let HirKind::Concat(items) = hir.kind() else {
            return None;
        };
        let (capture, terminator) = match items.as_slice() {
            [.., c, t] if matches!(c.kind(), HirKind::Capture(_)) => (c, Some(t)),
            [.., c] => (c, None),
            [] => return None,
        };
        let HirKind::Capture(cap) = capture.kind() else {
            return None;
        };
        let group = usize::try_from(cap.index).ok()?;
        let is_secret = match secret_group {
            Some(g) => g == group,
            None => groups == 2 && group == 1,
        };
        let HirKind::Repetition(rep) = cap.sub.kind() else {
            return None;
        };
        let class = byte_class(&rep.sub)?;
        let min_len = usize::try_from(rep.min).ok()?;
        if !is_secret || min_len == 0 {
            return None;
        }
        if let Some(t) = terminator {
            let alternatives = match t.kind() {
                HirKind::Alternation(alts) => alts.as_slice(),
                _ => std::slice::from_ref(t),
            };
            for a in alternatives {
                if matches!(a.kind(), HirKind::Look(_)) {
                    continue;
                }
                let set = byte_class(a)?;
                if (0..256).any(|b| set[b] && class[b]) {
                    return None;
                }
            }
        }
        Some(Self {
            min_len,
            class,
            terminated: terminator.is_some(),
        })
    }
}

impl std::fmt::Debug for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rule")
            .field("id", &self.spec.id)
            .finish_non_exhaustive()
    }
}

/// Compiles one pattern in ASCII mode (Go RE2's `\b`, `\w`, `\d`, `\s` are ASCII), falling
/// back to Unicode mode for patterns that need it (`\p{..}`).
/// How patterns are read: without Unicode first (bytes, ASCII classes and `\b`), like
/// Go's RE2; with it only for a pattern that needs it.
fn syntax_config(unicode: bool) -> syntax::Config {
    syntax::Config::new()
        .unicode(unicode)
        .utf8(false)
        .octal(true)
}

/// `pattern` (Rust syntax) parsed as [`compile_regex`] compiles it.
pub(crate) fn parse_hir(pattern: &str, unicode: bool) -> Option<regex_syntax::hir::Hir> {
    syntax::parse_with(pattern, &syntax_config(unicode)).ok()
}

/// The bytes a one-byte class or a one-byte literal matches.
pub(crate) fn byte_class(h: &regex_syntax::hir::Hir) -> Option<[bool; 256]> {
    use regex_syntax::hir::{Class, HirKind};
    let mut set = [false; 256];
    match h.kind() {
        HirKind::Class(Class::Bytes(c)) => {
            for r in c.ranges() {
                for b in r.start()..=r.end() {
                    set[usize::from(b)] = true;
                }
            }
        }
        HirKind::Literal(l) if l.0.len() == 1 => set[usize::from(l.0[0])] = true,
        _ => return None,
    }
    Some(set)
}

pub(crate) fn compile_regex(pattern: &str, dialect: RegexDialect) -> Result<Regex, String> {
    let translated;
    let pattern = match dialect {
        RegexDialect::Rust => pattern,
        RegexDialect::Go => {
            translated = super::gitleaks::translate_go_regex(pattern)?;
            translated.as_str()
        }
    };
    let build = |unicode: bool| {
        Regex::builder()
            .syntax(syntax_config(unicode))
            .configure(
                meta::Config::new()
                    .utf8_empty(false)
                    .nfa_size_limit(Some(64 << 20))
                    .hybrid_cache_capacity(4 << 20),
            )
            .build(pattern)
            .map_err(|e| match e.syntax_error() {
                Some(syntax) => syntax.to_string(),
                None => e.to_string(),
            })
    };
    build(false).or_else(|ascii_err| build(true).map_err(|_| ascii_err))
}

impl Rule {
    /// Validates and compiles a spec.
    pub fn compile(spec: RuleSpec) -> Result<Self, InspectError> {
        let invalid = |message: String| InspectError::InvalidRule {
            rule_id: spec.id.clone(),
            line: spec.line,
            message,
        };
        if spec.id.trim().is_empty() {
            return Err(invalid("rule id is empty".into()));
        }
        if spec.regex.is_empty() {
            return Err(invalid(
                "rule has no regex (path-only rules are not supported)".into(),
            ));
        }
        if spec.keywords.iter().any(String::is_empty) {
            return Err(invalid("empty keyword".into()));
        }
        let bad_regex = |message: String| InspectError::InvalidRegex {
            rule_id: spec.id.clone(),
            line: spec.line,
            message,
        };
        // The pattern in Rust syntax, for the regex and the analyses of its shape.
        let pattern = match spec.dialect {
            RegexDialect::Rust => spec.regex.clone(),
            RegexDialect::Go => {
                super::gitleaks::translate_go_regex(&spec.regex).map_err(bad_regex)?
            }
        };
        let regex = compile_regex(&pattern, RegexDialect::Rust).map_err(bad_regex)?;
        let groups = regex
            .group_info()
            .group_len(regex_automata::PatternID::ZERO);
        if let Some(g) = spec.secret_group
            && g >= groups
        {
            return Err(invalid(format!(
                "secretGroup {g} but the regex has only {} group(s)",
                groups - 1
            )));
        }
        let mut allowlists = Vec::new();
        for al in &spec.allowlists {
            let mut regexes = Vec::new();
            for r in &al.regexes {
                regexes.push(
                    compile_regex(r, spec.dialect)
                        .map_err(|m| bad_regex(format!("allowlist regex `{r}`: {m}")))?,
                );
            }
            allowlists.push(CompiledAllowlist {
                regexes,
                require_all: al.require_all,
                target: al.regex_target,
                stopwords: if al.stopwords.is_empty() {
                    None
                } else {
                    Some(
                        aho_corasick::AhoCorasick::builder()
                            .ascii_case_insensitive(true)
                            .kind(Some(aho_corasick::AhoCorasickKind::DFA))
                            .build(&al.stopwords)
                            .map_err(|e| invalid(format!("allowlist stopwords: {e}")))?,
                    )
                },
            });
        }
        let generic = spec.tags.iter().any(|t| t == "generic");
        let secret_tail = if generic && !spec.keywords.is_empty() {
            SecretTail::analyse(&pattern, spec.secret_group, groups)
        } else {
            None
        };
        let by_hand = secret_tail.is_some()
            && pattern == super::assign::PATTERN
            && matches!(spec.secret_group, None | Some(1));
        let sides =
            super::reach::proven_sides(&pattern, &spec.keywords, spec.case_sensitive_keywords);
        let reach = Reach::within(sides, spec.window);
        let longest = super::reach::longest_match(&pattern);
        let lead =
            super::reach::proven_lead(&pattern, &spec.keywords, spec.case_sensitive_keywords);
        let starts_at_keyword = sides.is_some_and(|(before, _)| before == 0);
        let shapes = starts_at_keyword
            .then(|| super::shape::Shape::analyse(&pattern, groups))
            .flatten();
        let secret_is = match (spec.secret_group, groups) {
            (Some(0), _) | (None, ..=1) => super::shape::SecretIs::Match,
            (Some(_), _) => super::shape::SecretIs::Group,
            (None, _) => super::shape::SecretIs::GroupOrMatch,
        };
        Ok(Self {
            has_groups: groups > 1,
            generic,
            secret_tail,
            by_hand,
            reach,
            longest,
            lead,
            starts_at_keyword,
            shapes,
            secret_is,
            tags: spec.tags.clone().into(),
            regex,
            allowlists,
            spec,
        })
    }

    /// The rule's id.
    pub fn id(&self) -> &str {
        &self.spec.id
    }

    /// The spec the rule was compiled from.
    pub fn spec(&self) -> &RuleSpec {
        &self.spec
    }

    /// Whether an allowlist drops this candidate. `line` yields the line(s) around the
    /// match (computed only when an allowlist targets lines).
    pub(crate) fn allowed<'a>(
        &self,
        secret: &'a [u8],
        matched: &'a [u8],
        line: impl Fn() -> &'a [u8],
    ) -> bool {
        self.allowlists.iter().any(|al| {
            let target = match al.target {
                RegexTarget::Secret => secret,
                RegexTarget::Match => matched,
                RegexTarget::Line => line(),
            };
            let by_regex = || al.regexes.iter().any(|re| re.is_match(Input::new(target)));
            let stopword = al.stopwords.as_ref().map(|ac| ac.is_match(secret));
            if al.require_all {
                (al.regexes.is_empty() || by_regex())
                    && stopword.unwrap_or(true)
                    && !(al.regexes.is_empty() && stopword.is_none())
            } else {
                (!al.regexes.is_empty() && by_regex()) || stopword == Some(true)
            }
        })
    }
}

/// Shannon entropy of `data` in bits per byte.
pub fn shannon_entropy(data: &[u8]) -> f64 {
    if data.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    // Which bytes occur, so that only those are visited (in byte order, as summing over
    // all 256 counts would).
    let mut seen = [0u64; 4];
    for &b in data {
        counts[usize::from(b)] += 1;
        seen[usize::from(b >> 6)] |= 1 << (b & 63);
    }
    let len = data.len() as f64;
    // As `Iterator::sum` over floats starts: a single byte value then gives -0.0 too.
    let mut sum = -0.0;
    for (word, mut bits) in seen.into_iter().enumerate() {
        while bits != 0 {
            let c = counts[word * 64 + bits.trailing_zeros() as usize];
            bits &= bits - 1;
            let p = f64::from(c) / len;
            sum += -p * p.log2();
        }
    }
    sum
}

/// Luhn check plus issuer prefix and length for a card number (digits, spaces, dashes).
pub(crate) fn valid_card(candidate: &[u8]) -> bool {
    let digits: Vec<u8> = candidate
        .iter()
        .filter(|b| b.is_ascii_digit())
        .map(|b| b - b'0')
        .collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let prefix = |n: usize| {
        digits[..n]
            .iter()
            .fold(0u32, |acc, &d| acc * 10 + u32::from(d))
    };
    let known_issuer = digits[0] == 4
        || (51..=55).contains(&prefix(2))
        || (2221..=2720).contains(&prefix(4))
        || matches!(prefix(2), 34 | 37 | 36 | 38 | 35 | 62 | 65)
        || prefix(4) == 6011
        || (644..=649).contains(&prefix(3))
        || (300..=305).contains(&prefix(3));
    if !known_issuer || digits.iter().all(|&d| d == digits[0]) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// IBAN lengths by country (ISO 13616 registry, common subset); others need 15..=34.
const IBAN_LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AT", 20),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BR", 29),
    (b"CH", 21),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DK", 18),
    (b"EE", 20),
    (b"ES", 24),
    (b"FI", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"MC", 27),
    (b"ME", 22),
    (b"MK", 19),
    (b"MT", 31),
    (b"MU", 30),
    (b"NL", 18),
    (b"NO", 15),
    (b"PK", 24),
    (b"PL", 28),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"SA", 24),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
];

/// Country length and ISO 7064 mod-97 check of an IBAN (spaces ignored).
pub(crate) fn valid_iban(candidate: &[u8]) -> bool {
    let iban: Vec<u8> = candidate.iter().copied().filter(|b| *b != b' ').collect();
    if iban.len() < 15 || iban.len() > 34 {
        return false;
    }
    let country = [iban[0], iban[1]];
    if let Some((_, len)) = IBAN_LENGTHS.iter().find(|(c, _)| **c == country)
        && *len != iban.len()
    {
        return false;
    }
    let mut rem: u32 = 0;
    for &b in iban[4..].iter().chain(&iban[..4]) {
        let v = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entropy_bounds() {
        assert_eq!(shannon_entropy(b"aaaa"), 0.0);
        assert!((shannon_entropy(b"abcd") - 2.0).abs() < 1e-9);
    }

    #[test]
    fn luhn() {
        assert!(valid_card(b"4111 1111 1111 1111"));
        assert!(valid_card(b"5500-0000-0000-0004"));
        assert!(!valid_card(b"4111 1111 1111 1112"));
        assert!(!valid_card(b"1234567812345670")); // Luhn-valid, no issuer
    }

    #[test]
    fn iban() {
        assert!(valid_iban(b"GB82 WEST 1234 5698 7654 32"));
        assert!(valid_iban(b"DE89370400440532013000"));
        assert!(!valid_iban(b"DE89370400440532013001"));
        assert!(!valid_iban(b"GB8237040044053201300")); // wrong length for GB
    }

    #[test]
    fn stopwords_match_any_case_in_short_and_long_secrets() {
        let mut spec = RuleSpec::new("r", "d", "x+");
        spec.allowlists.push(Allowlist {
            stopwords: vec!["Example".into()],
            ..Allowlist::default()
        });
        let rule = Rule::compile(spec).unwrap();
        for len in [10, 255, 256, 257, 1000] {
            let mut secret = vec![b'x'; len];
            assert!(!rule.allowed(&secret, &secret, || &[]), "len {len}");
            secret[len - 7..].copy_from_slice(b"eXAMPLe");
            assert!(rule.allowed(&secret, &secret, || &[]), "len {len}");
        }
    }

    proptest::proptest! {
        /// Visiting only the bytes that occur sums the same terms in the same order as
        /// summing over all 256 counts: the same bits, so thresholds decide alike.
        #[test]
        fn entropy_equals_the_sum_over_every_count(
            data in proptest::collection::vec(
                proptest::prop_oneof![proptest::num::u8::ANY, proptest::sample::select(&b"aA0_-+/=\xff"[..])],
                0..300,
            ),
            repeated in 1usize..40,
        ) {
            let every = |data: &[u8]| -> f64 {
                let mut counts = [0u32; 256];
                for &b in data {
                    counts[usize::from(b)] += 1;
                }
                let len = data.len() as f64;
                counts
                    .iter()
                    .filter(|&&c| c > 0)
                    .map(|&c| {
                        let p = f64::from(c) / len;
                        -p * p.log2()
                    })
                    .sum()
            };
            // One byte value throughout (a sum of -0.0 terms), and the generated data.
            for data in [vec![b'q'; repeated], data] {
                let expected = if data.is_empty() { 0.0 } else { every(&data) };
                proptest::prop_assert_eq!(shannon_entropy(&data).to_bits(), expected.to_bits());
            }
        }

        /// A stopword allows a secret that holds it, in any ASCII case.
        #[test]
        fn stopwords_are_found_as_lower_cased_substrings(
            words in proptest::collection::vec("[a-zA-Z_<]{1,6}", 1..6),
            secret in "[a-zA-Z_<x]{0,40}",
        ) {
            let mut spec = RuleSpec::new("r", "d", "x+");
            spec.allowlists.push(Allowlist {
                stopwords: words.clone(),
                ..Allowlist::default()
            });
            let rule = Rule::compile(spec).unwrap();
            let lower = secret.to_ascii_lowercase();
            let expected = words.iter().any(|w| lower.contains(&w.to_ascii_lowercase()));
            proptest::prop_assert_eq!(rule.allowed(secret.as_bytes(), b"", || &[]), expected);
        }
    }

    #[test]
    fn bad_secret_group_is_an_error() {
        let mut spec = RuleSpec::new("r", "d", "a(b)");
        spec.secret_group = Some(2);
        let err = Rule::compile(spec).unwrap_err().to_string();
        assert!(
            err.contains("`r`") && err.contains("secretGroup 2"),
            "{err}"
        );
    }
}
