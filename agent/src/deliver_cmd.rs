//! `warble-agent deliver`: sends what waits in a station's outbox to its broker.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use warble_agent::outbox::Outbox;
use warble_agent::publish::{BrokerConfig, drain};

/// `warble-agent deliver` arguments.
#[derive(clap::Args)]
pub struct DeliverArgs {
    /// Station file (its [mqtt] and [storage] sections).
    #[arg(long)]
    pub config: PathBuf,
    /// Give up after this many seconds; what is left stays in the outbox for next time.
    #[arg(long, default_value_t = 60.0)]
    pub timeout: f64,
}

/// Exit 0: the outbox is empty; 1: events are left (the broker was unreachable).
pub fn run(args: DeliverArgs, st: warble_config::StationConfig) -> anyhow::Result<ExitCode> {
    if !(args.timeout.is_finite() && args.timeout > 0.0) {
        anyhow::bail!("--timeout {}: must be positive seconds", args.timeout);
    }
    let base = args.config.parent().unwrap_or(std::path::Path::new("."));
    let broker = BrokerConfig::from_station(&st, base)?;
    let path = warble_agent::outbox::path_in(&st.data_dir);
    let mut outbox = Outbox::open(&path, st.outbox_quota_bytes)?;
    let before = outbox.stats()?;
    tracing::info!(
        "{} event(s) waiting in {}; delivering to {}:{} as {}",
        before.depth,
        path.display(),
        broker.endpoint.host,
        broker.endpoint.port,
        broker.client_id
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = runtime.block_on(async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(args.timeout);
        drain(&mut outbox, &broker, deadline).await
    })?;
    println!(
        "delivered {} event(s), {} pending, {} connection(s){}",
        report.delivered,
        report.pending,
        report.connections,
        report
            .last_error
            .as_deref()
            .map(|e| format!("; last problem: {e}"))
            .unwrap_or_default()
    );
    Ok(if report.pending == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
