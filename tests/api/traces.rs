//! Traces: the server exports OpenTelemetry spans over OTLP (gRPC and HTTP/protobuf) to a
//! receiver in this test (the `opentelemetry.proto.collector.trace.v1.TraceService` of the
//! published protos, served by tonic; and `POST /v1/traces` over HTTP). Calls that carry a
//! `traceparent` continue the caller's trace: server span → pool checkout and SQL statement
//! spans, the business-registry request (whose `traceparent` the registry receives), and the
//! outbox event, published to NATS with the request's trace context as `ce-traceparent` by
//! a publish span linked to it. No email or phone number is anywhere in the exported bytes.
//!
//! The server's subscriber is the production one (`telemetry::Telemetry`), scoped to the
//! test's runtime threads (`crate::capture`); the exporter and the receiver run on a runtime
//! of their own.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use customer_api::{
    config::{LogFormat, OtlpProtocol, TracesSampler, TracingSettings},
    pb,
    registry::UrlTemplate,
    telemetry::Telemetry,
};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::any_value::Value as AnyValue,
    trace::v1::{Span, span::SpanKind},
};
use prost::Message;
use tracing_subscriber::EnvFilter;

use crate::{
    business::recording_registry,
    capture::{Capture, run_with},
    events::{header, jetstream_context, private_stream, stream_messages},
    helpers::{TestApp, nats_url, new_customer},
};

const EMAIL: &str = "trace.probe.5521@example-mail.org";
const PHONE: &str = "+4915155550123";

/// Everything the receiver got, as the exporter encoded it.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<Vec<u8>>>>);

impl Received {
    fn push(&self, encoded: Vec<u8>) {
        self.0.lock().unwrap().push(encoded);
    }

    fn requests(&self) -> Vec<ExportTraceServiceRequest> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|bytes| ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap())
            .collect()
    }

    /// Every exported span.
    fn spans(&self) -> Vec<Span> {
        self.requests()
            .into_iter()
            .flat_map(|request| request.resource_spans)
            .flat_map(|resource| resource.scope_spans)
            .flat_map(|scope| scope.spans)
            .collect()
    }

    /// Every exported byte, as text (for what must not be in it).
    fn text(&self) -> String {
        let bytes: Vec<u8> = self.0.lock().unwrap().concat();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The `service.name` of the exports.
    fn service_names(&self) -> Vec<String> {
        self.requests()
            .into_iter()
            .flat_map(|request| request.resource_spans)
            .filter_map(|resource| resource.resource)
            .filter_map(|resource| {
                resource
                    .attributes
                    .into_iter()
                    .find(|kv| kv.key == "service.name")
                    .and_then(|kv| kv.value?.value)
            })
            .map(|value| match value {
                AnyValue::StringValue(text) => text,
                other => format!("{other:?}"),
            })
            .collect()
    }
}

#[tonic::async_trait]
impl TraceService for Received {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.push(request.into_inner().encode_to_vec());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// An OTLP receiver on 127.0.0.1 (gRPC, or HTTP/protobuf at `/v1/traces`), on the current
/// runtime; returns its endpoint.
async fn receiver(protocol: OtlpProtocol, received: Received) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    match protocol {
        OtlpProtocol::Grpc => {
            tokio::spawn(
                tonic::transport::Server::builder()
                    .add_service(TraceServiceServer::new(received))
                    .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
            );
        }
        OtlpProtocol::HttpProtobuf => {
            tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    let received = received.clone();
                    let service = hyper::service::service_fn(
                        move |request: http::Request<hyper::body::Incoming>| {
                            let received = received.clone();
                            async move {
                                assert_eq!(request.uri().path(), "/v1/traces");
                                assert_eq!(
                                    request.headers()["content-type"],
                                    "application/x-protobuf"
                                );
                                let body = request.into_body().collect().await?.to_bytes();
                                received.push(body.to_vec());
                                let answer = ExportTraceServiceResponse::default().encode_to_vec();
                                Ok::<_, hyper::Error>(http::Response::new(Full::new(Bytes::from(
                                    answer,
                                ))))
                            }
                        },
                    );
                    tokio::spawn(
                        hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
                    );
                }
            });
        }
    }
    endpoint
}

/// The telemetry of a server exporting every span to a receiver, on a runtime of its own
/// (kept with it: the exporter's connections live there).
struct Exporting {
    telemetry: Telemetry,
    received: Received,
    logs: Capture,
    _runtime: tokio::runtime::Runtime,
}

impl Exporting {
    fn start(protocol: OtlpProtocol) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let received = Received::default();
        let endpoint = runtime.block_on(receiver(protocol, received.clone()));
        let settings = TracingSettings {
            otlp_endpoint: Some(endpoint),
            otlp_protocol: protocol,
            service_name: "customer-api-test".into(),
            resource_attributes: Some("deployment.environment.name=test".into()),
            traces_sampler: TracesSampler::ParentbasedAlwaysOn,
            traces_sampler_arg: None,
        };
        let logs = Capture::default();
        let telemetry = {
            let _inside = runtime.enter();
            Telemetry::new(
                LogFormat::Json,
                EnvFilter::new("warn,access=info"),
                logs.clone(),
                &settings,
            )
            .unwrap()
        };
        Self {
            telemetry,
            received,
            logs,
            _runtime: runtime,
        }
    }

    /// Every span the server finished, once exported.
    fn spans(&self) -> Vec<Span> {
        self.telemetry.force_flush();
        self.received.spans()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A `traceparent` of a sampled caller span: (header, trace id, span id). Ids mix letters
/// and digits as real ones do (a run of digits alone would be masked in logs like a phone
/// number).
fn caller(n: u8) -> (String, String, String) {
    let trace = format!("{:02x}", n).repeat(16);
    let span = format!("{:02x}", n + 1).repeat(8);
    (format!("00-{trace}-{span}-01"), trace, span)
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    let value = span
        .attributes
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .clone()?
        .value?;
    Some(match value {
        AnyValue::StringValue(text) => text,
        AnyValue::IntValue(n) => n.to_string(),
        AnyValue::BoolValue(b) => b.to_string(),
        other => format!("{other:?}"),
    })
}

/// The spans of trace `trace`.
fn of_trace<'a>(spans: &'a [Span], trace: &str) -> Vec<&'a Span> {
    spans.iter().filter(|s| hex(&s.trace_id) == trace).collect()
}

/// The one server span of a trace, child of the caller's span.
fn server_span<'a>(spans: &[&'a Span], caller_span: &str) -> &'a Span {
    let servers: Vec<&&Span> = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Server as i32)
        .collect();
    assert_eq!(servers.len(), 1, "{spans:#?}");
    assert_eq!(hex(&servers[0].parent_span_id), caller_span);
    servers[0]
}

fn children<'a>(spans: &[&'a Span], parent: &Span) -> Vec<&'a Span> {
    spans
        .iter()
        .filter(|s| s.parent_span_id == parent.span_id)
        .copied()
        .collect()
}

/// The SQL statement spans among `spans`: PostgreSQL client spans whose statement has
/// placeholders, never values.
fn assert_statements(statements: &[&Span], operation: &str) {
    assert!(
        statements
            .iter()
            .any(|s| attribute(s, "db.operation").as_deref() == Some(operation)),
        "no {operation} among {statements:#?}"
    );
    for statement in statements {
        assert_eq!(statement.kind, SpanKind::Client as i32);
        assert_eq!(
            attribute(statement, "db.system").as_deref(),
            Some("postgresql")
        );
        let sql = attribute(statement, "db.statement").unwrap();
        assert!(!sql.contains("binds"), "{sql}");
    }
}

async fn rest_get(app: &TestApp, path: &str, traceparent: &str) -> (u16, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let request = http::Request::get(format!("http://{}{path}", app.addr))
        .header("authorization", app.bearer())
        .header("traceparent", traceparent)
        .header("x-request-id", "rest-traced")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn traced<T>(message: T, traceparent: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("traceparent", traceparent.parse().unwrap());
    request
}

#[test]
fn rest_grpc_and_connect_calls_continue_the_callers_trace_into_the_database_the_registry_and_nats()
{
    let exporting = Exporting::start(OtlpProtocol::Grpc);
    let (create_parent, create_trace, create_span) = caller(0x1a);
    let (rest_parent, rest_trace, rest_span) = caller(0x2b);
    let (full_parent, full_trace, full_span) = caller(0x3c);
    let (connect_parent, connect_trace, connect_span) = caller(0x4d);
    let url = nats_url();
    let (stream, prefix) = private_stream();
    let (published, registry_heads) = run_with(exporting.telemetry.dispatch(), async {
        let (registry, _, heads) = recording_registry().await;
        let app = TestApp::spawn_with(|settings| {
            settings.registry.business_registry_url = Some(UrlTemplate::parse(&registry).unwrap());
            settings.events.nats_url = Some(url.clone());
            settings.events.nats_stream = stream.clone();
            settings.events.nats_subject_prefix = prefix.clone();
        })
        .await;
        let mut customer = new_customer("Trace", "Probe");
        customer.email = EMAIL.into();
        customer.phone = PHONE.into();
        customer.business_id = "GB-1".into();
        let created = app
            .client
            .clone()
            .create_customer(traced(
                pb::CreateCustomerRequest {
                    duplicate_policy: 0,
                    customer: Some(customer),
                    request_id: String::new(),
                },
                &create_parent,
            ))
            .await
            .unwrap()
            .into_inner();
        let (status, body) = rest_get(&app, &format!("/v1/{}", created.name), &rest_parent).await;
        assert_eq!(status, 200, "{body}");
        // The same read over Connect, as a GET.
        let message = form_urlencoded::Serializer::new(String::new())
            .append_pair("message", &format!(r#"{{"name":"{}"}}"#, created.name))
            .finish();
        let connect =
            format!("/customer.v1.CustomerService/GetCustomer?connect=v1&encoding=json&{message}");
        let (status, body) = rest_get(&app, &connect, &connect_parent).await;
        assert_eq!(status, 200, "{body}");
        let full = app
            .client
            .clone()
            .get_customer(traced(
                pb::GetCustomerRequest {
                    name: created.name.clone(),
                    view: pb::CustomerView::Full as i32,
                },
                &full_parent,
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(full.business_info.unwrap().legal_name, "Acme Widgets Ltd");
        let js = jetstream_context(&url).await;
        let published = stream_messages(&js, &stream, 1).await;
        let traceparent = header(&published[0], "ce-traceparent").to_owned();
        js.delete_stream(&stream).await.unwrap();
        let heads = heads.lock().unwrap().clone();
        (traceparent, heads)
    });
    let spans = exporting.spans();

    // REST: the server span continues the caller's trace, with the route template and the
    // RPC it was served by; the read's checkout and SELECT are its children.
    let rest = of_trace(&spans, &rest_trace);
    let server = server_span(&rest, &rest_span);
    assert_eq!(server.name, "GET /v1/{name=customers/*}");
    for (key, value) in [
        ("http.request.method", "GET"),
        ("http.route", "/v1/{name=customers/*}"),
        ("http.response.status_code", "200"),
        ("rpc.system", "grpc"),
        ("rpc.service", "customer.v1.CustomerService"),
        ("rpc.method", "GetCustomer"),
        ("rpc.grpc.status_code", "0"),
        ("request.id", "rest-traced"),
        ("enduser.id", "test-user"),
    ] {
        assert_eq!(attribute(server, key).as_deref(), Some(value), "{key}");
    }
    let below = children(&rest, server);
    assert!(
        below.iter().any(|s| s.name == "pool checkout"),
        "{below:#?}"
    );
    let statements: Vec<&Span> = below
        .iter()
        .filter(|s| s.name != "pool checkout")
        .copied()
        .collect();
    assert_statements(&statements, "SELECT");

    // Connect: the same server span as gRPC's, named by the RPC, of the Connect system.
    let connect = of_trace(&spans, &connect_trace);
    let server = server_span(&connect, &connect_span);
    assert_eq!(server.name, "customer.v1.CustomerService/GetCustomer");
    for (key, value) in [
        ("http.request.method", "GET"),
        ("http.response.status_code", "200"),
        ("network.protocol.name", "http"),
        ("rpc.system", "connect_rpc"),
        ("rpc.service", "customer.v1.CustomerService"),
        ("rpc.method", "GetCustomer"),
        ("rpc.grpc.status_code", "0"),
        ("enduser.id", "test-user"),
    ] {
        assert_eq!(attribute(server, key).as_deref(), Some(value), "{key}");
    }
    let statements: Vec<&Span> = children(&connect, server)
        .into_iter()
        .filter(|s| s.name != "pool checkout")
        .collect();
    assert_statements(&statements, "SELECT");

    // gRPC create: statements run in the spawned write transaction, still children of the
    // server span; the event row keeps the server span's trace context for the relay.
    let create = of_trace(&spans, &create_trace);
    let server = server_span(&create, &create_span);
    assert_eq!(server.name, "customer.v1.CustomerService/CreateCustomer");
    assert_eq!(
        attribute(server, "rpc.grpc.status_code").as_deref(),
        Some("0")
    );
    assert_eq!(attribute(server, "http.route"), None);
    let statements: Vec<&Span> = children(&create, server)
        .into_iter()
        .filter(|s| s.name != "pool checkout")
        .collect();
    assert_statements(&statements, "INSERT");
    assert_eq!(
        published,
        format!("00-{create_trace}-{}-01", hex(&server.span_id)),
        "the published event carries the trace context of the request that wrote it"
    );
    // The publish is a producer span of its own trace, linked to that request.
    let publishes: Vec<&Span> = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Producer as i32)
        .collect();
    assert_eq!(publishes.len(), 1, "{publishes:#?}");
    let publish = publishes[0];
    assert_eq!(
        attribute(publish, "messaging.system").as_deref(),
        Some("nats")
    );
    assert_eq!(
        attribute(publish, "messaging.destination.name"),
        Some(format!("{prefix}.registered"))
    );
    assert_eq!(publish.links.len(), 1);
    assert_eq!(hex(&publish.links[0].trace_id), create_trace);
    assert_eq!(publish.links[0].span_id, server.span_id);

    // gRPC FULL view: the registry request is a client span under the server span, and the
    // registry received its trace context.
    let full = of_trace(&spans, &full_trace);
    let server = server_span(&full, &full_span);
    let requests: Vec<&Span> = children(&full, server)
        .into_iter()
        .filter(|s| s.name == "GET")
        .collect();
    assert_eq!(requests.len(), 1, "{full:#?}");
    let request = requests[0];
    assert_eq!(request.kind, SpanKind::Client as i32);
    assert_eq!(
        attribute(request, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert!(
        attribute(request, "url.template")
            .unwrap()
            .ends_with("/v1/companies/{business_id}")
    );
    let sent = format!("traceparent: 00-{full_trace}-{}-01", hex(&request.span_id));
    assert_eq!(registry_heads.len(), 1);
    assert!(
        registry_heads[0].to_lowercase().contains(&sent),
        "{sent} in {}",
        registry_heads[0]
    );

    // Resource, and nothing personal anywhere in what was exported.
    assert!(
        exporting
            .received
            .service_names()
            .iter()
            .all(|name| name == "customer-api-test")
    );
    let exported = exporting.received.text();
    for raw in [EMAIL, "trace.probe", PHONE, &PHONE[1..]] {
        assert!(!exported.contains(raw), "{raw} was exported");
    }
    // The access line of the REST call names the caller's trace.
    let logs = exporting.logs.text();
    let line = logs
        .lines()
        .find(|line| line.contains("\"request_id\":\"rest-traced\""))
        .unwrap_or_else(|| panic!("{logs}"));
    assert!(
        line.contains(&format!("\"trace_id\":\"{rest_trace}\"")),
        "{line}"
    );
}

#[test]
fn spans_are_exported_over_otlp_http_too() {
    let exporting = Exporting::start(OtlpProtocol::HttpProtobuf);
    let (parent, trace, span) = caller(0x4d);
    run_with(exporting.telemetry.dispatch(), async {
        let app = TestApp::spawn().await;
        let (status, body) = rest_get(
            &app,
            "/v1/customers/0190a7b2-8c1e-7c1a-9d2e-1f2a3b4c5d6e",
            &parent,
        )
        .await;
        assert_eq!(status, 404, "{body}");
    });
    let spans = exporting.spans();
    let traced = of_trace(&spans, &trace);
    let server = server_span(&traced, &span);
    let attributes: HashMap<&str, Option<String>> = [
        "http.response.status_code",
        "rpc.grpc.status_code",
        "otel.status_code",
    ]
    .into_iter()
    .map(|key| (key, attribute(server, key)))
    .collect();
    assert_eq!(
        attributes["http.response.status_code"].as_deref(),
        Some("404")
    );
    assert_eq!(attributes["rpc.grpc.status_code"].as_deref(), Some("5"));
    // A client error is not a failure of the server.
    assert_eq!(server.status.as_ref().map(|s| s.code), Some(0));
}
