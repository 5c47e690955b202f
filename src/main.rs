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
    zajel_signal::redact::log_in_clear(config.logging.log_ids);
    raise_open_file_limit();
    let server = match Server::bind(config).await {
        Ok(server) => server,
        Err(err) => {
            eprintln!("zajel-signal: {err}");
            return ExitCode::FAILURE;
        }
    };
    // Before the server says it is ready: a SIGTERM from then on drains instead of killing it.
    let mut stop_signals = match StopSignals::install() {
        Ok(signals) => signals,
        Err(err) => {
            eprintln!("zajel-signal: cannot handle stop signals: {err}");
            return ExitCode::FAILURE;
        }
    };
    // systemd's Type=notify (deploy/zajel-signal.service): ready once every listener is bound. Without
    // NOTIFY_SOCKET (not under systemd) these do nothing.
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    let shutdown = server.shutdown_token();
    tokio::spawn(async move {
        stop_signals.next().await;
        tracing::info!("shutting down");
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
        shutdown.cancel();
        stop_signals.next().await;
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

/// SIGINT and SIGTERM, handled from the moment this is made (their default would kill the process).
#[cfg(unix)]
struct StopSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl StopSignals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    async fn next(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

/// Ctrl-C where there are no Unix signals.
#[cfg(not(unix))]
struct StopSignals;

#[cfg(not(unix))]
impl StopSignals {
    fn install() -> std::io::Result<Self> {
        Ok(Self)
    }

    async fn next(&mut self) {
        let _ = tokio::signal::ctrl_c().await;
    }
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
