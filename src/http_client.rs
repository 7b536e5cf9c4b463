//! A small outbound HTTP client: one request over HTTP/1.1, with TLS for `https` URLs.
//!
//! The service calls out rarely and to few places (a JWKS endpoint, the business registry,
//! an OTLP/HTTP trace collector),
//! so this is deliberately minimal instead of a general client such as reqwest: hyper 1's
//! connection API, `tokio-rustls` with the ring provider and Mozilla's root certificates
//! (`webpki-roots`, no system dependency) plus, with `EXTRA_CA_FILE`, the operator's own CAs
//! (a private or corporate CA), a bounded body, and one connection per request (no pool;
//! callers that call often cache their answers).
//!
//! Everything runs inside the caller's future: dropping it (a timeout, a cancelled request)
//! closes the socket, so no background task outlives a call. The caller bounds the time with
//! `tokio::time::timeout`; this module bounds only the size of what it reads.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;

/// Why a request produced no response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The URL cannot be fetched (scheme, host).
    #[error("invalid URL: {0}")]
    Url(String),
    /// No TCP connection (refused, unreachable, DNS).
    #[error("connection failed: {0}")]
    Connect(String),
    /// The TLS handshake failed (certificate, protocol).
    #[error("TLS handshake failed: {0}")]
    Tls(String),
    /// The connection broke or the peer did not speak HTTP/1.1.
    #[error("HTTP exchange failed: {0}")]
    Protocol(String),
    /// A successful response's body is larger than the caller accepts.
    #[error("the response body exceeds {0} bytes")]
    BodyTooLarge(usize),
}

/// A response: its status, and for 2xx statuses its body (empty otherwise).
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// The HTTP status.
    pub status: StatusCode,
    /// The body of a successful (2xx) response; not read for other statuses.
    pub body: Bytes,
}

/// Sends `GET` requests. Cheap to clone; the TLS configuration is built once.
#[derive(Clone)]
pub struct HttpClient {
    tls: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient").finish_non_exhaustive()
    }
}

impl HttpClient {
    /// A client that trusts Mozilla's root certificates for `https` URLs.
    pub fn new() -> Result<Self, HttpError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        Self::with_roots(roots)
    }

    /// A client that trusts Mozilla's root certificates and, if given, the CA certificates of
    /// the PEM file `extra_ca_file` (`EXTRA_CA_FILE`).
    pub fn with_extra_ca_file(
        extra_ca_file: Option<&std::path::Path>,
    ) -> Result<Self, crate::tls::TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = extra_ca_file {
            let what = "extra CA certificates (EXTRA_CA_FILE)";
            for ca in crate::tls::certificates(path, what)? {
                roots.add(ca).map_err(|e| crate::tls::TlsError::File {
                    what,
                    path: path.to_owned(),
                    reason: format!("not a usable CA certificate: {e}"),
                })?;
            }
        }
        Self::with_roots(roots).map_err(|e| crate::tls::TlsError::File {
            what: "TLS client configuration",
            path: extra_ca_file
                .unwrap_or(std::path::Path::new("-"))
                .to_owned(),
            reason: e.to_string(),
        })
    }

    /// A client that trusts exactly `roots` for `https` URLs (a private CA, tests).
    pub fn with_roots(roots: rustls::RootCertStore) -> Result<Self, HttpError> {
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| HttpError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(Self {
            tls: Arc::new(config),
        })
    }

    /// `GET uri` with `headers` (plus `Host`). Reads the body of a 2xx response, refusing more
    /// than `max_body` bytes; other statuses come back with an empty body.
    pub async fn get(
        &self,
        uri: &Uri,
        headers: &HeaderMap,
        max_body: usize,
    ) -> Result<HttpResponse, HttpError> {
        self.send(Method::GET, uri, headers, Bytes::new(), max_body)
            .await
    }

    /// `method uri` with `headers` (plus `Host`) and `body`; the answer as for [`Self::get`].
    pub async fn send(
        &self,
        method: Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: Bytes,
        max_body: usize,
    ) -> Result<HttpResponse, HttpError> {
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => {
                return Err(HttpError::Url(
                    "only http and https URLs are supported".into(),
                ));
            }
        };
        let authority = uri
            .authority()
            .ok_or_else(|| HttpError::Url("the URL has no host".into()))?;
        // `Uri::host` keeps the brackets of an IPv6 literal; sockets and TLS want them off.
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let host_header = match authority.port() {
            Some(port) => format!("{}:{}", authority.host(), port.as_str()),
            None => authority.host().to_owned(),
        };
        let mut request = http::Request::builder()
            .method(method)
            .uri(uri.path_and_query().map_or("/", |p| p.as_str()))
            .body(Full::new(body))
            .map_err(|e| HttpError::Url(e.to_string()))?;
        *request.headers_mut() = headers.clone();
        request.headers_mut().insert(
            header::HOST,
            header::HeaderValue::from_str(&host_header)
                .map_err(|e| HttpError::Url(e.to_string()))?,
        );

        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| HttpError::Connect(e.to_string()))?;
        // Requests are small and latency matters more than packet count.
        let _ = tcp.set_nodelay(true);
        if https {
            let name = rustls_pki_types::ServerName::try_from(host)
                .map_err(|e| HttpError::Url(e.to_string()))?;
            let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| HttpError::Tls(explain_tls(&e)))?;
            exchange(TokioIo::new(tls), request, max_body).await
        } else {
            exchange(TokioIo::new(tcp), request, max_body).await
        }
    }
}

/// A handshake failure, with what to do about an untrusted issuer.
fn explain_tls(error: &std::io::Error) -> String {
    let unknown_issuer = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|e| {
            matches!(
                e,
                rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
            )
        });
    if unknown_issuer {
        format!(
            "{error} (the server's certificate is not issued by a trusted CA; if it is a \
             private CA, add its certificate to EXTRA_CA_FILE)"
        )
    } else {
        error.to_string()
    }
}

/// One request/response on a fresh HTTP/1.1 connection, driven in this future (not spawned),
/// so that dropping the future closes the connection.
async fn exchange<T>(
    io: T,
    request: http::Request<Full<Bytes>>,
    max_body: usize,
) -> Result<HttpResponse, HttpError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let protocol = |e: hyper::Error| HttpError::Protocol(e.to_string());
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(protocol)?;
    let work = async move {
        let response = sender.send_request(request).await.map_err(protocol)?;
        let status = response.status();
        if !status.is_success() {
            return Ok(HttpResponse {
                status,
                body: Bytes::new(),
            });
        }
        let body = Limited::new(response.into_body(), max_body)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    HttpError::BodyTooLarge(max_body)
                } else {
                    HttpError::Protocol(e.to_string())
                }
            })?
            .to_bytes();
        Ok(HttpResponse { status, body })
    };
    tokio::pin!(connection, work);
    tokio::select! {
        result = &mut work => result,
        finished = &mut connection => match finished {
            // The connection completes only once the response has been handed over in full.
            Ok(()) => work.await,
            Err(e) => Err(protocol(e)),
        },
    }
}
