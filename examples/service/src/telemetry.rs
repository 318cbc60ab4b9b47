//! Logging and the metrics recorder.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Log lines on stderr: `RUST_LOG` if set, else warnings from everything and
/// one line per request (`tower_http` at `INFO`). No log line carries a secret:
/// the crate redacts its tokens and the service logs none.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,tower_http=info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Installs the Prometheus recorder as the process's `metrics` recorder,
/// before any connection is made, and returns the handle `/metrics`
/// renders. Latencies are exported as histograms with buckets from 100 µs
/// to 10 s. A task folds recorded samples into the buckets every 5 s, so
/// memory stays bounded when nothing scrapes `/metrics`. Call it inside the
/// Tokio runtime.
pub fn install_metrics() -> Result<PrometheusHandle, String> {
    const BUCKETS: &[f64] = &[
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        5.0, 10.0,
    ];
    let handle = PrometheusBuilder::new()
        .set_buckets(BUCKETS)
        .map_err(|e| format!("metrics buckets: {e}"))?
        .install_recorder()
        .map_err(|e| format!("installing the metrics recorder: {e}"))?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}
