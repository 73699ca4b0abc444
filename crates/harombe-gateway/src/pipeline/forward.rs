//! Stage 8: the call goes to its upstream under the per-call timeout (see
//! `Engine::forward_tracked`); here the answer's size and tool-error flag are recorded.

use crate::jsonrpc::Message;

use super::CallRecord;

/// Records what the upstream answered: result size and `isError`.
pub fn record_answer(resp: &Message, record: &mut CallRecord) {
    if let Some(r) = resp.field("result") {
        record.bytes_out = r.get().len() as u64;
        #[derive(serde::Deserialize)]
        struct R {
            #[serde(default, rename = "isError")]
            is_error: bool,
        }
        // Skip the parse when the key cannot be there (neither spelt out nor escaped).
        let text = r.get();
        record.tool_error = (text.contains("isError") || text.contains("\\u"))
            && serde_json::from_str::<R>(text).is_ok_and(|r| r.is_error);
    }
}
