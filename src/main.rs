//! `customer-api`: parse the command line, set up logging, run a subcommand.

use std::process::ExitCode;

use customer_api::{
    app::App,
    config::{ApiKeyCommand, Cli, Command, TracingSettings, redact_url},
    db, export_cli, healthcheck, import_cli, server, telemetry,
};

#[tokio::main]
async fn main() -> ExitCode {
    // mimalloc replaces `malloc` and `free` themselves (its `override` build), and Rust's
    // `System` allocator calls them: see the dependency's note in Cargo.toml. Naming one of
    // its functions keeps the library in the link whatever the linker decides.
    std::hint::black_box(libmimalloc_sys::mi_free as *const () as usize);
    let cli = Cli::parse_with_secret_files();
    // Traces are the server's; the one-shot commands only log.
    let tracing = match &cli.command {
        Command::Serve(settings) => settings.tracing.clone(),
        _ => TracingSettings::off(),
    };
    let telemetry = match telemetry::init(cli.log_format, &tracing) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("customer-api: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = match cli.command {
        Command::Serve(settings) => serve(settings).await,
        Command::Migrate(settings) => migrate(settings).await,
        Command::Token(args) => token(&args),
        Command::ApiKey { action } => api_key(action).await,
        Command::Healthcheck(args) => healthcheck::run(&args).await.map_err(Into::into),
        Command::Export(args) => export_cli::run(&args).await.map(drop).map_err(Into::into),
        Command::Import(args) => import_cli::run(&args).await.map(drop).map_err(Into::into),
        Command::Openapi => server::openapi_document()
            .map_err(Into::into)
            .and_then(|document| Ok(serde_json::to_string_pretty(&document)?))
            .map(|text| println!("{text}")),
    };
    // The spans of the last calls still go out.
    telemetry.shutdown();
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
    // Handlers are installed before start-up: a SIGTERM during it (migrations) must drain
    // and exit 0 like any other, not kill the process.
    let shutdown = shutdown_signal()?;
    let addr = settings.listen_addr;
    // Every configuration error (certificate files included) fails here, before the port
    // opens.
    let app = App::build(settings).await?;
    let listener = server::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    app.run(listener, shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}

async fn migrate(
    settings: customer_api::config::DatabaseSettings,
) -> Result<(), Box<dyn std::error::Error>> {
    if db::create_database_if_missing(&settings).await? {
        tracing::info!(database = %db::database_name(&settings.database_url)?, "created database");
    }
    let pool = db::connect(&settings).await?;
    let applied = db::migrate(&pool).await?;
    tracing::info!(applied, "migrations up to date");
    Ok(())
}

fn token(args: &customer_api::config::TokenArgs) -> Result<(), Box<dyn std::error::Error>> {
    let scopes = customer_api::config::split_scopes(&args.scopes);
    let token =
        customer_api::auth::jwt::mint_hs256(&args.auth.jwt(), &args.sub, &scopes, args.ttl)?;
    println!("{token}");
    Ok(())
}

async fn api_key(action: ApiKeyCommand) -> Result<(), Box<dyn std::error::Error>> {
    use customer_api::auth::api_keys;
    match action {
        ApiKeyCommand::Create {
            database,
            scopes,
            expires,
            name,
        } => {
            let pool = db::connect(&database).await?;
            db::migrate(&pool).await?;
            let expiry = expires
                .map(chrono::Duration::from_std)
                .transpose()?
                .map(|ttl| chrono::Utc::now() + ttl);
            let (info, key) = api_keys::create(
                &pool,
                &name,
                &customer_api::config::split_scopes(&scopes),
                expiry,
            )
            .await?;
            println!("id:      {}", info.id);
            println!("scopes:  {}", info.scopes.join(" "));
            println!(
                "expires: {}",
                info.expire_time.map_or("never".into(), |t| t.to_rfc3339())
            );
            println!("key:     {key}");
            eprintln!("Store the key now: it is not shown again (only its hash is kept).");
        }
        ApiKeyCommand::List { database } => {
            let pool = db::connect(&database).await?;
            for key in api_keys::list(&pool).await? {
                let state = match (key.revoke_time, key.expire_time) {
                    (Some(_), _) => "revoked",
                    (None, Some(expiry)) if expiry <= chrono::Utc::now() => "expired",
                    _ => "active",
                };
                println!(
                    "{}  {:8}  {:40}  {}  {}",
                    key.id,
                    state,
                    key.scopes.join(" "),
                    key.create_time.to_rfc3339(),
                    key.name
                );
            }
        }
        ApiKeyCommand::Revoke { database, id } => {
            let pool = db::connect(&database).await?;
            if api_keys::revoke(&pool, id).await? {
                println!("revoked {id}");
            } else {
                return Err(format!("no active key {id}").into());
            }
        }
    }
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
