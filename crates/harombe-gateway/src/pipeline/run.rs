//! Running the pipeline for one `tools/call`: stages 2-9 in order, then the audit event
//! (see the module doc of [`crate::pipeline`] for why this order).

use serde::Deserialize;
use serde_json::value::RawValue;

use harombe_core::{Decision, Verdict};

use crate::engine::{ClientCtx, Engine, truncated};
use crate::error::GatewayError;
use crate::jsonrpc::{self, Message};
use crate::pipeline::{CallRecord, audit};

impl Engine {
    pub(crate) async fn tools_call(
        &self,
        ctx: &ClientCtx,
        msg: &Message,
        bytes_in: usize,
    ) -> Vec<u8> {
        let id = msg
            .id()
            .map(ToOwned::to_owned)
            .unwrap_or_else(jsonrpc::null);
        #[derive(Deserialize)]
        struct P<'a> {
            name: String,
            #[serde(borrow)]
            arguments: Option<&'a RawValue>,
        }
        let session = ctx.session.as_ref().map(|s| s.id.clone());
        let params = match msg.params_as::<P<'_>>() {
            Ok(Some(p)) => p,
            Ok(None) => {
                let e = GatewayError::InvalidParams("tools/call needs params".into());
                let rec =
                    CallRecord::new(ctx.agent.clone(), session, String::new(), bytes_in as u64);
                return self.refuse(rec, &e, &id).await;
            }
            Err(e) => {
                let rec =
                    CallRecord::new(ctx.agent.clone(), session, String::new(), bytes_in as u64);
                return self.refuse(rec, &e, &id).await;
            }
        };
        let mut rec = CallRecord::new(
            ctx.agent.clone(),
            session,
            params.name.clone(),
            bytes_in as u64,
        );
        match self
            .pipeline(ctx, msg, &params.name, params.arguments, &mut rec)
            .await
        {
            Ok(out) => {
                if let Err(e) = audit::append(
                    self.deps.audit.as_ref(),
                    audit::event(&rec, self.deps.clock.as_ref()),
                )
                .await
                {
                    tracing::error!(error = %e, "audit append failed; the call is answered with an error");
                    return e.to_rpc().response(Some(&id));
                }
                out
            }
            Err(e) => self.refuse(rec, &e, &id).await,
        }
    }

    /// Stages 2-9 (authn was done by the transport; audit by the caller).
    async fn pipeline(
        &self,
        ctx: &ClientCtx,
        msg: &Message,
        name: &str,
        arguments: Option<&RawValue>,
        rec: &mut CallRecord,
    ) -> Result<Vec<u8>, GatewayError> {
        // 2. policy
        self.policy.check(&ctx.agent, name)?;
        let cat = self.catalog().await;
        // A name no upstream listed: with one upstream it is forwarded and that upstream
        // answers (the gateway stays transparent, as the conformance suite checks); with
        // several there is no one to ask, so -32601.
        let unlisted;
        let tool = match cat.get(name) {
            Some(t) => t,
            None if cat.hidden.contains(name) => {
                return Err(GatewayError::Denied(format!(
                    "tool {name} is withheld: its definition failed inspection"
                )));
            }
            None if self.upstreams.len() == 1 => {
                unlisted = crate::catalog::ToolEntry {
                    name: name.to_owned(),
                    upstream: 0,
                    upstream_name: self.upstreams[0].name().to_owned(),
                    upstream_tool: name.to_owned(),
                    raw: jsonrpc::null(),
                    schema: None,
                };
                &unlisted
            }
            None => return Err(GatewayError::UnknownTool(name.to_owned())),
        };
        rec.upstream = Some(tool.upstream_name.clone());
        rec.upstream_tool = Some(tool.upstream_tool.clone());
        // 3. validate
        rec.arguments = match arguments {
            Some(a) => serde_json::from_str(a.get())
                .map_err(|e| GatewayError::InvalidParams(format!("arguments: {e}")))?,
            None => serde_json::Value::Object(serde_json::Map::new()),
        };
        let seams = &self.deps.seams;
        if let Some(schema) = &tool.schema
            && let Err(e) = schema.validate(&rec.arguments)
        {
            // Refused, but still inspected: the audit event stores the arguments redacted
            // like any other call's, and records what they carried.
            let ins = seams.inspect.inspect_arguments(rec).await;
            rec.findings.extend(ins.findings);
            if ins.redacted_arguments.is_some() {
                rec.redacted_arguments = ins.redacted_arguments;
            }
            return Err(e);
        }
        // 4. inspect arguments
        let ins = seams.inspect.inspect_arguments(rec).await;
        rec.findings.extend(ins.findings);
        if ins.redacted_arguments.is_some() {
            rec.redacted_arguments = ins.redacted_arguments;
        }
        let secret = ins.secret_detected;
        rec.merge_verdict(ins.verdict);
        if rec.verdict.decision == Decision::Deny {
            // Still scored: a refused leak is a threat signal the audit event should carry.
            let det = seams.detect.detect(rec).await;
            rec.scores.extend(det.scores);
            rec.threat_level = det.threat_level;
            return Err(refusal(&rec.verdict, secret));
        }
        // Redacted arguments replace the originals: the tool never sees what was cut out.
        let new_arguments = match ins.replacement {
            Some(v) => {
                let raw = serde_json::value::to_raw_value(&v)
                    .map_err(|e| GatewayError::Internal(e.to_string()))?;
                rec.arguments = v;
                Some(raw)
            }
            None => None,
        };
        // 5. detect
        let det = seams.detect.detect(rec).await;
        rec.scores.extend(det.scores.clone());
        rec.threat_level = det.threat_level;
        // 6. decide
        let d = seams.decide.decide(rec, &det).await;
        rec.scores.extend(d.scores);
        rec.decision = d.details;
        rec.merge_verdict(d.verdict);
        // 7. hold
        if rec.verdict.decision == Decision::Hold {
            let v = seams.hold.hold(rec, rec.verdict.clone()).await;
            rec.verdict = v;
        }
        match rec.verdict.decision {
            Decision::Deny => return Err(refusal(&rec.verdict, false)),
            Decision::Hold => {
                return Err(GatewayError::Denied(format!(
                    "held for approval: {}",
                    rec.verdict.reasons.join("; ")
                )));
            }
            Decision::Allow => {}
        }
        // 8. forward (tool name as the upstream knows it)
        let up = self
            .upstreams
            .get(tool.upstream)
            .ok_or_else(|| GatewayError::Internal("tool routed to a missing upstream".into()))?;
        let mut out_msg = None;
        if tool.upstream_tool != name {
            let n = serde_json::value::to_raw_value(&tool.upstream_tool)
                .map_err(|e| GatewayError::Internal(e.to_string()))?;
            out_msg = Some(msg.with_param("name", &n)?);
        }
        if let Some(a) = &new_arguments {
            out_msg = Some(out_msg.as_ref().unwrap_or(msg).with_param("arguments", a)?);
        }
        let out = out_msg.as_ref().unwrap_or(msg);
        let client_id = msg
            .id()
            .map(ToOwned::to_owned)
            .unwrap_or_else(jsonrpc::null);
        let resp = self.forward_tracked(ctx, up, &client_id, out).await?;
        crate::pipeline::forward::record_answer(&resp, rec);
        // 9. inspect the result
        if let Some(result) = resp.field("result") {
            let ins = seams.inspect.inspect_result(rec, result).await;
            rec.findings.extend(ins.findings);
            let secret = ins.secret_detected;
            rec.merge_verdict(ins.verdict);
            if rec.verdict.decision != Decision::Allow {
                return Err(refusal(&rec.verdict, secret));
            }
            if let Some(redacted) = ins.replacement {
                // The agent gets the result with the findings cut out.
                let raw = serde_json::value::to_raw_value(&redacted)
                    .map_err(|e| GatewayError::Internal(e.to_string()))?;
                rec.bytes_out = raw.get().len() as u64;
                return Ok(jsonrpc::result(&client_id, &raw));
            }
        } else if let Some(err) = resp.field("error") {
            // An upstream's error can carry what its result would have (a token echoed in a
            // message, data): it is inspected the same way.
            let ins = seams.inspect.inspect_result(rec, err).await;
            let found = !ins.findings.is_empty();
            rec.findings.extend(ins.findings);
            let secret = ins.secret_detected;
            rec.merge_verdict(ins.verdict);
            if rec.verdict.decision != Decision::Allow {
                return Err(refusal(&rec.verdict, secret));
            }
            match ins.replacement {
                Some(redacted) => {
                    let redacted = if is_error_object(&redacted) {
                        redacted
                    } else {
                        serde_json::json!({
                            "code": error_code(err),
                            "message": "upstream error withheld: content inspection cut it out",
                        })
                    };
                    let out = jsonrpc::error(&client_id, &redacted);
                    rec.error = Some((error_code(err), truncated(&redacted.to_string())));
                    rec.bytes_out = out.len() as u64;
                    return Ok(out);
                }
                // Let through as found (a `log` action), but never copied into the audit log.
                None if found => {
                    rec.error = Some((
                        error_code(err),
                        "upstream error withheld from the audit log: inspection found \
                         something in it (see findings)"
                            .to_owned(),
                    ));
                }
                None => rec.error = Some((error_code(err), truncated(err.get()))),
            }
        }
        Ok(resp.encode_with_id(&client_id))
    }

    /// Answers a refused or failed call with its error, after auditing it.
    async fn refuse(&self, mut rec: CallRecord, e: &GatewayError, id: &RawValue) -> Vec<u8> {
        let refused = matches!(
            e,
            GatewayError::Denied(_)
                | GatewayError::RateLimited(_)
                | GatewayError::SecretDetected(_)
                | GatewayError::InvalidParams(_)
                | GatewayError::UnknownTool(_)
                | GatewayError::InvalidRequest(_)
        );
        if refused && rec.verdict.decision == Decision::Allow {
            rec.verdict = Verdict::deny(e.to_string());
        }
        rec.error = Some((e.code(), e.to_string()));
        let event = audit::event(&rec, self.deps.clock.as_ref());
        if let Err(ae) = audit::append(self.deps.audit.as_ref(), event).await {
            tracing::error!(error = %ae, "audit append failed");
        }
        e.to_rpc().response(Some(id))
    }
}

fn refusal(v: &Verdict, secret: bool) -> GatewayError {
    let why = if v.reasons.is_empty() {
        "refused".to_owned()
    } else {
        v.reasons.join("; ")
    };
    if secret {
        GatewayError::SecretDetected(why)
    } else {
        GatewayError::Denied(why)
    }
}

/// Whether `v` can stand as a JSON-RPC error object (an integer `code`, a string
/// `message`).
fn is_error_object(v: &serde_json::Value) -> bool {
    v.get("code").is_some_and(serde_json::Value::is_i64)
        && v.get("message").is_some_and(serde_json::Value::is_string)
}

fn error_code(err: &RawValue) -> i64 {
    #[derive(Deserialize)]
    struct E {
        code: i64,
    }
    serde_json::from_str::<E>(err.get())
        .map(|e| e.code)
        .unwrap_or(0)
}
