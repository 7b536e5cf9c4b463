//! `customer-api`: parse the command line, set up logging, run a subcommand.

use std::process::ExitCode;

use clap::Parser;
use customer_api::{
    config::{Cli, Command, redact_url},
    db, server, telemetry,
};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    let outcome = match cli.command {
        Command::Serve(settings) => serve(settings).await,
        Command::Migrate(settings) => migrate(settings).await,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: customer_api::config::ServeSettings) -> Result<(), Box<dyn std::error::Error>> {
    tracing::info!(database = %redact_url(&settings.database.database_url), "starting");
    let listener = server::bind(settings.listen_addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", settings.listen_addr))?;
    server::serve(settings, listener, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

async fn migrate(settings: customer_api::config::DatabaseSettings) -> Result<(), Box<dyn std::error::Error>> {
    if db::create_database_if_missing(&settings.database_url).await? {
        tracing::info!(database = %db::database_name(&settings.database_url)?, "created database");
    }
    let pool = db::connect(&settings).await?;
    let applied = db::migrate(&pool).await?;
    tracing::info!(applied, "migrations up to date");
    Ok(())
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(error) => {
                    tracing::warn!(%error, "cannot watch SIGTERM; only Ctrl-C stops the server");
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => tracing::info!("SIGINT received"),
            _ = terminate.recv() => tracing::info!("SIGTERM received"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
