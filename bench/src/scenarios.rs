//! The workloads: one [`Worker`] type per kind of request.
//!
//! They rely on the seed (`scripts/bench/seed.sql`): customer `i` (1..=rows) has the id
//! `00000000-0000-7000-8000-<i in 12 hex digits>` and etag `W/"1"` until first changed, and
//! family names come from a fixed vocabulary ([`SEARCH_TERMS`] are names from it).
//!
//! Writers never fight over a row: the update scenario owns the first half of the seeded
//! customers and the mixed scenario the second half, each split among its workers, so an
//! etag mismatch is a real error rather than an artefact of the load.

use bytes::Bytes;
use http::{Method, Request, header};
use http_body_util::Full;

use crate::{
    clients::{Grpc, Http1, Http2, grpc_error},
    load::Worker,
    pb,
};

/// Family names of the seed (prefix + suffix from its two lists), each shared by 0.1% of the
/// customers; the search scenario rotates through them.
pub const SEARCH_TERMS: [&str; 16] = [
    "harford",
    "kelley",
    "macwood",
    "penfield",
    "thornton",
    "galberg",
    "rosman",
    "lindwell",
    "oakridge",
    "brightman",
    "dunmore",
    "fitzham",
    "salworth",
    "vanland",
    "crowhurst",
    "nashsen",
];

/// Customers each update worker cycles through.
const ROWS_PER_WRITER: u64 = 16;

/// The seeded id of customer `i`.
pub fn seeded_id(i: u64) -> String {
    format!("00000000-0000-7000-8000-{i:012x}")
}

/// The resource name of seeded customer `i`.
pub fn seeded_name(i: u64) -> String {
    format!("customers/{}", seeded_id(i))
}

/// A small, fast, seedable generator (SplitMix64): enough to pick rows uniformly.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for worker `worker` of scenario `salt`.
    pub fn new(salt: u64, worker: usize) -> Self {
        Self(salt.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (worker as u64 + 1))
    }

    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `1..=n`.
    pub fn row(&mut self, n: u64) -> u64 {
        1 + self.next() % n.max(1)
    }
}

/// GetCustomer of a random seeded customer over gRPC.
pub struct GetGrpc {
    pub grpc: Grpc,
    pub rng: Rng,
    pub rows: u64,
}

impl Worker for GetGrpc {
    async fn call(&mut self) -> Result<(), String> {
        let request = self.grpc.request(pb::GetCustomerRequest {
            name: seeded_name(self.rng.row(self.rows)),
            ..Default::default()
        });
        self.grpc
            .client()
            .get_customer(request)
            .await
            .map(drop)
            .map_err(|status| grpc_error(&status))
    }
}

/// FindDuplicateCustomers of a random seeded customer over gRPC (issue 19's probe).
pub struct Duplicates {
    pub grpc: Grpc,
    pub rng: Rng,
    pub rows: u64,
}

impl Worker for Duplicates {
    async fn call(&mut self) -> Result<(), String> {
        let request = self.grpc.request(pb::FindDuplicateCustomersRequest {
            name: seeded_name(self.rng.row(self.rows)),
            ..Default::default()
        });
        self.grpc
            .client()
            .find_duplicate_customers(request)
            .await
            .map(drop)
            .map_err(|status| grpc_error(&status))
    }
}

/// GetCustomer of a random seeded customer over gRPC-web (HTTP/1.1).
pub struct GetGrpcWeb {
    pub http: Http1,
    pub rng: Rng,
    pub rows: u64,
}

impl Worker for GetGrpcWeb {
    async fn call(&mut self) -> Result<(), String> {
        let request = pb::GetCustomerRequest {
            name: seeded_name(self.rng.row(self.rows)),
            ..Default::default()
        };
        self.http
            .grpc_web::<_, pb::Customer>("/customer.v1.CustomerService/GetCustomer", &request)
            .await
            .map(drop)
    }
}

/// `GET /v1/customers/{id}` of a random seeded customer as REST/JSON, over HTTP/1.1
/// (`get-rest`) or HTTP/2 (`get-rest-h2`).
pub struct GetRest<C> {
    pub http: C,
    pub rng: Rng,
    pub rows: u64,
}

/// The two REST transports.
pub trait SendRest {
    fn send(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> impl Future<Output = Result<(http::response::Parts, Bytes), String>> + Send;
}

impl SendRest for Http1 {
    fn send(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> impl Future<Output = Result<(http::response::Parts, Bytes), String>> + Send {
        Http1::send(self, request)
    }
}

impl SendRest for Http2 {
    fn send(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> impl Future<Output = Result<(http::response::Parts, Bytes), String>> + Send {
        Http2::send(self, request)
    }
}

impl<C: SendRest + Send + 'static> Worker for GetRest<C> {
    async fn call(&mut self) -> Result<(), String> {
        let request = Request::builder()
            .method(Method::GET)
            .uri(format!(
                "/v1/customers/{}",
                seeded_id(self.rng.row(self.rows))
            ))
            .header(header::ACCEPT, "application/json")
            .body(Full::default())
            .map_err(|e| e.to_string())?;
        let (parts, body) = self.http.send(request).await?;
        if parts.status != http::StatusCode::OK {
            return Err(format!("http {}", parts.status.as_u16()));
        }
        if body.first() != Some(&b'{') {
            return Err("not a JSON object".into());
        }
        Ok(())
    }
}

/// One ListCustomers request, sent again and again (a first page, a deep page by its
/// token, or a search rotating through [`SEARCH_TERMS`]).
pub struct List {
    pub grpc: Grpc,
    pub requests: Vec<pb::ListCustomersRequest>,
    pub next: usize,
    /// Fewest customers a page must hold to count as a success.
    pub expect_at_least: usize,
}

impl Worker for List {
    async fn call(&mut self) -> Result<(), String> {
        let message = self.requests[self.next % self.requests.len()].clone();
        self.next += 1;
        let request = self.grpc.request(message);
        let page = self
            .grpc
            .client()
            .list_customers(request)
            .await
            .map_err(|status| grpc_error(&status))?
            .into_inner();
        if page.customers.len() < self.expect_at_least {
            return Err("short page".into());
        }
        Ok(())
    }
}

/// A first-page request of `page_size`.
pub fn pb_list(page_size: i32) -> pb::ListCustomersRequest {
    pb::ListCustomersRequest {
        page_size,
        ..Default::default()
    }
}

/// The searches of the search scenario, starting at a different term per worker.
pub fn searches(page_size: i32) -> Vec<pb::ListCustomersRequest> {
    SEARCH_TERMS
        .iter()
        .map(|term| pb::ListCustomersRequest {
            page_size,
            filter: format!("family_name:\"{term}\""),
            ..Default::default()
        })
        .collect()
}

/// Walks `pages - 1` pages of `page_size` by their tokens and returns the token of page
/// `pages` (with the time the walk took).
pub async fn token_of_page(
    grpc: &mut Grpc,
    page_size: i32,
    pages: u32,
) -> Result<(String, std::time::Duration), String> {
    let started = std::time::Instant::now();
    let mut token = String::new();
    for page in 1..pages {
        let request = grpc.request(pb::ListCustomersRequest {
            page_size,
            page_token: token.clone(),
            ..Default::default()
        });
        token = grpc
            .client()
            .list_customers(request)
            .await
            .map_err(|status| format!("walking to page {pages}: {}", grpc_error(&status)))?
            .into_inner()
            .next_page_token;
        if token.is_empty() {
            return Err(format!("only {page} pages of {page_size} exist"));
        }
    }
    Ok((token, started.elapsed()))
}

/// What a created customer looks like: as much as a seeded one.
fn new_customer(email: String, phone: String) -> pb::Customer {
    pb::Customer {
        given_name: "Grace".into(),
        family_name: "Benchley".into(),
        email,
        phone,
        address: Some(pb::PostalAddress {
            lines: vec!["1 Load Street".into()],
            locality: "Oakland".into(),
            region: "CA".into(),
            postal_code: "94601".into(),
            country_code: "US".into(),
        }),
        labels: [("tier".to_owned(), "gold".to_owned())].into(),
        ..Default::default()
    }
}

/// CreateCustomer with a unique email, and a fresh request id unless `request_id` is off.
pub struct Create {
    pub grpc: Grpc,
    /// Distinguishes this run's emails from earlier runs'.
    pub nonce: String,
    pub worker: usize,
    pub sent: u64,
    /// Send a request id (the write claims it and stores its response: two statements more).
    pub request_id: bool,
}

impl Create {
    async fn create(&mut self) -> Result<(), String> {
        self.sent += 1;
        let customer = new_customer(
            format!(
                "bench.{}.{}.{}@example.com",
                self.nonce, self.worker, self.sent
            ),
            format!("+1510{:07}", self.sent % 10_000_000),
        );
        let request = self.grpc.request(pb::CreateCustomerRequest {
            customer: Some(customer),
            request_id: if self.request_id {
                uuid::Uuid::new_v4().to_string()
            } else {
                String::new()
            },
            duplicate_policy: 0,
        });
        self.grpc
            .client()
            .create_customer(request)
            .await
            .map(drop)
            .map_err(|status| grpc_error(&status))
    }
}

impl Worker for Create {
    async fn call(&mut self) -> Result<(), String> {
        self.create().await
    }
}

/// UpdateCustomer of the phone, conditional on the etag of the previous write, with a
/// request id; each worker cycles through customers only it writes.
pub struct Update {
    pub grpc: Grpc,
    /// Owned customers and their current etags.
    pub rows: Vec<(String, String)>,
    pub next: usize,
    pub sent: u64,
}

impl Update {
    /// Customers `first..=last` split among `workers`: worker `w` gets every `workers`-th,
    /// at most [`ROWS_PER_WRITER`], each at its seeded etag.
    pub fn owned(grpc: Grpc, first: u64, last: u64, worker: usize, workers: usize) -> Self {
        let rows = (0..ROWS_PER_WRITER)
            .map(|k| first + worker as u64 + k * workers as u64)
            .filter(|&i| i <= last)
            .map(|i| (seeded_name(i), r#"W/"1""#.to_owned()))
            .collect();
        Self {
            grpc,
            rows,
            next: 0,
            sent: 0,
        }
    }

    async fn update(&mut self) -> Result<(), String> {
        if self.rows.is_empty() {
            return Err("no customer to update (too few rows)".into());
        }
        let slot = self.next % self.rows.len();
        self.next += 1;
        self.sent += 1;
        let (name, etag) = self.rows[slot].clone();
        let request = self.grpc.request(pb::UpdateCustomerRequest {
            customer: Some(pb::Customer {
                name: name.clone(),
                etag,
                phone: format!("+1650{:07}", self.sent % 10_000_000),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["phone".into()],
            }),
            request_id: uuid::Uuid::new_v4().to_string(),
            allow_missing: false,
        });
        match self.grpc.client().update_customer(request).await {
            Ok(response) => {
                self.rows[slot].1 = response.into_inner().etag;
                Ok(())
            }
            Err(status) => {
                // Learn the current etag so one failure does not turn into a stream of
                // ABORTED answers.
                let get = self.grpc.request(pb::GetCustomerRequest {
                    name,
                    ..Default::default()
                });
                if let Ok(current) = self.grpc.client().get_customer(get).await {
                    self.rows[slot].1 = current.into_inner().etag;
                }
                Err(grpc_error(&status))
            }
        }
    }
}

impl Worker for Update {
    async fn call(&mut self) -> Result<(), String> {
        self.update().await
    }
}

/// 80% GetCustomer, 10% CreateCustomer, 10% UpdateCustomer, over gRPC.
pub struct Mixed {
    pub get: GetGrpc,
    pub create: Create,
    pub update: Update,
}

impl Worker for Mixed {
    async fn call(&mut self) -> Result<(), String> {
        match self.get.rng.next() % 10 {
            0 => self.create.create().await,
            1 => self.update.update().await,
            _ => self.get.call().await,
        }
    }
}
