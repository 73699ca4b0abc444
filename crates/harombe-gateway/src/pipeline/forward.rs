//! Stage 8: the call goes to its upstream under the per-call timeout; the answer's size is
//! recorded.

use std::time::Duration;

use crate::error::GatewayError;
use crate::jsonrpc::Message;
use crate::upstream::{CallSink, Upstream};

use super::CallRecord;

/// Forwards the client's message (id rewritten) and returns the upstream's answer.
pub async fn forward(
    up: &Upstream,
    upstream_id: u64,
    msg: &Message,
    sink: Option<CallSink>,
    timeout: Duration,
    record: &mut CallRecord,
) -> Result<Message, GatewayError> {
    let resp = up.forward(upstream_id, msg, sink, timeout).await?;
    if let Some(r) = resp.field("result") {
        record.bytes_out = r.get().len() as u64;
        #[derive(serde::Deserialize)]
        struct R {
            #[serde(default, rename = "isError")]
            is_error: bool,
        }
        record.tool_error = serde_json::from_str::<R>(r.get()).is_ok_and(|r| r.is_error);
    }
    Ok(resp)
}
