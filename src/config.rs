//! Command line and environment configuration.
//!
//! Every setting is a flag with an environment fallback (clap's `env`), so the same binary is
//! configured by flags in development and by environment in deployment. `--help` documents
//! them all (and `docs/operations.md` repeats them, kept in step by a test).
//!
//! Secrets are never printed: `--help` shows no value taken from the environment (for any
//! variable: [`Cli::parse_with_secret_files`] hides them all), and the `Debug` output of every
//! settings struct redacts them. Each secret in [`SECRET_VARIABLES`] can also be read from a
//! file named by `<VAR>_FILE` (the Docker and Kubernetes secrets convention); the file's
//! trailing line break is dropped, and setting both `<VAR>` and `<VAR>_FILE` is an error.

use std::{fmt, marker::PhantomData, net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

/// `customer-api`: the customer-data service.
#[derive(Debug, Parser)]
#[command(name = "customer-api", version = VERSION, about, long_about = None)]
pub struct Cli {
    /// Log format: `text` for humans, `json` for log shippers.
    #[arg(long, env, default_value = "text", global = true)]
    pub log_format: LogFormat,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// What `--version` prints after the name: version, git commit and build date.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("CUSTOMER_API_COMMIT"),
    ", built ",
    env!("CUSTOMER_API_BUILD_DATE"),
    ")"
);

/// The git commit the binary was built from (`unknown` without git or `GIT_COMMIT`).
pub const COMMIT: &str = env!("CUSTOMER_API_COMMIT");

/// The variables holding secrets; each may instead name a file with `<VAR>_FILE`.
pub const SECRET_VARIABLES: &[&str] = &[
    "DATABASE_URL",
    "DATABASE_SESSION_URL",
    "JWT_HS256_SECRET",
    "PAGE_TOKEN_KEY",
    "BUSINESS_REGISTRY_TOKEN",
];

impl Cli {
    /// Parses the process's arguments and environment, secrets from `<VAR>_FILE` included;
    /// exits with clap's message on an error.
    pub fn parse_with_secret_files() -> Self {
        Self::try_parse_with_secret_files(std::env::args_os(), |name| std::env::var_os(name))
            .unwrap_or_else(|error| error.exit())
    }

    /// [`Cli::parse_with_secret_files`] over `args` and the variables `var` looks up (clap
    /// itself still reads `<VAR>` from the process environment).
    pub fn try_parse_with_secret_files<I, T>(
        args: I,
        var: impl Fn(&str) -> Option<std::ffi::OsString>,
    ) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let mut command = hide_env_values(Self::command());
        for name in SECRET_VARIABLES {
            let file_variable = format!("{name}_FILE");
            let Some(path) = var(&file_variable) else {
                continue;
            };
            if var(name).is_some() {
                return Err(command.error(
                    clap::error::ErrorKind::ArgumentConflict,
                    format!("{name} and {file_variable} are both set: set only one of them"),
                ));
            }
            let value = read_secret_file(&file_variable, std::path::Path::new(&path))
                .map_err(|message| command.error(clap::error::ErrorKind::Io, message))?;
            command = with_env_default(command, name, &value);
        }
        let matches = command.try_get_matches_from(args)?;
        Self::from_arg_matches(&matches)
    }
}

/// The contents of a secret file, without its trailing line break. Errors name the variable
/// and the file, never contents.
fn read_secret_file(variable: &str, path: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{variable}: cannot read {}: {e}", path.display()))?;
    let value = text.trim_end_matches(['\n', '\r']);
    if value.is_empty() {
        return Err(format!("{variable}: {} is empty", path.display()));
    }
    Ok(value.to_owned())
}

/// `command` and its subcommands with no environment value shown in `--help`.
fn hide_env_values(command: clap::Command) -> clap::Command {
    let names: Vec<String> = command
        .get_subcommands()
        .map(|sub| sub.get_name().to_owned())
        .collect();
    let command = command.mut_args(|arg| arg.hide_env_values(true));
    names.iter().fold(command, |command, name| {
        command.mut_subcommand(name, hide_env_values)
    })
}

/// `command` and its subcommands with no argument read from the environment.
fn without_env(command: clap::Command) -> clap::Command {
    let names: Vec<String> = command
        .get_subcommands()
        .map(|sub| sub.get_name().to_owned())
        .collect();
    let command = command.mut_args(|arg| arg.env(None));
    names.iter().fold(command, |command, name| {
        command.mut_subcommand(name, without_env)
    })
}

/// `command` with `value` as the default of every argument read from `variable` (the value of
/// a `<VAR>_FILE`), hidden from `--help`. A flag on the command line still wins.
fn with_env_default(command: clap::Command, variable: &str, value: &str) -> clap::Command {
    let names: Vec<String> = command
        .get_subcommands()
        .map(|sub| sub.get_name().to_owned())
        .collect();
    let command = command.mut_args(|arg| {
        if arg.get_env().is_some_and(|env| env == variable) {
            arg.default_value(value.to_owned())
                .hide_default_value(true)
                .required(false)
        } else {
            arg
        }
    });
    names.iter().fold(command, |command, name| {
        command.mut_subcommand(name, |sub| with_env_default(sub, variable, value))
    })
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
#[allow(
    clippy::large_enum_variant,
    reason = "parsed once per process; boxing would only add noise at the use sites"
)]
pub enum Command {
    /// Apply pending migrations, then serve gRPC, gRPC-web and HTTP on one listener.
    Serve(ServeSettings),
    /// Create the database if it does not exist and apply pending migrations, then exit.
    Migrate(DatabaseSettings),
    /// Print the OpenAPI 3.1 document of the REST routes (no database needed).
    Openapi,
    /// Mint an HS256 token with the configured secret (development, tests, grpcurl sessions).
    Token(TokenArgs),
    /// Manage API keys for service accounts with database credentials: the first admin key
    /// (`create --scopes customers.admin`); after it, `ApiKeyService` (`/v1/apiKeys`) needs
    /// none. Changes are audited as the caller `cli`.
    ApiKey {
        /// What to do with keys.
        #[command(subcommand)]
        action: ApiKeyCommand,
    },
    /// Probe a running server's /readyz on LISTEN_ADDR; exit 0 when it answers 200 (the
    /// container image's HEALTHCHECK: the image has no shell or curl).
    Healthcheck(crate::healthcheck::HealthcheckArgs),
    /// Export customers from a running server (ExportCustomers over gRPC) as NDJSON or CSV,
    /// with a progress bar.
    Export(crate::export_cli::ExportArgs),
    /// Import customers from an NDJSON or CSV file into a running server (ImportCustomers
    /// over gRPC), with a progress bar; re-run with the same --request-id to resume.
    Import(crate::import_cli::ImportArgs),
}

/// `customer-api token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Token verification settings (the HS256 secret, issuer, audience).
    #[command(flatten)]
    pub auth: AuthSettings,
    /// Space- or comma-separated scopes to grant.
    #[arg(long, default_value = "customers.read customers.write")]
    pub scopes: String,
    /// Lifetime of the token.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub ttl: Duration,
    /// Subject (`sub`), recorded as the actor of writes.
    #[arg(long, default_value = "developer")]
    pub sub: String,
}

/// `customer-api api-key …`.
#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Create a key; the key is printed once and only its hash is stored.
    Create {
        /// Database.
        #[command(flatten)]
        database: DatabaseSettings,
        /// Space- or comma-separated scopes to grant.
        #[arg(long)]
        scopes: String,
        /// Lifetime, e.g. 90d or 2160h. Unset: no expiry.
        #[arg(long, value_parser = parse_duration)]
        expires: Option<Duration>,
        /// A label for the key.
        #[arg(long, default_value = "service account")]
        name: String,
    },
    /// List keys (never their secrets).
    List {
        /// Database.
        #[command(flatten)]
        database: DatabaseSettings,
    },
    /// Revoke a key by id.
    Revoke {
        /// Database.
        #[command(flatten)]
        database: DatabaseSettings,
        /// The key id (a UUID, as printed by `create` and `list`).
        id: uuid::Uuid,
    },
}

/// How callers are authenticated.
#[derive(Debug, Clone, Args)]
pub struct AuthSettings {
    /// Shared secret for HS256 tokens (at least 32 bytes). Or a file: JWT_HS256_SECRET_FILE.
    #[arg(long, env, hide_env_values = true)]
    pub jwt_hs256_secret: Option<Secret>,
    /// JWKS file with the public keys of RS256/ES256/EdDSA token issuers.
    #[arg(long, env, conflicts_with = "jwks_url")]
    pub jwks_file: Option<std::path::PathBuf>,
    /// JWKS URL (http or https) with the issuers' public keys; fetched at start-up and again,
    /// at most once a minute, when a token names an unknown key.
    #[arg(long, env, hide_env_values = true)]
    pub jwks_url: Option<String>,
    /// Required token issuer (`iss`).
    #[arg(long, env)]
    pub jwt_issuer: Option<String>,
    /// Required token audience (`aud`).
    #[arg(long, env)]
    pub jwt_audience: Option<String>,
    /// Clock skew tolerated for `exp`/`nbf`.
    #[arg(long, env, default_value = "30s", value_parser = parse_duration)]
    pub jwt_leeway: Duration,
    /// Longest token lifetime accepted: a token whose `exp` lies further than this after its
    /// `iat` (or after now) is refused. 0 accepts any lifetime.
    #[arg(long, env, default_value = "24h", value_parser = parse_duration)]
    pub jwt_max_lifetime: Duration,
    /// Require a `customers.read` credential for server reflection and `/openapi.json`
    /// (open by default, like the health checks, which always stay open).
    #[arg(long, env)]
    pub protect_docs: bool,
    /// Serve without authentication (local experiments only; logged loudly).
    #[arg(long, env)]
    pub auth_disabled: bool,
    /// How long a verified API key is trusted without asking the database again: a revoked
    /// or expired key stops working within this time. 0 asks the database on every call.
    #[arg(long, env, default_value = "5s", value_parser = parse_duration)]
    pub api_key_cache_ttl: Duration,
}

impl AuthSettings {
    /// The token verification settings.
    pub fn jwt(&self) -> crate::auth::jwt::JwtSettings {
        crate::auth::jwt::JwtSettings {
            hs256_secret: self.jwt_hs256_secret.as_deref().map(str::to_owned),
            jwks_file: self.jwks_file.clone(),
            jwks_url: self.jwks_url.clone(),
            issuer: self.jwt_issuer.clone(),
            audience: self.jwt_audience.clone(),
            leeway: self.jwt_leeway,
            max_lifetime: self.jwt_max_lifetime,
        }
    }
}

/// Splits `customers.read customers.write` or `a,b` into scopes.
pub fn split_scopes(text: &str) -> Vec<String> {
    text.split([' ', ','])
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// How to reach PostgreSQL and how to pool connections.
#[derive(Debug, Clone, Args)]
pub struct DatabaseSettings {
    /// PostgreSQL connection URL, e.g. `postgres://user:pass@host:5432/customer_api`, with
    /// libpq's TLS parameters: `sslmode` (disable, prefer (default), require, verify-ca,
    /// verify-full), `sslrootcert` (a PEM file, or `system`), `sslcert` and `sslkey`. Or a
    /// file: DATABASE_URL_FILE.
    #[arg(long, env, hide_env_values = true)]
    pub database_url: SecretUrl,

    /// URL for the connections that must be real sessions (migrations, the relay lease,
    /// event notifications): set it to a direct or session-pooled address when DATABASE_URL
    /// goes through a transaction-pooling PgBouncer. Unset: DATABASE_URL. Or a file:
    /// DATABASE_SESSION_URL_FILE.
    #[arg(long, env, hide_env_values = true)]
    pub database_session_url: Option<SecretUrl>,

    /// Cache prepared statements per pooled connection. `false` for a transaction-pooling
    /// PgBouncer: statements are then prepared and closed inside an explicit transaction each
    /// (a little slower; see docs/operations.md).
    #[arg(long, env = "DB_PREPARED_STATEMENTS", default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub prepared_statements: bool,

    /// Maximum number of pooled connections.
    #[arg(long, env = "DB_POOL_SIZE", default_value_t = 16)]
    pub pool_size: u32,

    /// How long a request waits for a pooled connection before answering UNAVAILABLE.
    #[arg(long, env = "DB_CHECKOUT_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub checkout_timeout: Duration,

    /// Server-side limit on a single SQL statement (`statement_timeout`).
    #[arg(long, env = "DB_STATEMENT_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub statement_timeout: Duration,
}

/// Settings of `customer-api serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeSettings {
    /// Database and pool.
    #[command(flatten)]
    pub database: DatabaseSettings,

    /// Most Gets of one resource type (GetCustomer, GetCompany) reading at once. Gets that
    /// arrive while that many read wait for one to finish and then share one statement
    /// (`WHERE id = ANY`), so under load the database does one statement's work for many
    /// Gets; below it every Get reads at once, alone.
    #[arg(long, env = "DB_READ_LANES", default_value_t = crate::core::coalesce::DEFAULT_LANES, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub db_read_lanes: u32,

    /// Authentication.
    #[command(flatten)]
    pub auth: AuthSettings,

    /// Address of the one listener serving gRPC (h2c), gRPC-web and HTTP.
    #[arg(long, env, default_value = "127.0.0.1:8080")]
    pub listen_addr: SocketAddr,

    /// Origins allowed to call from browsers (CORS), comma separated; `*` allows any.
    /// Empty (the default) allows none: browsers may then only call from the same origin.
    #[arg(long, env, value_delimiter = ',', num_args = 0..)]
    pub cors_allowed_origins: Vec<String>,

    /// On SIGTERM/SIGINT, how long in-flight calls may take to finish before the process exits.
    #[arg(long, env = "SHUTDOWN_DRAIN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub drain_timeout: Duration,

    /// On SIGTERM/SIGINT, how long to keep serving with /readyz and gRPC health reporting
    /// NOT_SERVING before the drain starts, so that load balancers stop sending new calls
    /// first (set it above their health-check period; Kubernetes: endpoint propagation).
    #[arg(long, env, default_value = "0s", value_parser = parse_duration)]
    pub shutdown_delay: Duration,

    /// Secret the page-token encryption key is derived from (any string, at least 16 bytes),
    /// shared by every instance given it; it also still verifies tokens of the older signed
    /// format. Unset: a key generated once and stored in the database, shared by every
    /// instance over it. Or a file: PAGE_TOKEN_KEY_FILE.
    #[arg(long, env, hide_env_values = true)]
    pub page_token_key: Option<Secret>,

    /// Traces (OpenTelemetry).
    #[command(flatten)]
    pub tracing: TracingSettings,

    /// Share of successful calls written to the access log (target `access`), from 0 to 1;
    /// failed calls are always written.
    #[arg(long, env, default_value = "1", value_parser = parse_share)]
    pub access_log_sample: f64,

    /// How long request ids are remembered for safe retries (AIP-155), and imports' operations
    /// after they stop moving.
    #[arg(long, env, default_value = "24h", value_parser = parse_duration)]
    pub request_id_ttl: Duration,

    /// How long a soft-deleted customer is kept (and can be undeleted) before it is purged
    /// with its notes for good (AIP-164 `expire_time`); 0 keeps deleted customers for ever.
    #[arg(long, env, default_value = "30d", value_parser = parse_duration)]
    pub customer_purge_after: Duration,

    /// How often expired customers are looked for and purged.
    #[arg(long, env, default_value = "1h", value_parser = parse_duration)]
    pub customer_purge_interval: Duration,

    /// Largest accepted request message, in bytes (gRPC and gRPC-web).
    #[arg(long, env, default_value_t = 4 * 1024 * 1024)]
    pub max_request_bytes: usize,

    /// Requests per second each caller (token subject or API key) may make; 0 disables.
    #[arg(long, env, default_value_t = 500)]
    pub rate_limit_rps: u32,

    /// Burst each caller may make above the steady rate.
    #[arg(long, env, default_value_t = 1000)]
    pub rate_limit_burst: u32,

    /// Calls served at once; beyond this, calls are shed at once with UNAVAILABLE / 503
    /// instead of queueing.
    #[arg(long, env, default_value_t = 512)]
    pub max_concurrent_requests: usize,

    /// Largest accepted REST/JSON request body, in bytes (larger answers 413).
    #[arg(long, env, default_value_t = 1024 * 1024)]
    pub max_rest_body_bytes: usize,

    /// How often the database is probed for health reporting.
    #[arg(long, env, default_value = "2s", value_parser = parse_duration)]
    pub health_probe_interval: Duration,

    /// PEM file of CA certificates trusted for outbound HTTPS (JWKS_URL, the business
    /// registry) in addition to the public (Mozilla) roots: a private or corporate CA.
    #[arg(long, env, value_name = "FILE")]
    pub extra_ca_file: Option<PathBuf>,

    /// TLS on the listener (plaintext unless a certificate is configured).
    #[command(flatten)]
    pub tls: TlsSettings,

    /// Domain events: retention and NATS JetStream delivery.
    #[command(flatten)]
    pub events: EventSettings,

    /// The business registry behind business-info enrichment (optional).
    #[command(flatten)]
    pub registry: RegistrySettings,

    /// Connection, body and per-caller limits against abusive peers.
    #[command(flatten)]
    pub limits: LimitSettings,
}

/// Limits against peers that hold resources without using them (see `docs/operations.md`,
/// "Abuse limits"): connections, timeouts, and each caller's share of the call budget.
#[derive(Debug, Clone, Args)]
pub struct LimitSettings {
    /// Connections open at once; a connection beyond it is closed at once.
    #[arg(long, env, default_value_t = 4096)]
    pub max_connections: usize,

    /// Time a new connection has to send its first bytes, and an HTTP/1.1 request to send
    /// its headers; the connection is closed otherwise.
    #[arg(long, env, default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,

    /// A connection with no call in flight for this long is closed (HTTP/1.1 and HTTP/2;
    /// an open watch stream is a call in flight).
    #[arg(long, env, default_value = "2m", value_parser = parse_duration)]
    pub connection_idle_timeout: Duration,

    /// Time a request body (a gRPC request message) has to arrive after the request's
    /// headers: later is DEADLINE_EXCEEDED (gRPC) or 408 (REST).
    #[arg(long, env, default_value = "10s", value_parser = parse_duration)]
    pub request_body_timeout: Duration,

    /// Streams (calls) one HTTP/2 connection may have open at once.
    #[arg(long, env, default_value_t = 100)]
    pub http2_max_concurrent_streams: u32,

    /// Calls one caller (token subject or API key) may have in flight at once, its share of
    /// MAX_CONCURRENT_REQUESTS; beyond it RESOURCE_EXHAUSTED / 429.
    #[arg(long, env, default_value_t = 128)]
    pub max_concurrent_requests_per_caller: usize,

    /// Watch streams (WatchCustomerEvents) one caller may have open at once; beyond it
    /// RESOURCE_EXHAUSTED / 429.
    #[arg(long, env, default_value_t = 16)]
    pub max_watches_per_caller: usize,

    /// Watch streams open at once on this server, all callers together.
    #[arg(long, env, default_value_t = 1024)]
    pub max_watches: usize,

    /// A watch whose client has not read for this long (its next event found no room) is
    /// ended with UNAVAILABLE and a resume token.
    #[arg(long, env, default_value = "30s", value_parser = parse_duration)]
    pub watch_slow_consumer_timeout: Duration,

    /// Most bytes of items (their protobuf encoding) in one List page or BatchGet answer: a
    /// page stops before the row that would pass it, with a next page token (at least one
    /// row); a BatchGet past it is INVALID_ARGUMENT. Keep it well below the 16 MiB message
    /// limit (REST's JSON of a page is up to about twice its protobuf).
    #[arg(long, env, default_value_t = crate::core::list::DEFAULT_MAX_PAGE_BYTES)]
    pub max_response_page_bytes: usize,
}

impl LimitSettings {
    /// The timeouts of each connection.
    pub fn timeouts(&self) -> crate::connections::Timeouts {
        crate::connections::Timeouts {
            first_bytes: self.header_read_timeout,
            idle: self.connection_idle_timeout,
            request_body: self.request_body_timeout,
        }
    }
}

/// Domain events: how long the change stream keeps them, and where the relay publishes them.
#[derive(Clone, Args)]
pub struct EventSettings {
    /// NATS server URL (e.g. `nats://127.0.0.1:4222`). When set, a relay publishes every
    /// event to JetStream; unset, events are only served by the change stream RPCs.
    #[arg(long, env, hide_env_values = true)]
    pub nats_url: Option<String>,

    /// JetStream stream the relay publishes to (created if missing).
    #[arg(long, env, default_value = "CUSTOMER_EVENTS")]
    pub nats_stream: String,

    /// Subject prefix: events go to `<prefix>.<type>`, e.g. `customer.v1.events.registered`.
    #[arg(long, env, default_value = "customer.v1.events")]
    pub nats_subject_prefix: String,

    /// JetStream duplicate window of a stream this service creates: a republish of an event
    /// (same `Nats-Msg-Id`) within it is dropped.
    #[arg(long, env, default_value = "2m", value_parser = parse_duration)]
    pub nats_duplicate_window: Duration,

    /// How long the relay waits for JetStream to acknowledge one event.
    #[arg(long, env, default_value = "2s", value_parser = parse_duration)]
    pub nats_ack_timeout: Duration,

    /// CloudEvents `source` attribute of published events.
    #[arg(long, env, default_value = "//customer.example.com/customer-api")]
    pub event_source: String,

    /// How long events are kept for the change stream (published ones, or all of them when no
    /// broker is configured).
    #[arg(long, env, default_value = "30d", value_parser = parse_duration)]
    pub event_retention: Duration,

    /// How often expired events are pruned.
    #[arg(long, env, default_value = "1h", value_parser = parse_duration)]
    pub event_prune_interval: Duration,

    /// How long a WatchCustomerEvents stream stays open through a database outage (retrying)
    /// before it ends with UNAVAILABLE and the resume token to watch again from.
    #[arg(long, env, default_value = "30s", value_parser = parse_duration)]
    pub watch_outage_tolerance: Duration,
}

impl fmt::Debug for EventSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventSettings")
            .field("nats_url", &self.nats_url.as_deref().map(redact_url))
            .field("nats_stream", &self.nats_stream)
            .field("nats_subject_prefix", &self.nats_subject_prefix)
            .field("nats_duplicate_window", &self.nats_duplicate_window)
            .field("nats_ack_timeout", &self.nats_ack_timeout)
            .field("event_source", &self.event_source)
            .field("event_retention", &self.event_retention)
            .field("event_prune_interval", &self.event_prune_interval)
            .field("watch_outage_tolerance", &self.watch_outage_tolerance)
            .finish()
    }
}

/// The external business registry (see `docs/business-registry.md`). Enrichment is off
/// unless `--business-registry-url` is set; the other settings then tune the client.
#[derive(Debug, Clone, Args)]
pub struct RegistrySettings {
    /// URL template of the registry's JSON API, http or https, with `{business_id}` in the
    /// path or query, e.g. `https://registry.example/v1/companies/{business_id}`. Unset:
    /// business-info lookups answer FAILED_PRECONDITION.
    #[arg(long, env, value_name = "URL", value_parser = crate::registry::UrlTemplate::parse, hide_env_values = true)]
    pub business_registry_url: Option<crate::registry::UrlTemplate>,

    /// Name reported as the `source` of business details (default: the URL's host).
    #[arg(long, env)]
    pub business_registry_name: Option<String>,

    /// Bearer token sent to the registry (`Authorization: Bearer …`), if it needs one. Or a
    /// file: BUSINESS_REGISTRY_TOKEN_FILE.
    #[arg(long, env, hide_env_values = true)]
    pub business_registry_token: Option<Secret>,

    /// Time allowed for one registry request (connect, TLS, answer), per attempt.
    #[arg(long, env, default_value = "2s", value_parser = parse_duration)]
    pub business_registry_timeout: Duration,

    /// Retries after a timeout, connection failure or 5xx answer (never after a 4xx).
    #[arg(long, env, default_value_t = 2, value_parser = clap::value_parser!(u32).range(0..=10))]
    pub business_registry_retries: u32,

    /// First delay between retries; it doubles per retry, with jitter, up to 5s.
    #[arg(long, env, default_value = "100ms", value_parser = parse_duration)]
    pub business_registry_retry_backoff: Duration,

    /// Consecutive failed registry requests that open the circuit breaker.
    #[arg(long, env, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub business_registry_breaker_threshold: u32,

    /// How long an open circuit breaker answers UNAVAILABLE without asking the registry,
    /// before one probe request.
    #[arg(long, env, default_value = "30s", value_parser = parse_duration)]
    pub business_registry_breaker_cooldown: Duration,

    /// How long business details are served from the cache; 0 disables caching.
    #[arg(long, env, default_value = "1h", value_parser = parse_duration)]
    pub business_registry_cache_ttl: Duration,

    /// How long "no such business" (registry 404) is served from the cache; 0 disables.
    #[arg(long, env, default_value = "1m", value_parser = parse_duration)]
    pub business_registry_negative_cache_ttl: Duration,

    /// Most businesses kept in the cache.
    #[arg(long, env, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub business_registry_cache_size: u32,
}

impl RegistrySettings {
    /// The client configuration; `None` when no registry URL is set (enrichment off).
    pub fn config(&self) -> Option<crate::registry::RegistryConfig> {
        let url = self.business_registry_url.clone()?;
        Some(crate::registry::RegistryConfig {
            url,
            name: self.business_registry_name.clone(),
            token: self.business_registry_token.clone(),
            timeout: self.business_registry_timeout,
            retries: self.business_registry_retries,
            retry_backoff: self.business_registry_retry_backoff,
            breaker_threshold: self.business_registry_breaker_threshold,
            breaker_cooldown: self.business_registry_breaker_cooldown,
            cache_ttl: self.business_registry_cache_ttl,
            negative_cache_ttl: self.business_registry_negative_cache_ttl,
            cache_capacity: usize::try_from(self.business_registry_cache_size)
                .unwrap_or(usize::MAX),
        })
    }
}

/// TLS (and mutual TLS) on the one listener. All paths are PEM files; with none set the
/// listener speaks plaintext (h2c and HTTP/1.1).
#[derive(Debug, Clone, Default, Args)]
pub struct TlsSettings {
    /// Server certificate chain (PEM, leaf first). Turns TLS on; needs `--tls-key`.
    #[arg(long, env, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// Private key of the server certificate (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// CA certificates (PEM) that client certificates must chain to. Turns on mutual TLS:
    /// a client without a valid certificate is rejected during the handshake.
    #[arg(long, env, value_name = "FILE", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
}

impl ServeSettings {
    /// Settings for an embedded server (tests, tools): defaults everywhere but the database.
    /// Built from the defaults alone: no variable of the process environment is read (a
    /// developer's `PROTECT_DOCS` or `NATS_URL` must not change a test's server).
    pub fn for_database(database_url: impl Into<String>) -> Self {
        let matches = without_env(Cli::command())
            .try_get_matches_from(["customer-api", "serve", "--database-url", "unset"])
            .expect("the defaults parse");
        let cli = Cli::from_arg_matches(&matches).expect("the defaults parse");
        let Command::Serve(mut settings) = cli.command else {
            unreachable!("parsed a serve command line")
        };
        settings.database.database_url = SecretUrl::from(database_url.into());
        settings
    }
}

/// OpenTelemetry traces, configured by the standard `OTEL_*` variables. Off (nothing
/// installed, nothing recorded) unless `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
#[derive(Debug, Clone, Args)]
pub struct TracingSettings {
    /// OTLP collector to export traces to, e.g. `http://otel-collector:4318` (HTTP) or
    /// `http://otel-collector:4317` (gRPC); `/v1/traces` is appended for HTTP. Unset: no
    /// tracing at all.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,

    /// OTLP transport: `http/protobuf` or `grpc`.
    #[arg(
        long,
        env = "OTEL_EXPORTER_OTLP_PROTOCOL",
        default_value = "http/protobuf"
    )]
    pub otlp_protocol: OtlpProtocol,

    /// `service.name` of the exported spans.
    #[arg(long, env = "OTEL_SERVICE_NAME", default_value = "customer-api")]
    pub service_name: String,

    /// More resource attributes, `key=value` pairs separated by commas (values
    /// percent-encoded), e.g. `deployment.environment.name=prod,service.namespace=crm`.
    #[arg(long, env = "OTEL_RESOURCE_ATTRIBUTES")]
    pub resource_attributes: Option<String>,

    /// Which traces are recorded: `parentbased_always_on` (follow the caller's decision,
    /// record root calls), `parentbased_traceidratio`, `parentbased_always_off`,
    /// `always_on`, `always_off`, `traceidratio`.
    #[arg(
        long,
        env = "OTEL_TRACES_SAMPLER",
        default_value = "parentbased_always_on"
    )]
    pub traces_sampler: TracesSampler,

    /// The ratio of the `*traceidratio` samplers, from 0 to 1 (default 1).
    #[arg(long, env = "OTEL_TRACES_SAMPLER_ARG", value_parser = parse_share)]
    pub traces_sampler_arg: Option<f64>,
}

impl TracingSettings {
    /// No tracing (what an unset `OTEL_EXPORTER_OTLP_ENDPOINT` means).
    pub fn off() -> Self {
        Self {
            otlp_endpoint: None,
            otlp_protocol: OtlpProtocol::HttpProtobuf,
            service_name: "customer-api".into(),
            resource_attributes: None,
            traces_sampler: TracesSampler::ParentbasedAlwaysOn,
            traces_sampler_arg: None,
        }
    }

    /// Whether traces are exported.
    pub fn enabled(&self) -> bool {
        self.otlp_endpoint
            .as_deref()
            .is_some_and(|endpoint| !endpoint.trim().is_empty())
    }
}

/// `OTEL_EXPORTER_OTLP_PROTOCOL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OtlpProtocol {
    /// Protobuf over HTTP (`POST {endpoint}/v1/traces`).
    #[value(name = "http/protobuf")]
    HttpProtobuf,
    /// gRPC (`opentelemetry.proto.collector.trace.v1.TraceService`).
    #[value(name = "grpc")]
    Grpc,
}

/// `OTEL_TRACES_SAMPLER`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
#[allow(
    missing_docs,
    reason = "the names are the OpenTelemetry specification's"
)]
pub enum TracesSampler {
    AlwaysOn,
    AlwaysOff,
    Traceidratio,
    ParentbasedAlwaysOn,
    ParentbasedAlwaysOff,
    ParentbasedTraceidratio,
}

/// A secret setting: its `Debug` never shows it, only what `R` leaves of it, so the settings
/// structs that hold one can derive theirs.
pub struct Secret<R = Hidden>(String, PhantomData<R>);

/// A URL setting that may carry a password: its `Debug` is the URL with the password
/// redacted ([`redact_url`]).
pub type SecretUrl = Secret<Password>;

/// What the `Debug` of a [`Secret`] shows.
pub trait Redaction {
    /// What is left of `secret`.
    fn redact(secret: &str) -> String;
}

/// Nothing: `"<redacted>"`.
#[derive(Debug)]
pub enum Hidden {}

impl Redaction for Hidden {
    fn redact(_: &str) -> String {
        "<redacted>".to_owned()
    }
}

/// A URL without its password.
#[derive(Debug)]
pub enum Password {}

impl Redaction for Password {
    fn redact(url: &str) -> String {
        redact_url(url)
    }
}

impl<R> Clone for Secret<R> {
    fn clone(&self) -> Self {
        Self(self.0.clone(), PhantomData)
    }
}

impl<R> std::ops::Deref for Secret<R> {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl<R: Redaction> fmt::Debug for Secret<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&R::redact(&self.0), f)
    }
}

impl<R> From<String> for Secret<R> {
    fn from(secret: String) -> Self {
        Self(secret, PhantomData)
    }
}

impl<R> From<&str> for Secret<R> {
    fn from(secret: &str) -> Self {
        Self::from(secret.to_owned())
    }
}

/// Parses a share: a number from 0 to 1.
pub fn parse_share(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(share) if (0.0..=1.0).contains(&share) => Ok(share),
        _ => Err(format!("`{text}` is not a number from 0 to 1")),
    }
}

/// Parses durations such as `250ms`, `2s`, `5m`, `24h` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 500ms, 2s, 5m, 24h or 30d"))?;
    let millis = match unit.trim() {
        "ms" => Some(number),
        "" | "s" => number.checked_mul(1_000),
        "m" => number.checked_mul(60_000),
        "h" => number.checked_mul(3_600_000),
        "d" => number.checked_mul(86_400_000),
        _ => return Err(format!("`{text}`: unknown unit, use ms, s, m, h or d")),
    };
    millis
        .map(Duration::from_millis)
        .ok_or_else(|| format!("`{text}` is too long"))
}

/// Hides the password of a connection URL for logs: the one in the user info and a
/// `password=` query parameter.
pub fn redact_url(url: &str) -> String {
    let (main, query) = match url.split_once('?') {
        Some((main, query)) => (main, Some(query)),
        None => (url, None),
    };
    let main = match (main.find("://"), main.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &main[scheme_end + 3..at];
            match credentials.find(':') {
                Some(colon) => format!(
                    "{}{}:<redacted>{}",
                    &main[..scheme_end + 3],
                    &credentials[..colon],
                    &main[at..]
                ),
                None => main.to_owned(),
            }
        }
        _ => main.to_owned(),
    };
    match query {
        None => main,
        Some(query) => {
            let query: Vec<&str> = query
                .split('&')
                .map(|pair| {
                    if pair.starts_with("password=") {
                        "password=<redacted>"
                    } else {
                        pair
                    }
                })
                .collect();
            format!("{main}?{}", query.join("&"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert!(parse_duration("2 weeks").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("99999999999999999999h").is_err());
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/customers"),
            "postgres://app:<redacted>@db:5432/customers"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1/x"),
            "postgres://postgres@127.0.0.1/x"
        );
        assert_eq!(
            redact_url("postgres://app@db/c?sslmode=require&password=s3cret&user=app"),
            "postgres://app@db/c?sslmode=require&password=<redacted>&user=app"
        );
    }

    /// The settings of `serve` with `extra` flags.
    fn serve(extra: &[&str]) -> Result<ServeSettings, clap::Error> {
        let mut args = vec!["customer-api", "serve", "--database-url", "postgres://x/y"];
        args.extend_from_slice(extra);
        Cli::try_parse_from(args).map(|cli| match cli.command {
            Command::Serve(settings) => settings,
            _ => unreachable!("parsed a serve command line"),
        })
    }

    #[test]
    fn tls_flags_come_in_pairs() {
        let parse = |extra: &[&str]| serve(extra).map(|settings| settings.tls);
        let none = parse(&[]).expect("plaintext by default");
        assert!(none.tls_cert.is_none() && none.tls_key.is_none() && none.tls_client_ca.is_none());
        let all = parse(&[
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
            "--tls-client-ca",
            "ca.pem",
        ])
        .expect("all three");
        assert_eq!(all.tls_cert.as_deref(), Some(std::path::Path::new("c.pem")));
        assert_eq!(all.tls_key.as_deref(), Some(std::path::Path::new("k.pem")));
        assert_eq!(
            all.tls_client_ca.as_deref(),
            Some(std::path::Path::new("ca.pem"))
        );
        assert!(parse(&["--tls-cert", "c.pem"]).is_err(), "cert needs a key");
        assert!(parse(&["--tls-key", "k.pem"]).is_err(), "key needs a cert");
        assert!(
            parse(&["--tls-client-ca", "ca.pem"]).is_err(),
            "mutual TLS needs TLS"
        );
    }

    #[test]
    fn registry_settings_default_and_hide_the_token() {
        let parse = serve;
        let off = parse(&[]).expect("optional");
        assert!(off.registry.config().is_none(), "no URL: enrichment off");

        let on = parse(&[
            "--business-registry-url",
            "https://registry.example/v1/companies/{business_id}?key=k3y",
            "--business-registry-token",
            "t0ken",
        ])
        .expect("a registry");
        let config = on.registry.config().expect("configured");
        let defaults = crate::registry::RegistryConfig::new(config.url.clone());
        assert_eq!(config.timeout, Duration::from_secs(2));
        assert_eq!(config.retries, 2);
        assert_eq!(config.cache_ttl, Duration::from_secs(3600));
        assert_eq!(config.timeout, defaults.timeout, "clap and code agree");
        assert_eq!(config.retries, defaults.retries);
        assert_eq!(config.retry_backoff, defaults.retry_backoff);
        assert_eq!(config.breaker_threshold, defaults.breaker_threshold);
        assert_eq!(config.breaker_cooldown, defaults.breaker_cooldown);
        assert_eq!(config.cache_ttl, defaults.cache_ttl);
        assert_eq!(config.negative_cache_ttl, defaults.negative_cache_ttl);
        assert_eq!(config.cache_capacity, defaults.cache_capacity);
        for debug in [format!("{on:?}"), format!("{config:?}")] {
            assert!(!debug.contains("t0ken"), "{debug}");
            assert!(!debug.contains("k3y"), "{debug}");
        }

        assert!(parse(&["--business-registry-url", "https://registry.example/"]).is_err());
        assert!(
            parse(&[
                "--business-registry-url",
                "http://r/{business_id}",
                "--business-registry-retries",
                "11"
            ])
            .is_err(),
            "retries are bounded"
        );
    }

    /// `<VAR>_FILE` through the parse function with a made-up environment (DATABASE_URL_FILE,
    /// whose variable `make test` exports, is covered through the binary in tests/api).
    #[test]
    fn secrets_come_from_their_files_and_debug_never_shows_them() {
        let dir = std::env::temp_dir().join(format!("customer-api-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let files = [
            (
                "DATABASE_SESSION_URL_FILE",
                write("session", "postgres://app:pw-session@db/c\n"),
            ),
            (
                "JWT_HS256_SECRET_FILE",
                write("jwt", "jwt-from-file-0123456789abcdefghijkl\r\n"),
            ),
            ("PAGE_TOKEN_KEY_FILE", write("page", "page-key-from-file\n")),
            (
                "BUSINESS_REGISTRY_TOKEN_FILE",
                write("registry", "registry-from-file"),
            ),
        ];
        let var = |name: &str| {
            files
                .iter()
                .find(|(variable, _)| *variable == name)
                .map(|(_, path)| path.clone().into_os_string())
        };
        let args = [
            "customer-api",
            "serve",
            "--database-url",
            "postgres://app:pw-main@db/c",
            "--business-registry-url",
            "https://registry.example/{business_id}",
        ];
        let cli = Cli::try_parse_with_secret_files(args, var).unwrap();
        let Command::Serve(settings) = cli.command else {
            unreachable!("parsed a serve command line")
        };
        assert_eq!(
            settings.database.database_session_url.as_deref(),
            Some("postgres://app:pw-session@db/c")
        );
        assert_eq!(
            settings.auth.jwt_hs256_secret.as_deref(),
            Some("jwt-from-file-0123456789abcdefghijkl")
        );
        assert_eq!(
            settings.page_token_key.as_deref(),
            Some("page-key-from-file")
        );
        assert_eq!(
            settings.registry.business_registry_token.as_deref(),
            Some("registry-from-file")
        );
        let debug = format!("{settings:?}");
        for secret in [
            "pw-session",
            "pw-main",
            "jwt-from",
            "page-key",
            "registry-from",
        ] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }

        let empty = write("empty", "\n");
        let error = Cli::try_parse_with_secret_files(args, |name: &str| {
            (name == "PAGE_TOKEN_KEY_FILE").then(|| empty.clone().into_os_string())
        })
        .unwrap_err()
        .to_string();
        assert!(error.contains("PAGE_TOKEN_KEY_FILE: "), "{error}");
        assert!(error.contains(" is empty"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn registry_flags_keep_their_names() {
        use clap::CommandFactory;
        let command = Cli::command();
        let serve = command.find_subcommand("serve").unwrap();
        let names: Vec<(String, String)> = serve
            .get_arguments()
            .filter_map(|arg| {
                let long = arg.get_long()?;
                let env = arg.get_env()?.to_str()?;
                long.starts_with("business-registry")
                    .then(|| (long.to_owned(), env.to_owned()))
            })
            .collect();
        let expected: Vec<(String, String)> = [
            "url",
            "name",
            "token",
            "timeout",
            "retries",
            "retry-backoff",
            "breaker-threshold",
            "breaker-cooldown",
            "cache-ttl",
            "negative-cache-ttl",
            "cache-size",
        ]
        .iter()
        .map(|suffix| {
            (
                format!("business-registry-{suffix}"),
                format!(
                    "BUSINESS_REGISTRY_{}",
                    suffix.to_uppercase().replace('-', "_")
                ),
            )
        })
        .collect();
        assert_eq!(names, expected);
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
