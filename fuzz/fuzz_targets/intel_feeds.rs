//! Threat-intel feed parsers (plain, Spamhaus DROP, abuse.ch CSV, STIX 2.1) on arbitrary
//! input, then indexing and lookups of what they accepted.
#![no_main]

use harombe_detect::intel::feeds::parse;
use harombe_detect::intel::{FeedFormat, IntelIndex};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for f in [FeedFormat::Plain, FeedFormat::SpamhausDrop, FeedFormat::AbuseChCsv, FeedFormat::Stix] {
        let report = parse(f, text, "fuzz", 0.5);
        let index = IntelIndex::from_indicators(&report.indicators);
        let _ = index.lookup_domain(text);
        let _ = index.lookup_url(text);
    }
});
