//! Parse arbitrary text as a gitleaks TOML rule file and compile what parses: errors are
//! fine, panics are not.
#![no_main]

use harombe_detect::inspect::{ScanConfig, Scanner, parse_gitleaks_toml};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(rules) = parse_gitleaks_toml(text)
        && let Ok(scanner) = Scanner::new(rules.rules, ScanConfig::default())
    {
        let _ = scanner.scan_bytes(text.as_bytes());
    }
});
