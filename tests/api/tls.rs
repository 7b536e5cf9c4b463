//! TLS and mutual TLS on the one listener, over real sockets with real clients: tonic over
//! TLS (HTTP/2, ALPN `h2`), REST over HTTPS (hyper HTTP/1.1 on tokio-rustls), plaintext and
//! certificate-less clients turned away, and start-up errors for bad certificate files.
//!
//! Certificates are generated per test with rcgen: a CA, a server certificate for
//! `localhost` and `127.0.0.1`, a client certificate from the same CA, and a client
//! certificate from an unrelated CA.

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use customer_api::{
    config::ServeSettings,
    pb::{self, customer_service_client::CustomerServiceClient},
    server,
};
use http::StatusCode;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::{ClientConfig, RootCertStore, crypto::ring};
use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject};
use tokio::{io::AsyncWriteExt, net::TcpStream};
use tokio_rustls::TlsConnector;
use tonic::{
    metadata::{Ascii, MetadataValue},
    transport::{Certificate, ClientTlsConfig, Endpoint, Identity},
};

use crate::helpers::{TestApp, new_customer};

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "customer-api-tls-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A certificate and its private key, PEM.
pub struct Pem {
    pub cert: String,
    pub key: String,
}

/// A test PKI; the server's files are written to a temp dir: `ca.pem`, `server.pem`,
/// `server.key` (certificate for `localhost` and `127.0.0.1`).
struct Pki {
    dir: TempDir,
    ca: Pem,
    /// Signed by `ca`, for client authentication.
    client: Pem,
    /// Signed by a CA the server does not trust.
    stranger: Pem,
}

/// A self-signed CA: its parameters, key and certificate (PEM).
pub fn ca(name: &str) -> (CertificateParams, KeyPair, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).unwrap().pem();
    (params, key, cert)
}

/// A certificate for `names` (the first is also the common name) issued by `issuer`.
pub fn leaf(names: &[&str], usage: ExtendedKeyUsagePurpose, issuer: &Issuer<'_, KeyPair>) -> Pem {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, names[0]);
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, issuer).unwrap().pem();
    Pem {
        cert,
        key: key.serialize_pem(),
    }
}

impl Pki {
    fn new() -> Self {
        let (ca_params, ca_key, ca_cert) = ca("customer-api test CA");
        let ca_key_pem = ca_key.serialize_pem();
        let issuer = Issuer::new(ca_params, ca_key);
        let server = leaf(
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
            &issuer,
        );
        let client = leaf(
            &["good-client"],
            ExtendedKeyUsagePurpose::ClientAuth,
            &issuer,
        );
        let (stranger_params, stranger_key, _) = ca("some other CA");
        let stranger = leaf(
            &["stranger"],
            ExtendedKeyUsagePurpose::ClientAuth,
            &Issuer::new(stranger_params, stranger_key),
        );
        let dir = TempDir::new();
        dir.write("ca.pem", &ca_cert);
        dir.write("server.pem", &server.cert);
        dir.write("server.key", &server.key);
        Self {
            dir,
            ca: Pem {
                cert: ca_cert,
                key: ca_key_pem,
            },
            client,
            stranger,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.0.join(name)
    }

    /// Server settings: TLS with the server certificate; mutual TLS when `mutual`.
    fn configure(&self, mutual: bool) -> impl FnOnce(&mut ServeSettings) + use<> {
        let (cert, key, ca) = (
            self.path("server.pem"),
            self.path("server.key"),
            self.path("ca.pem"),
        );
        move |settings| {
            settings.tls.tls_cert = Some(cert);
            settings.tls.tls_key = Some(key);
            settings.tls.tls_client_ca = mutual.then_some(ca);
        }
    }

    /// tonic's client TLS: trusts the test CA, expects `localhost`, no client certificate.
    fn client_tls(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca.cert))
            .domain_name("localhost")
    }

    /// [`Pki::client_tls`] presenting `identity`.
    fn client_tls_as(&self, identity: &Pem) -> ClientTlsConfig {
        self.client_tls()
            .identity(Identity::from_pem(&identity.cert, &identity.key))
    }
}

/// How a call that never reached the service failed.
#[derive(Debug)]
#[expect(
    dead_code,
    reason = "the errors are shown by Debug in assertion messages"
)]
enum Refused {
    /// The channel could not connect (handshake rejected before tonic's connect returned).
    Connect(tonic::transport::Error),
    /// The connection was closed under the call: a transport error, not a status the
    /// server sent.
    Call(tonic::Status),
}

/// `https://localhost:PORT` with `tls`.
fn tls_endpoint(addr: SocketAddr, tls: ClientTlsConfig) -> Endpoint {
    Endpoint::from_shared(format!("https://localhost:{}", addr.port()))
        .unwrap()
        .tls_config(tls)
        .unwrap()
}

/// A fresh TLS connection (not the app's shared channel) and one CreateCustomer call on it,
/// authorized as the app's client is.
async fn create_over(app: &TestApp, tls: ClientTlsConfig) -> Result<pb::Customer, Refused> {
    create_on(app, tls_endpoint(app.addr, tls)).await
}

/// A fresh connection to `endpoint` and one CreateCustomer call on it. A status the server
/// answered with fails the test: only transport failures are `Err`.
async fn create_on(app: &TestApp, endpoint: Endpoint) -> Result<pb::Customer, Refused> {
    let authorization: MetadataValue<Ascii> = app.bearer().parse().unwrap();
    let call = async {
        let channel = endpoint.connect().await.map_err(Refused::Connect)?;
        let bearer = move |mut request: tonic::Request<()>| {
            let metadata = request.metadata_mut();
            metadata.insert("authorization", authorization.clone());
            Ok(request)
        };
        CustomerServiceClient::with_interceptor(channel, bearer)
            .create_customer(pb::CreateCustomerRequest {
                duplicate_policy: 0,
                customer: Some(new_customer("Tls", "Client")),
                request_id: String::new(),
            })
            .await
            .map(tonic::Response::into_inner)
            .map_err(Refused::Call)
    };
    let outcome = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("the call completes or fails promptly");
    if let Err(Refused::Call(status)) = &outcome {
        // The code depends on when the client notices (UNAVAILABLE, CANCELLED when the
        // connection closes under a sent request, INTERNAL when an h2 client reads a TLS
        // alert as a frame); what matters is that tonic saw a transport error.
        let source = std::error::Error::source(status);
        assert!(
            source.is_some_and(|source| source.is::<tonic::transport::Error>()),
            "the server answered instead of refusing the connection: {status:?}"
        );
    }
    outcome
}

/// GET `path` over HTTPS with HTTP/1.1 (ALPN `http/1.1`) as the app's client, trusting
/// `ca_pem`.
async fn https_get(app: &TestApp, ca_pem: &str, path: &str) -> (StatusCode, String, Bytes) {
    let addr = app.addr;
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let mut config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(addr).await.unwrap();
    let stream = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = http::Request::get(path)
        .header(http::header::HOST, format!("localhost:{}", addr.port()))
        .header(http::header::AUTHORIZATION, app.bearer())
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let content_type = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (
        parts.status,
        content_type,
        body.collect().await.unwrap().to_bytes(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_and_rest_are_served_over_tls() {
    let pki = Pki::new();
    let app = TestApp::spawn_with_tls(pki.configure(false), pki.client_tls()).await;

    // gRPC over TLS (tonic requires ALPN h2).
    let created = app.create("Ada", "Lovelace").await;
    let fetched = app.get_customer(&created.name).await.unwrap();
    assert_eq!(fetched.name, created.name);
    assert_eq!(fetched.email, created.email);

    // REST over HTTPS, HTTP/1.1.
    let (status, content_type, body) =
        https_get(&app, &pki.ca.cert, &format!("/v1/{}", created.name)).await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["name"], created.name.as_str());
    assert_eq!(json["familyName"], "Lovelace");

    // Probes too.
    let (status, _, body) = https_get(&app, &pki.ca.cert, "/healthz").await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"ok\n"[..]));
}

#[tokio::test(flavor = "multi_thread")]
async fn plaintext_clients_are_refused_on_a_tls_port() {
    let pki = Pki::new();
    let app = TestApp::spawn_with_tls(pki.configure(false), pki.client_tls()).await;

    // gRPC over h2c: no silent downgrade.
    let refused = create_on(
        &app,
        Endpoint::from_shared(format!("http://{}", app.addr)).unwrap(),
    )
    .await;
    assert!(
        refused.is_err(),
        "plaintext gRPC succeeded on a TLS port: {refused:?}"
    );

    // Plain HTTP/1.1 likewise gets no HTTP response.
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let request = http::Request::get(format!("http://{}/healthz", app.addr))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(10), client.request(request))
        .await
        .expect("a plaintext HTTP client is turned away promptly");
    assert!(
        outcome.is_err(),
        "plaintext HTTP got a response: {outcome:?}"
    );
    assert_eq!(app.count("customers", "").await, 0);

    // The listener is unharmed.
    create_over(&app, pki.client_tls()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn mutual_tls_admits_only_clients_with_a_certificate_from_the_ca() {
    let pki = Pki::new();
    let app = TestApp::spawn_with_tls(pki.configure(true), pki.client_tls_as(&pki.client)).await;

    // The app's client presents a certificate from the CA.
    app.create("Grace", "Hopper").await;

    // No certificate: rejected in the handshake, the call fails as a transport error.
    let refused = create_over(&app, pki.client_tls()).await;
    assert!(refused.is_err(), "{refused:?}");
    // A certificate from another CA: rejected too.
    let refused = create_over(&app, pki.client_tls_as(&pki.stranger)).await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(app.count("customers", "").await, 1);

    // The server keeps serving: the existing connection and a new one both work.
    app.create("Grace", "Hopper").await;
    create_over(&app, pki.client_tls_as(&pki.client))
        .await
        .unwrap();
    assert_eq!(app.count("customers", "").await, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_handshake_does_not_hold_up_other_clients() {
    let pki = Pki::new();
    let app = TestApp::spawn_with_tls(pki.configure(false), pki.client_tls()).await;

    // Two peers that connect and never finish a handshake: one silent, one that sends half a
    // TLS record header.
    let _silent = TcpStream::connect(app.addr).await.unwrap();
    let mut partial = TcpStream::connect(app.addr).await.unwrap();
    partial.write_all(&[0x16, 0x03, 0x01]).await.unwrap();

    // New connections are still accepted and served at once (well within the 10 s handshake
    // timeout the stalled ones get).
    let started = tokio::time::Instant::now();
    create_over(&app, pki.client_tls()).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// Starts the server directly with `tls` settings; returns its start-up error text.
async fn start_up_error(configure: impl FnOnce(&mut ServeSettings)) -> String {
    // Never reached: TLS files are checked before the database is touched.
    let mut settings = ServeSettings::for_database("postgres://nobody@127.0.0.1:1/nothing");
    configure(&mut settings);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let outcome = tokio::time::timeout(
        Duration::from_secs(10),
        server::serve(settings, listener, std::future::pending()),
    )
    .await
    .expect("start-up fails promptly");
    outcome.expect_err("start-up must fail").to_string()
}

#[tokio::test]
async fn bad_certificate_or_key_files_fail_start_up_with_a_clear_error() {
    let pki = Pki::new();
    let missing = pki.path("missing.key");

    let error = start_up_error(|settings| {
        settings.tls.tls_cert = Some(pki.path("server.pem"));
        settings.tls.tls_key = Some(missing.clone());
    })
    .await;
    assert!(
        error.starts_with("TLS: cannot load private key from "),
        "{error}"
    );
    assert!(error.contains(&missing.display().to_string()), "{error}");
    assert!(error.contains("No such file or directory"), "{error}");

    // A file without a key in it.
    let error = start_up_error(|settings| {
        settings.tls.tls_cert = Some(pki.path("server.pem"));
        settings.tls.tls_key = Some(pki.path("server.pem"));
    })
    .await;
    assert!(error.contains("no PEM private key found"), "{error}");

    // A key that does not belong to the certificate.
    let wrong_key = pki.dir.write("ca.key", &pki.ca.key);
    let error = start_up_error(|settings| {
        settings.tls.tls_cert = Some(pki.path("server.pem"));
        settings.tls.tls_key = Some(wrong_key.clone());
    })
    .await;
    assert!(
        error.starts_with("TLS: certificate and key rejected"),
        "{error}"
    );
    assert!(!error.contains("PRIVATE KEY"), "key material in {error}");

    // A certificate file that is not PEM; a client CA without a certificate.
    let garbage = pki.dir.write("garbage.pem", "not a certificate\n");
    let error = start_up_error(|settings| {
        settings.tls.tls_cert = Some(garbage.clone());
        settings.tls.tls_key = Some(pki.path("server.key"));
    })
    .await;
    assert!(error.contains("cannot load certificate chain"), "{error}");
    let error = start_up_error(|settings| {
        settings.tls.tls_client_ca = Some(pki.path("ca.pem"));
    })
    .await;
    assert!(error.contains("--tls-client-ca"), "{error}");
}
