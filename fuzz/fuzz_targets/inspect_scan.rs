//! Scan arbitrary bytes with the built-in rules and decoders (base64, percent, gzip),
//! through both the whole-buffer and the streaming API: no panic, and spans stay inside
//! the input for plain-text findings.
#![no_main]

use std::sync::OnceLock;

use harombe_detect::inspect::{ScanConfig, Scanner, builtin_rules};
use libfuzzer_sys::fuzz_target;

fn scanner() -> &'static Scanner {
    static S: OnceLock<Scanner> = OnceLock::new();
    S.get_or_init(|| {
        // Small chunks so the fuzzer exercises chunk boundaries; small decode caps.
        let config = ScanConfig {
            chunk_size: 512,
            max_decompressed_bytes: 8 << 20,
            ..ScanConfig::default()
        };
        Scanner::new(builtin_rules(), config).expect("built-in rules compile")
    })
}

fuzz_target!(|data: &[u8]| {
    let s = scanner();
    let whole = s.scan_bytes(data);
    for f in &whole {
        if f.encodings.is_empty() {
            assert!(f.span.end as usize <= data.len() && f.span.start <= f.span.end);
        }
    }
    let _ = s
        .scan_reader_to_vec(data)
        .expect("reading a slice cannot fail");
    let _ = harombe_detect::inspect::redact_bytes(data, &whole);
});
