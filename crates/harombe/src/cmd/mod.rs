//! One module per command.

pub mod agents;
pub mod approvals;
pub mod audit;
pub mod config;
pub mod demo;
pub mod demo_upstream;
pub mod scan;
pub mod serve;
pub mod train;
pub mod wrap;

use crate::config::{LogConfig, LogFormat};

/// Logs go to stderr (stdout is for command output); `RUST_LOG` overrides the config.
pub fn init_logging(log: &LogConfig) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(log.level.as_deref().unwrap_or("info")))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match log.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
