use std::io::IsTerminal;
use std::process::ExitCode;

use tracing_subscriber::EnvFilter;
use zajel_signal::config::LogFormat;
use zajel_signal::{Config, Server};

#[tokio::main]
async fn main() -> ExitCode {
    let config = match Config::load() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("zajel-signal: {err}");
            return ExitCode::from(2);
        }
    };
    start_logging(config.logging.log_format);
    raise_open_file_limit();
    let server = match Server::bind(config).await {
        Ok(server) => server,
        Err(err) => {
            eprintln!("zajel-signal: {err}");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = server.shutdown_token();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        shutdown.cancel();
        wait_for_signal().await;
        tracing::warn!("a second signal: exiting without waiting for sessions to close");
        std::process::exit(1);
    });
    server.run().await;
    ExitCode::SUCCESS
}

fn start_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let log = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => log.with_ansi(std::io::stdout().is_terminal()).init(),
        LogFormat::Json => log.json().with_current_span(false).init(),
    }
}

async fn wait_for_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

/// Every session holds a socket: allow as many open files as the hard limit permits.
#[cfg(unix)]
fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(open_files) => tracing::info!(open_files, "open-file limit"),
        Err(err) => tracing::warn!(error = %err, "could not raise the open-file limit"),
    }
}

#[cfg(not(unix))]
fn raise_open_file_limit() {}
