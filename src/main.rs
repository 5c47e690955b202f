use std::process::ExitCode;

use tracing_subscriber::EnvFilter;
use zajel_signal::{Config, Server};

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let config = match Config::load() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("zajel-signal: {err}");
            return ExitCode::from(2);
        }
    };
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
    });
    server.run().await;
    ExitCode::SUCCESS
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
