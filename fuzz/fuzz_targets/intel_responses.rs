//! Online threat-intel answers (AbuseIPDB v2, VirusTotal v3, OTX) on arbitrary bodies: a
//! score in 0-1 or a bad-response error, never a panic.
#![no_main]

use harombe_detect::intel::online::{ProviderKind, provider_score};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let body = String::from_utf8_lossy(data);
    for kind in [ProviderKind::AbuseIpDb, ProviderKind::VirusTotal, ProviderKind::Otx] {
        if let Ok(s) = provider_score(kind, &body) {
            assert!((0.0..=1.0).contains(&s), "{kind:?} gave {s}");
        }
    }
    let _ = harombe_detect::intel::url_for_display(&body);
});
