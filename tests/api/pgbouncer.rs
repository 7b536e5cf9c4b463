//! The service behind PgBouncer (Debian's package; `make test` installs it): a private
//! pgbouncer per test in front of the test database's server, in session mode with the
//! defaults, and in transaction mode with `DB_PREPARED_STATEMENTS=false` and
//! `DATABASE_SESSION_URL` pointing past the pooler (migrations, the listener). In transaction
//! mode two replicas share two server connections, so every client is moved between server
//! connections all the time: a prepared statement that outlived its transaction, or a
//! statement run outside one, would fail with "prepared statement … does not exist" or
//! "already exists".

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use customer_api::{config::ServeSettings, pb};
use futures_util::future::join_all;
use prost_types::FieldMask;

use crate::{
    helpers::{TestApp, authority, fresh_database},
    tls::TempDir,
};

/// The pgbouncer binary: on PATH or in /usr/sbin (Debian). Fails, never skips, without it.
fn pgbouncer_binary() -> PathBuf {
    let on_path = Command::new("sh")
        .args(["-c", "command -v pgbouncer"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    on_path
        .or_else(|| Some(PathBuf::from("/usr/sbin/pgbouncer")).filter(|path| path.is_file()))
        .unwrap_or_else(|| {
            panic!(
                "pgbouncer is not installed: these tests run the service behind it. `make test` \
                 installs Debian's package (apt-get install pgbouncer)"
            )
        })
}

/// A running pgbouncer, stopped on drop.
struct Bouncer {
    port: u16,
    child: Child,
    dir: TempDir,
}

impl Bouncer {
    /// pgbouncer on a free port of 127.0.0.1 in `mode`, with `server_connections` server
    /// connections per database, in front of the server of `upstream` (a test database URL).
    async fn start(mode: &str, server_connections: u32, upstream: &str) -> Self {
        let binary = pgbouncer_binary();
        let server = authority(upstream);
        let (host, port) = server.rsplit_once(':').unwrap();
        let userinfo = upstream
            .split_once("://")
            .and_then(|(_, rest)| rest.split_once('@'))
            .map_or("postgres", |(userinfo, _)| userinfo);
        let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
        let password = if password.is_empty() {
            String::new()
        } else {
            format!(" password={password}")
        };
        let listen = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = TempDir::new();
        let users = dir.write("users.txt", &format!("\"{user}\" \"\"\n"));
        let log = dir.0.join("pgbouncer.log");
        let config = dir.write(
            "pgbouncer.ini",
            &format!(
                "[databases]\n* = host={host} port={port}{password}\n\n[pgbouncer]\n\
                 listen_addr = 127.0.0.1\nlisten_port = {listen}\nunix_socket_dir =\n\
                 auth_type = trust\nauth_file = {}\npool_mode = {mode}\n\
                 default_pool_size = {server_connections}\nmax_client_conn = 200\n\
                 logfile = {}\n",
                users.display(),
                log.display()
            ),
        );
        let mut command = Command::new(binary);
        // pgbouncer refuses to run as root; `-u` drops to another user after start.
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0");
        if root {
            let chown = Command::new("chown")
                .args(["-R", "postgres"])
                .arg(&dir.0)
                .status()
                .unwrap();
            assert!(chown.success());
            command.args(["-u", "postgres"]);
        }
        let child = command
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut bouncer = Self {
            port: listen,
            child,
            dir,
        };
        crate::helpers::eventually("pgbouncer accepts connections", || async {
            tokio::net::TcpStream::connect(("127.0.0.1", listen))
                .await
                .is_ok()
        })
        .await;
        assert!(
            bouncer.child.try_wait().unwrap().is_none(),
            "pgbouncer exited: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        bouncer
    }

    /// `url` through this pgbouncer.
    fn route(&self, url: &str) -> String {
        url.replacen(&authority(url), &format!("127.0.0.1:{}", self.port), 1)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Creates, reads (each customer from another replica than the one that created it), lists
/// (pages continued on alternating replicas), updates and reads again — concurrently where
/// the API allows.
async fn roundtrip(apps: &[&TestApp]) {
    let replica = |i: usize| apps[i % apps.len()];
    let created = join_all(
        (0..12).map(|i| async move { replica(i).create(&format!("Pool{i:02}"), "Bouncer").await }),
    )
    .await;

    let read = join_all(created.iter().enumerate().map(|(i, customer)| {
        let mut client = replica(i + 1).client.clone();
        let name = customer.name.clone();
        async move {
            client
                .get_customer(pb::GetCustomerRequest {
                    name,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
        }
    }))
    .await;
    assert_eq!(read, created);

    let mut listed = Vec::new();
    let mut token = String::new();
    for page in 0.. {
        let response = replica(page)
            .client
            .clone()
            .list_customers(pb::ListCustomersRequest {
                page_size: 5,
                page_token: token,
                filter: "family_name = \"Bouncer\"".into(),
                order_by: "given_name".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        listed.extend(response.customers.into_iter().map(|c| c.given_name));
        token = response.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    let expected: Vec<String> = (0..12).map(|i| format!("Pool{i:02}")).collect();
    assert_eq!(listed, expected);

    // A contains-search: its statement runs between a SET and a RESET of plan_cache_mode,
    // all three in one transaction, so on one server connection of the pooler. A rare term
    // (one match) takes the sparse branch, a common one the dense walk.
    for (replica_index, (term, matches)) in [("ool03", 1), ("ool", 12)].into_iter().enumerate() {
        let response = replica(replica_index)
            .client
            .clone()
            .list_customers(pb::ListCustomersRequest {
                page_size: 50,
                filter: format!("given_name:\"{term}\" AND family_name = \"Bouncer\""),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(response.customers.len(), matches, "{term}");
    }

    let updated = join_all(created.iter().enumerate().map(|(i, customer)| {
        let mut client = replica(i + 1).client.clone();
        let change = pb::Customer {
            name: customer.name.clone(),
            given_name: format!("Updated{i:02}"),
            etag: customer.etag.clone(),
            ..Default::default()
        };
        async move {
            client
                .update_customer(pb::UpdateCustomerRequest {
                    customer: Some(change),
                    update_mask: Some(FieldMask {
                        paths: vec!["given_name".into()],
                    }),
                    request_id: String::new(),
                    allow_missing: false,
                })
                .await
                .unwrap()
                .into_inner()
        }
    }))
    .await;
    for (i, (before, after)) in created.iter().zip(&updated).enumerate() {
        assert_eq!(after.given_name, format!("Updated{i:02}"));
        assert_eq!(after.email, before.email);
        assert_ne!(after.etag, before.etag);
        let again = replica(i).get_customer(&before.name).await.unwrap();
        assert_eq!(&again, after);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_service_works_behind_pgbouncer_in_session_mode() {
    let database = fresh_database().await;
    let (url, name) = database.parts();
    // Session mode holds a server connection per client: enough for the pool and sessions.
    let bouncer = Bouncer::start("session", 30, &url).await;
    let configure = |settings: &mut ServeSettings| settings.database.pool_size = 8;
    let mut app = TestApp::spawn_on(bouncer.route(&url), name, configure, None).await;
    roundtrip(&[&app]).await;
    app.stop().await;
    assert!(
        !bouncer.log().contains("does not exist"),
        "{}",
        bouncer.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_work_behind_pgbouncer_in_transaction_mode_without_prepared_statements() {
    let database = fresh_database().await;
    let (url, name) = database.parts();
    let bouncer = Bouncer::start("transaction", 2, &url).await;
    let pooled = bouncer.route(&url);
    let configure = |settings: &mut ServeSettings| {
        settings.database.prepared_statements = false;
        settings.database.database_session_url = Some(url.as_str().into());
        settings.database.pool_size = 6;
        settings.health_probe_interval = Duration::from_millis(20);
        // The page-token key stored once in the database, read through the pooler.
        settings.page_token_key = None;
    };
    let (mut a, mut b) = tokio::join!(
        TestApp::spawn_on(pooled.clone(), name.clone(), configure, None),
        TestApp::spawn_on(pooled, name, configure, None),
    );
    roundtrip(&[&a, &b]).await;
    // Counted directly: the test's own connections use prepared statements.
    #[derive(diesel::QueryableByName)]
    struct Keys {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut direct = crate::helpers::connect(&url).await.unwrap();
    let keys: Keys = diesel_async::RunQueryDsl::get_result(
        diesel::sql_query("SELECT count(*) AS n FROM service_keys"),
        &mut direct,
    )
    .await
    .unwrap();
    assert_eq!(keys.n, 1);
    a.stop().await;
    b.stop().await;
}
