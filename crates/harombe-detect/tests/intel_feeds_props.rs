//! Property tests for the threat-intel feed parsers (they read files and URLs from
//! outside): no input makes them panic, every line is either accepted or reported with its
//! line number, and what is accepted is found by the index.

use std::net::Ipv4Addr;

use harombe_detect::intel::feeds::parse;
use harombe_detect::intel::{FeedFormat, IntelIndex};
use proptest::prelude::*;

const FORMATS: [FeedFormat; 4] = [
    FeedFormat::Plain,
    FeedFormat::SpamhausDrop,
    FeedFormat::AbuseChCsv,
    FeedFormat::Stix,
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_text_never_panics_and_errors_name_real_lines(text in "\\PC{0,400}", nl in 0usize..5) {
        let text = text.replacen(' ', "\n", nl);
        let lines = text.lines().count();
        for f in FORMATS {
            let report = parse(f, &text, "prop", 0.9);
            if f != FeedFormat::Stix {
                for e in &report.errors {
                    prop_assert!(e.line >= 1 && e.line <= lines, "{:?}: line {} of {}", f, e.line, lines);
                }
            }
        }
    }

    #[test]
    fn listed_addresses_are_found_and_others_are_not(
        ips in proptest::collection::vec(any::<u32>(), 1..40),
        junk in proptest::collection::vec("[a-z!@$%^&*()]{1,12}", 0..10),
        probe in any::<u32>(),
    ) {
        let mut text = String::from("# a plain list\n");
        for (i, ip) in ips.iter().enumerate() {
            text.push_str(&format!("{}  label-{i}\n", Ipv4Addr::from(*ip)));
            if let Some(j) = junk.get(i) {
                text.push_str(j);
                text.push('\n');
            }
        }
        let report = parse(FeedFormat::Plain, &text, "prop", 0.8);
        prop_assert_eq!(report.indicators.len() + report.errors.len(), ips.len() + junk.len().min(ips.len()));
        let index = IntelIndex::from_indicators(&report.indicators);
        for ip in &ips {
            prop_assert!(index.lookup_ip(Ipv4Addr::from(*ip).into()).is_some());
        }
        if !ips.contains(&probe) {
            prop_assert!(index.lookup_ip(Ipv4Addr::from(probe).into()).is_none());
        }
    }

    #[test]
    fn drop_networks_cover_their_addresses(net in any::<u32>(), prefix in 8u8..=32, offset in any::<u32>()) {
        let mask = if prefix == 32 { u32::MAX } else { !(u32::MAX >> prefix) };
        let base = net & mask;
        let text = format!("; Spamhaus DROP List\n{}/{prefix} ; SBL{}\n", Ipv4Addr::from(base), net % 1000);
        let report = parse(FeedFormat::SpamhausDrop, &text, "drop", 1.0);
        prop_assert!(report.errors.is_empty(), "{:?}", report.errors);
        let index = IntelIndex::from_indicators(&report.indicators);
        let inside = base | (offset & !mask);
        prop_assert!(index.lookup_ip(Ipv4Addr::from(inside).into()).is_some());
        if prefix > 8 {
            let outside = base ^ (1u32 << (32 - prefix));
            prop_assert!(index.lookup_ip(Ipv4Addr::from(outside).into()).is_none());
        }
    }
}
