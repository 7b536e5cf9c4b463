//! The mixed load through HAProxy: gRPC clients (h2c) and REST clients (HTTP/1.1), each
//! creating, updating, reading and listing its own customers until told to stop. Every write
//! carries a `request_id`; a call that fails the way a dying replica makes calls fail (the
//! connection reset, a 502/503 from HAProxy, UNAVAILABLE) is retried with the same id until it
//! is acknowledged. What was acknowledged goes into the client's [`Ledger`], which the final
//! checks compare with the database and the event stream.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use customer_api::pb::{self, customer_service_client::CustomerServiceClient};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client as HttpClient, connect::HttpConnector},
    rt::TokioExecutor,
};
use prost_types::FieldMask;
use serde_json::{Value as Json, json};
use tokio::sync::watch;
use tonic::{Code, transport::Channel};
use uuid::Uuid;

/// Attempts per operation before the test gives up on it (with backoff up to 1 s: long
/// enough to outlast a replica's death and HAProxy noticing it).
const MAX_ATTEMPTS: u32 = 30;
/// Deadline of one attempt.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Most operations one client performs, whatever happens (the load is bounded).
const MAX_OPS: u64 = 3_000;
/// Page size of the clients' listings: several pages per listing, each possibly served by
/// another replica.
const PAGE_SIZE: i32 = 3;

/// Counters shared by every client.
#[derive(Debug, Default)]
pub struct Counters {
    /// Operations acknowledged.
    pub ops: AtomicU64,
    /// Attempts that failed and were retried.
    pub retries: AtomicU64,
    /// What each retried attempt failed with, numbered like `retries`.
    pub failures: std::sync::Mutex<Vec<(u64, String)>>,
}

/// What one client had acknowledged.
#[derive(Debug, Default)]
pub struct Ledger {
    /// The client's family name (its customers' `family_name`).
    pub family: String,
    /// Acknowledged creates: (request_id, customer name), in order.
    pub created: Vec<(String, String)>,
    /// Acknowledged updates: (request_id, customer name, new given name), in order.
    pub updated: Vec<(String, String, String)>,
    /// The given name each customer must have now.
    pub expected: BTreeMap<String, String>,
    /// Listings and reads checked along the way.
    pub reads: u64,
}

/// Why an attempt failed.
enum Failure {
    /// What a replica dying or draining looks like: try again with the same request.
    Retry(String),
    /// A wrong answer: the test fails.
    Fatal(String),
}

fn grpc_failure(status: &tonic::Status) -> Failure {
    match status.code() {
        Code::Unavailable | Code::Unknown | Code::Internal | Code::Cancelled => {
            Failure::Retry(format!("{status:?}"))
        }
        // The client's own deadline: the call may or may not have happened; the request id
        // makes the retry safe either way.
        Code::DeadlineExceeded => Failure::Retry(format!("{status:?}")),
        _ => Failure::Fatal(format!("{status:?}")),
    }
}

/// One client's transport.
enum Transport {
    Grpc(CustomerServiceClient<Channel>, String),
    Rest(HttpClient<HttpConnector, Full<Bytes>>, SocketAddr, String),
}

impl Transport {
    fn grpc_request<T>(message: T, bearer: &str) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(CALL_TIMEOUT);
        request
            .metadata_mut()
            .insert("authorization", bearer.parse().expect("ascii token"));
        request
    }

    async fn rest(
        client: &HttpClient<HttpConnector, Full<Bytes>>,
        front: SocketAddr,
        bearer: &str,
        method: http::Method,
        path: &str,
        body: Option<Json>,
    ) -> Result<Json, Failure> {
        let request = http::Request::builder()
            .method(method)
            .uri(format!("http://{front}{path}"))
            .header("authorization", bearer)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(
                body.map(|b| b.to_string()).unwrap_or_default(),
            )))
            .expect("request");
        let call = async {
            let response = client
                .request(request)
                .await
                .map_err(|e| Failure::Retry(format!("connection: {e}")))?;
            let status = response.status().as_u16();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| Failure::Retry(format!("body: {e}")))?
                .to_bytes();
            let text = String::from_utf8_lossy(&bytes).into_owned();
            match status {
                200 | 201 => {
                    serde_json::from_str(&text).map_err(|e| Failure::Fatal(format!("{e}: {text}")))
                }
                502..=504 => Err(Failure::Retry(format!("HTTP {status}: {text}"))),
                _ => Err(Failure::Fatal(format!("HTTP {status}: {text}"))),
            }
        };
        tokio::time::timeout(CALL_TIMEOUT, call)
            .await
            .unwrap_or_else(|_| Err(Failure::Retry("timed out".into())))
    }

    async fn create(&self, family: &str, n: u64, request_id: &str) -> Result<String, Failure> {
        let given = format!("Given{n}");
        let email = format!("{}.{n}@example.com", family.to_lowercase());
        match self {
            Self::Grpc(client, bearer) => {
                let request = pb::CreateCustomerRequest {
                    duplicate_policy: 0,
                    customer: Some(pb::Customer {
                        given_name: given,
                        family_name: family.into(),
                        email,
                        ..Default::default()
                    }),
                    request_id: request_id.into(),
                };
                client
                    .clone()
                    .create_customer(Self::grpc_request(request, bearer))
                    .await
                    .map(|r| r.into_inner().name)
                    .map_err(|s| grpc_failure(&s))
            }
            Self::Rest(client, front, bearer) => {
                let body = json!({"givenName": given, "familyName": family, "email": email});
                let created = Self::rest(
                    client,
                    *front,
                    bearer,
                    http::Method::POST,
                    &format!("/v1/customers?requestId={request_id}"),
                    Some(body),
                )
                .await?;
                Ok(created["name"].as_str().unwrap_or_default().to_owned())
            }
        }
    }

    async fn update(&self, name: &str, given: &str, request_id: &str) -> Result<String, Failure> {
        match self {
            Self::Grpc(client, bearer) => {
                let request = pb::UpdateCustomerRequest {
                    customer: Some(pb::Customer {
                        name: name.into(),
                        given_name: given.into(),
                        ..Default::default()
                    }),
                    update_mask: Some(FieldMask {
                        paths: vec!["given_name".into()],
                    }),
                    request_id: request_id.into(),
                    allow_missing: false,
                };
                client
                    .clone()
                    .update_customer(Self::grpc_request(request, bearer))
                    .await
                    .map(|r| r.into_inner().given_name)
                    .map_err(|s| grpc_failure(&s))
            }
            Self::Rest(client, front, bearer) => {
                let updated = Self::rest(
                    client,
                    *front,
                    bearer,
                    http::Method::PATCH,
                    &format!("/v1/{name}?updateMask=givenName&requestId={request_id}"),
                    Some(json!({"givenName": given})),
                )
                .await?;
                Ok(updated["givenName"].as_str().unwrap_or_default().to_owned())
            }
        }
    }

    async fn get(&self, name: &str) -> Result<String, Failure> {
        match self {
            Self::Grpc(client, bearer) => {
                let request = pb::GetCustomerRequest {
                    name: name.into(),
                    ..Default::default()
                };
                client
                    .clone()
                    .get_customer(Self::grpc_request(request, bearer))
                    .await
                    .map(|r| r.into_inner().given_name)
                    .map_err(|s| grpc_failure(&s))
            }
            Self::Rest(client, front, bearer) => {
                let customer = Self::rest(
                    client,
                    *front,
                    bearer,
                    http::Method::GET,
                    &format!("/v1/{name}"),
                    None,
                )
                .await?;
                Ok(customer["givenName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned())
            }
        }
    }

    /// One page of the client's own customers: names and the next page token.
    async fn list_page(&self, family: &str, token: &str) -> Result<(Vec<String>, String), Failure> {
        let filter = format!("family_name = \"{family}\"");
        match self {
            Self::Grpc(client, bearer) => {
                let request = pb::ListCustomersRequest {
                    page_size: PAGE_SIZE,
                    page_token: token.into(),
                    filter,
                    ..Default::default()
                };
                client
                    .clone()
                    .list_customers(Self::grpc_request(request, bearer))
                    .await
                    .map(|r| {
                        let page = r.into_inner();
                        (
                            page.customers.into_iter().map(|c| c.name).collect(),
                            page.next_page_token,
                        )
                    })
                    .map_err(|s| grpc_failure(&s))
            }
            Self::Rest(client, front, bearer) => {
                let query: String = form_urlencoded::Serializer::new(String::new())
                    .append_pair("pageSize", &PAGE_SIZE.to_string())
                    .append_pair("filter", &filter)
                    .append_pair("pageToken", token)
                    .finish();
                let page = Self::rest(
                    client,
                    *front,
                    bearer,
                    http::Method::GET,
                    &format!("/v1/customers?{query}"),
                    None,
                )
                .await?;
                let names = page["customers"]
                    .as_array()
                    .map(|customers| {
                        customers
                            .iter()
                            .map(|c| c["name"].as_str().unwrap_or_default().to_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                let next = page["nextPageToken"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                Ok((names, next))
            }
        }
    }
}

/// Retries `call` (a closure building one attempt) until it succeeds; panics on a wrong
/// answer or when the attempts run out.
async fn with_retries<T, F, Fut>(counters: &Counters, what: &str, mut call: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Failure>>,
{
    let mut backoff = Duration::from_millis(25);
    let mut last = String::new();
    for _ in 0..MAX_ATTEMPTS {
        match call().await {
            Ok(value) => return value,
            Err(Failure::Fatal(error)) => panic!("{what}: {error}"),
            Err(Failure::Retry(error)) => {
                let number = counters.retries.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut failures) = counters.failures.lock() {
                    failures.push((number, format!("{what}: {error}")));
                }
                last = error;
                // Pacing between attempts, not synchronisation: nothing is awaited here.
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
    panic!("{what}: still failing after {MAX_ATTEMPTS} attempts: {last}")
}

/// Which protocol a client speaks.
#[derive(Debug, Clone, Copy)]
pub enum Protocol {
    /// gRPC over h2c.
    Grpc,
    /// REST/JSON over HTTP/1.1.
    Rest,
}

/// Runs one client against `front` until `stop` turns true; returns what it had acknowledged.
pub async fn client(
    protocol: Protocol,
    family: String,
    front: SocketAddr,
    token: String,
    mut stop: watch::Receiver<bool>,
    counters: Arc<Counters>,
) -> Ledger {
    let bearer = format!("Bearer {token}");
    let transport = match protocol {
        Protocol::Grpc => {
            let channel = tonic::transport::Endpoint::from_shared(format!("http://{front}"))
                .expect("endpoint")
                .connect_timeout(Duration::from_secs(2))
                .connect_lazy();
            Transport::Grpc(CustomerServiceClient::new(channel), bearer)
        }
        Protocol::Rest => {
            let client = HttpClient::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
            Transport::Rest(client, front, bearer)
        }
    };
    let mut ledger = Ledger {
        family: family.clone(),
        ..Default::default()
    };
    for n in 0..MAX_OPS {
        if *stop.borrow_and_update() {
            break;
        }
        let count = ledger.created.len() as u64;
        if count == 0 || n % 4 == 0 {
            let request_id = Uuid::new_v4().to_string();
            let name = with_retries(&counters, &format!("{family}: create #{n}"), || {
                transport.create(&family, n, &request_id)
            })
            .await;
            assert!(name.starts_with("customers/"), "{family}: created {name:?}");
            ledger.expected.insert(name.clone(), format!("Given{n}"));
            ledger.created.push((request_id, name));
        } else if n % 7 == 3 {
            // Every page may come from another replica: a token one issued is accepted by
            // the next (the key is shared through the database).
            let mut names = Vec::new();
            let mut token = String::new();
            loop {
                let (page, next) = with_retries(&counters, &format!("{family}: list"), || {
                    transport.list_page(&family, &token)
                })
                .await;
                names.extend(page);
                if next.is_empty() {
                    break;
                }
                token = next;
            }
            let mut expected: Vec<&String> = ledger.created.iter().map(|(_, name)| name).collect();
            let mut listed: Vec<&String> = names.iter().collect();
            expected.sort();
            listed.sort();
            assert_eq!(
                listed, expected,
                "{family}: a listing shows each customer once"
            );
            ledger.reads += 1;
        } else if n % 5 == 2 {
            let name = &ledger.created[(n % count) as usize].1;
            let given =
                with_retries(&counters, &format!("{family}: get"), || transport.get(name)).await;
            assert_eq!(
                Some(&given),
                ledger.expected.get(name),
                "{family}: a read sees the last acknowledged write"
            );
            ledger.reads += 1;
        } else {
            let name = ledger.created[(n % count) as usize].1.clone();
            let given = format!("Given{n}");
            let request_id = Uuid::new_v4().to_string();
            let answered = with_retries(&counters, &format!("{family}: update #{n}"), || {
                transport.update(&name, &given, &request_id)
            })
            .await;
            assert_eq!(answered, given, "{family}: update #{n} answered");
            ledger.expected.insert(name.clone(), given.clone());
            ledger.updated.push((request_id, name, given));
        }
        counters.ops.fetch_add(1, Ordering::Relaxed);
    }
    ledger
}
