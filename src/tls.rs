//! TLS and mutual TLS for the one listener.
//!
//! [`acceptor`] turns [`TlsSettings`] into an optional [`TlsAcceptor`]: `None` (plaintext h2c
//! and HTTP/1.1) when no certificate is configured, otherwise a rustls server configuration
//! that offers ALPN `h2` and `http/1.1`, so gRPC, gRPC-web and REST all work over TLS on the
//! same port. With a client CA configured, every client must present a certificate that chains
//! to it (rustls' `WebPkiClientVerifier`); a client without one fails the handshake.
//!
//! Everything is read and checked at start-up: a missing, unreadable or invalid file is a
//! [`TlsError`] naming the file, before the server accepts anything. The crypto provider is
//! ring, passed explicitly (no process-wide default is installed or relied on).
//!
//! [`accept`] runs one handshake with [`HANDSHAKE_TIMEOUT`]; the server calls it inside each
//! connection's task, so a slow or failing peer never holds up the accept loop.

use std::{
    io,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use rustls::{
    RootCertStore, ServerConfig,
    crypto::{CryptoProvider, ring},
    server::{VerifierBuilderError, WebPkiClientVerifier},
};
use rustls_pki_types::{
    CertificateDer, PrivateKeyDer,
    pem::{self, PemObject},
};
use tokio::net::TcpStream;
/// The acceptor [`acceptor`] builds (tokio-rustls'), re-exported for the server.
pub use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::config::TlsSettings;

/// How long a client has to complete the TLS handshake before its connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the TLS configuration could not be loaded. Messages name the file, never key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Only one of certificate and key was given.
    #[error("--tls-cert (TLS_CERT) and --tls-key (TLS_KEY) must be given together")]
    Incomplete,
    /// A client CA was given without a server certificate.
    #[error("--tls-client-ca (TLS_CLIENT_CA) needs --tls-cert and --tls-key")]
    ClientCaWithoutCert,
    /// A file could not be read or held no valid PEM item of the expected kind.
    #[error("cannot load {what} from {}: {reason}", path.display())]
    File {
        /// What the file should hold (e.g. "private key").
        what: &'static str,
        /// The configured path.
        path: PathBuf,
        /// What went wrong (I/O error, no PEM item found, bad PEM).
        reason: String,
    },
    /// A client CA certificate is not a usable trust anchor.
    #[error("invalid client CA certificate in {}: {source}", path.display())]
    ClientCa {
        /// The configured path.
        path: PathBuf,
        /// rustls' reason.
        source: rustls::Error,
    },
    /// The client certificate verifier could not be built.
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] VerifierBuilderError),
    /// rustls rejected the certificate and key (mismatch, unsupported key type, ...).
    #[error("certificate and key rejected: {0}")]
    Config(#[source] rustls::Error),
}

/// The acceptor for `settings`: `None` when TLS is not configured (plaintext).
pub fn acceptor(settings: &TlsSettings) -> Result<Option<TlsAcceptor>, TlsError> {
    server_config(settings).map(|config| config.map(|config| TlsAcceptor::from(Arc::new(config))))
}

/// The rustls server configuration for `settings`: `None` when TLS is not configured.
pub fn server_config(settings: &TlsSettings) -> Result<Option<ServerConfig>, TlsError> {
    let (cert, key) = match (&settings.tls_cert, &settings.tls_key) {
        (None, None) if settings.tls_client_ca.is_some() => {
            return Err(TlsError::ClientCaWithoutCert);
        }
        (None, None) => return Ok(None),
        (Some(cert), Some(key)) => (cert, key),
        _ => return Err(TlsError::Incomplete),
    };
    let chain = certificates(cert, "certificate chain")?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|error| file_error("private key", key, &error))?;

    let provider = Arc::new(ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?;
    let builder = match &settings.tls_client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => builder.with_client_cert_verifier(client_verifier(path, provider)?),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(TlsError::Config)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Some(config))
}

/// Requires client certificates chaining to the CA certificates in `path`.
fn client_verifier(
    path: &Path,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    for ca in certificates(path, "client CA certificates")? {
        roots.add(ca).map_err(|source| TlsError::ClientCa {
            path: path.to_owned(),
            source,
        })?;
    }
    Ok(WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build()?)
}

/// Every certificate of a PEM file; at least one.
pub(crate) fn certificates(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    read_certificates(path).map_err(|error| file_error(what, path, &error))
}

fn file_error(what: &'static str, path: &Path, error: &pem::Error) -> TlsError {
    TlsError::File {
        what,
        path: path.to_owned(),
        reason: pem_reason(error, || format!("no PEM {what} found")),
    }
}

/// Every certificate of the PEM file `path`; at least one (`NoItemsFound` otherwise). Shared
/// by the listener, the registry client and the database connector, which each name the
/// file their own way.
pub(crate) fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, pem::Error> {
    let certificates =
        CertificateDer::pem_file_iter(path).and_then(Iterator::collect::<Result<Vec<_>, _>>)?;
    if certificates.is_empty() {
        return Err(pem::Error::NoItemsFound);
    }
    Ok(certificates)
}

/// Why a PEM file cannot be used, in words; `nothing_found` says it for a file without an
/// item of the expected kind.
pub(crate) fn pem_reason(error: &pem::Error, nothing_found: impl FnOnce() -> String) -> String {
    match error {
        pem::Error::Io(error) => error.to_string(),
        pem::Error::NoItemsFound => nothing_found(),
        other => format!("invalid PEM: {other}"),
    }
}

/// Runs the server side of a TLS handshake on `stream`, giving up after
/// [`HANDSHAKE_TIMEOUT`].
pub async fn accept(acceptor: &TlsAcceptor, stream: TcpStream) -> io::Result<TlsStream<TcpStream>> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_unless_a_certificate_is_configured() {
        assert!(
            acceptor(&TlsSettings::default())
                .expect("plaintext")
                .is_none()
        );
    }

    #[test]
    fn incomplete_settings_are_rejected_before_reading_files() {
        let only_cert = TlsSettings {
            tls_cert: Some("server.pem".into()),
            ..TlsSettings::default()
        };
        assert!(matches!(acceptor(&only_cert), Err(TlsError::Incomplete)));
        let only_ca = TlsSettings {
            tls_client_ca: Some("ca.pem".into()),
            ..TlsSettings::default()
        };
        assert!(matches!(
            acceptor(&only_ca),
            Err(TlsError::ClientCaWithoutCert)
        ));
    }
}
