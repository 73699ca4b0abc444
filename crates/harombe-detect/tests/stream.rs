//! Streaming: chunked results equal whole-buffer results (proptest), findings across
//! chunk boundaries are reported exactly once, large streams and hostile inputs.

mod common;

use std::io::Read;

use common::{B32, B62, B64, Gen};
use harombe_detect::inspect::{Finding, ScanConfig, Scanner, builtin_rules};
use proptest::prelude::*;

fn key(f: &Finding) -> (u64, u64, String, u64) {
    (f.span.start, f.span.end, f.rule_id.clone(), f.line)
}

fn sorted(mut v: Vec<Finding>) -> Vec<(u64, u64, String, u64)> {
    let mut keys: Vec<_> = v.drain(..).map(|f| key(&f)).collect();
    keys.sort();
    keys
}

/// Built-in rules except the private-key rule, whose 64 KiB window makes the overlap
/// larger than the inputs proptest can afford.
fn small_overlap_scanner(chunk_size: usize) -> Scanner {
    let rules = builtin_rules()
        .into_iter()
        .filter(|r| r.id != "private-key")
        .collect();
    Scanner::new(
        rules,
        ScanConfig {
            chunk_size,
            ..ScanConfig::default()
        },
    )
    .unwrap()
}

fn planted(seed: u64, len: usize, secrets: usize) -> (Vec<u8>, Vec<String>) {
    let mut g = Gen::new(seed);
    let words = [
        "lorem", "ipsum", "token", "the", "password", "4111", "DE89", "x=", "\n", "ghp", "AKIA",
        "%20", "==", "sk_",
    ];
    let mut text = String::new();
    while text.len() < len {
        text.push_str(words[g.below(words.len())]);
        text.push(if g.below(7) == 0 { '\n' } else { ' ' });
    }
    let mut planted = Vec::new();
    for _ in 0..secrets {
        let secret = match g.below(6) {
            0 => format!("ghp_{}", g.s(B62, 36)),
            1 => format!("AKIA{}", g.s(B32, 16)),
            2 => format!("api_key = \"{}\"", g.mixed(28)),
            3 => format!(
                "xoxb-{}-{}-{}",
                g.s(common::DIGITS, 12),
                g.s(common::DIGITS, 12),
                g.s(B62, 24)
            ),
            4 => format!("sk_live_{}", g.s(B62, 30)),
            // A generic assignment whose value a specific rule reports: the generic
            // match starts first and yields to it.
            _ => format!("token: \"ghp_{}\"", g.s(B62, 36)),
        };
        let mut at = g.below(text.len());
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        text.insert_str(at, &format!(" {secret} "));
        planted.push(secret);
    }
    (text.into_bytes(), planted)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn chunked_equals_whole(seed in any::<u64>(), len in 1usize..20_000, secrets in 0usize..10, chunk in 200usize..5_000, read in 1usize..12_000) {
        let (input, _) = planted(seed, len, secrets);
        let scanner = small_overlap_scanner(chunk);
        let whole = sorted(scanner.scan_bytes(&input));
        let chunked = sorted(scanner.scan_reader_to_vec(&input[..]).unwrap());
        prop_assert_eq!(&whole, &chunked);
        // A reader that hands over at most `read` bytes at a time (a pipe, a socket).
        let trickled = sorted(scanner.scan_reader_to_vec(Trickle(&input, read)).unwrap());
        prop_assert_eq!(whole, trickled);
    }
}

/// Reads at most `.1` bytes per call.
struct Trickle<'a>(&'a [u8], usize);

impl Read for Trickle<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = out.len().min(self.1).min(self.0.len());
        out[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

/// A generic assignment holding a token is reported once, as the token, wherever the
/// chunk boundary falls: also when the generic match starts in one chunk and the token in
/// the next.
#[test]
fn a_generic_match_yields_to_a_token_in_the_next_chunk() {
    let scanner = small_overlap_scanner(1_000);
    let mut g = Gen::new(7);
    let line = format!("api_key = \"ghp_{}\"\n", g.s(B62, 36));
    for pad in 950..1_010 {
        let mut input = vec![b' '; pad];
        input.extend_from_slice(line.as_bytes());
        input.resize(4_000, b' ');
        let whole = scanner.scan_bytes(&input);
        let ids: Vec<&str> = whole.iter().map(|f| f.rule_id.as_str()).collect();
        assert_eq!(ids, ["github-pat"], "line at {pad}");
        let chunked = scanner.scan_reader_to_vec(&input[..]).unwrap();
        assert_eq!(sorted(whole), sorted(chunked), "line at {pad}");
    }
}

#[test]
fn planted_secrets_across_boundaries_are_found_once() {
    let scanner = small_overlap_scanner(997);
    let (input, planted) = planted(42, 50_000, 40);
    let findings = scanner.scan_reader_to_vec(&input[..]).unwrap();
    for secret in &planted {
        let needle = secret.split('"').nth(1).unwrap_or(secret);
        let hits = findings
            .iter()
            .filter(|f| &input[f.span.range()] == needle.as_bytes())
            .count();
        let occurrences = input
            .windows(needle.len())
            .filter(|w| *w == needle.as_bytes())
            .count();
        assert_eq!(
            hits, occurrences,
            "{needle} found {hits} times, planted {occurrences}"
        );
    }
}

#[test]
fn private_key_across_a_chunk_boundary() {
    let mut g = Gen::new(3);
    let body: Vec<String> = (0..30).map(|_| g.s(B64, 64)).collect();
    let pem = format!(
        "-----BEGIN OPENSSH PRIVATE KEY-----\n{}\n-----END OPENSSH PRIVATE KEY-----",
        body.join("\n")
    );
    let chunk_size = 50_000;
    let scanner = Scanner::new(
        builtin_rules(),
        ScanConfig {
            chunk_size,
            ..ScanConfig::default()
        },
    )
    .unwrap();
    for offset in [
        0,
        chunk_size - 7,
        chunk_size + scanner.overlap() - 5,
        2 * chunk_size + 11,
    ] {
        let mut input = "filler text\n".repeat(offset / 12 + 1).into_bytes();
        input.truncate(offset);
        input.extend_from_slice(pem.as_bytes());
        input.extend_from_slice(&"trailing words\n".repeat(5_000).into_bytes());
        let findings = scanner.scan_reader_to_vec(&input[..]).unwrap();
        let keys: Vec<_> = findings
            .iter()
            .filter(|f| f.rule_id == "private-key")
            .collect();
        assert_eq!(keys.len(), 1, "offset {offset}: {findings:?}");
        assert_eq!(&input[keys[0].span.range()], pem.as_bytes());
    }
}

/// A reader producing `len` bytes of generated text with a secret every `every` bytes,
/// in odd-sized reads.
struct Synthetic {
    remaining: usize,
    pattern: Vec<u8>,
    pos: usize,
}

impl Read for Synthetic {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.remaining).min(7919);
        for b in &mut buf[..n] {
            *b = self.pattern[self.pos];
            self.pos = (self.pos + 1) % self.pattern.len();
        }
        self.remaining -= n;
        Ok(n)
    }
}

#[test]
fn a_32_mib_stream_is_scanned_to_the_end() {
    let mut g = Gen::new(5);
    let token = format!("ghp_{}", g.s(B62, 36));
    let mut pattern = "the quick brown fox jumps over the lazy dog 0123456789\n"
        .repeat(1500)
        .into_bytes();
    pattern.extend_from_slice(format!("{token}\n").as_bytes());
    let len = 32 << 20;
    let expected = len / pattern.len() + usize::from(len % pattern.len() > 82_500);
    let reader = Synthetic {
        remaining: len,
        pattern,
        pos: 0,
    };
    let mut count = 0;
    let mut last = 0;
    Scanner::builtin()
        .scan_reader(reader, |f| {
            assert_eq!(f.rule_id, "github-pat");
            assert!(f.span.start > last || count == 0, "reported in order, once");
            last = f.span.start;
            count += 1;
        })
        .unwrap();
    assert_eq!(count, expected);
}

#[test]
fn hostile_inputs_do_not_break_the_scanner() {
    let scanner = Scanner::builtin();
    let mut g = Gen::new(6);
    // Random binary and invalid UTF-8.
    let binary: Vec<u8> = (0..(4 << 20)).map(|_| g.next() as u8).collect();
    let _ = scanner.scan_bytes(&binary);
    let _ = scanner.scan_reader_to_vec(&binary[..]).unwrap();
    let mut invalid = b"\xff\xfe password = \xc3\x28".to_vec();
    let pat = format!("ghp_{}", g.s(B62, 36));
    invalid.extend_from_slice(pat.as_bytes());
    invalid.extend_from_slice(b"\x80\x80");
    assert!(
        scanner
            .scan_bytes(&invalid)
            .iter()
            .any(|f| f.rule_id == "github-pat")
    );
    // Inputs built to make backtracking engines blow up: long keyword-dense runs with no
    // terminator, unclosed key blocks, long digit and base64 runs.
    for hostile in [
        "AKIA".repeat(1 << 19),
        "password=".repeat(1 << 18) + &"a".repeat(1 << 20),
        "-----BEGIN RSA PRIVATE KEY-----\n".repeat(1 << 16),
        "4".repeat(2 << 20),
        "Q~".repeat(1 << 20),
        "aaaa@".repeat(1 << 19),
        "ignore previous ".repeat(1 << 17),
        format!("x{}", "A".repeat(3 << 20)),
        "%41".repeat(1 << 20),
    ] {
        let _ = scanner.scan_bytes(hostile.as_bytes());
    }
}
