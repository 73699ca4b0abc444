//! Integration tests: the gateway in-process on 127.0.0.1:0 with real peers (the MCP
//! reference server, the Python SDK, the conformance suite) and the in-memory audit store.

mod common;

mod bad_input;
mod everything;
mod peers;
mod seams;
mod streams;
