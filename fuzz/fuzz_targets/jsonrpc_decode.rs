//! The gateway's JSON-RPC decoder on arbitrary bytes: never panics, never recurses deeply,
//! and whatever it accepts re-encodes to something it accepts again with the same id.
#![no_main]

use harombe_gateway::jsonrpc::{self, Incoming};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(incoming) = jsonrpc::decode(data, 64) else {
        return;
    };
    let items = match incoming {
        Incoming::Single(m) => vec![m],
        Incoming::Batch(v) => v,
    };
    for m in items.into_iter().flatten() {
        let again = jsonrpc::decode_one(&m.encode(), 64).expect("re-encoding decodes");
        assert_eq!(again.id().map(|i| i.get()), m.id().map(|i| i.get()));
        assert_eq!(again.method(), m.method());
    }
});
