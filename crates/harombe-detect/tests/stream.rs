//! Streaming: chunked results equal whole-buffer results (proptest), findings across
//! chunk boundaries are reported exactly once, large streams and hostile inputs.

mod common;

use std::io::Read;

use common::{B32, B62, B64, Gen, HEX};
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
    small_overlap_threads(chunk_size, 0)
}

/// [`small_overlap_scanner`] reading `threads` chunks at a time (0: one per core).
fn small_overlap_threads(chunk_size: usize, threads: usize) -> Scanner {
    let rules = builtin_rules()
        .into_iter()
        .filter(|r| r.id != "private-key")
        .collect();
    Scanner::new(
        rules,
        ScanConfig {
            chunk_size,
            threads,
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
    fn chunked_equals_whole(seed in any::<u64>(), len in 1usize..20_000, secrets in 0usize..10, chunk in 200usize..5_000, read in 1usize..12_000, threads in 1usize..4) {
        let (input, _) = planted(seed, len, secrets);
        let scanner = small_overlap_threads(chunk, threads);
        let whole = sorted(scanner.scan_bytes(&input));
        let chunked = sorted(scanner.scan_reader_to_vec(&input[..]).unwrap());
        prop_assert_eq!(&whole, &chunked);
        // A reader that hands over at most `read` bytes at a time (a pipe, a socket).
        let trickled = sorted(scanner.scan_reader_to_vec(Trickle(&input, read)).unwrap());
        prop_assert_eq!(whole, trickled);
    }
}

/// `planted`'s text with `n` more lines that only decoding finds: a secret assignment in
/// base64 or percent-encoded, some of them gzipped first.
fn with_encoded(seed: u64, mut input: Vec<u8>, n: usize) -> Vec<u8> {
    use base64::Engine as _;
    use std::io::Write as _;
    let mut g = Gen::new(seed ^ 0x5eed);
    for _ in 0..n {
        let inner = format!("password = \"{}\"", g.mixed(28));
        let line = match g.below(3) {
            0 => base64::engine::general_purpose::STANDARD.encode(&inner),
            1 => inner.replace(' ', "%20").replace('"', "%22"),
            _ => {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                gz.write_all(inner.as_bytes()).unwrap();
                base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap())
            }
        };
        // At a line's start, so that no token is cut.
        let at = g.below(input.len() + 1);
        let at = input[at..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(input.len(), |p| at + p + 1);
        input.splice(at..at, format!("{line}\n").into_bytes());
    }
    input
}

/// A scanner that splits payloads into parts of `part_size` bytes for `threads` threads:
/// the built-in rules but the private-key rule, and a rule from a gitleaks file whose
/// matches start after its keyword.
fn parts_scanner(part_size: usize, threads: usize) -> Scanner {
    let mut rules: Vec<_> = builtin_rules()
        .into_iter()
        .filter(|r| r.id != "private-key")
        .collect();
    let file =
        "[[rules]]\nid = \"deploy-key\"\nregex = '''[0-9a-f]{32}'''\nkeywords = [\"deploy\"]\n";
    rules.extend(
        harombe_detect::inspect::parse_gitleaks_toml(file)
            .unwrap()
            .rules,
    );
    Scanner::new(
        rules,
        ScanConfig {
            part_size,
            threads,
            ..ScanConfig::default()
        },
    )
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// A payload scanned in parts by several threads yields exactly what one scan of it
    /// yields: the same findings with the same lines, in the same order (the direct ones,
    /// then those in decoded runs). Also for a gzipped payload.
    #[test]
    fn parts_equal_one_scan(seed in any::<u64>(), len in 1usize..30_000, secrets in 0usize..12, encoded in 0usize..6, part in 100usize..8_000, threads in 2usize..5) {
        use std::io::Write as _;
        let (input, _) = planted(seed, len, secrets);
        let input = with_encoded(seed, input, encoded);
        let one = parts_scanner(usize::MAX, 1);
        let split = parts_scanner(part, threads);
        let whole = one.scan_bytes(&input);
        prop_assert_eq!(split.scan_bytes(&input), whole.clone());
        prop_assert_eq!(sorted(split.scan_reader_to_vec(&input[..]).unwrap()), sorted(whole));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&input).unwrap();
        let gz = gz.finish().unwrap();
        prop_assert_eq!(split.scan_bytes(&gz), one.scan_bytes(&gz));
    }
}

/// Parts ending at every offset of lines whose findings depend on the bytes before them
/// (a token glued to a word is no token; a base64 run is decoded whole) or after them.
#[test]
fn part_ends_anywhere_in_a_line() {
    use base64::Engine as _;
    let mut g = Gen::new(11);
    // A base64 run inside a percent-encoded token that starts before it: the token's
    // findings come first, though a part holding its first escape may come later.
    let nested =
        base64::engine::general_purpose::STANDARD.encode(format!("password = \"{}\"", g.mixed(28)));
    let text = with_encoded(
        3,
        format!(
            "xghp_{} ghp_{}\napi_key = \"sk_live_{}\"\n4111 1111 1111 1111 DE89 3704 0044 0532 0130 00\n\
             deploy: {}\nq.{nested}%20end\n",
            g.s(B62, 36),
            g.s(B62, 36),
            g.s(B62, 30),
            g.s(HEX, 32),
        )
        .into_bytes(),
        3,
    );
    let whole = parts_scanner(usize::MAX, 1).scan_bytes(&text);
    let mut ids = common::rule_ids(&whole);
    ids.sort_unstable();
    assert_eq!(
        ids,
        [
            "deploy-key",
            "generic-secret-assignment",
            "generic-secret-assignment",
            "generic-secret-assignment",
            "generic-secret-assignment",
            "generic-secret-assignment",
            "github-pat",
            "pii-iban",
            "pii-payment-card",
            "stripe-secret-key"
        ]
    );
    // Parts of 64 bytes, the text shifted by each padding: part ends fall on every
    // offset of every line.
    let (one, split) = (parts_scanner(usize::MAX, 1), parts_scanner(64, 2));
    for pad in 0..64 {
        let mut padded = vec![b' '; pad];
        padded.extend_from_slice(&text);
        assert_eq!(
            split.scan_bytes(&padded),
            one.scan_bytes(&padded),
            "padded by {pad}"
        );
    }
}

/// What a streamed finding in a long encoded run shares with the one-scan finding: the
/// run's start and line, the rule, the redacted secret and the layers (the span's end is
/// where the stream had decoded the run to).
fn run_key(f: &Finding) -> (u64, u64, String, String, String) {
    (
        f.span.start,
        f.line,
        f.rule_id.clone(),
        f.preview.clone(),
        format!("{:?}", f.encodings),
    )
}

fn run_keys(found: &[Finding]) -> Vec<(u64, u64, String, String, String)> {
    let mut keys: Vec<_> = found.iter().map(run_key).collect();
    keys.sort();
    keys
}

fn compressed(kind: usize, data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let level = flate2::Compression::default();
    if kind == 0 {
        let mut z = flate2::write::GzEncoder::new(Vec::new(), level);
        z.write_all(data).unwrap();
        z.finish().unwrap()
    } else {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), level);
        z.write_all(data).unwrap();
        z.finish().unwrap()
    }
}

/// Text with `blobs` encoded blobs (base64 or percent, of text, of a gzip or zlib body, or
/// of text holding a base64 blob) holding secret assignments, between lines of prose.
fn long_blobs(seed: u64, blobs: usize) -> String {
    use base64::Engine as _;
    let mut g = Gen::new(seed);
    let mut text = String::new();
    for _ in 0..blobs {
        let mut inner = String::new();
        for _ in 0..1 + g.below(3) {
            inner.push_str(&"lorem ipsum dolor sit amet ".repeat(g.below(200)));
            inner.push_str(&format!("password = \"{}\"\n", g.mixed(28)));
            // Incompressible text, so a compressed body spans several chunks too.
            let noise = 3 + g.below(3_000);
            inner.push_str(&g.mixed(noise));
            inner.push('\n');
        }
        let body = match g.below(4) {
            0 => inner.into_bytes(),
            3 => {
                // Nested: the text holds a base64 blob of text with a secret of its own.
                let mut nested = "dolor sit amet ".repeat(g.below(300));
                nested.push_str(&format!("token = \"{}\"\n", g.mixed(30)));
                let b64 = base64::engine::general_purpose::STANDARD.encode(&nested);
                format!("{inner}attachment {b64} end\n").into_bytes()
            }
            kind => compressed(kind - 1, inner.as_bytes()),
        };
        let blob = if g.below(2) == 0 {
            base64::engine::general_purpose::STANDARD.encode(&body)
        } else {
            body.iter().map(|b| format!("%{b:02X}")).collect()
        };
        text.push_str(&"some words between blobs\n".repeat(g.below(40)));
        text.push_str(&blob);
        text.push('\n');
    }
    text
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Long base64 and percent-encoded blobs, of text, of compressed bodies or of text
    /// holding long blobs of its own, streamed in chunks far shorter than they are: each
    /// finding of one scan of the whole is reported once, from the same run, line, rule and
    /// layers, whatever the chunk size and the threads.
    #[test]
    fn secrets_in_long_encoded_blobs_are_found_streamed(seed in any::<u64>(), blobs in 1usize..4, chunk in 300usize..3_000, threads in 1usize..3) {
        let text = long_blobs(seed, blobs);
        let scanner = small_overlap_threads(chunk, threads);
        let whole = run_keys(&scanner.scan_bytes(text.as_bytes()));
        let streamed = run_keys(&scanner.scan_reader_to_vec(text.as_bytes()).unwrap());
        prop_assert!(whole.iter().filter(|k| k.2 == "generic-secret-assignment").count() >= blobs);
        prop_assert_eq!(streamed, whole);
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
    let mut g = Gen::new(7);
    let line = format!("api_key = \"ghp_{}\"\n", g.s(B62, 36));
    // One thread: offset 1,000 ends a chunk; two: it ends the first thread's part.
    let scanners = [
        small_overlap_threads(1_000, 1),
        small_overlap_threads(1_000, 2),
    ];
    for (scanner, pad) in scanners
        .iter()
        .flat_map(|s| (950..1_010).map(move |p| (s, p)))
    {
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

/// A base64 run or percent-encoded token many chunks long is decoded to its end: secrets
/// near its start, in its middle and at its end are found streamed as in one scan.
#[test]
fn an_encoded_blob_longer_than_a_chunk_is_decoded_to_its_end() {
    use base64::Engine as _;
    let mut g = Gen::new(21);
    let secrets: Vec<String> = ["Qa", "Mb", "Zc"]
        .iter()
        .map(|p| format!("{p}{}", g.mixed(26)))
        .collect();
    let filler = "lorem ipsum dolor sit amet ".repeat(150);
    let inner: String = secrets
        .iter()
        .map(|s| format!("{filler}password = \"{s}\"\n"))
        .collect();
    let std = &base64::engine::general_purpose::STANDARD;
    let percent = |body: &[u8]| -> String { body.iter().map(|b| format!("%{b:02X}")).collect() };
    let b64 = std.encode(&inner);
    let pct = percent(inner.as_bytes());
    // Compressed, with incompressible lines so the body is still many chunks long.
    let noisy: String = secrets
        .iter()
        .map(|s| format!("{}\npassword = \"{s}\"\n", g.mixed(4_000)))
        .collect();
    let b64_gz = std.encode(compressed(0, noisy.as_bytes()));
    let pct_zlib = percent(&compressed(1, noisy.as_bytes()));
    // Each secret once (a piece overlapping the one before reports nothing twice).
    let previews = |found: &[Finding]| {
        let mut p: Vec<String> = found.iter().map(|f| f.preview[..2].to_owned()).collect();
        p.sort();
        p
    };
    for threads in [1, 2] {
        let scanner = small_overlap_threads(1_000, threads);
        for (name, blob) in [
            ("base64", &b64),
            ("percent", &pct),
            ("base64 of gzip", &b64_gz),
            ("percent of zlib", &pct_zlib),
        ] {
            assert!(blob.len() > 10_000, "{name}: {} bytes", blob.len());
            let text = format!("start {blob} end\n");
            let whole = scanner.scan_bytes(text.as_bytes());
            assert_eq!(previews(&whole), ["Mb", "Qa", "Zc"], "{name}, one scan");
            let streamed = scanner.scan_reader_to_vec(text.as_bytes()).unwrap();
            assert_eq!(
                previews(&streamed),
                ["Mb", "Qa", "Zc"],
                "{name}, {} bytes streamed in chunks of 1,000 on {threads} threads",
                text.len()
            );
            assert!(
                streamed
                    .iter()
                    .all(|f| f.rule_id == "generic-secret-assignment" && f.span.start == 6)
            );
        }
        // A token whose next escape comes more than the overlap after its first: the
        // chunk holding that escape decodes the token's end again after an earlier chunk
        // decoded all of it; its findings are reported once.
        let sparse = format!(
            "{filler}%41{}%0Apassword%20%3D%20%22{}%22 end\n",
            "a".repeat(3_000),
            secrets[0]
        );
        let whole = scanner.scan_bytes(sparse.as_bytes());
        let streamed = scanner.scan_reader_to_vec(sparse.as_bytes()).unwrap();
        assert_eq!(whole.len(), 1, "{whole:?}");
        assert_eq!(streamed.len(), 1, "{threads} threads: {streamed:?}");
        assert_eq!(streamed[0].preview, whole[0].preview);
    }
}

/// A base64 run whose `=` padding ends exactly where a chunk's buffer does has ended:
/// a match reaching the end of what it decodes to is whole, and reported.
#[test]
fn a_padded_run_ending_at_a_chunk_end_is_whole() {
    use base64::Engine as _;
    let mut g = Gen::new(33);
    let chunk = 2_000;
    let scanner = small_overlap_threads(chunk, 1);
    // Longer than the overlap, so the run starts in the first chunk's own bytes.
    let mut inner = format!("{}ghp_{}", "lorem ipsum ".repeat(150), g.s(B62, 36));
    while inner.len() % 3 == 0 {
        inner.insert(0, ' ');
    }
    let b64 = base64::engine::general_purpose::STANDARD.encode(&inner);
    assert!(b64.ends_with('='));
    // The first chunk's buffer holds `chunk + overlap` bytes: the run ends there.
    let end = chunk + scanner.overlap();
    let mut text = "words ".repeat(end / 6 + 1);
    text.truncate(end - b64.len() - 1);
    text.push(' ');
    text.push_str(&b64);
    assert_eq!(text.len(), end);
    assert!(end - b64.len() < chunk);
    text.push_str(&" more words".repeat(500));
    let whole = scanner.scan_bytes(text.as_bytes());
    assert_eq!(whole.len(), 1, "{whole:?}");
    let streamed = scanner.scan_reader_to_vec(text.as_bytes()).unwrap();
    assert_eq!(streamed, whole);
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

/// Text holding private key blocks of up to ~60 KiB, with secret assignments and tokens
/// inside the blocks (they yield to the block's finding) and around them.
fn with_private_keys(seed: u64, blocks: usize) -> Vec<u8> {
    let mut g = Gen::new(seed);
    let mut text = String::new();
    for block in 0..blocks {
        for _ in 0..g.below(200) {
            text.push_str("words around the key blocks\n");
        }
        if g.below(2) == 0 {
            text.push_str(&format!("password = \"{}\"\n", g.mixed(24)));
        }
        text.push_str("-----BEGIN RSA PRIVATE KEY-----\n");
        for _ in 0..g.below(900) {
            match g.below(40) {
                0 => text.push_str(&format!("password = \"{}\"\n", g.mixed(24))),
                1 => text.push_str(&format!("ghp_{}\n", g.s(B62, 36))),
                _ => {
                    text.push_str(&g.s(B64, 64));
                    text.push('\n');
                }
            }
        }
        // Now and then a block (not the first) that never ends.
        if block == 0 || g.below(6) != 0 {
            text.push_str("-----END RSA PRIVATE KEY-----\n");
        }
    }
    text.into_bytes()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// With the full built-in rules (a private key block reaches 64 KiB past its keyword,
    /// far beyond the context a part or chunk looks at for the other rules): parts and
    /// chunks give one scan's findings, generic matches inside a block yielding to it
    /// wherever the block starts.
    #[test]
    fn private_key_blocks_far_across_parts_and_chunks(seed in any::<u64>(), blocks in 1usize..4, part in 2_000usize..40_000, threads in 2usize..4) {
        let input = with_private_keys(seed, blocks);
        let config = |part_size, chunk_size, threads| ScanConfig { part_size, chunk_size, threads, ..ScanConfig::default() };
        let one = Scanner::new(builtin_rules(), config(usize::MAX, 1 << 20, 1)).unwrap();
        let whole = one.scan_bytes(&input);
        prop_assert!(whole.iter().any(|f| f.rule_id == "private-key"));
        let parts = Scanner::new(builtin_rules(), config(part, 1 << 20, threads)).unwrap();
        prop_assert_eq!(&parts.scan_bytes(&input), &whole, "parts of {}", part);
        let chunks = Scanner::new(builtin_rules(), config(usize::MAX, part, threads)).unwrap();
        let streamed = chunks.scan_reader_to_vec(&input[..]).unwrap();
        prop_assert_eq!(sorted(streamed), sorted(whole), "chunks of {}", part);
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
            threads: 1,
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
