//! The built-in generic assignment rule (`name = value` where the name holds a word such
//! as `password` or `token`), matched by hand instead of by its regex.
//!
//! The rule's regex, [`PATTERN`], stays its definition: [`find_iter`] yields exactly the
//! matches, and the secret group, that the regex's `find_iter` yields over the same range
//! (a property test compares them). On text where assignments are frequent the regex's
//! lazy DFA runs over nearly every byte and every match costs a reverse search and a
//! capture search; here the work starts from the `:` and `=` bytes of the range and looks
//! at no more than the name before them and the value after them.
//!
//! The regex reads, piece by piece (case-insensitive, ASCII):
//!
//! ```text
//! B      (?:\A|[^a-z0-9])            start of the haystack, or any byte but a letter or digit
//! I1     [a-z0-9_.\-]{0,30}          name characters
//! K      password|passwd|pwd|secret|token|(api|access|auth|private)[_\-]?key
//! I2     [a-z0-9_.\-]{0,20}
//! Q      ["']?
//! W      [ \t]{0,5}
//! OP     :=  =>  ==  =  :            tried in this order
//! W      [ \t]{0,5}
//! Q2     ["'`]?
//! V      ([A-Za-z0-9_\-+/=.~!@#$%^&*]{12,128})   the secret
//! E      a byte outside V's class, or \z
//! ```
//!
//! Which determines every match:
//! - `I1 K I2` is a run of name bytes, and it ends where its run of name bytes ends: what
//!   follows it (`Q`, `W`, `OP`) holds no name byte, so `I2` cannot stop early. The first
//!   byte of `OP` is `:` or `=`; `Q` and `W` between the run and it are fixed by the run's
//!   end. So each `:` or `=` names at most one run end.
//! - From a run end the tail is deterministic except for `OP`'s alternatives: `Q` and `Q2`
//!   must take a quote when one is there (a quote cannot start `W`, `OP` or `V`), `W`
//!   must take every blank (`OP` and `V` start with neither), and `V` must take its whole
//!   run of value bytes, 12 to 128 of them, followed by a byte outside the class (consumed)
//!   or the end of the haystack. `OP` alternatives are tried in the regex's order, since
//!   `V` may start with `=`.
//! - The start is the smallest position `s` such that a name keyword lies within reach:
//!   `s` is the byte before the run, or a `_`, `.` or `-` inside it (the bytes `B` may be
//!   that are also name bytes), or 0 through `\A`; `I1` then covers up to 30 bytes before
//!   the keyword and `I2` up to 20 after it. Where in the run the keyword lies changes
//!   neither the start, the end nor the secret, so the regex's preference among splits
//!   does not matter.
//! - Runs are disjoint, so matches come out in the order of their `:` or `=`; as with
//!   `find_iter`, a match must start at or after the end of the previous one.

/// The regex [`find_iter`] implements.
pub(crate) const PATTERN: &str = r#"(?i)(?:\A|[^a-z0-9])[a-z0-9_.\-]{0,30}(?:password|passwd|pwd|secret|token|api[_\-]?key|access[_\-]?key|auth[_\-]?key|private[_\-]?key)[a-z0-9_.\-]{0,20}["']?[ \t]{0,5}(?::=|=>|==?|:)[ \t]{0,5}["'`]?([A-Za-z0-9_\-+/=.~!@#$%^&*]{12,128})(?:[^A-Za-z0-9_\-+/=.~!@#$%^&*]|\z)"#;

/// Most name bytes before the keyword (`I1`) and after it (`I2`).
const BEFORE_NAME: usize = 30;
const AFTER_NAME: usize = 20;
/// Longest keyword (`private_key`).
const LONGEST_NAME: usize = 11;
/// Most blanks on either side of the operator.
const BLANKS: usize = 5;
const VALUE_MIN: usize = 12;
const VALUE_MAX: usize = 128;

const fn table(extra: &[u8]) -> [bool; 256] {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let mut i = 0;
    while i < extra.len() {
        t[extra[i] as usize] = true;
        i += 1;
    }
    t
}

/// Name bytes: `[a-z0-9_.\-]`, either case.
static NAME: [bool; 256] = table(b"_.-");
/// Value bytes: `[A-Za-z0-9_\-+/=.~!@#$%^&*]`.
static VALUE: [bool; 256] = table(b"_-+/=.~!@#$%^&*");
/// Bytes a keyword (`K`) starts with, either case.
static KEYWORD_START: [bool; 256] = {
    let mut t = [false; 256];
    let starts = b"pstaPSTA";
    let mut i = 0;
    while i < starts.len() {
        t[starts[i] as usize] = true;
        i += 1;
    }
    t
};

/// How many blanks (`W`: spaces and tabs) `bytes` starts with; `None` past BLANKS.
fn blanks<'a>(bytes: impl Iterator<Item = &'a u8>) -> Option<usize> {
    let n = bytes
        .take(BLANKS + 1)
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    (n <= BLANKS).then_some(n)
}

/// Whether `text` starts with the lower-case ASCII `word`, ignoring case.
fn starts_with_folded(text: &[u8], word: &[u8]) -> bool {
    text.len() >= word.len()
        && text
            .iter()
            .zip(word)
            .all(|(&t, &w)| t.to_ascii_lowercase() == w)
}

/// Length of the keyword (`K`) starting at `text[0]`, if one does.
fn keyword_len(text: &[u8]) -> Option<usize> {
    let plain: &[&[u8]] = match text.first()?.to_ascii_lowercase() {
        b'p' => &[b"password", b"passwd", b"pwd"],
        b's' => &[b"secret"],
        b't' => &[b"token"],
        b'a' => &[],
        _ => return None,
    };
    if let Some(w) = plain.iter().find(|w| starts_with_folded(text, w)) {
        return Some(w.len());
    }
    let w = [&b"api"[..], b"access", b"auth", b"private"]
        .into_iter()
        .find(|w| starts_with_folded(text, w))?;
    let mut n = w.len();
    if matches!(text.get(n), Some(b'_' | b'-')) {
        n += 1;
    }
    starts_with_folded(&text[n..], b"key").then_some(n + 3)
}

/// The tail from the end of a name run at `name_end`: `(match end, secret)`.
fn tail(buf: &[u8], name_end: usize, end: usize) -> Option<(usize, (usize, usize))> {
    let text = &buf[..end];
    let mut p = name_end;
    if matches!(text.get(p), Some(b'"' | b'\'')) {
        p += 1;
    }
    p += blanks(text[p..].iter())?;
    // The operators that start at `p`, in the order the regex tries them: `:=` then
    // `:`, or `=>`, `==`, then `=`.
    let ops: &[usize] = match (text.get(p), text.get(p + 1)) {
        (Some(b':'), Some(b'=')) | (Some(b'='), Some(b'>' | b'=')) => &[2, 1],
        (Some(b':' | b'='), _) => &[1],
        _ => return None,
    };
    ops.iter().find_map(|&op| value_after(buf, p + op, end))
}

/// The value after an operator ending at `q`: `(match end, secret)`.
fn value_after(buf: &[u8], mut q: usize, end: usize) -> Option<(usize, (usize, usize))> {
    let text = &buf[..end];
    q += blanks(text[q..].iter())?;
    if matches!(text.get(q), Some(b'"' | b'\'' | b'`')) {
        q += 1;
    }
    let last = text.len().min(q + VALUE_MAX + 1);
    let mut v = q;
    while v < last && VALUE[usize::from(text[v])] {
        v += 1;
    }
    if !(VALUE_MIN..=VALUE_MAX).contains(&(v - q)) {
        return None;
    }
    let matched_end = if v < end {
        v + 1 // a byte outside the class, consumed
    } else if v == buf.len() {
        v // `\z`
    } else {
        return None; // the range ends before the byte that would end the value
    };
    Some((matched_end, (q, v)))
}

/// The leftmost start `>= from` of a match whose name run ends at `name_end`, if any.
fn match_start(buf: &[u8], name_end: usize, from: usize) -> Option<usize> {
    // Only the last REACH bytes of the run can be part of a match; one byte more tells
    // whether the run starts within them.
    const REACH: usize = BEFORE_NAME + LONGEST_NAME + AFTER_NAME;
    let floor = name_end.saturating_sub(REACH + 1);
    // The run's start, or (when it starts further back) `floor`, before every candidate.
    let run_start = buf[floor..name_end]
        .iter()
        .rposition(|&b| !NAME[usize::from(b)])
        .map_or(floor, |p| floor + p + 1);
    // Keywords such that `I2` (up to AFTER_NAME bytes) reaches the run's end: at most one
    // starts at each of the last AFTER_NAME + LONGEST_NAME positions.
    let mut keywords = [0usize; AFTER_NAME + LONGEST_NAME];
    let mut found = 0;
    let lowest = name_end
        .saturating_sub(AFTER_NAME + LONGEST_NAME)
        .max(run_start);
    for k in lowest..name_end {
        if KEYWORD_START[usize::from(buf[k])]
            && let Some(len) = keyword_len(&buf[k..name_end])
            && k + len + AFTER_NAME >= name_end
        {
            keywords[found] = k;
            found += 1;
        }
    }
    let keywords = &keywords[..found];
    let (&first, &last) = (keywords.first()?, keywords.last()?);
    // Candidate name starts `c`, in order, with the match start `s` each implies.
    (first.saturating_sub(BEFORE_NAME).max(run_start)..=last).find_map(|c| {
        let s = if c == run_start {
            // `\A`, or the byte before the run: not a name byte, so not a letter or digit.
            c.saturating_sub(1)
        } else if matches!(buf[c - 1], b'_' | b'.' | b'-') {
            c - 1
        } else {
            return None;
        };
        (s >= from && keywords.iter().any(|&k| c <= k && k <= c + BEFORE_NAME)).then_some(s)
    })
}

/// Calls `f(matched, secret)` for each match of [`PATTERN`] in `buf[start..end]`, in
/// order, as the regex's `find_iter` over `Input::new(buf).range(start..end)` would, until
/// `f` returns false.
pub(crate) fn find_iter(
    buf: &[u8],
    start: usize,
    end: usize,
    mut f: impl FnMut((usize, usize), (usize, usize)) -> bool,
) {
    let mut from = start;
    for op in memchr::memchr2_iter(b':', b'=', &buf[start..end]).map(|p| p + start) {
        if op < from {
            continue;
        }
        // Back over the blanks and an optional quote to the end of the name run.
        let Some(n) = blanks(buf[..op].iter().rev()) else {
            continue;
        };
        let mut name_end = op - n;
        if name_end > 0 && matches!(buf[name_end - 1], b'"' | b'\'') {
            name_end -= 1;
        }
        if name_end <= from || !NAME[usize::from(buf[name_end - 1])] {
            continue;
        }
        let Some((matched_end, secret)) = tail(buf, name_end, end) else {
            continue;
        };
        let Some(s) = match_start(buf, name_end, from) else {
            continue;
        };
        if !f((s, matched_end), secret) {
            return;
        }
        from = matched_end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use regex_automata::{Input, meta::Regex};

    fn regex() -> &'static Regex {
        static REGEX: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
        REGEX.get_or_init(|| {
            super::super::rule::compile_regex(PATTERN, super::super::rule::RegexDialect::Rust)
                .unwrap()
        })
    }

    /// What the regex finds: `(matched, secret)` per match.
    fn by_regex(
        re: &Regex,
        buf: &[u8],
        start: usize,
        end: usize,
    ) -> Vec<((usize, usize), (usize, usize))> {
        let mut caps = re.create_captures();
        let mut out = Vec::new();
        for m in re.find_iter(Input::new(buf).range(start..end)) {
            re.search_captures(
                &Input::new(buf)
                    .range(m.start()..m.end())
                    .anchored(regex_automata::Anchored::Yes),
                &mut caps,
            );
            let g = caps.get_group(1).unwrap();
            out.push(((m.start(), m.end()), (g.start, g.end)));
        }
        out
    }

    fn by_hand(buf: &[u8], start: usize, end: usize) -> Vec<((usize, usize), (usize, usize))> {
        let mut out = Vec::new();
        find_iter(buf, start, end, |m, s| {
            out.push((m, s));
            true
        });
        out
    }

    #[test]
    fn the_builtin_generic_rule_is_this_pattern() {
        let rules = super::super::builtin::builtin_rules();
        let generic = rules
            .iter()
            .find(|r| r.id == "generic-secret-assignment")
            .unwrap();
        assert_eq!(generic.regex, PATTERN);
    }

    #[test]
    fn finds_what_the_regex_finds_on_examples() {
        let re = regex();
        for (text, secrets) in [
            (&b"api_key = \"Zq8Lr2Vx9Tp4Wm7Kq\"\n"[..], &["Zq8Lr2Vx9Tp4Wm7Kq"][..]),
            (b"GITHUB_TOKEN=ghp_0123456789abcdefghij", &["ghp_0123456789abcdefghij"]),
            (b"x.secret_value:   'abcdefghijkl0123' and more", &["abcdefghijkl0123"]),
            (b"token==abcdefghijkl", &["abcdefghijkl"]),
            // Eleven bytes after `==` are too few: `=` then takes the second `=` as value.
            (b"token==abcdefghijk", &["=abcdefghijk"]),
            (b"token:=abcdefghijk", &["=abcdefghijk"]),
            (b"token=>abcdefghijklmn", &["abcdefghijklmn"]),
            (b"token      = abcdefghijklmn", &[]), // six blanks
            (
                b"a_token=abcdefghijklm,b_token=abcdefghijklm,",
                &["abcdefghijklm", "abcdefghijklm"],
            ),
            (
                b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa_token=abcdefghijklm ",
                &["abcdefghijklm"],
            ),
            (b"tokenaaaaaaaaaaaaaaaaaaaaa=abcdefghijklm ", &[]), // 21 bytes after the keyword
            (b"PRIVATE-KEY: abcdefghijklmnop", &["abcdefghijklmnop"]),
            (b"my_api-key\t=\t`abcdefghijklmnop`", &["abcdefghijklmnop"]),
        ] {
            let found: Vec<&[u8]> = by_hand(text, 0, text.len())
                .into_iter()
                .map(|(_, s)| &text[s.0..s.1])
                .collect();
            let expected: Vec<&[u8]> = secrets.iter().map(|s| s.as_bytes()).collect();
            assert_eq!(found, expected, "{:?}", String::from_utf8_lossy(text));
            for end in 0..=text.len() {
                for start in 0..=end {
                    assert_eq!(
                        by_hand(text, start, end),
                        by_regex(re, text, start, end),
                        "{:?} range {start}..{end}",
                        String::from_utf8_lossy(text)
                    );
                }
            }
        }
    }

    /// Text made of the pieces the regex cares about, in any case and order.
    fn pieces() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            prop::sample::select(vec![
                "password", "passwd", "pwd", "secret", "token", "api", "access", "auth", "private",
                "key", "_key", "-key", "apikey", "api_key", "Token", "PASSWORD", "SeCrEt",
            ])
            .prop_map(|s| s.as_bytes().to_vec()),
            prop::sample::select(vec![
                "=", "==", ":", ":=", "=>", " ", "  ", "\t", "      ", "\"", "'", "`", "_", ".",
                "-", "\n", ",", "+", "/", "~", "!", "#", "é", "\u{0}",
            ])
            .prop_map(|s| s.as_bytes().to_vec()),
            "[a-zA-Z0-9]{1,20}".prop_map(String::into_bytes),
            "[a-zA-Z0-9_.+/=-]{10,40}".prop_map(String::into_bytes),
            prop::collection::vec(any::<u8>(), 1..4),
        ];
        prop::collection::vec(piece, 0..24).prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4_000))]

        #[test]
        fn finds_what_the_regex_finds(text in pieces(), a in 0usize..400, b in 0usize..400) {
            let re = regex();
            let (start, end) = (a.min(b).min(text.len()), a.max(b).min(text.len()));
            prop_assert_eq!(by_hand(&text, start, end), by_regex(re, &text, start, end));
            prop_assert_eq!(by_hand(&text, 0, text.len()), by_regex(re, &text, 0, text.len()));
        }
    }
}
