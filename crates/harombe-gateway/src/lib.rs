//! harombe-gateway: the MCP data plane.
//!
//! It owns the JSON-RPC codec ([`jsonrpc`]), the transports (streamable HTTP in [`http`],
//! stdio in [`stdio`]), MCP sessions, the upstream pool (stdio children and HTTP servers,
//! multiplexed), tool aggregation ([`catalog`]) and the call pipeline ([`pipeline`]):
//! authn → policy → validate → inspect → detect → decide → hold → forward → inspect
//! result → audit.
//!
//! It depends on harombe-core only. It must not name a concrete store, detector or
//! approval engine: those arrive as ports (`Arc<dyn AuditStore>`) and seams
//! (`Arc<dyn InspectStage>`, ...) in [`GatewayDeps`].
//!
//! Key design decision: the proxy path stays on *raw* JSON. A message is kept as its
//! top-level members with `RawValue` values, and only the `id` (and, for prefixed tools,
//! `params.name`) is ever rewritten, so unknown methods, unknown fields and numbers no
//! serde type could hold pass through byte for byte.

pub mod catalog;
pub mod config;
pub mod engine;
pub mod error;
pub mod http;
pub mod jsonrpc;
pub mod pipeline;
pub mod registry;
pub mod session;
pub mod sse;
pub mod stdio;
pub mod upstream;

use std::sync::Arc;

use harombe_core::{AuditStore, Clock};

pub use config::{
    AgentPolicy, GatewayConfig, Limits, PolicyConfig, PrefixMode, RateLimit, ToolNaming,
    UpstreamConfig,
};
pub use error::{GatewayError, RpcError};
pub use http::{serve, serve_with_listener};
pub use pipeline::{
    CallRecord, DecideStage, Decided, DetectStage, Detection, HoldStage, InspectStage, Inspection,
    Seams,
};
pub use registry::{AgentRecord, AgentRegistry, FileAgentRegistry, MemoryAgentRegistry};
pub use stdio::wrap;

/// What the gateway is wired to: the audit store, the clock, the agents, and the seams.
#[derive(Clone, Debug)]
pub struct GatewayDeps {
    pub audit: Arc<dyn AuditStore>,
    pub clock: Arc<dyn Clock>,
    pub agents: Arc<dyn AgentRegistry>,
    pub seams: Seams,
}

impl GatewayDeps {
    /// Dependencies with pass-through seams.
    pub fn new(
        audit: Arc<dyn AuditStore>,
        clock: Arc<dyn Clock>,
        agents: Arc<dyn AgentRegistry>,
    ) -> Self {
        Self {
            audit,
            clock,
            agents,
            seams: Seams::default(),
        }
    }

    pub fn with_inspect(mut self, s: Arc<dyn InspectStage>) -> Self {
        self.seams.inspect = s;
        self
    }

    pub fn with_detect(mut self, s: Arc<dyn DetectStage>) -> Self {
        self.seams.detect = s;
        self
    }

    pub fn with_decide(mut self, s: Arc<dyn DecideStage>) -> Self {
        self.seams.decide = s;
        self
    }

    pub fn with_hold(mut self, s: Arc<dyn HoldStage>) -> Self {
        self.seams.hold = s;
        self
    }
}
