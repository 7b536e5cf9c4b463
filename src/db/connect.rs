//! Opening connections to PostgreSQL, with TLS chosen the way libpq chooses it.
//!
//! Every connection the service makes (the pool, migrations, the relay lease, the event
//! listener, the `migrate` and `api-key` subcommands) is opened by a [`Connector`], built once
//! from a connection URL. The URL's query string carries libpq's TLS parameters, which this
//! module takes out before tokio-postgres parses the rest:
//!
//! | `sslmode` | TLS | the server's certificate |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` (default) | if the server accepts it; plaintext only when it refuses TLS | not checked; with `sslrootcert`, must chain to it |
//! | `require` | always | not checked; with `sslrootcert`, must chain to it (libpq's `verify-ca`) |
//! | `verify-ca` | always | must chain to `sslrootcert` |
//! | `verify-full` | always | must chain to `sslrootcert` and name the host |
//!
//! `sslrootcert` is a PEM file of CA certificates, or `system` for the public (Mozilla) roots,
//! which only `verify-full` may use (as in libpq). `sslcert` and `sslkey` are a client
//! certificate chain and its unencrypted private key (PEM), for `hostssl … cert`
//! authentication. Unlike libpq, nothing is read from `~/.postgresql/` or `PGSSL*` variables:
//! what the URL says is all there is.
//!
//! rustls (ring provider) does the TLS, through tokio-postgres-rustls, which also offers SCRAM
//! channel binding. Even when the certificate is not checked, the handshake signature is, so
//! `require` still encrypts against a passive observer exactly as libpq's does. Files are read
//! and the TLS configuration built once, when the [`Connector`] is made: a missing or invalid
//! file fails start-up, naming the parameter and the file.
//!
//! Failures say what was attempted and, for the common certificate problems, what to change:
//! an unknown CA, a host name the certificate does not cover, a server without TLS. They
//! never contain the URL's password.

use std::{
    error::Error as _,
    path::{Path, PathBuf},
    str::FromStr,
    sync::Arc,
};

use diesel::ConnectionError;
use diesel_async::AsyncPgConnection;
use percent_encoding::percent_decode_str;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::{
        WebPkiServerVerifier,
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    },
    crypto::{CryptoProvider, WebPkiSupportedAlgorithms, ring},
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime, pem::PemObject};
use tokio_postgres::config::{Host, SslMode as WireSslMode};
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode`, the URL parameter that decides whether and how TLS is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plaintext only.
    Disable,
    /// TLS when the server accepts it, plaintext when it refuses (libpq's default).
    Prefer,
    /// TLS or nothing; the certificate is checked only against a given `sslrootcert`.
    Require,
    /// TLS, and the certificate must chain to `sslrootcert`.
    VerifyCa,
    /// TLS, the certificate must chain to `sslrootcert` and name the host.
    VerifyFull,
}

impl SslMode {
    /// The URL spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

impl FromStr for SslMode {
    type Err = ConnectError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(match text {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            // libpq's `allow` tries plaintext first: a downgrade nobody should ask for.
            other => {
                return Err(ConnectError::Url(format!(
                    "sslmode `{other}` is not supported; use disable, prefer, require, \
                     verify-ca or verify-full"
                )));
            }
        })
    }
}

/// Why a connection URL cannot be used. Never contains the URL itself.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL or one of its parameters is invalid.
    #[error("invalid database URL: {0}")]
    Url(String),
    /// A certificate or key file named by a parameter cannot be used.
    #[error("database URL parameter {param}={}: {reason}", path.display())]
    File {
        /// `sslrootcert`, `sslcert` or `sslkey`.
        param: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refused the TLS configuration (e.g. a key that does not match the certificate).
    #[error("database TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// Which certificates `sslrootcert` names.
enum Roots {
    File(PathBuf),
    System,
}

/// Opens connections to one PostgreSQL server: the URL parsed and the TLS configuration built
/// once. Cheap to clone.
#[derive(Clone)]
pub struct Connector {
    /// Shared: the pool, and every service holding it, is cloned per request.
    config: Arc<tokio_postgres::Config>,
    mode: SslMode,
    tls: MakeRustlsConnect,
    /// Whether `sslrootcert` was given (for the hints of certificate errors).
    has_roots: bool,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("target", &self.target())
            .field("sslmode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl Connector {
    /// Parses `url` (`postgres://…?sslmode=…&sslrootcert=…`), reads the certificate files it
    /// names and builds the TLS configuration.
    pub fn from_url(url: &str) -> Result<Self, ConnectError> {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let (mut mode, mut roots, mut cert, mut key) = (None, None, None, None);
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = || {
                percent_decode_str(value)
                    .decode_utf8()
                    .map(|value| value.into_owned())
                    .map_err(|_| ConnectError::Url(format!("the value of {name} is not UTF-8")))
            };
            match name {
                "sslmode" => mode = Some(value()?.parse::<SslMode>()?),
                "sslrootcert" => {
                    roots = Some(match value()?.as_str() {
                        "system" => Roots::System,
                        path => Roots::File(path.into()),
                    });
                }
                "sslcert" => cert = Some(PathBuf::from(value()?)),
                "sslkey" => key = Some(PathBuf::from(value()?)),
                "sslpassword" => {
                    return Err(ConnectError::Url(
                        "sslpassword is not supported: give sslkey an unencrypted key (keep \
                         it readable only by the service)"
                            .into(),
                    ));
                }
                "sslcrl" | "sslcrldir" | "sslsni" | "sslcompression" | "requiressl" => {
                    return Err(ConnectError::Url(format!("{name} is not supported")));
                }
                _ => kept.push(pair),
            }
        }
        let rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        // tokio-postgres' messages name the offending option, never a value.
        let mut config = tokio_postgres::Config::from_str(&rest)
            .map_err(|e| ConnectError::Url(with_causes(&e)))?;

        // libpq: `sslrootcert=system` makes verify-full the default and refuses weaker modes.
        let mode = match (mode, &roots) {
            (None, Some(Roots::System)) => SslMode::VerifyFull,
            (Some(mode), Some(Roots::System)) if mode != SslMode::VerifyFull => {
                return Err(ConnectError::Url(format!(
                    "sslmode={} may not be used with sslrootcert=system (use verify-full)",
                    mode.as_str()
                )));
            }
            (mode, _) => mode.unwrap_or(SslMode::Prefer),
        };
        if matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull) && roots.is_none() {
            return Err(ConnectError::Url(format!(
                "sslmode={} needs sslrootcert: a PEM file with the CA certificates that signed \
                 the server's certificate (or sslrootcert=system for the public roots)",
                mode.as_str()
            )));
        }
        config.ssl_mode(match mode {
            SslMode::Disable => WireSslMode::Disable,
            SslMode::Prefer => WireSslMode::Prefer,
            _ => WireSslMode::Require,
        });

        let has_roots = roots.is_some();
        let client_identity = match (cert, key) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some((
                certificates("sslcert", &cert)?,
                PrivateKeyDer::from_pem_file(&key).map_err(|e| file_error("sslkey", &key, &e))?,
            )),
            _ => {
                return Err(ConnectError::Url(
                    "sslcert and sslkey must be given together".into(),
                ));
            }
        };
        let tls = client_config(mode, roots.as_ref(), client_identity)?;
        Ok(Self {
            config: Arc::new(config),
            mode,
            tls: MakeRustlsConnect::new(tls),
            has_roots,
        })
    }

    /// The same server and settings, another database (e.g. `postgres`, to create ours).
    pub fn with_database(&self, database: &str) -> Self {
        let mut other = self.clone();
        Arc::make_mut(&mut other.config).dbname(database);
        other
    }

    /// The `sslmode` in force.
    pub fn ssl_mode(&self) -> SslMode {
        self.mode
    }

    /// The database's name (`None` when the URL names none).
    pub fn database(&self) -> Option<&str> {
        self.config.get_dbname()
    }

    /// `host:port/database`, for messages (no user, no password).
    pub fn target(&self) -> String {
        let ports = self.config.get_ports();
        let hosts: Vec<String> = self
            .config
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(i, host)| {
                let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
                match host {
                    Host::Tcp(name) => format!("{name}:{port}"),
                    Host::Unix(path) => format!("{}:{port}", path.display()),
                }
            })
            .collect();
        let hosts = if hosts.is_empty() {
            "localhost:5432".to_owned()
        } else {
            hosts.join(",")
        };
        format!("{hosts}/{}", self.database().unwrap_or(""))
    }

    /// The TLS connector of its connections (also what a cancel request must use).
    pub(crate) fn tls(&self) -> MakeRustlsConnect {
        self.tls.clone()
    }

    /// Opens a connection. With `in_transaction`, a transaction is begun before diesel-async
    /// runs its own set-up statements and left open for the caller to commit: behind a
    /// transaction-pooling PgBouncer, a statement outside a transaction may be parsed on one
    /// server connection and executed on another.
    pub async fn connect(
        &self,
        in_transaction: bool,
    ) -> Result<AsyncPgConnection, ConnectionError> {
        let (client, connection) = self
            .config
            .connect(self.tls.clone())
            .await
            .map_err(|error| ConnectionError::BadConnection(self.explain(&error)))?;
        let mut connection = connection;
        if in_transaction {
            // Nothing polls the connection yet (diesel-async will): drive it here while BEGIN
            // completes.
            let begin = client.batch_execute("BEGIN");
            let begun = tokio::select! {
                result = begin => result.map_err(|e| e.to_string()),
                closed = &mut connection => Err(closed.err().map_or_else(
                    || "the server closed the connection".to_owned(),
                    |e| e.to_string(),
                )),
            };
            begun.map_err(|e| ConnectionError::BadConnection(format!("BEGIN failed: {e}")))?;
        }
        AsyncPgConnection::try_from_client_and_connection(client, connection).await
    }

    /// The message of a failed connection attempt: where, with which `sslmode`, the driver's
    /// error, and a hint for the usual certificate problems.
    fn explain(&self, error: &tokio_postgres::Error) -> String {
        let mut message = format!(
            "cannot connect to {} (sslmode={}): {}",
            self.target(),
            self.mode.as_str(),
            with_causes(error)
        );
        let hint = match rustls_error(error) {
            Some(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)) => {
                Some(if self.has_roots {
                    "the server's certificate is not signed by a CA in sslrootcert".to_owned()
                } else {
                    "the server's certificate is not signed by a known CA".to_owned()
                })
            }
            Some(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Some(
                "the server's certificate does not name the host of the URL (verify-full \
                 checks the host name; connect by a name the certificate lists)"
                    .to_owned(),
            ),
            Some(rustls::Error::InvalidCertificate(CertificateError::Expired)) => {
                Some("the server's certificate has expired".to_owned())
            }
            _ if with_causes(error).contains("server does not support TLS") => Some(
                "the server refuses TLS: enable ssl on the server, or use sslmode=prefer or \
                 disable where plaintext is acceptable"
                    .to_owned(),
            ),
            _ => None,
        };
        if let Some(hint) = hint {
            message.push_str(" — ");
            message.push_str(&hint);
        }
        message
    }
}

/// `error` and its causes (tokio-postgres' own message leaves them out: "error performing TLS
/// handshake", "db error").
fn with_causes(error: &tokio_postgres::Error) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        next = cause.source();
    }
    text
}

/// The rustls error somewhere in `error`'s source chain (tokio-rustls wraps it in an
/// `io::Error`).
fn rustls_error(error: &tokio_postgres::Error) -> Option<&rustls::Error> {
    let mut next = error.source();
    while let Some(current) = next {
        if let Some(found) = current.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        if let Some(io) = current.downcast_ref::<std::io::Error>()
            && let Some(found) = io
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(found);
        }
        next = current.source();
    }
    None
}

/// The rustls client configuration of `mode`.
fn client_config(
    mode: SslMode,
    roots: Option<&Roots>,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<ClientConfig, ConnectError> {
    let provider = Arc::new(ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let store = match roots {
        None => None,
        Some(Roots::System) => {
            let mut store = RootCertStore::empty();
            store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            Some(Arc::new(store))
        }
        Some(Roots::File(path)) => {
            let mut store = RootCertStore::empty();
            for ca in certificates("sslrootcert", path)? {
                store.add(ca).map_err(|e| ConnectError::File {
                    param: "sslrootcert",
                    path: path.clone(),
                    reason: format!("not a usable CA certificate: {e}"),
                })?;
            }
            Some(Arc::new(store))
        }
    };
    let builder = match (mode, store) {
        (SslMode::VerifyFull, Some(store)) => builder.with_root_certificates(store),
        // require and prefer check the chain when given roots, as libpq does.
        (_, Some(store)) => {
            let webpki = WebPkiServerVerifier::builder_with_provider(store, provider.clone())
                .build()
                .map_err(|e| ConnectError::Url(format!("sslrootcert: {e}")))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Lenient::new(&provider, Some(webpki))))
        }
        (_, None) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Lenient::new(&provider, None))),
    };
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
    };
    // PostgreSQL 17 requires this ALPN for direct TLS (`sslnegotiation=direct`); older servers
    // ignore it.
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(config)
}

/// Every certificate of a PEM file; at least one.
fn certificates(
    param: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, ConnectError> {
    crate::tls::read_certificates(path).map_err(|e| file_error(param, path, &e))
}

fn file_error(
    param: &'static str,
    path: &Path,
    error: &rustls_pki_types::pem::Error,
) -> ConnectError {
    ConnectError::File {
        param,
        path: path.to_owned(),
        reason: crate::tls::pem_reason(error, || "no PEM item of the expected kind".into()),
    }
}

/// libpq's modes that verify less than `verify-full`. Without a chain verifier
/// (`require`/`prefer` without `sslrootcert`) any certificate is accepted; with one
/// (`verify-ca`, and `require`/`prefer` given `sslrootcert`) the chain must lead to a trusted
/// CA but the host name is not compared: webpki checks the chain first, so a name mismatch is
/// only ever reported for a certificate whose chain already verified. Either way the
/// handshake's signature is checked, so the session is encrypted to whoever holds the
/// certificate's key.
#[derive(Debug)]
struct Lenient {
    /// The chain verifier, if the chain is checked.
    chain: Option<Arc<WebPkiServerVerifier>>,
    /// The provider's signature algorithms (what the chain verifier would use too).
    algorithms: WebPkiSupportedAlgorithms,
}

impl Lenient {
    fn new(provider: &CryptoProvider, chain: Option<Arc<WebPkiServerVerifier>>) -> Self {
        Self {
            chain,
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

/// The handshake signature checks of a verifier, which need no chain: rustls' own functions
/// of the same names over the provider's algorithms.
macro_rules! signature_checks {
    ($($check:ident),*) => {$(
        fn $check(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::$check(message, cert, dss, &self.algorithms)
        }
    )*};
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    signature_checks!(verify_tls12_signature, verify_tls13_signature);

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(url: &str) -> String {
        Connector::from_url(url).unwrap_err().to_string()
    }

    #[test]
    fn modes_default_to_prefer_and_parse_like_libpq() {
        let mode = |url: &str| Connector::from_url(url).unwrap().ssl_mode();
        assert_eq!(mode("postgres://u@h/db"), SslMode::Prefer);
        assert_eq!(mode("postgres://u@h/db?sslmode=disable"), SslMode::Disable);
        assert_eq!(mode("postgres://u@h/db?sslmode=require"), SslMode::Require);
        assert_eq!(
            mode("postgres://u@h/db?sslrootcert=system"),
            SslMode::VerifyFull
        );
        assert!(error("postgres://u@h/db?sslmode=allow").contains("sslmode `allow`"));
    }

    #[test]
    fn the_other_parameters_still_reach_tokio_postgres() {
        let connector = Connector::from_url(
            "postgres://u:p@db.example:6543/shop?sslmode=disable&application_name=x&connect_timeout=3",
        )
        .unwrap();
        assert_eq!(connector.target(), "db.example:6543/shop");
        assert_eq!(
            connector.with_database("postgres").target(),
            "db.example:6543/postgres"
        );
        assert!(error("postgres://u@h/db?nonsense=1").contains("unknown option `nonsense`"));
    }

    #[test]
    fn verification_needs_roots_and_system_roots_need_verify_full() {
        assert!(error("postgres://u@h/db?sslmode=verify-full").contains("needs sslrootcert"));
        assert!(error("postgres://u@h/db?sslmode=verify-ca").contains("needs sslrootcert"));
        assert!(
            error("postgres://u@h/db?sslmode=require&sslrootcert=system")
                .contains("may not be used with sslrootcert=system")
        );
        assert!(
            error("postgres://u@h/db?sslcert=/c.pem")
                .contains("sslcert and sslkey must be given together")
        );
        assert!(error("postgres://u@h/db?sslpassword=x").contains("sslpassword is not supported"));
    }

    #[test]
    fn a_missing_file_is_named_and_the_password_never_is() {
        let message =
            error("postgres://u:s3cret@h/db?sslmode=verify-full&sslrootcert=%2Fno%2Fsuch%2Fca.pem");
        assert!(
            message.starts_with("database URL parameter sslrootcert=/no/such/ca.pem: "),
            "{message}"
        );
        for url in [
            "postgres://u:s3cret@h/db?sslmode=verify-full",
            "postgres://u:s3cret@h/db?nonsense=1",
            "postgres://u:s3cret@h:notaport/db",
        ] {
            assert!(!error(url).contains("s3cret"), "{url}");
        }
    }
}
