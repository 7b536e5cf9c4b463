//! PostgreSQL over TLS against a real server with `ssl = on`: a private cluster whose
//! certificate (for `localhost` only) comes from a CA the test makes. Each `sslmode` does
//! what libpq's does, failures say why, client certificates authenticate (`hostssl … cert`),
//! and the service itself — the pool, migrations, the relay lease, the event listener and the
//! `migrate` and `api-key` subcommands — connects through the same code.

use std::process::Command;

use customer_api::db::Connector;
use diesel::{
    QueryableByName,
    sql_types::{BigInt, Bool, Text},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use rcgen::{ExtendedKeyUsagePurpose, Issuer};

use crate::{
    cluster::Cluster,
    events::{jetstream_context, private_stream},
    helpers::{TestApp, eventually, nats_url},
    tls::{TempDir, ca, leaf},
};

/// A cluster with TLS on and the client side's files: `ca.pem` (the server's CA),
/// `other-ca.pem` (a CA that signed nothing here), `client.pem`/`client.key` (a client
/// certificate for the role `certuser`).
struct TlsCluster {
    cluster: Cluster,
    files: TempDir,
}

impl TlsCluster {
    fn start() -> Self {
        let (ca_params, ca_key, ca_cert) = ca("database test CA");
        let issuer = Issuer::new(ca_params, ca_key);
        let server = leaf(&["localhost"], ExtendedKeyUsagePurpose::ServerAuth, &issuer);
        let client = leaf(&["certuser"], ExtendedKeyUsagePurpose::ClientAuth, &issuer);
        let (_, _, other_ca) = ca("a CA the server never used");
        let files = TempDir::new();
        files.write("ca.pem", &ca_cert);
        files.write("other-ca.pem", &other_ca);
        files.write("client.pem", &client.cert);
        files.write("client.key", &client.key);
        let cluster = Cluster::start(
            "ssl = on\nssl_cert_file = 'server.pem'\nssl_key_file = 'server.key'\n\
             ssl_ca_file = 'ca.pem'",
            "hostssl all certuser 127.0.0.1/32 cert\n\
             host all certuser 127.0.0.1/32 reject\n\
             host all all 127.0.0.1/32 trust\n",
            &[
                ("server.pem", &server.cert),
                ("server.key", &server.key),
                ("ca.pem", &ca_cert),
            ],
        );
        Self { cluster, files }
    }

    fn file(&self, name: &str) -> String {
        self.files.0.join(name).to_str().unwrap().to_owned()
    }

    /// A URL of the `postgres` database as `postgres`, to `host`, with `params`.
    fn url(&self, host: &str, params: &str) -> String {
        self.cluster.url("postgres", host, "postgres", params)
    }
}

#[derive(Debug, QueryableByName)]
struct Session {
    #[diesel(sql_type = Bool)]
    ssl: bool,
    #[diesel(sql_type = Text)]
    user: String,
    #[diesel(sql_type = Text)]
    client_dn: String,
}

async fn connect(url: &str) -> Result<AsyncPgConnection, String> {
    Connector::from_url(url)
        .map_err(|e| e.to_string())?
        .connect(false)
        .await
        .map_err(|e| e.to_string())
}

/// Connects with `url` and reports the session as the server sees it.
async fn session(url: &str) -> Result<Session, String> {
    let mut conn = connect(url).await?;
    Ok(diesel::sql_query(
        "SELECT s.ssl, current_user::text AS user, coalesce(s.client_dn, '') AS client_dn \
         FROM pg_stat_ssl s WHERE s.pid = pg_backend_pid()",
    )
    .get_result(&mut conn)
    .await
    .unwrap())
}

async fn encrypted(url: &str) -> Result<bool, String> {
    session(url).await.map(|session| session.ssl)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_sslmode_means_what_it_means_in_libpq() {
    let pg = TlsCluster::start();
    let (ca, other_ca) = (pg.file("ca.pem"), pg.file("other-ca.pem"));
    let target = |host: &str, mode: &str| {
        format!(
            "cannot connect to {host}:{}/postgres (sslmode={mode}): ",
            pg.cluster.port
        )
    };

    assert_eq!(
        encrypted(&pg.url(
            "localhost",
            &format!("sslmode=verify-full&sslrootcert={ca}")
        ))
        .await,
        Ok(true)
    );
    assert_eq!(
        encrypted(&pg.url("localhost", "sslmode=require")).await,
        Ok(true),
        "require encrypts without verifying"
    );
    assert_eq!(
        encrypted(&pg.url("localhost", "sslmode=prefer")).await,
        Ok(true)
    );
    assert_eq!(
        encrypted(&pg.url("localhost", "")).await,
        Ok(true),
        "prefer by default"
    );
    assert_eq!(
        encrypted(&pg.url("localhost", "sslmode=disable")).await,
        Ok(false)
    );

    // The certificate names `localhost`; `hostaddr` reaches the same server by another name.
    let wrong_name = pg.url(
        "wrong.example",
        &format!("sslmode=verify-full&sslrootcert={ca}&hostaddr=127.0.0.1"),
    );
    let error = encrypted(&wrong_name).await.unwrap_err();
    assert!(
        error.starts_with(&format!(
            "{}error performing TLS handshake: invalid peer certificate: certificate not valid \
             for name \"wrong.example\"",
            target("wrong.example", "verify-full")
        )),
        "{error}"
    );
    assert!(
        error.ends_with(
            " — the server's certificate does not name the host of the URL (verify-full \
             checks the host name; connect by a name the certificate lists)"
        ),
        "{error}"
    );
    assert_eq!(
        encrypted(&pg.url(
            "wrong.example",
            &format!("sslmode=verify-ca&sslrootcert={ca}&hostaddr=127.0.0.1")
        ))
        .await,
        Ok(true),
        "verify-ca checks the chain, not the name"
    );

    for mode in ["verify-full", "verify-ca", "require", "prefer"] {
        let error = encrypted(&pg.url(
            "localhost",
            &format!("sslmode={mode}&sslrootcert={other_ca}"),
        ))
        .await
        .unwrap_err();
        assert_eq!(
            error,
            format!(
                "{}error performing TLS handshake: invalid peer certificate: UnknownIssuer — \
                 the server's certificate is not signed by a CA in sslrootcert",
                target("localhost", mode)
            ),
            "with sslrootcert, {mode} checks the chain"
        );
    }

    // The server stops offering TLS: prefer falls back to plaintext, require refuses.
    let mut admin = connect(&pg.url("localhost", "sslmode=disable"))
        .await
        .unwrap();
    admin
        .batch_execute("ALTER SYSTEM SET ssl = off")
        .await
        .unwrap();
    admin
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .unwrap();
    let prefer = pg.url("localhost", "sslmode=prefer");
    eventually("the server refuses TLS", || async {
        encrypted(&prefer).await == Ok(false)
    })
    .await;
    assert_eq!(
        encrypted(&pg.url("localhost", "sslmode=require")).await,
        Err(format!(
            "{}error performing TLS handshake: server does not support TLS — the server \
             refuses TLS: enable ssl on the server, or use sslmode=prefer or disable where \
             plaintext is acceptable",
            target("localhost", "require")
        ))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_certificate_authenticates_a_hostssl_cert_role() {
    let pg = TlsCluster::start();
    let mut admin = connect(&pg.url("localhost", "sslmode=disable"))
        .await
        .unwrap();
    admin
        .batch_execute("CREATE ROLE certuser LOGIN")
        .await
        .unwrap();
    let verified = format!("sslmode=verify-full&sslrootcert={}", pg.file("ca.pem"));
    let as_certuser = |params: &str| pg.cluster.url("certuser", "localhost", "postgres", params);

    let with_certificate = session(&as_certuser(&format!(
        "{verified}&sslcert={}&sslkey={}",
        pg.file("client.pem"),
        pg.file("client.key")
    )))
    .await
    .unwrap();
    assert!(with_certificate.ssl);
    assert_eq!(with_certificate.user, "certuser");
    assert_eq!(with_certificate.client_dn, "/CN=certuser");

    let without = session(&as_certuser(&verified)).await.unwrap_err();
    assert!(
        without.ends_with("connection requires a valid client certificate"),
        "{without}"
    );
    let plaintext = session(&as_certuser("sslmode=disable")).await.unwrap_err();
    assert!(
        plaintext
            .contains("pg_hba.conf rejects connection for host \"127.0.0.1\", user \"certuser\""),
        "{plaintext}"
    );
    let missing_key = Connector::from_url(&as_certuser(&format!(
        "{verified}&sslcert={}&sslkey=/no/such/client.key",
        pg.file("client.pem")
    )))
    .unwrap_err()
    .to_string();
    assert!(
        missing_key.starts_with("database URL parameter sslkey=/no/such/client.key: "),
        "{missing_key}"
    );
}

#[derive(QueryableByName)]
struct Sessions {
    #[diesel(sql_type = BigInt)]
    total: i64,
    #[diesel(sql_type = BigInt)]
    plaintext: i64,
    #[diesel(sql_type = BigInt)]
    lease_over_tls: i64,
}

/// Runs the built binary with exactly `env` (nothing inherited from the test's environment).
fn customer_api(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_customer-api"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_service_and_its_subcommands_connect_with_verify_full() {
    let pg = TlsCluster::start();
    let ca = pg.file("ca.pem");
    // Trust authentication ignores the password: it is there to prove it is never printed.
    let url = |root: &str| {
        format!(
            "postgres://postgres:s3cret-password@localhost:{}/customer_api?sslmode=verify-full&sslrootcert={root}",
            pg.cluster.port
        )
    };

    let refused = customer_api(
        &["migrate"],
        &[("DATABASE_URL", &url(&pg.file("other-ca.pem")))],
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("invalid peer certificate: UnknownIssuer — the server's certificate is not signed by a CA in sslrootcert"),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret"), "{stderr}");

    let migrated = customer_api(&["migrate"], &[("DATABASE_URL", &url(&ca))]);
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    let key = customer_api(
        &["api-key", "create", "--scopes", "customers.read"],
        &[("DATABASE_URL", &url(&ca))],
    );
    assert!(
        key.status.success(),
        "{}",
        String::from_utf8_lossy(&key.stderr)
    );
    assert!(String::from_utf8_lossy(&key.stdout).contains("key:     cak_"));
    let listed = customer_api(&["api-key", "list"], &[("DATABASE_URL", &url(&ca))]);
    assert!(listed.status.success());
    assert_eq!(String::from_utf8_lossy(&listed.stdout).lines().count(), 1);

    // The server: pool, migrations, page-token key, listener and relay lease.
    let nats = nats_url();
    let (stream, prefix) = private_stream();
    let mut app = TestApp::spawn_on(
        url(&ca),
        "customer_api".into(),
        |settings| {
            settings.events.nats_url = Some(nats.clone());
            settings.events.nats_stream = stream.clone();
            settings.events.nats_subject_prefix = prefix.clone();
        },
        None,
    )
    .await;
    app.create("Tls", "Everywhere").await;
    let inspect = pg
        .cluster
        .url("postgres", "localhost", "customer_api", "sslmode=disable");
    let lease = customer_api::db::relay::RELAY_LOCK;
    let query = format!(
        "SELECT count(*) AS total, count(*) FILTER (WHERE NOT s.ssl) AS plaintext, \
                (SELECT count(*) FROM pg_locks l JOIN pg_stat_ssl ls ON ls.pid = l.pid \
                 WHERE l.locktype = 'advisory' AND l.granted AND ls.ssl \
                   AND l.classid = {} AND l.objid = {}) AS lease_over_tls \
         FROM pg_stat_activity a JOIN pg_stat_ssl s ON s.pid = a.pid \
         WHERE a.application_name = 'customer-api'",
        lease >> 32,
        lease & 0xffff_ffff
    );
    let sessions = async || -> Sessions {
        let mut conn = connect(&inspect).await.unwrap();
        diesel::sql_query(&query)
            .get_result(&mut conn)
            .await
            .unwrap()
    };
    eventually("the relay holds its lease", || async {
        sessions().await.lease_over_tls == 1
    })
    .await;
    let sessions = sessions().await;
    assert_eq!(sessions.plaintext, 0);
    // At least a pooled connection, the event listener and the relay lease.
    assert!(sessions.total >= 3, "{} sessions", sessions.total);
    app.stop().await;
    jetstream_context(&nats)
        .await
        .delete_stream(&stream)
        .await
        .unwrap();
}
