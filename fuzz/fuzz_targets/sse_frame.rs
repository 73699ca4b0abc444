//! SSE framing on arbitrary bytes split at an arbitrary point: never panics, respects its
//! size bound, and parsing does not depend on where the chunks were cut.
#![no_main]

use harombe_gateway::sse::SseParser;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let cut = usize::from(cut).min(rest.len());
    let mut whole = SseParser::new(4096);
    let a = whole.push(rest);
    let mut split = SseParser::new(4096);
    let b1 = split.push(&rest[..cut]);
    let b2 = split.push(&rest[cut..]);
    if let (Ok(a), Ok(mut b1), Ok(b2)) = (a, b1, b2) {
        b1.extend(b2);
        assert_eq!(a, b1);
        for ev in &a {
            assert!(ev.data.len() <= 4096 * 3);
        }
    }
});
