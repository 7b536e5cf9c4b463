//! `customer-api`: parse the command line, set up logging, run a subcommand.

use std::process::ExitCode;

use clap::Parser;
use customer_api::{
    config::{Cli, Command, redact_url},
    db, server, telemetry,
};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    let outcome = match cli.command {
        Command::Serve(settings) => serve(settings).await,
        Command::Migrate(settings) => migrate(settings).await,
        Command::Openapi => server::openapi_document()
            .map_err(Into::into)
            .and_then(|document| Ok(serde_json::to_string_pretty(&document)?))
            .map(|text| println!("{text}")),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(
    settings: customer_api::config::ServeSettings,
) -> Result<(), Box<dyn std::error::Error>> {
    tracing::info!(database = %redact_url(&settings.database.database_url), "starting");
    // Handlers are installed before the port opens: a SIGTERM during start-up (migrations)
    // must drain and exit 0 like any other, not kill the process.
    let shutdown = shutdown_signal()?;
    let listener = server::bind(settings.listen_addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", settings.listen_addr))?;
    server::serve(settings, listener, shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}

async fn migrate(
    settings: customer_api::config::DatabaseSettings,
) -> Result<(), Box<dyn std::error::Error>> {
    if db::create_database_if_missing(&settings.database_url).await? {
        tracing::info!(database = %db::database_name(&settings.database_url)?, "created database");
    }
    let pool = db::connect(&settings).await?;
    let applied = db::migrate(&pool).await?;
    tracing::info!(applied, "migrations up to date");
    Ok(())
}

/// A future resolving on SIGTERM or SIGINT; the handlers are installed when this returns.
#[cfg(unix)]
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => tracing::info!("SIGINT received"),
            _ = terminate.recv() => tracing::info!("SIGTERM received"),
        }
    })
}

/// A future resolving on Ctrl-C.
#[cfg(not(unix))]
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
