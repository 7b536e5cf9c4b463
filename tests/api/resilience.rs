//! Failure behaviour: deadlines, cancellation, database outages, pool exhaustion, shutdown.

use std::time::{Duration, Instant};

use customer_api::pb;
use diesel_async::SimpleAsyncConnection;
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::helpers::{
    Proxy, TestApp, active_statements_on, assert_reason, eventually, health_status, lock_customer,
    raw_grpc_status, sessions_in_state, sessions_waiting_for_locks, until_reached,
};

/// These tests hold a row lock while the server waits for it; under a loaded test run that
/// wait may outlast the default 5 s statement timeout, which would (correctly) roll the
/// waiting write back and defeat the test's purpose.
fn patient(settings: &mut customer_api::config::ServeSettings) {
    settings.database.statement_timeout = Duration::from_secs(60);
}

/// A write whose caller went away (deadline, cancel) still commits on its own task: once
/// the database is quiet its change is stored and no session is left in a transaction.
async fn assert_the_write_outlived_its_caller(app: &TestApp, name: &str, given_name: &str) {
    eventually("the outlived write has finished", || async {
        crate::helpers::busy_sessions(app).await == 0
    })
    .await;
    let stored = app.get_customer(name).await.unwrap();
    assert_eq!(stored.given_name, given_name);
    // Other sessions (the sequencer numbering the write's event) pass through `idle in
    // transaction` between their statements: look until none is, a bounded number of times.
    until_reached("no session is idle in a transaction", 500, || async {
        sessions_in_state(app, "idle in transaction").await == 0
    })
    .await;
}

fn rename(name: &str, given: &str, etag: &str) -> pb::UpdateCustomerRequest {
    pb::UpdateCustomerRequest {
        customer: Some(pb::Customer {
            name: name.into(),
            given_name: given.into(),
            etag: etag.into(),
            ..Default::default()
        }),
        update_mask: None,
        request_id: String::new(),
        allow_missing: false,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_past_its_client_deadline_is_deadline_exceeded_and_rolls_back() {
    let app = TestApp::spawn_with(patient).await;
    let customer = app.create("Ada", "Lovelace").await;
    let mut lock = lock_customer(&app, &customer.name).await;

    // The deadline as any gRPC client sends it, over plain HTTP/2: tonic's client would
    // also start its own timer and report CANCELLED locally; this is about the server.
    let request = rename(&customer.name, "Late", &customer.etag);
    let status = raw_grpc_status(
        &app,
        "UpdateCustomer",
        &request,
        &[("grpc-timeout", "300m")],
    )
    .await;

    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    // The write's statements are bounded by the client's deadline (300 ms, not the 60 s
    // statement timeout): it stops waiting for the row lock and rolls back by itself.
    until_reached(
        "the write gave up waiting for the row lock",
        1000,
        || async { sessions_waiting_for_locks(&app).await == 0 },
    )
    .await;
    lock.batch_execute("COMMIT").await.unwrap();
    until_reached("no session is idle in a transaction", 500, || async {
        sessions_in_state(&app, "idle in transaction").await == 0
    })
    .await;
    let stored = app.get_customer(&customer.name).await.unwrap();
    assert_eq!(stored, customer, "nothing was written");
    assert_eq!(app.count("events", "").await, 1, "only the registration");
}

/// GetCustomer of `name` with `timeout` as `grpc-timeout`: the status the server sent.
async fn get_within(app: &TestApp, name: &str, timeout: &str) -> tonic::Status {
    let request = pb::GetCustomerRequest {
        name: name.to_owned(),
        ..Default::default()
    };
    raw_grpc_status(app, "GetCustomer", &request, &[("grpc-timeout", timeout)]).await
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_abandoned_on_a_locked_table_are_cancelled_and_readiness_stays_up() {
    // A 60 s statement timeout: without the cancel, the abandoned reads would keep their
    // connections busy for that long. Four pooled connections, all held below.
    let app = TestApp::spawn_with(|settings| {
        patient(settings);
        settings.database.pool_size = 4;
    })
    .await;
    let customer = app.create("Ada", "Lovelace").await;
    let mut lock = app.db().await;
    lock.batch_execute("BEGIN; LOCK TABLE customers IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();

    let abandoned =
        futures_util::future::join_all((0..8).map(|_| get_within(&app, &customer.name, "300m")))
            .await;
    for status in &abandoned {
        assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    }
    // Each abandoned read's statement was cancelled: none is left waiting for the table.
    until_reached(
        "the abandoned reads' statements are cancelled",
        1000,
        || async { active_statements_on(&app, "customers").await == 0 },
    )
    .await;

    // Patient readers take every pooled connection while the table stays locked...
    let patient_reads =
        futures_util::future::join_all((0..4).map(|_| get_within(&app, &customer.name, "60S")));
    let waiting = async {
        until_reached("the patient reads wait for the table", 1000, || async {
            sessions_waiting_for_locks(&app).await == 4
        })
        .await;
        // ...and readiness, asked on a connection of its own, still says ready.
        let reported = health_status(&app.channel).await.unwrap();
        let ready = probe_status(app.addr, "/readyz").await;
        lock.batch_execute("COMMIT").await.unwrap();
        (reported, ready)
    };
    let ((status, ready), answered) = tokio::join!(waiting, patient_reads);

    assert_eq!(status, ServingStatus::Serving as i32);
    assert_eq!(ready, 200);
    for status in &answered {
        assert_eq!(status.code(), Code::Ok, "{status:?}");
    }
    assert_eq!(active_statements_on(&app, "customers").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_goes_away_mid_write_leaves_no_transaction_open() {
    let app = TestApp::spawn_with(patient).await;
    let customer = app.create("Ada", "Lovelace").await;
    let mut lock = lock_customer(&app, &customer.name).await;

    let call = {
        let mut client = app.client.clone();
        let request = rename(&customer.name, "Abandoned", &customer.etag);
        tokio::spawn(async move { client.update_customer(request).await })
    };
    eventually("the write waits for the row lock", || async {
        sessions_waiting_for_locks(&app).await == 1
    })
    .await;
    call.abort();
    assert!(call.await.unwrap_err().is_cancelled());
    lock.batch_execute("COMMIT").await.unwrap();

    assert_the_write_outlived_its_caller(&app, &customer.name, "Abandoned").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn database_outage_answers_unavailable_fast_then_recovers_by_itself() {
    let proxy = Proxy::start(&crate::helpers::authority(&crate::helpers::base_url())).await;
    let app = TestApp::spawn_with(|settings| {
        settings.database.database_url = proxy.route(&settings.database.database_url).into();
    })
    .await;
    let customer = app.create("Ada", "Lovelace").await;
    let mut health = HealthClient::new(app.channel.clone());
    let mut watch = health
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        watch.message().await.unwrap().unwrap().status,
        ServingStatus::Serving as i32
    );

    let (addr, upstream) = proxy.cut().await;
    let started = Instant::now();
    let status = app.get_customer(&customer.name).await.unwrap_err();
    let waited = started.elapsed();

    assert_reason(&status, Code::Unavailable, "DATABASE_UNAVAILABLE");
    assert!(waited < Duration::from_millis(3000), "took {waited:?}");
    assert_eq!(
        watch.message().await.unwrap().unwrap().status,
        ServingStatus::NotServing as i32
    );

    // The database comes back on the same address: no restart, no manual step.
    let _proxy = Proxy::start_at(addr, &upstream).await;
    let fetched = app.get_customer(&customer.name).await.unwrap();
    assert_eq!(fetched, customer);
    assert_eq!(
        watch.message().await.unwrap().unwrap().status,
        ServingStatus::Serving as i32
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exhausted_pool_answers_unavailable_after_the_checkout_timeout() {
    let app = TestApp::spawn_with(|settings| {
        patient(settings);
        settings.database.pool_size = 1;
        settings.database.checkout_timeout = Duration::from_millis(300);
    })
    .await;
    let customer = app.create("Ada", "Lovelace").await;
    let mut lock = lock_customer(&app, &customer.name).await;
    let blocked = {
        let mut client = app.client.clone();
        let request = rename(&customer.name, "Holder", "");
        tokio::spawn(async move { client.update_customer(request).await })
    };
    eventually(
        "the only pooled connection waits for the row lock",
        || async { sessions_waiting_for_locks(&app).await == 1 },
    )
    .await;

    let started = Instant::now();
    let status = app.get_customer(&customer.name).await.unwrap_err();

    assert_reason(&status, Code::Unavailable, "DATABASE_UNAVAILABLE");
    assert!(started.elapsed() >= Duration::from_millis(300));
    lock.batch_execute("COMMIT").await.unwrap();
    assert_eq!(
        blocked.await.unwrap().unwrap().into_inner().given_name,
        "Holder"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_reports_not_serving_and_lets_in_flight_calls_finish() {
    let mut app =
        TestApp::spawn_with(|settings| settings.drain_timeout = Duration::from_secs(10)).await;
    let customer = app.create("Ada", "Lovelace").await;
    let mut lock = lock_customer(&app, &customer.name).await;
    let in_flight = {
        let mut client = app.client.clone();
        let request = rename(&customer.name, "Finished", "");
        tokio::spawn(async move { client.update_customer(request).await })
    };
    eventually("the call is in flight", || async {
        sessions_waiting_for_locks(&app).await == 1
    })
    .await;

    let serving = health_status(&app.channel).await.unwrap();
    assert_eq!(serving, ServingStatus::Serving as i32);
    let stopping = {
        let addr = app.addr;
        let stop = async move {
            app.stop().await;
            app
        };
        (tokio::spawn(stop), addr)
    };
    let (stop, addr) = stopping;
    // New connections are refused once the listener is closed.
    eventually("the listener is closed", || async {
        tokio::net::TcpStream::connect(addr).await.is_err()
    })
    .await;
    lock.batch_execute("COMMIT").await.unwrap();

    let finished = in_flight.await.unwrap().unwrap().into_inner();
    assert_eq!(finished.given_name, "Finished");
    let _app = stop.await.unwrap();
}

/// `GET http://{addr}{path}` on a new connection: the status code.
async fn probe_status(addr: std::net::SocketAddr, path: &str) -> u16 {
    use http_body_util::Empty;
    use hyper_util::{client::legacy::Client, rt::TokioExecutor};
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    let response = client
        .get(format!("http://{addr}{path}").parse().unwrap())
        .await
        .unwrap();
    response.status().as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn during_the_shutdown_delay_readiness_is_down_while_new_calls_are_still_served() {
    let mut app =
        TestApp::spawn_with(|settings| settings.shutdown_delay = Duration::from_secs(3)).await;
    let (addr, bearer) = (app.addr, app.bearer());
    // The health service is asked on this connection while the server shuts down.
    let connection = app.channel.clone();
    assert_eq!(probe_status(addr, "/readyz").await, 200);

    let stop = tokio::spawn(async move {
        app.stop().await;
        app
    });
    eventually("/readyz answers 503", || async {
        probe_status(addr, "/readyz").await == 503
    })
    .await;
    let reported = health_status(&connection).await.unwrap();
    // Still serving: a new connection is accepted and a write through it succeeds.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut request = tonic::Request::new(pb::CreateCustomerRequest {
        duplicate_policy: 0,
        customer: Some(crate::helpers::new_customer("Late", "Caller")),
        request_id: String::new(),
    });
    request
        .metadata_mut()
        .insert("authorization", bearer.parse().unwrap());
    let created = pb::customer_service_client::CustomerServiceClient::new(channel)
        .create_customer(request)
        .await;
    let _app = stop.await.unwrap();

    assert_eq!(reported, ServingStatus::NotServing as i32);
    assert_eq!(created.unwrap().into_inner().family_name, "Caller");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the listener is closed once the server stopped"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_exits_zero_on_sigterm() {
    let database = crate::helpers::fresh_database().await;
    let (database_url, _) = database.parts();
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_customer-api"))
        .arg("serve")
        .env("DATABASE_URL", &database_url)
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    eventually("the binary accepts connections", || async {
        tokio::net::TcpStream::connect(addr).await.is_ok()
    })
    .await;

    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let exit = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .unwrap()
        .unwrap();

    assert_eq!(exit.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_short_page_token_key_stops_start_up_with_a_clear_error() {
    let database = crate::helpers::fresh_database().await;
    let (database_url, _) = database.parts();
    let mut settings = customer_api::config::ServeSettings::for_database(database_url);
    settings.page_token_key = Some("short".into());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();

    let error = customer_api::server::serve(settings, listener, std::future::pending())
        .await
        .unwrap_err();

    assert_eq!(
        error.to_string(),
        "invalid configuration: PAGE_TOKEN_KEY must be at least 16 bytes"
    );
}

/// A server over a private PostgreSQL cluster the test can stop (`customer_api` database).
async fn app_on_private_cluster(
    configure: impl FnOnce(&mut customer_api::config::ServeSettings),
) -> (crate::cluster::Cluster, TestApp) {
    let cluster = crate::cluster::Cluster::start("", "host all all 127.0.0.1/32 trust\n", &[]);
    let mut admin = crate::helpers::connect(&cluster.url("postgres", "127.0.0.1", "postgres", ""))
        .await
        .unwrap();
    admin
        .batch_execute("CREATE DATABASE customer_api")
        .await
        .unwrap();
    let url = cluster.url("postgres", "127.0.0.1", "customer_api", "");
    let app = TestApp::spawn_on(url, "customer_api".into(), configure, None).await;
    (cluster, app)
}

/// `customer_api_events_watch_outage_retries_total` of the server.
async fn watch_outage_retries(app: &TestApp) -> u64 {
    let text = crate::metrics::scrape(app).await;
    text.lines()
        .find_map(|line| line.strip_prefix("customer_api_events_watch_outage_retries_total "))
        .map_or(0, |value| value.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watch_stays_open_through_a_short_database_outage() {
    let (cluster, app) = app_on_private_cluster(|_| {}).await;
    let before = app.create("Before", "Outage").await;
    let mut watch = app.watch("customers/-", "").await.unwrap();
    assert_eq!(
        watch.message().await.unwrap().unwrap().customer,
        before.name
    );

    tokio::task::block_in_place(|| cluster.stop());
    // The watch reads (at the latest after its 5 s safety net), fails, and waits to retry.
    until_reached(
        "the watch retried a read during the outage",
        3000,
        || async { watch_outage_retries(&app).await > 0 },
    )
    .await;
    tokio::task::block_in_place(|| cluster.start_again());
    let after = app.create("After", "Outage").await;

    let event = watch.message().await.unwrap().unwrap();
    assert_eq!(event.customer, after.name, "the same stream goes on");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watch_ends_unavailable_with_its_resume_token_once_the_outage_outlasts_the_tolerance() {
    let (cluster, app) = app_on_private_cluster(|settings| {
        settings.events.watch_outage_tolerance = Duration::ZERO;
    })
    .await;
    app.create("Before", "Outage").await;
    let mut watch = app.watch("customers/-", "").await.unwrap();
    let seen = watch.message().await.unwrap().unwrap();

    tokio::task::block_in_place(|| cluster.stop());
    let status = watch.message().await.unwrap_err();

    assert_reason(&status, Code::Unavailable, "DATABASE_UNAVAILABLE");
    assert!(
        status
            .message()
            .contains(&format!("start_after = \"{}\"", seen.resume_token)),
        "{status:?}"
    );
}
