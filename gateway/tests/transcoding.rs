//! End-to-end tests of the gateway against an API it has never seen: `testing.v1.LibraryService`
//! (`tests/proto/testing/v1/library.proto`), implemented here in memory.
//!
//! Each test starts its own server on `127.0.0.1:0`: a hyper-util connection builder (HTTP/1.1
//! and h2c on one port) serving an axum router that mounts the tonic service and falls back to
//! the [`Gateway`] built over that same router. Requests go over real sockets through the
//! hyper-util legacy client, as HTTP/1.1 and as HTTP/2 with prior knowledge.

#![allow(clippy::unwrap_used)]

use std::{
    collections::{BTreeMap, HashMap},
    convert::Infallible,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use gateway::{BuildError, Gateway, RouteError};
use http::{HeaderMap, Method, StatusCode, Version};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
    service::TowerToHyperService,
};
use prost::Message as _;
use serde_json::{Value as Json, json};
use tokio::net::TcpListener;
use tonic::{Code, Request, Response, Status, metadata::MetadataValue};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

/// Generated from `tests/proto` by `build.rs`.
mod pb {
    #![allow(missing_docs, dead_code, clippy::all, clippy::pedantic)]

    pub mod google {
        pub mod rpc {
            tonic::include_proto!("google.rpc");
        }
    }

    pub mod testing {
        pub mod v1 {
            tonic::include_proto!("testing.v1");
        }
    }

    pub use testing::v1::*;

    /// The encoded descriptor set of `library.proto` and its imports.
    pub const LIBRARY_DESCRIPTOR: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/library_descriptor.bin"));

    /// Annotations the gateway must refuse (`broken.proto`).
    pub const BROKEN_DESCRIPTOR: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/broken_descriptor.bin"));
}

use pb::library_service_server::{LibraryService, LibraryServiceServer};

const SERVICE: &str = "testing.v1.LibraryService";
/// The gateway's body limit in these tests.
const MAX_BODY: usize = 4096;
/// The domain of the service's own `ErrorInfo` details.
const DOMAIN: &str = "library.testing";

// ---------------------------------------------------------------------------------------------
// The service: an in-memory library.
// ---------------------------------------------------------------------------------------------

/// The last request a method received, as the service saw it.
#[derive(Clone)]
struct Seen {
    message: Vec<u8>,
    metadata: HeaderMap,
}

struct Stored {
    book: pb::Book,
    version: u64,
}

#[derive(Default)]
struct Library {
    books: Mutex<BTreeMap<String, Stored>>,
    /// `request_id` of each creation -> the name it created.
    created: Mutex<HashMap<String, String>>,
    seen: Mutex<HashMap<&'static str, Seen>>,
    next_id: AtomicU64,
}

fn etag_of(version: u64) -> String {
    format!("W/\"{version}\"")
}

/// A response carrying the metadata every answer of the service has.
fn reply<T>(message: T) -> Response<T> {
    let mut response = Response::new(message);
    let metadata = response.metadata_mut();
    metadata.insert("x-served-by", MetadataValue::from_static("library-test"));
    metadata.insert_bin("x-trace-bin", MetadataValue::from_bytes(&[0, 1, 2]));
    response
}

fn not_found(name: &str) -> Status {
    Status::with_error_details(
        Code::NotFound,
        format!("{name} does not exist"),
        ErrorDetails::with_resource_info("testing.v1.Book", name, "", "no such book"),
    )
}

fn invalid(field: &str, description: &str) -> Status {
    Status::with_error_details(
        Code::InvalidArgument,
        format!("invalid {field}"),
        ErrorDetails::with_bad_request(vec![FieldViolation::new(field, description)]),
    )
}

fn stale(name: &str, sent: &str, current: &str) -> Status {
    Status::with_error_details(
        Code::Aborted,
        format!("{name} changed: etag {sent} is not current"),
        ErrorDetails::with_error_info(
            "ETAG_MISMATCH",
            DOMAIN,
            HashMap::from([("currentEtag".to_owned(), current.to_owned())]),
        ),
    )
}

impl Library {
    fn record<T: prost::Message>(&self, method: &'static str, request: &Request<T>) {
        self.seen.lock().unwrap().insert(
            method,
            Seen {
                message: request.get_ref().encode_to_vec(),
                metadata: request.metadata().clone().into_headers(),
            },
        );
    }

    /// The last request `method` received, decoded.
    fn last<T: prost::Message + Default>(&self, method: &str) -> T {
        let seen = self.seen.lock().unwrap();
        let seen = seen
            .get(method)
            .unwrap_or_else(|| panic!("{method} was not called"));
        T::decode(seen.message.as_slice()).unwrap()
    }

    fn last_metadata(&self, method: &str) -> HeaderMap {
        self.seen.lock().unwrap()[method].metadata.clone()
    }

    fn called(&self, method: &str) -> bool {
        self.seen.lock().unwrap().contains_key(method)
    }

    fn book_count(&self) -> usize {
        self.books.lock().unwrap().len()
    }
}

/// Copies the fields named by `paths` from `source` into `target` (AIP-134).
fn apply_mask(target: &mut pb::Book, source: &pb::Book, paths: &[String]) -> Result<(), Status> {
    for path in paths {
        let author = || source.author.clone().unwrap_or_default();
        match path.as_str() {
            "*" => {
                *target = pb::Book {
                    name: target.name.clone(),
                    etag: target.etag.clone(),
                    ..source.clone()
                }
            }
            "name" | "etag" => {}
            "title" => target.title.clone_from(&source.title),
            "author" => target.author.clone_from(&source.author),
            "author.name" => target.author.get_or_insert_default().name = author().name,
            "author.country" => target.author.get_or_insert_default().country = author().country,
            "genres" => target.genres.clone_from(&source.genres),
            "labels" => target.labels.clone_from(&source.labels),
            "pages" => target.pages = source.pages,
            "publish_time" => target.publish_time = source.publish_time,
            "rating" => target.rating = source.rating,
            "cover" => target.cover.clone_from(&source.cover),
            "edition" => target.edition = source.edition,
            "published" => target.published = source.published,
            "extra" => target.extra.clone_from(&source.extra),
            other => {
                return Err(invalid(
                    "update_mask",
                    &format!("`{other}` is not a field of Book"),
                ));
            }
        }
    }
    Ok(())
}

type EventStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::BookEvent, Status>> + Send>>;

#[tonic::async_trait]
impl LibraryService for Library {
    async fn create_book(
        &self,
        request: Request<pb::CreateBookRequest>,
    ) -> Result<Response<pb::Book>, Status> {
        self.record("CreateBook", &request);
        let request = request.into_inner();
        if !request.request_id.is_empty()
            && let Some(name) = self.created.lock().unwrap().get(&request.request_id)
        {
            let books = self.books.lock().unwrap();
            return Ok(reply(books[name].book.clone()));
        }
        let Some(mut book) = request.book else {
            return Err(invalid("book", "is required"));
        };
        if book.title.is_empty() {
            return Err(invalid("book.title", "must not be empty"));
        }
        let id = if request.book_id.is_empty() {
            format!("b{}", self.next_id.fetch_add(1, Ordering::Relaxed) + 1)
        } else {
            request.book_id
        };
        book.name = format!("{}/books/{id}", request.parent);
        book.etag = etag_of(1);
        let mut books = self.books.lock().unwrap();
        if books.contains_key(&book.name) {
            return Err(Status::already_exists(format!("{} exists", book.name)));
        }
        books.insert(
            book.name.clone(),
            Stored {
                book: book.clone(),
                version: 1,
            },
        );
        if !request.request_id.is_empty() {
            self.created
                .lock()
                .unwrap()
                .insert(request.request_id, book.name.clone());
        }
        Ok(reply(book))
    }

    async fn get_book(
        &self,
        request: Request<pb::GetBookRequest>,
    ) -> Result<Response<pb::Book>, Status> {
        self.record("GetBook", &request);
        let name = request.into_inner().name;
        let books = self.books.lock().unwrap();
        let stored = books.get(&name).ok_or_else(|| not_found(&name))?;
        Ok(reply(stored.book.clone()))
    }

    async fn list_books(
        &self,
        request: Request<pb::ListBooksRequest>,
    ) -> Result<Response<pb::ListBooksResponse>, Status> {
        self.record("ListBooks", &request);
        let request = request.into_inner();
        let prefix = format!("{}/books/", request.parent);
        let books: Vec<pb::Book> = self
            .books
            .lock()
            .unwrap()
            .values()
            .filter(|stored| stored.book.name.starts_with(&prefix))
            .map(|stored| stored.book.clone())
            .collect();
        Ok(reply(pb::ListBooksResponse {
            total_size: i32::try_from(books.len()).unwrap(),
            books,
            next_page_token: String::new(),
            read_mask: request.read_mask,
        }))
    }

    async fn search_books(
        &self,
        request: Request<pb::SearchBooksRequest>,
    ) -> Result<Response<pb::ListBooksResponse>, Status> {
        self.record("SearchBooks", &request);
        let request = request.into_inner();
        let books: Vec<pb::Book> = self
            .books
            .lock()
            .unwrap()
            .values()
            .filter(|stored| stored.book.title.contains(&request.query))
            .map(|stored| stored.book.clone())
            .collect();
        Ok(reply(pb::ListBooksResponse {
            total_size: i32::try_from(books.len()).unwrap(),
            books,
            next_page_token: String::new(),
            read_mask: None,
        }))
    }

    async fn update_book(
        &self,
        request: Request<pb::UpdateBookRequest>,
    ) -> Result<Response<pb::Book>, Status> {
        self.record("UpdateBook", &request);
        let request = request.into_inner();
        let update = request.book.unwrap_or_default();
        let mut books = self.books.lock().unwrap();
        let stored = books
            .get_mut(&update.name)
            .ok_or_else(|| not_found(&update.name))?;
        if !update.etag.is_empty() && update.etag != stored.book.etag {
            return Err(stale(&update.name, &update.etag, &stored.book.etag));
        }
        let paths = match request.update_mask {
            Some(mask) if !mask.paths.is_empty() => mask.paths,
            _ => vec!["*".to_owned()],
        };
        let mut book = stored.book.clone();
        apply_mask(&mut book, &update, &paths)?;
        stored.version += 1;
        book.etag = etag_of(stored.version);
        stored.book = book.clone();
        Ok(reply(book))
    }

    async fn delete_book(
        &self,
        request: Request<pb::DeleteBookRequest>,
    ) -> Result<Response<()>, Status> {
        self.record("DeleteBook", &request);
        if request.metadata().get("authorization").is_none() {
            let mut metadata = tonic::metadata::MetadataMap::new();
            metadata.insert(
                "www-authenticate",
                MetadataValue::from_static("Bearer realm=\"library\""),
            );
            metadata.insert("x-served-by", MetadataValue::from_static("library-test"));
            return Err(Status::with_error_details_and_metadata(
                Code::Unauthenticated,
                "deleting books needs credentials",
                ErrorDetails::with_error_info("MISSING_CREDENTIALS", DOMAIN, HashMap::new()),
                metadata,
            ));
        }
        let request = request.into_inner();
        let mut books = self.books.lock().unwrap();
        let stored = books
            .get(&request.name)
            .ok_or_else(|| not_found(&request.name))?;
        if !request.etag.is_empty() && request.etag != stored.book.etag {
            return Err(stale(&request.name, &request.etag, &stored.book.etag));
        }
        books.remove(&request.name);
        Ok(reply(()))
    }

    async fn publish_book(
        &self,
        request: Request<pb::PublishBookRequest>,
    ) -> Result<Response<pb::Book>, Status> {
        self.record("PublishBook", &request);
        let request = request.into_inner();
        let mut books = self.books.lock().unwrap();
        let stored = books
            .get_mut(&request.name)
            .ok_or_else(|| not_found(&request.name))?;
        stored.version += 1;
        stored.book.published = true;
        stored.book.publish_time = request.publish_time;
        stored.book.etag = etag_of(stored.version);
        Ok(reply(stored.book.clone()))
    }

    async fn get_shelf_stats(
        &self,
        request: Request<pb::GetShelfStatsRequest>,
    ) -> Result<Response<pb::GetShelfStatsResponse>, Status> {
        self.record("GetShelfStats", &request);
        let id = request.into_inner().id;
        let prefix = format!("shelves/{id}/books/");
        let books = self.books.lock().unwrap();
        let ratings: Vec<f64> = books
            .values()
            .filter(|stored| stored.book.name.starts_with(&prefix))
            .map(|stored| stored.book.rating)
            .collect();
        let count = ratings.len();
        Ok(reply(pb::GetShelfStatsResponse {
            stats: Some(pb::ShelfStats {
                book_count: i64::try_from(count).unwrap(),
                average_rating: if count == 0 {
                    0.0
                } else {
                    ratings.iter().sum::<f64>() / count as f64
                },
                genres: vec![pb::Genre::Mystery as i32],
            }),
            etag: format!("stats-{id}"),
        }))
    }

    type WatchBooksStream = EventStream;

    async fn watch_books(
        &self,
        request: Request<pb::WatchBooksRequest>,
    ) -> Result<Response<EventStream>, Status> {
        self.record("WatchBooks", &request);
        let request = request.into_inner();
        if request.parent == "shelves/missing" {
            return Err(Status::with_error_details(
                Code::NotFound,
                "shelves/missing does not exist",
                ErrorDetails::with_resource_info("testing.v1.Shelf", "shelves/missing", "", ""),
            ));
        }
        let prefix = format!("{}/books/", request.parent);
        let mut events: Vec<Result<pb::BookEvent, Status>> = self
            .books
            .lock()
            .unwrap()
            .values()
            .filter(|stored| stored.book.name.starts_with(&prefix))
            .map(|stored| {
                Ok(pb::BookEvent {
                    kind: pb::book_event::Kind::Existing as i32,
                    book: Some(stored.book.clone()),
                })
            })
            .collect();
        if request.fail_at_end {
            events.push(Err(Status::with_error_details(
                Code::Unavailable,
                "the watch was interrupted",
                ErrorDetails::with_retry_info(Some(Duration::from_secs(2))),
            )));
        }
        Ok(reply(Box::pin(tokio_stream::iter(events)) as EventStream))
    }

    async fn echo(
        &self,
        request: Request<pb::EchoRequest>,
    ) -> Result<Response<pb::EchoResponse>, Status> {
        self.record("Echo", &request);
        let metadata = request
            .metadata()
            .clone()
            .into_headers()
            .iter()
            .filter_map(|(name, value)| {
                Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
            })
            .collect();
        Ok(reply(pb::EchoResponse {
            path: request.into_inner().path,
            metadata,
        }))
    }

    async fn fail(&self, request: Request<pb::FailRequest>) -> Result<Response<()>, Status> {
        self.record("Fail", &request);
        let request = request.into_inner();
        let code = Code::from_i32(request.code);
        if code == Code::Ok {
            return Ok(reply(()));
        }
        let reason = if request.reason.is_empty() {
            "TEST_FAILURE".to_owned()
        } else {
            request.reason
        };
        let mut details = ErrorDetails::with_error_info(
            reason,
            DOMAIN,
            HashMap::from([("method".to_owned(), "Fail".to_owned())]),
        );
        if request.retry_after_seconds > 0 {
            details.set_retry_info(Some(Duration::from_millis(
                u64::try_from(request.retry_after_seconds).unwrap() * 1000 - 500,
            )));
        }
        let status = Status::with_error_details(code, request.message.clone(), details);
        if !request.custom_detail && !request.unknown_detail {
            return Err(status);
        }
        let mut rpc = tonic_types::Status::decode(status.details()).unwrap();
        if request.custom_detail {
            rpc.details.push(prost_types::Any {
                type_url: "type.googleapis.com/testing.v1.QuotaDetail".into(),
                value: pb::QuotaDetail {
                    bucket: "reads".into(),
                    remaining: -1,
                }
                .encode_to_vec(),
            });
        }
        if request.unknown_detail {
            rpc.details.push(prost_types::Any {
                type_url: "type.googleapis.com/elsewhere.v1.Mystery".into(),
                value: vec![1, 2, 3],
            });
        }
        Err(Status::with_details(
            code,
            request.message,
            rpc.encode_to_vec().into(),
        ))
    }

    async fn import_books(
        &self,
        _: Request<tonic::Streaming<pb::Book>>,
    ) -> Result<Response<pb::ImportBooksResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    async fn ping(&self, _: Request<()>) -> Result<Response<()>, Status> {
        Ok(reply(()))
    }
}

// ---------------------------------------------------------------------------------------------
// The server and the client.
// ---------------------------------------------------------------------------------------------

struct TestServer {
    addr: SocketAddr,
    library: Arc<Library>,
    gateway: Gateway,
}

/// The tonic service mounted on an axum router, as a server would mount it.
fn grpc_router(library: Arc<Library>) -> axum::Router {
    axum::Router::new().route_service(
        &format!("/{SERVICE}/{{*rest}}"),
        LibraryServiceServer::from_arc(library),
    )
}

/// Starts a server: gRPC for `/testing.v1.LibraryService/*`, the gateway for everything else.
async fn serve() -> TestServer {
    let library = Arc::new(Library::default());
    let grpc = grpc_router(library.clone());
    let gateway = Gateway::builder(pb::LIBRARY_DESCRIPTOR)
        .unwrap()
        .service(SERVICE)
        .max_body_bytes(MAX_BODY)
        .build(grpc.clone())
        .unwrap();
    let app = grpc.fallback_service(gateway.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = TowerToHyperService::new(app.clone());
            tokio::spawn(async move {
                // Connection errors (a client going away) end only that connection.
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    TestServer {
        addr,
        library,
        gateway,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Http1,
    Http2,
}

const PROTOCOLS: [Proto; 2] = [Proto::Http1, Proto::Http2];

type ClientBody = BoxBody<Bytes, Infallible>;

enum Payload {
    Empty,
    Full(Bytes),
    /// Sent in pieces, without a length (chunked in HTTP/1.1).
    Chunked(Vec<Bytes>),
}

/// An HTTP request to send.
struct Req {
    method: Method,
    path: String,
    headers: Vec<(String, String)>,
    payload: Payload,
}

fn req(method: &str, path: &str) -> Req {
    Req {
        method: Method::from_bytes(method.as_bytes()).unwrap(),
        path: path.to_owned(),
        headers: Vec::new(),
        payload: Payload::Empty,
    }
}

impl Req {
    fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// A JSON body with `Content-Type: application/json`.
    fn json(self, value: &Json) -> Self {
        self.body("application/json", serde_json::to_vec(value).unwrap())
    }

    /// A body with the given content type (none if empty).
    fn body(mut self, content_type: &str, bytes: impl Into<Bytes>) -> Self {
        if !content_type.is_empty() {
            self = self.header("content-type", content_type);
        }
        self.payload = Payload::Full(bytes.into());
        self
    }

    fn chunked(mut self, content_type: &str, chunks: Vec<Bytes>) -> Self {
        self = self.header("content-type", content_type);
        self.payload = Payload::Chunked(chunks);
        self
    }
}

/// A received response, body read to the end.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Json {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {} {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn text(&self) -> String {
        String::from_utf8(self.body.to_vec()).unwrap()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    #[track_caller]
    fn assert(&self, status: u16, body: &Json) {
        assert_eq!(
            (self.status.as_u16(), &self.json()),
            (status, body),
            "{}",
            self.text()
        );
    }
}

fn client<B>(proto: Proto) -> Client<HttpConnector, B>
where
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = Client::builder(TokioExecutor::new());
    if proto == Proto::Http2 {
        builder.http2_only(true);
    }
    builder.build_http()
}

impl TestServer {
    async fn send(&self, proto: Proto, request: Req) -> Reply {
        let mut builder = http::Request::builder()
            .method(request.method)
            .uri(format!("http://{}{}", self.addr, request.path));
        for (name, value) in &request.headers {
            // From bytes: a `&str` value must be ASCII (http ≥ 1.6), and some tests send
            // non-ASCII bytes on purpose.
            let value = http::HeaderValue::from_bytes(value.as_bytes()).unwrap();
            builder = builder.header(name, value);
        }
        let body: ClientBody = match request.payload {
            Payload::Empty => Full::new(Bytes::new()).boxed(),
            Payload::Full(bytes) => Full::new(bytes).boxed(),
            Payload::Chunked(chunks) => StreamBody::new(tokio_stream::iter(
                chunks
                    .into_iter()
                    .map(|chunk| Ok::<_, Infallible>(Frame::data(chunk))),
            ))
            .boxed(),
        };
        let response = client::<ClientBody>(proto)
            .request(builder.body(body).unwrap())
            .await
            .unwrap();
        let expected = match proto {
            Proto::Http1 => Version::HTTP_11,
            Proto::Http2 => Version::HTTP_2,
        };
        assert_eq!(response.version(), expected);
        let (parts, body) = response.into_parts();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes(),
        }
    }

    /// Creates a book over HTTP/1.1 and returns its JSON.
    async fn create(&self, parent: &str, id: &str, book: &Json) -> Json {
        let reply = self
            .send(
                Proto::Http1,
                req("POST", &format!("/v1/{parent}/books?book_id={id}")).json(book),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
        reply.json()
    }
}

// ---------------------------------------------------------------------------------------------
// Fixtures and expected bodies.
// ---------------------------------------------------------------------------------------------

/// A book as a client sends it: every kind of field.
fn dune() -> Json {
    json!({
        "title": "Dune",
        "author": {"name": "Frank Herbert", "country": "US"},
        "genres": ["SCIENCE_FICTION", "FANTASY"],
        "labels": {"lang": "en", "format": "hardcover"},
        "pages": "412",
        "publishTime": "1965-08-01T00:00:00Z",
        "rating": 4.5,
        "cover": "AQID",
        "edition": 1,
        "extra": {"signed": true, "copies": 3.0},
    })
}

/// `dune()` as the gateway answers it once stored under `name` at `version`.
fn dune_stored(name: &str, version: u64) -> Json {
    let mut book = dune();
    book["name"] = json!(name);
    book["etag"] = json!(etag_of(version));
    book["published"] = json!(false);
    book
}

/// The AIP-193 body of a gateway-side error with its `ErrorInfo`.
fn gateway_error(code: u16, status: &str, reason: &str, message: &str) -> Json {
    json!({"error": {
        "code": code,
        "message": message,
        "status": status,
        "details": [{
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": reason,
            "domain": "gateway",
            "metadata": {},
        }],
    }})
}

/// The `google.rpc.BadRequest` field violations of an error body.
fn violations(body: &Json) -> Vec<(String, String)> {
    body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["@type"] == "type.googleapis.com/google.rpc.BadRequest")
        .flat_map(|d| d["fieldViolations"].as_array().unwrap().clone())
        .map(|v| {
            (
                v["field"].as_str().unwrap().to_owned(),
                v["description"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The `ErrorInfo.reason` of an error body.
fn reason(body: &Json) -> &str {
    body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["@type"] == "type.googleapis.com/google.rpc.ErrorInfo")
        .and_then(|d| d["reason"].as_str())
        .unwrap()
}

fn timestamp(seconds: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds, nanos: 0 })
}

fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
    })
}

// ---------------------------------------------------------------------------------------------
// The route table.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn route_table_comes_from_the_annotations_most_specific_first() {
    let server = serve().await;
    let routes: Vec<(String, String, String)> = server
        .gateway
        .routes()
        .iter()
        .map(|route| {
            (
                route.method.to_string(),
                route.template.source.clone(),
                route.grpc_path.clone(),
            )
        })
        .collect();
    let expected = [
        ("GET", "/v1/{parent=shelves/*}/books:watch", "WatchBooks"),
        (
            "POST",
            "/v1/{name=shelves/*/books/*}:publish",
            "PublishBook",
        ),
        ("POST", "/v1/{parent=shelves/*}/books", "CreateBook"),
        ("GET", "/v1/{parent=shelves/*}/books", "ListBooks"),
        ("SEARCH", "/v1/{parent=shelves/*}/books", "SearchBooks"),
        ("GET", "/v1/{name=shelves/*/books/*}", "GetBook"),
        ("PATCH", "/v1/{book.name=shelves/*/books/*}", "UpdateBook"),
        ("PUT", "/v1/{book.name=shelves/*/books/*}", "UpdateBook"),
        ("DELETE", "/v1/{name=shelves/*/books/*}", "DeleteBook"),
        ("GET", "/v1/stats/{id}", "GetShelfStats"),
        ("GET", "/v1/files/{path=**}", "Echo"),
        ("GET", "/v1/errors/{code}", "Fail"),
    ]
    .map(|(method, template, rpc)| {
        (
            method.to_owned(),
            template.to_owned(),
            format!("/{SERVICE}/{rpc}"),
        )
    });
    // ImportBooks (client streaming) and Ping (no annotation) have no route.
    assert_eq!(routes, expected);

    let body_of = |rpc: &str, method: &str| {
        let route = server
            .gateway
            .routes()
            .iter()
            .find(|r| r.rpc.name() == rpc && r.method.as_str() == method)
            .unwrap();
        (
            match &route.body {
                gateway::routes::BodyTarget::None => "".to_owned(),
                gateway::routes::BodyTarget::Whole => "*".to_owned(),
                gateway::routes::BodyTarget::Field(field) => field.name().to_owned(),
            },
            route.response_body.as_ref().map(|f| f.name().to_owned()),
            route.server_streaming(),
        )
    };
    assert_eq!(body_of("CreateBook", "POST"), ("book".into(), None, false));
    assert_eq!(body_of("UpdateBook", "PUT"), ("book".into(), None, false));
    assert_eq!(body_of("PublishBook", "POST"), ("*".into(), None, false));
    assert_eq!(body_of("GetBook", "GET"), ("".into(), None, false));
    assert_eq!(
        body_of("GetShelfStats", "GET"),
        ("".into(), Some("stats".into()), false)
    );
    assert_eq!(body_of("WatchBooks", "GET"), ("".into(), None, true));
}

#[test]
fn unservable_descriptors_and_annotations_fail_the_build() {
    let build = |service: &str| {
        Gateway::builder(pb::BROKEN_DESCRIPTOR)
            .unwrap()
            .service(format!("testing.broken.v1.{service}"))
            .build(grpc_router(Arc::default()))
    };
    let problem = |service: &str| match build(service) {
        Err(error) => error.to_string(),
        Ok(_) => panic!("{service} was accepted"),
    };

    assert!(matches!(
        build("BadTemplateService"),
        Err(BuildError::Route(RouteError::Template { ref rpc, .. }))
            if rpc == "testing.broken.v1.BadTemplateService.Method"
    ));
    assert_eq!(
        problem("BadTemplateService"),
        "testing.broken.v1.BadTemplateService.Method: invalid path template \
         `/v1/{name=**/things}`: `**` must be the last segment"
    );
    assert_eq!(
        problem("BadBindingService"),
        "testing.broken.v1.BadBindingService.Method: invalid path template \
         `v1/no-leading-slash`: must start with `/`"
    );
    assert_eq!(
        problem("BadPathFieldService"),
        "testing.broken.v1.BadPathFieldService.Method: path variable `missing` is not a field"
    );
    assert_eq!(
        problem("RepeatedPathFieldService"),
        "testing.broken.v1.RepeatedPathFieldService.Method: path variable `items.id` is not a field"
    );
    assert_eq!(
        problem("BadBodyService"),
        "testing.broken.v1.BadBodyService.Method: body field `nope` does not exist"
    );
    assert_eq!(
        problem("BadResponseBodyService"),
        "testing.broken.v1.BadResponseBodyService.Method: response_body field `nope` does not exist"
    );
    assert!(matches!(
        build("NoSuchService"),
        Err(BuildError::Route(RouteError::UnknownService(ref name)))
            if name == "testing.broken.v1.NoSuchService"
    ));
    let good = build("GoodService").unwrap();
    assert_eq!(good.routes().len(), 1);
    assert_eq!(
        good.routes()[0].template.variables[0].field_path,
        "inner.id"
    );

    // Not a descriptor set at all.
    assert!(matches!(
        Gateway::builder(b"\xff\xff\xff"),
        Err(BuildError::Descriptors(_))
    ));
    // A descriptor set without google/api/annotations.proto.
    let no_annotations = Gateway::builder(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .unwrap()
        .service("google.rpc.Status")
        .build(grpc_router(Arc::default()));
    assert!(matches!(
        no_annotations,
        Err(BuildError::Route(RouteError::NoHttpAnnotation))
    ));
    // More descriptors can be added; files already present are kept.
    let twice = Gateway::builder(pb::LIBRARY_DESCRIPTOR)
        .unwrap()
        .descriptors(pb::LIBRARY_DESCRIPTOR)
        .unwrap()
        .descriptors(pb::BROKEN_DESCRIPTOR)
        .unwrap()
        .service(SERVICE)
        .service("testing.broken.v1.GoodService")
        .build(grpc_router(Arc::default()))
        .unwrap();
    assert_eq!(twice.routes().len(), 13);
}

// ---------------------------------------------------------------------------------------------
// Routing over HTTP.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn unknown_paths_are_404_json() {
    let server = serve().await;
    for proto in PROTOCOLS {
        for (method, path) in [
            ("GET", "/v2/shelves/1/books"),
            ("GET", "/v1/shelves/1/books/2/pages"),
            ("GET", "/v1/shelves"),
            ("POST", "/v1/shelves/1/books:import"),
            ("GET", "/"),
        ] {
            let reply = server.send(proto, req(method, path)).await;
            reply.assert(
                404,
                &gateway_error(
                    404,
                    "NOT_FOUND",
                    "ROUTE_NOT_FOUND",
                    &format!("no route for {method} {path}"),
                ),
            );
            assert_eq!(reply.header("content-type"), Some("application/json"));
        }
    }
    // Client streaming has no REST form, so nothing reached the service.
    assert!(!server.library.called("ImportBooks"));
}

#[tokio::test]
async fn other_methods_on_known_paths_are_405_with_allow() {
    let server = serve().await;
    for proto in PROTOCOLS {
        for (method, path, allow) in [
            ("DELETE", "/v1/shelves/1/books", "GET, POST, SEARCH"),
            ("POST", "/v1/shelves/1/books/2", "DELETE, GET, PATCH, PUT"),
            ("PUT", "/v1/stats/3", "GET"),
            ("POST", "/v1/shelves/1/books:watch", "GET"),
            ("PATCH", "/v1/files/a/b", "GET"),
        ] {
            let reply = server.send(proto, req(method, path)).await;
            reply.assert(
                405,
                &gateway_error(
                    405,
                    "UNIMPLEMENTED",
                    "METHOD_NOT_ALLOWED",
                    &format!("{method} is not allowed on {path}; use {allow}"),
                ),
            );
            assert_eq!(reply.header("allow"), Some(allow));
        }

        // A path ending in a declared verb is that verb's route only: GET on the PublishBook
        // path is 405, not GetBook of a book `2:publish`; OPTIONS lists what it serves.
        let reply = server
            .send(proto, req("GET", "/v1/shelves/1/books/2:publish"))
            .await;
        assert_eq!(
            reply.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{}",
            reply.text()
        );
        assert_eq!(reply.header("allow"), Some("POST"));
        assert!(!server.library.called("GetBook"));
        for (path, allow) in [
            ("/v1/shelves/1/books/2:publish", "POST, OPTIONS"),
            ("/v1/shelves/1/books/2", "DELETE, GET, PATCH, PUT, OPTIONS"),
            ("/v1/files%2Fa", "GET, OPTIONS"),
        ] {
            let reply = server.send(proto, req("OPTIONS", path)).await;
            assert_eq!(
                reply.status,
                StatusCode::NO_CONTENT,
                "{path}: {}",
                reply.text()
            );
            assert_eq!(reply.header("allow"), Some(allow), "{path}");
            assert_eq!(reply.text(), "", "{path}");
        }
        let reply = server.send(proto, req("OPTIONS", "/v1/nothing")).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn custom_verbs_and_custom_methods_are_routed() {
    for proto in PROTOCOLS {
        let server = serve().await;
        server.create("shelves/1", "dune", &dune()).await;

        let reply = server
            .send(
                proto,
                req("POST", "/v1/shelves/1/books/dune:publish").json(&json!({
                    "note": "first print",
                    "publishTime": "1965-08-01T12:30:00.250Z",
                })),
            )
            .await;
        let mut published = dune_stored("shelves/1/books/dune", 2);
        published["published"] = json!(true);
        published["publishTime"] = json!("1965-08-01T12:30:00.250Z");
        reply.assert(200, &published);
        // A POST that is not a Create is a plain 200.
        assert_eq!(reply.header("location"), None);
        assert_eq!(
            server.library.last::<pb::PublishBookRequest>("PublishBook"),
            pb::PublishBookRequest {
                name: "shelves/1/books/dune".into(),
                note: "first print".into(),
                publish_time: Some(prost_types::Timestamp {
                    seconds: -139_404_600,
                    nanos: 250_000_000,
                }),
            }
        );

        let reply = server
            .send(
                proto,
                req("SEARCH", "/v1/shelves/1/books")
                    .json(&json!({"query": "Dun", "genres": ["FANTASY"]})),
            )
            .await;
        reply.assert(
            200,
            &json!({
                "books": [published],
                "nextPageToken": "",
                "totalSize": 1,
            }),
        );
        assert_eq!(
            server.library.last::<pb::SearchBooksRequest>("SearchBooks"),
            pb::SearchBooksRequest {
                parent: "shelves/1".into(),
                query: "Dun".into(),
                genres: vec![pb::Genre::Fantasy as i32],
            }
        );
    }
}

#[tokio::test]
async fn double_star_captures_the_rest_of_the_path_decoded() {
    let server = serve().await;
    for proto in PROTOCOLS {
        for (path, captured) in [
            ("/v1/files/readme", "readme"),
            ("/v1/files/a/b%20c/d.txt", "a/b c/d.txt"),
            ("/v1/files/%C3%A9t%C3%A9/x", "été/x"),
            // As generated clients send a multi-segment value: every `/` encoded.
            ("/v1/files%2Fa%2Fb%20c", "a/b c"),
            ("/v1/files%2fx", "x"),
        ] {
            let reply = server.send(proto, req("GET", path)).await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
            assert_eq!(reply.json()["path"], json!(captured));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Canonical JSON both ways.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn create_then_get_round_trips_canonical_json() {
    for proto in PROTOCOLS {
        let server = serve().await;
        let reply = server
            .send(
                proto,
                req("POST", "/v1/shelves/1/books?book_id=dune").json(&dune()),
            )
            .await;
        let stored = dune_stored("shelves/1/books/dune", 1);
        reply.assert(201, &stored);
        assert_eq!(reply.header("location"), Some("/v1/shelves/1/books/dune"));
        assert_eq!(reply.header("etag"), Some("W/\"1\""));
        assert_eq!(reply.header("x-served-by"), Some("library-test"));
        assert_eq!(reply.header("content-type"), Some("application/json"));

        // What the service received, field by field.
        let received = server.library.last::<pb::CreateBookRequest>("CreateBook");
        assert_eq!(received.parent, "shelves/1");
        assert_eq!(received.book_id, "dune");
        let book = received.book.unwrap();
        assert_eq!(book.pages, 412);
        assert_eq!(
            book.genres,
            [pb::Genre::ScienceFiction as i32, pb::Genre::Fantasy as i32]
        );
        assert_eq!(book.publish_time, timestamp(-139_449_600));
        assert_eq!(book.cover, [1, 2, 3]);
        assert_eq!(book.edition, Some(1));
        assert_eq!(book.rating, 4.5);
        assert_eq!(book.labels["format"], "hardcover");

        let location = reply.header("location").unwrap().to_owned();
        let reply = server.send(proto, req("GET", &location)).await;
        reply.assert(200, &stored);
        assert_eq!(reply.header("etag"), Some("W/\"1\""));
        assert_eq!(
            server.library.last::<pb::GetBookRequest>("GetBook").name,
            "shelves/1/books/dune"
        );
    }
}

#[tokio::test]
async fn output_has_every_field_and_int64_beyond_2_53_is_exact() {
    let server = serve().await;
    for proto in PROTOCOLS {
        let id = format!("blank-{proto:?}");
        let reply = server
            .send(
                proto,
                req("POST", &format!("/v1/shelves/9/books?book_id={id}")).json(&json!({
                    "title": "Blank",
                    "pages": "9007199254740993",
                })),
            )
            .await;
        // Scalars, lists and maps appear with their defaults; unset messages, wrappers and
        // well-known types are left out (never `null`): one stable shape.
        reply.assert(
            201,
            &json!({
                "name": format!("shelves/9/books/{id}"),
                "title": "Blank",
                "genres": [],
                "labels": {},
                "pages": "9007199254740993",
                "etag": "W/\"1\"",
                "rating": 0.0,
                "cover": "",
                "published": false,
            }),
        );
        assert_eq!(
            server
                .library
                .last::<pb::CreateBookRequest>("CreateBook")
                .book
                .unwrap()
                .pages,
            9_007_199_254_740_993
        );
    }
}

#[tokio::test]
async fn input_accepts_proto_names_and_json_names() {
    for proto in PROTOCOLS {
        let server = serve().await;
        let reply = server
            .send(
                proto,
                req("POST", "/v1/shelves/1/books?book_id=x").json(&json!({
                    "title": "Both",
                    "publish_time": "2001-02-03T04:05:06Z",
                    "pages": 12,
                    "edition": null,
                    "genres": ["MYSTERY"],
                    "rating": "2.5",
                })),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
        let book = server
            .library
            .last::<pb::CreateBookRequest>("CreateBook")
            .book
            .unwrap();
        assert_eq!(book.publish_time, timestamp(981_173_106));
        assert_eq!(book.pages, 12);
        assert_eq!(book.edition, None);
        assert_eq!(book.rating, 2.5);
        assert_eq!(reply.json()["publishTime"], json!("2001-02-03T04:05:06Z"));

        // Query parameters too: `pageSize` and `page_size` name the same field.
        for query in ["pageSize=3", "page_size=3"] {
            let reply = server
                .send(proto, req("GET", &format!("/v1/shelves/1/books?{query}")))
                .await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
            assert_eq!(
                server
                    .library
                    .last::<pb::ListBooksRequest>("ListBooks")
                    .page_size,
                3
            );
        }
    }
}

#[tokio::test]
async fn list_answers_every_book_of_the_parent() {
    for proto in PROTOCOLS {
        let server = serve().await;
        let a = server.create("shelves/1", "a", &dune()).await;
        let b = server
            .create("shelves/1", "b", &json!({"title": "Emma"}))
            .await;
        server
            .create("shelves/2", "c", &json!({"title": "Other shelf"}))
            .await;
        let reply = server.send(proto, req("GET", "/v1/shelves/1/books")).await;
        // `b` has no author: left out, also inside a list.
        assert!(b.get("author").is_none(), "{b}");
        reply.assert(
            200,
            &json!({"books": [a, b], "nextPageToken": "", "totalSize": 2}),
        );
        let reply = server.send(proto, req("GET", "/v1/shelves/3/books")).await;
        reply.assert(
            200,
            &json!({"books": [], "nextPageToken": "", "totalSize": 0}),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Query parameters and path variables.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn query_parameters_fill_the_request() {
    for proto in PROTOCOLS {
        let server = serve().await;
        let reply = server
            .send(
                proto,
                req(
                    "GET",
                    "/v1/shelves/7/books?pageSize=25&page_token=next\
                     &filter=title%3A%22Dune%20%26%20co%22\
                     &genres=FANTASY&genres=MYSTERY\
                     &publishedAfter=2020-01-02T03%3A04%3A05Z\
                     &min_pages=9007199254740993&include_drafts=true\
                     &author.country=NZ&author.name=Le+Guin\
                     &ids=1&ids=2&ids=-3&minRating=3.5\
                     &readMask=title,author.name,publishTime\
                     &has_cover=false&cursor=AQID",
                ),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert_eq!(
            server.library.last::<pb::ListBooksRequest>("ListBooks"),
            pb::ListBooksRequest {
                parent: "shelves/7".into(),
                page_size: 25,
                page_token: "next".into(),
                filter: "title:\"Dune & co\"".into(),
                genres: vec![pb::Genre::Fantasy as i32, pb::Genre::Mystery as i32],
                published_after: timestamp(1_577_934_245),
                min_pages: 9_007_199_254_740_993,
                include_drafts: true,
                author: Some(pb::AuthorFilter {
                    name: "Le Guin".into(),
                    country: "NZ".into(),
                }),
                ids: vec![1, 2, -3],
                min_rating: 3.5,
                read_mask: mask(&["title", "author.name", "publish_time"]),
                has_cover: Some(false),
                labels: HashMap::new(),
                cursor: vec![1, 2, 3],
            }
        );
        // A FieldMask on output: one string, lowerCamelCase paths.
        reply.assert(
            200,
            &json!({
                "books": [],
                "nextPageToken": "",
                "totalSize": 0,
                "readMask": "title,author.name,publishTime",
            }),
        );
        // A bool wrapper set to true, and a bool with an explicit false.
        let reply = server
            .send(
                proto,
                req(
                    "GET",
                    "/v1/shelves/7/books?has_cover=true&include_drafts=false",
                ),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        let received = server.library.last::<pb::ListBooksRequest>("ListBooks");
        assert_eq!(received.has_cover, Some(true));
        assert!(!received.include_drafts);
    }
}

#[tokio::test]
async fn bad_query_parameters_are_all_listed() {
    let server = serve().await;
    for proto in PROTOCOLS {
        let reply = server
            .send(
                proto,
                req(
                    "GET",
                    "/v1/shelves/7/books?page_size=abc&bogus=1&genres=NOPE\
                     &parent=shelves/8&labels=x&author=y&min_pages=1&min_pages=2\
                     &include_drafts=maybe&published_after=yesterday&filter=ok",
                ),
            )
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text());
        let body = reply.json();
        assert_eq!(
            body["error"]["message"],
            "invalid query parameters: author, bogus, genres, include_drafts, labels, \
             min_pages, page_size, parent, published_after"
        );
        assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");
        assert_eq!(body["error"]["code"], 400);
        assert_eq!(reason(&body), "INVALID_QUERY_PARAMETER");
        let found = violations(&body);
        let fields: Vec<&str> = found.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            [
                "author",
                "bogus",
                "genres",
                "include_drafts",
                "labels",
                "min_pages",
                "page_size",
                "parent",
                "published_after"
            ]
        );
        let description = |field: &str| {
            found
                .iter()
                .find(|(f, _)| f == field)
                .map(|(_, d)| d.as_str())
                .unwrap()
        };
        assert_eq!(
            description("author"),
            "message fields cannot be set from the query string"
        );
        assert_eq!(
            description("bogus"),
            "unknown parameter for testing.v1.ListBooksRequest"
        );
        assert_eq!(
            description("labels"),
            "map fields cannot be set from the query string"
        );
        assert_eq!(
            description("min_pages"),
            "is given more than once but is not repeated"
        );
        assert_eq!(description("parent"), "is already set by the URL path");
        for field in ["genres", "include_drafts", "page_size", "published_after"] {
            assert!(!description(field).is_empty());
        }
        // Nothing reached the service.
        assert!(!server.library.called("ListBooks"));

        // One bad parameter: singular message.
        let reply = server
            .send(proto, req("GET", "/v1/shelves/1/books/x?verbose=true"))
            .await;
        let body = reply.json();
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["message"], "invalid query parameter: verbose");
        assert_eq!(
            violations(&body),
            [(
                "verbose".to_owned(),
                "unknown parameter for testing.v1.GetBookRequest".to_owned()
            )]
        );
    }
}

#[tokio::test]
async fn query_parameters_may_not_set_path_or_body_fields() {
    let server = serve().await;
    server.create("shelves/1", "x", &dune()).await;
    let cases = [
        (
            "PATCH",
            "/v1/shelves/1/books/x?book.title=T&book.name=shelves/1/books/y&bookId=3",
            json!({"title": "T"}),
            vec![
                ("book.name", "is already set by the URL path"),
                ("book.title", "belongs in the request body"),
                (
                    "bookId",
                    "unknown parameter for testing.v1.UpdateBookRequest",
                ),
            ],
        ),
        (
            "POST",
            "/v1/shelves/1/books?parent=shelves/2&book=x",
            json!({"title": "T"}),
            vec![
                ("book", "belongs in the request body"),
                ("parent", "is already set by the URL path"),
            ],
        ),
        (
            "POST",
            "/v1/shelves/1/books/x:publish?note=hi",
            json!({"note": "T"}),
            vec![(
                "note",
                "unknown parameter: this route takes every field from the body",
            )],
        ),
    ];
    for proto in PROTOCOLS {
        for (method, path, body, expected) in &cases {
            let reply = server.send(proto, req(method, path).json(body)).await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text());
            let expected: Vec<(String, String)> = expected
                .iter()
                .map(|(f, d)| ((*f).to_owned(), (*d).to_owned()))
                .collect();
            assert_eq!(violations(&reply.json()), expected, "{path}");
        }
    }
    assert!(!server.library.called("UpdateBook"));
    assert!(!server.library.called("PublishBook"));
    assert_eq!(server.library.book_count(), 1);
}

#[tokio::test]
async fn path_variables_are_typed_and_win_over_the_body() {
    for proto in PROTOCOLS {
        let server = serve().await;
        // An int64 from the path.
        let reply = server.send(proto, req("GET", "/v1/stats/42")).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert_eq!(
            server
                .library
                .last::<pb::GetShelfStatsRequest>("GetShelfStats")
                .id,
            42
        );
        // An enum by name from the path.
        let reply = server.send(proto, req("GET", "/v1/errors/OK")).await;
        reply.assert(200, &json!({}));
        assert_eq!(
            server.library.last::<pb::FailRequest>("Fail").code,
            pb::google::rpc::Code::Ok as i32
        );
        // A value that does not fit the field.
        let reply = server.send(proto, req("GET", "/v1/stats/forty-two")).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text());
        let body = reply.json();
        assert_eq!(reason(&body), "INVALID_PATH");
        assert_eq!(violations(&body)[0].0, "id");
        let reply = server.send(proto, req("GET", "/v1/errors/BOGUS")).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text());
        assert_eq!(violations(&reply.json())[0].0, "code");

        // The URL names the resource, whatever the body says.
        server.create("shelves/1", "real", &dune()).await;
        let reply = server
            .send(
                proto,
                req("PATCH", "/v1/shelves/1/books/real")
                    .json(&json!({"name": "shelves/6/books/other", "title": "Renamed"})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        let received = server.library.last::<pb::UpdateBookRequest>("UpdateBook");
        assert_eq!(received.book.unwrap().name, "shelves/1/books/real");
        assert_eq!(reply.json()["name"], "shelves/1/books/real");
    }
}

#[tokio::test]
async fn response_body_answers_one_field_and_bare_etags_are_quoted() {
    for proto in PROTOCOLS {
        let server = serve().await;
        server.create("shelves/5", "a", &dune()).await;
        server
            .create("shelves/5", "b", &json!({"title": "B", "rating": 3.5}))
            .await;
        let reply = server.send(proto, req("GET", "/v1/stats/5")).await;
        reply.assert(
            200,
            &json!({"bookCount": "2", "averageRating": 4.0, "genres": ["MYSTERY"]}),
        );
        // The ETag comes from the whole response, not just the body shown.
        assert_eq!(reply.header("etag"), Some("\"stats-5\""));
        assert_eq!(reply.header("x-served-by"), Some("library-test"));
    }
}

// ---------------------------------------------------------------------------------------------
// Request bodies.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn bodies_that_do_not_fit_are_400() {
    let server = serve().await;
    for proto in PROTOCOLS {
        // Unknown field, wrong types, wrong shape: BadRequest names the failing field's path
        // (the body field when no one member fails).
        for (body, needle, path) in [
            (
                r#"{"title": "x", "colour": "red"}"#,
                "colour",
                "book.colour",
            ),
            (r#"{"title": 5}"#, "", "book.title"),
            (r#"{"pages": "many"}"#, "", "book.pages"),
            (r#"{"genres": ["NOVEL"]}"#, "", "book.genres"),
            (
                r#"{"publishTime": "last tuesday"}"#,
                "",
                "book.publish_time",
            ),
            (r#"["a list"]"#, "", "book"),
        ] {
            let reply = server
                .send(
                    proto,
                    req("POST", "/v1/shelves/1/books").body("application/json", body),
                )
                .await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
            let json = reply.json();
            assert_eq!(reason(&json), "INVALID_BODY", "{body}");
            assert_eq!(json["error"]["status"], "INVALID_ARGUMENT");
            let found = violations(&json);
            assert_eq!(found.len(), 1, "{body}");
            assert_eq!(found[0].0, path, "{body}");
            assert!(found[0].1.contains(needle), "{found:?}");
            assert!(
                json["error"]["message"]
                    .as_str()
                    .unwrap()
                    .starts_with("the request body does not fit testing.v1.CreateBookRequest: "),
                "{json}"
            );
        }
        // With `body: "*"`, the unknown member is named itself.
        let reply = server
            .send(
                proto,
                req("POST", "/v1/shelves/1/books/x:publish").json(&json!({"nope": 1})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        let found = violations(&reply.json());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, "nope");
        assert!(found[0].1.contains("nope"), "{found:?}");

        // Not JSON at all: no field to blame.
        let reply = server
            .send(
                proto,
                req("POST", "/v1/shelves/1/books").body("application/json", "{\"title\":"),
            )
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        let json = reply.json();
        assert_eq!(reason(&json), "INVALID_JSON");
        assert_eq!(json["error"]["details"].as_array().unwrap().len(), 1);
        assert!(
            json["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("the request body is not valid JSON: "),
        );
    }
    assert!(!server.library.called("CreateBook"));
    assert!(!server.library.called("PublishBook"));
}

#[tokio::test]
async fn bodies_must_be_json() {
    for proto in PROTOCOLS {
        let server = serve().await;
        for (content_type, shown) in [
            ("text/plain", "text/plain"),
            (
                "application/x-www-form-urlencoded",
                "application/x-www-form-urlencoded",
            ),
            ("", "nothing"),
        ] {
            let reply = server
                .send(
                    proto,
                    req("POST", "/v1/shelves/1/books").body(content_type, r#"{"title":"x"}"#),
                )
                .await;
            reply.assert(
                415,
                &gateway_error(
                    415,
                    "INVALID_ARGUMENT",
                    "UNSUPPORTED_MEDIA_TYPE",
                    &format!("the request body must be application/json, got `{shown}`"),
                ),
            );
        }
        assert!(!server.library.called("CreateBook"));
        // JSON with parameters and structured-syntax `+json` types are JSON.
        for (n, content_type) in [
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/merge-patch+json",
        ]
        .into_iter()
        .enumerate()
        {
            let reply = server
                .send(
                    proto,
                    req("POST", &format!("/v1/shelves/1/books?book_id={proto:?}{n}"))
                        .body(content_type, r#"{"title":"x"}"#),
                )
                .await;
            assert_eq!(reply.status, StatusCode::CREATED, "{content_type}");
        }
        // No body at all needs no content type: the service decides (book is required).
        let reply = server.send(proto, req("POST", "/v1/shelves/1/books")).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        assert_eq!(violations(&reply.json())[0].0, "book");
    }
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let too_large = gateway_error(
        413,
        "INVALID_ARGUMENT",
        "BODY_TOO_LARGE",
        &format!("the request body exceeds {MAX_BODY} bytes"),
    );
    // A body of exactly the limit is fine.
    let padding = MAX_BODY - r#"{"title":""}"#.len();
    let exact = format!(r#"{{"title":"{}"}}"#, "x".repeat(padding));
    assert_eq!(exact.len(), MAX_BODY);
    let over = format!(r#"{{"title":"{}"}}"#, "x".repeat(padding + 1));
    for proto in PROTOCOLS {
        let server = serve().await;
        // Declared by Content-Length.
        let reply = server
            .send(
                proto,
                req("POST", "/v1/shelves/1/books").body("application/json", over.clone()),
            )
            .await;
        reply.assert(413, &too_large);
        // Streamed without a length: the limit applies while reading.
        let chunks = over
            .as_bytes()
            .chunks(1000)
            .map(Bytes::copy_from_slice)
            .collect();
        let reply = server
            .send(
                proto,
                req("POST", "/v1/shelves/1/books").chunked("application/json", chunks),
            )
            .await;
        reply.assert(413, &too_large);
        assert!(!server.library.called("CreateBook"));

        let id = format!("{proto:?}");
        for (n, request) in [
            req("POST", &format!("/v1/shelves/1/books?book_id={id}-full"))
                .body("application/json", exact.clone()),
            req("POST", &format!("/v1/shelves/1/books?book_id={id}-chunked")).chunked(
                "application/json",
                exact
                    .as_bytes()
                    .chunks(1000)
                    .map(Bytes::copy_from_slice)
                    .collect(),
            ),
        ]
        .into_iter()
        .enumerate()
        {
            let reply = server.send(proto, request).await;
            assert_eq!(reply.status, StatusCode::CREATED, "{n}: {}", reply.text());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Update masks.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn patch_derives_the_update_mask_from_the_body() {
    for proto in PROTOCOLS {
        let server = serve().await;
        server.create("shelves/1", "dune", &dune()).await;
        let reply = server
            .send(
                proto,
                req("PATCH", "/v1/shelves/1/books/dune").json(&json!({
                    "title": "Dune Messiah",
                    "author": {"name": "F. Herbert"},
                    "labels": {"lang": "fr"},
                    "publish_time": "1969-01-01T00:00:00Z",
                    "extra": {"signed": false},
                    "edition": 2,
                    "genres": [],
                })),
            )
            .await;
        // Nested messages recurse (author.country is kept); maps, lists and well-known
        // types are replaced whole.
        let mut expected = dune_stored("shelves/1/books/dune", 2);
        expected["title"] = json!("Dune Messiah");
        expected["author"] = json!({"name": "F. Herbert", "country": "US"});
        expected["labels"] = json!({"lang": "fr"});
        expected["publishTime"] = json!("1969-01-01T00:00:00Z");
        expected["extra"] = json!({"signed": false});
        expected["edition"] = json!(2);
        expected["genres"] = json!([]);
        reply.assert(200, &expected);
        assert_eq!(reply.header("etag"), Some("W/\"2\""));
        let received = server.library.last::<pb::UpdateBookRequest>("UpdateBook");
        let mut paths = received.update_mask.unwrap().paths;
        paths.sort();
        assert_eq!(
            paths,
            [
                "author.name",
                "edition",
                "extra",
                "genres",
                "labels",
                "publish_time",
                "title"
            ]
        );

        // An empty object is a leaf: the whole author is replaced.
        let reply = server
            .send(
                proto,
                req("PATCH", "/v1/shelves/1/books/dune").json(&json!({"author": {}})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert_eq!(reply.json()["author"], json!({"name": "", "country": ""}));
        assert_eq!(
            server
                .library
                .last::<pb::UpdateBookRequest>("UpdateBook")
                .update_mask,
            mask(&["author"])
        );

        // Merge-patch JSON is JSON too.
        let reply = server
            .send(
                proto,
                req("PATCH", "/v1/shelves/1/books/dune").body(
                    "application/merge-patch+json",
                    r#"{"pages":"500","publishTime":"1970-01-01T00:00:01Z"}"#,
                ),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert_eq!(reply.json()["pages"], "500");
        assert_eq!(reply.json()["publishTime"], "1970-01-01T00:00:01Z");
        let received = server.library.last::<pb::UpdateBookRequest>("UpdateBook");
        let mut paths = received.update_mask.unwrap().paths;
        paths.sort();
        assert_eq!(paths, ["pages", "publish_time"]);
    }
}

#[tokio::test]
async fn a_resource_read_back_patches_only_what_a_client_may_change() {
    for proto in PROTOCOLS {
        let server = serve().await;
        server
            .create("shelves/1", "emma", &json!({"title": "Emma", "pages": "3"}))
            .await;
        let mut book = server
            .send(proto, req("GET", "/v1/shelves/1/books/emma"))
            .await
            .json();
        book["title"] = json!("Emma (annotated)");
        let reply = server
            .send(proto, req("PATCH", "/v1/shelves/1/books/emma").json(&book))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        // `name` (IDENTIFIER) and `published` (OUTPUT_ONLY) are not in the mask; unset
        // fields were left out of the GET, so they are not either; everything else is.
        let received = server.library.last::<pb::UpdateBookRequest>("UpdateBook");
        let mut paths = received.update_mask.unwrap().paths;
        paths.sort();
        assert_eq!(
            paths,
            [
                "cover", "etag", "genres", "labels", "pages", "rating", "title"
            ]
        );
        let mut expected = book.clone();
        expected["etag"] = json!("W/\"2\"");
        reply.assert(200, &expected);
    }
}

#[tokio::test]
async fn explicit_update_masks_win_and_put_replaces_everything() {
    for proto in PROTOCOLS {
        let server = serve().await;
        server.create("shelves/1", "dune", &dune()).await;
        let body = json!({"title": "Ignored?", "pages": "9", "author": {"country": "FR"}});
        for (query, paths) in [
            ("update_mask=pages", vec!["pages"]),
            (
                "updateMask=author.country,title",
                vec!["author.country", "title"],
            ),
        ] {
            let reply = server
                .send(
                    proto,
                    req("PATCH", &format!("/v1/shelves/1/books/dune?{query}")).json(&body),
                )
                .await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
            assert_eq!(
                server
                    .library
                    .last::<pb::UpdateBookRequest>("UpdateBook")
                    .update_mask,
                mask(&paths)
            );
        }
        let reply = server
            .send(proto, req("GET", "/v1/shelves/1/books/dune"))
            .await;
        let mut expected = dune_stored("shelves/1/books/dune", 3);
        expected["pages"] = json!("9");
        expected["title"] = json!("Ignored?");
        expected["author"] = json!({"name": "Frank Herbert", "country": "FR"});
        reply.assert(200, &expected);

        // A read mask is not an update mask: the update mask is still derived.
        let reply = server
            .send(
                proto,
                req("PATCH", "/v1/shelves/1/books/dune?read_mask=title")
                    .json(&json!({"rating": 1.0})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        let received = server.library.last::<pb::UpdateBookRequest>("UpdateBook");
        assert_eq!(received.read_mask, mask(&["title"]));
        assert_eq!(received.update_mask, mask(&["rating"]));

        // PUT replaces the resource: the mask is `*`.
        let reply = server
            .send(
                proto,
                req("PUT", "/v1/shelves/1/books/dune").json(&json!({"title": "Replaced"})),
            )
            .await;
        reply.assert(
            200,
            &json!({
                "name": "shelves/1/books/dune",
                "title": "Replaced",
                "genres": [],
                "labels": {},
                "pages": "0",
                "etag": "W/\"5\"",
                "rating": 0.0,
                "cover": "",
                "published": false,
            }),
        );
        assert_eq!(
            server
                .library
                .last::<pb::UpdateBookRequest>("UpdateBook")
                .update_mask,
            mask(&["*"])
        );
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP conveniences: If-Match, Idempotency-Key, 201 + Location, ETag.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn if_match_sets_the_etag_and_a_stale_one_is_412() {
    for proto in PROTOCOLS {
        let server = serve().await;
        server.create("shelves/1", "dune", &dune()).await;
        let path = "/v1/shelves/1/books/dune";
        let stale = |code: u16, sent: &str, current: &str| {
            json!({"error": {
                "code": code,
                "message": format!("shelves/1/books/dune changed: etag {sent} is not current"),
                "status": "ABORTED",
                "details": [{
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "ETAG_MISMATCH",
                    "domain": DOMAIN,
                    "metadata": {"currentEtag": current},
                }],
            }})
        };

        // The current etag: the write happens. If-Match fills the body's etag.
        let reply = server
            .send(
                proto,
                req("PATCH", path)
                    .header("if-match", "W/\"1\"")
                    .json(&json!({"title": "A"})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert_eq!(reply.header("etag"), Some("W/\"2\""));
        let received = server.library.last::<pb::UpdateBookRequest>("UpdateBook");
        assert_eq!(received.book.unwrap().etag, "W/\"1\"");

        // Stale: 412 with If-Match, and the same 412 when the etag came in the body.
        let reply = server
            .send(
                proto,
                req("PATCH", path)
                    .header("if-match", "W/\"1\"")
                    .json(&json!({"title": "B"})),
            )
            .await;
        reply.assert(412, &stale(412, "W/\"1\"", "W/\"2\""));
        let reply = server
            .send(
                proto,
                req("PATCH", path).json(&json!({"title": "B", "etag": "W/\"1\""})),
            )
            .await;
        reply.assert(412, &stale(412, "W/\"1\"", "W/\"2\""));
        // If-Match overrides the body's etag.
        let reply = server
            .send(
                proto,
                req("PATCH", path)
                    .header("if-match", "W/\"2\"")
                    .json(&json!({"title": "C", "etag": "W/\"1\""})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());

        // A top-level etag field (DeleteBook).
        let reply = server
            .send(
                proto,
                req("DELETE", path)
                    .header("authorization", "Bearer t")
                    .header("if-match", "W/\"2\""),
            )
            .await;
        reply.assert(412, &stale(412, "W/\"2\"", "W/\"3\""));
        assert_eq!(
            server
                .library
                .last::<pb::DeleteBookRequest>("DeleteBook")
                .etag,
            "W/\"2\""
        );
        // `If-Match: *` is no particular version.
        let reply = server
            .send(
                proto,
                req("DELETE", path)
                    .header("authorization", "Bearer t")
                    .header("if-match", "*"),
            )
            .await;
        reply.assert(200, &json!({}));
        assert_eq!(
            server.library.last::<pb::DeleteBookRequest>("DeleteBook"),
            pb::DeleteBookRequest {
                name: "shelves/1/books/dune".into(),
                etag: String::new(),
                request_id: String::new(),
            }
        );
        // An ABORTED without If-Match is the same 412 (here: a stale etag query parameter).
        server.create("shelves/1", "dune", &dune()).await;
        let reply = server
            .send(
                proto,
                req("DELETE", &format!("{path}?etag=W/%220%22")).header("authorization", "t"),
            )
            .await;
        reply.assert(412, &stale(412, "W/\"0\"", "W/\"1\""));
    }
}

#[tokio::test]
async fn idempotency_key_sets_the_request_id() {
    for proto in PROTOCOLS {
        let server = serve().await;
        let mut names = Vec::new();
        for _ in 0..2 {
            let reply = server
                .send(
                    proto,
                    req("POST", "/v1/shelves/1/books")
                        .header("idempotency-key", "key-1")
                        .json(&json!({"title": "Once"})),
                )
                .await;
            assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
            assert_eq!(
                server
                    .library
                    .last::<pb::CreateBookRequest>("CreateBook")
                    .request_id,
                "key-1"
            );
            names.push(reply.json()["name"].clone());
        }
        assert_eq!(names[0], names[1]);
        assert_eq!(server.library.book_count(), 1);

        // DeleteBook has a top-level request_id too.
        let name = names[0].as_str().unwrap();
        let reply = server
            .send(
                proto,
                req("DELETE", &format!("/v1/{name}"))
                    .header("authorization", "Bearer t")
                    .header("idempotency-key", "key-2"),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert_eq!(
            server
                .library
                .last::<pb::DeleteBookRequest>("DeleteBook")
                .request_id,
            "key-2"
        );
        // Methods without a request_id ignore the header.
        let reply = server
            .send(
                proto,
                req("GET", "/v1/files/x").header("idempotency-key", "key-3"),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn create_answers_201_with_an_encoded_location() {
    let server = serve().await;
    for proto in PROTOCOLS {
        let id = format!("a b/é-{proto:?}");
        let encoded: String = form_encode(&id);
        let reply = server
            .send(
                proto,
                req("POST", &format!("/v1/shelves/1/books?book_id={encoded}"))
                    .json(&json!({"title": "Spaced"})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
        // The name does not fit `shelves/*/books/*` (the id has a `/`): no Location.
        assert_eq!(reply.header("location"), None);

        let id = format!("a b é-{proto:?}");
        let reply = server
            .send(
                proto,
                req(
                    "POST",
                    &format!("/v1/shelves/1/books?book_id={}", form_encode(&id)),
                )
                .json(&json!({"title": "Spaced"})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
        let location = reply.header("location").unwrap().to_owned();
        assert_eq!(
            location,
            format!("/v1/shelves/1/books/a%20b%20%C3%A9-{proto:?}")
        );
        let reply = server.send(proto, req("GET", &location)).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert_eq!(reply.json()["name"], format!("shelves/1/books/{id}"));
    }
}

fn form_encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

// ---------------------------------------------------------------------------------------------
// Metadata both ways.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn selected_headers_become_metadata_and_metadata_comes_back() {
    let server = serve().await;
    for proto in PROTOCOLS {
        let reply = server
            .send(
                proto,
                req("GET", "/v1/files/meta")
                    .header("authorization", "Bearer t0ken")
                    .header("x-api-key", "k-1")
                    .header("x-request-id", "r-1")
                    .header(
                        "traceparent",
                        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                    )
                    .header("grpc-metadata-tenant", "acme")
                    .header("Grpc-Metadata-X-Feature", "on")
                    .header("cookie", "session=secret")
                    .header("x-other", "o"),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        let metadata = server.library.last_metadata("Echo");
        for (name, value) in [
            ("authorization", "Bearer t0ken"),
            ("x-api-key", "k-1"),
            ("x-request-id", "r-1"),
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            ("tenant", "acme"),
            ("x-feature", "on"),
        ] {
            assert_eq!(
                metadata.get(name).map(|v| v.to_str().unwrap()),
                Some(value),
                "{name}"
            );
            assert_eq!(reply.json()["metadata"][name], value);
        }
        for name in [
            "cookie",
            "x-other",
            "grpc-metadata-tenant",
            "host",
            "user-agent",
        ] {
            assert!(!metadata.contains_key(name), "{name} was forwarded");
        }
        // Response metadata comes back as headers, protocol and binary metadata does not.
        assert_eq!(reply.header("x-served-by"), Some("library-test"));
        assert_eq!(reply.header("content-type"), Some("application/json"));
        for name in [
            "x-trace-bin",
            "grpc-status",
            "grpc-message",
            "grpc-accept-encoding",
        ] {
            assert_eq!(reply.header(name), None, "{name}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// gRPC errors.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn grpc_codes_map_to_http_statuses() {
    let server = serve().await;
    let table = [
        ("CANCELLED", 499),
        ("UNKNOWN", 500),
        ("INVALID_ARGUMENT", 400),
        ("DEADLINE_EXCEEDED", 504),
        ("NOT_FOUND", 404),
        ("ALREADY_EXISTS", 409),
        ("PERMISSION_DENIED", 403),
        ("RESOURCE_EXHAUSTED", 429),
        ("FAILED_PRECONDITION", 400),
        ("ABORTED", 412), // a stale etag, however it was sent
        ("OUT_OF_RANGE", 400),
        ("UNIMPLEMENTED", 501),
        ("INTERNAL", 500),
        ("UNAVAILABLE", 503),
        ("DATA_LOSS", 500),
        ("UNAUTHENTICATED", 401),
    ];
    for proto in PROTOCOLS {
        for (name, http) in table {
            let reply = server
                .send(
                    proto,
                    req("GET", &format!("/v1/errors/{name}?message=it%20failed")),
                )
                .await;
            reply.assert(
                http,
                &json!({"error": {
                    "code": http,
                    "message": "it failed",
                    "status": name,
                    "details": [{
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "TEST_FAILURE",
                        "domain": DOMAIN,
                        "metadata": {"method": "Fail"},
                    }],
                }}),
            );
            assert_eq!(reply.header("content-type"), Some("application/json"));
            assert_eq!(reply.header("retry-after"), None);
        }
    }
}

#[tokio::test]
async fn error_details_are_decoded_and_retry_info_sets_retry_after() {
    let server = serve().await;
    for proto in PROTOCOLS {
        let reply = server
            .send(
                proto,
                req(
                    "GET",
                    "/v1/errors/RESOURCE_EXHAUSTED?message=slow%20down&reason=QUOTA\
                     &retry_after_seconds=7&custom_detail=true&unknown_detail=true",
                ),
            )
            .await;
        reply.assert(
            429,
            &json!({"error": {
                "code": 429,
                "message": "slow down",
                "status": "RESOURCE_EXHAUSTED",
                "details": [
                    {
                        "@type": "type.googleapis.com/google.rpc.RetryInfo",
                        "retryDelay": "6.500s",
                    },
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "QUOTA",
                        "domain": DOMAIN,
                        "metadata": {"method": "Fail"},
                    },
                    // Decoded with the service's own descriptors.
                    {
                        "@type": "type.googleapis.com/testing.v1.QuotaDetail",
                        "bucket": "reads",
                        "remaining": "-1",
                    },
                    // No descriptor: passed on as base64.
                    {
                        "@type": "type.googleapis.com/elsewhere.v1.Mystery",
                        "value": "AQID",
                    },
                ],
            }}),
        );
        // 6.5 s rounds up.
        assert_eq!(reply.header("retry-after"), Some("7"));
    }
}

#[tokio::test]
async fn service_errors_keep_their_details() {
    for proto in PROTOCOLS {
        let server = serve().await;
        let reply = server
            .send(proto, req("GET", "/v1/shelves/1/books/nope"))
            .await;
        reply.assert(
            404,
            &json!({"error": {
                "code": 404,
                "message": "shelves/1/books/nope does not exist",
                "status": "NOT_FOUND",
                "details": [{
                    "@type": "type.googleapis.com/google.rpc.ResourceInfo",
                    "resourceType": "testing.v1.Book",
                    "resourceName": "shelves/1/books/nope",
                    "owner": "",
                    "description": "no such book",
                }],
            }}),
        );

        let reply = server
            .send(
                proto,
                req("POST", "/v1/shelves/1/books").json(&json!({"title": ""})),
            )
            .await;
        reply.assert(
            400,
            &json!({"error": {
                "code": 400,
                "message": "invalid book.title",
                "status": "INVALID_ARGUMENT",
                "details": [{
                    "@type": "type.googleapis.com/google.rpc.BadRequest",
                    "fieldViolations": [{
                        "field": "book.title",
                        "description": "must not be empty",
                        "reason": "",
                    }],
                }],
            }}),
        );

        let reply = server
            .send(proto, req("DELETE", "/v1/shelves/1/books/nope"))
            .await;
        reply.assert(
            401,
            &json!({"error": {
                "code": 401,
                "message": "deleting books needs credentials",
                "status": "UNAUTHENTICATED",
                "details": [{
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "MISSING_CREDENTIALS",
                    "domain": DOMAIN,
                    "metadata": {},
                }],
            }}),
        );
        // The metadata of an error status comes back as headers too.
        assert_eq!(
            reply.header("www-authenticate"),
            Some("Bearer realm=\"library\"")
        );
        assert_eq!(reply.header("x-served-by"), Some("library-test"));
        assert_eq!(reply.header("grpc-status"), None);
        assert_eq!(reply.header("grpc-status-details-bin"), None);

        server.create("shelves/1", "twice", &dune()).await;
        let reply = server
            .send(
                proto,
                req("POST", "/v1/shelves/1/books?book_id=twice").json(&dune()),
            )
            .await;
        reply.assert(
            409,
            &json!({"error": {
                "code": 409,
                "message": "shelves/1/books/twice exists",
                "status": "ALREADY_EXISTS",
                "details": [],
            }}),
        );
        assert_eq!(reply.header("location"), None);
    }
}

// ---------------------------------------------------------------------------------------------
// Server streaming.
// ---------------------------------------------------------------------------------------------

fn event(book: &Json) -> Json {
    json!({"kind": "EXISTING", "book": book})
}

fn ndjson(reply: &Reply) -> Vec<Json> {
    let text = reply.text();
    assert!(text.ends_with('\n'), "{text:?}");
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// `(event name, data)` of each Server-Sent Event.
fn sse(reply: &Reply) -> Vec<(Option<String>, Json)> {
    let text = reply.text();
    assert!(text.ends_with("\n\n"), "{text:?}");
    text.trim_end_matches("\n\n")
        .split("\n\n")
        .map(|block| {
            let (name, data) = match block.split_once('\n') {
                Some((first, rest)) => (
                    Some(first.strip_prefix("event: ").unwrap().to_owned()),
                    rest,
                ),
                None => (None, block),
            };
            let data = data.strip_prefix("data: ").unwrap();
            assert!(!data.contains('\n'));
            (name, serde_json::from_str(data).unwrap())
        })
        .collect()
}

fn interrupted() -> Json {
    json!({"error": {
        "code": 503,
        "message": "the watch was interrupted",
        "status": "UNAVAILABLE",
        "details": [{
            "@type": "type.googleapis.com/google.rpc.RetryInfo",
            "retryDelay": "2s",
        }],
    }})
}

#[tokio::test]
async fn server_streaming_answers_ndjson_by_default() {
    for proto in PROTOCOLS {
        let server = serve().await;
        let a = server.create("shelves/1", "a", &dune()).await;
        let b = server
            .create("shelves/1", "b", &json!({"title": "B"}))
            .await;
        server
            .create("shelves/2", "c", &json!({"title": "C"}))
            .await;

        let reply = server
            .send(proto, req("GET", "/v1/shelves/1/books:watch"))
            .await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.header("content-type"), Some("application/x-ndjson"));
        assert_eq!(reply.header("cache-control"), Some("no-cache"));
        assert_eq!(reply.header("x-served-by"), Some("library-test"));
        assert_eq!(ndjson(&reply), [event(&a), event(&b)]);
        assert_eq!(
            server.library.last::<pb::WatchBooksRequest>("WatchBooks"),
            pb::WatchBooksRequest {
                parent: "shelves/1".into(),
                fail_at_end: false,
            }
        );

        // An empty stream is an empty body.
        let reply = server
            .send(proto, req("GET", "/v1/shelves/3/books:watch"))
            .await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.text(), "");

        // An error after messages ends the stream with an error object.
        let reply = server
            .send(
                proto,
                req("GET", "/v1/shelves/1/books:watch?fail_at_end=true"),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(ndjson(&reply), [event(&a), event(&b), interrupted()]);
    }
}

#[tokio::test]
async fn server_streaming_answers_sse_when_asked() {
    for proto in PROTOCOLS {
        let server = serve().await;
        let a = server.create("shelves/1", "a", &dune()).await;
        let b = server
            .create("shelves/1", "b", &json!({"title": "B"}))
            .await;

        let reply = server
            .send(
                proto,
                req("GET", "/v1/shelves/1/books:watch")
                    .header("accept", "text/html, text/event-stream;q=0.9"),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.header("content-type"), Some("text/event-stream"));
        assert_eq!(reply.header("cache-control"), Some("no-cache"));
        assert_eq!(reply.header("x-served-by"), Some("library-test"));
        assert_eq!(sse(&reply), [(None, event(&a)), (None, event(&b))]);
        assert!(reply.text().starts_with("data: {"));

        let reply = server
            .send(
                proto,
                req("GET", "/v1/shelves/1/books:watch?fail_at_end=true")
                    .header("accept", "text/event-stream"),
            )
            .await;
        assert_eq!(
            sse(&reply),
            [
                (None, event(&a)),
                (None, event(&b)),
                (Some("error".to_owned()), interrupted())
            ]
        );
    }
}

#[tokio::test]
async fn stream_errors_before_the_first_message_are_plain_errors() {
    let server = serve().await;
    for proto in PROTOCOLS {
        for accept in ["application/json", "text/event-stream"] {
            let reply = server
                .send(
                    proto,
                    req("GET", "/v1/shelves/missing/books:watch").header("accept", accept),
                )
                .await;
            reply.assert(
                404,
                &json!({"error": {
                    "code": 404,
                    "message": "shelves/missing does not exist",
                    "status": "NOT_FOUND",
                    "details": [{
                        "@type": "type.googleapis.com/google.rpc.ResourceInfo",
                        "resourceType": "testing.v1.Shelf",
                        "resourceName": "shelves/missing",
                        "owner": "",
                        "description": "",
                    }],
                }}),
            );
            assert_eq!(reply.header("content-type"), Some("application/json"));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The same listener speaks gRPC.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn grpc_clients_share_the_listener_and_the_data() {
    let server = serve().await;
    let created = server.create("shelves/1", "dune", &dune()).await;
    let mut grpc = pb::library_service_client::LibraryServiceClient::with_origin(
        client::<tonic::body::Body>(Proto::Http2),
        format!("http://{}", server.addr).parse().unwrap(),
    );
    let book = grpc
        .get_book(pb::GetBookRequest {
            name: "shelves/1/books/dune".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(book.title, "Dune");
    assert_eq!(book.etag, created["etag"]);
    grpc.ping(()).await.unwrap();
    let status = grpc
        .get_book(pb::GetBookRequest {
            name: "shelves/1/books/none".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(
        status.get_details_resource_info().unwrap().resource_name,
        "shelves/1/books/none"
    );
}

// ---------------------------------------------------------------------------------------------
// OpenAPI from the same descriptors.
// ---------------------------------------------------------------------------------------------

fn openapi() -> Json {
    Gateway::builder(pb::LIBRARY_DESCRIPTOR)
        .unwrap()
        .service(SERVICE)
        .openapi(&gateway::openapi::Info {
            title: "Library".into(),
            version: "v1".into(),
            description: None,
            ..Default::default()
        })
        .unwrap()
}

#[test]
fn openapi_describes_every_route_openapi_can_express() {
    let document = openapi();
    assert_eq!(document["openapi"], "3.1.0");
    let operations: Vec<(String, String, String)> = document["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object().unwrap().iter().map(move |(method, op)| {
                (
                    method.clone(),
                    path.clone(),
                    op["x-grpc-method"].as_str().unwrap().to_owned(),
                )
            })
        })
        .collect();
    // SEARCH (a custom HTTP method) has no OpenAPI form.
    let expected = [
        ("get", "/v1/errors/{code}", "Fail"),
        ("get", "/v1/files/{path}", "Echo"),
        ("get", "/v1/shelves/{shelf}/books", "ListBooks"),
        ("post", "/v1/shelves/{shelf}/books", "CreateBook"),
        ("delete", "/v1/shelves/{shelf}/books/{book}", "DeleteBook"),
        ("get", "/v1/shelves/{shelf}/books/{book}", "GetBook"),
        ("patch", "/v1/shelves/{shelf}/books/{book}", "UpdateBook"),
        ("put", "/v1/shelves/{shelf}/books/{book}", "UpdateBook"),
        (
            "post",
            "/v1/shelves/{shelf}/books/{book}:publish",
            "PublishBook",
        ),
        ("get", "/v1/shelves/{shelf}/books:watch", "WatchBooks"),
        ("get", "/v1/stats/{id}", "GetShelfStats"),
    ]
    .map(|(method, path, rpc)| {
        (
            method.to_owned(),
            path.to_owned(),
            format!("/{SERVICE}/{rpc}"),
        )
    });
    assert_eq!(operations, expected);

    let create = &document["paths"]["/v1/shelves/{shelf}/books"]["post"];
    assert_eq!(
        create["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/testing.v1.BookInput"
    );
    assert!(create["responses"]["201"]["headers"]["Location"].is_object());
    let watch = &document["paths"]["/v1/shelves/{shelf}/books:watch"]["get"]["responses"]["200"];
    let mut streams: Vec<&String> = watch["content"].as_object().unwrap().keys().collect();
    streams.sort();
    assert_eq!(streams, ["application/x-ndjson", "text/event-stream"]);
    assert!(document["components"]["schemas"]["testing.v1.Book"].is_object());
}

/// Every query parameter the document lists for ListBooks is one the gateway accepts.
#[tokio::test]
async fn openapi_query_parameters_are_accepted_by_the_gateway() {
    let document = openapi();
    let parameters = document["paths"]["/v1/shelves/{shelf}/books"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .clone();
    let server = serve().await;
    let mut names = Vec::new();
    for parameter in parameters.iter().filter(|p| p["in"] == "query") {
        let name = parameter["name"].as_str().unwrap();
        let schema = &parameter["schema"];
        let item = if schema["type"] == "array" {
            &schema["items"]
        } else {
            schema
        };
        let value = match (item["type"].as_str(), item["format"].as_str()) {
            (_, Some("date-time")) => "2020-01-01T00:00:00Z".to_owned(),
            (_, Some("byte")) => "AQID".to_owned(),
            (Some("integer"), _) | (_, Some("int64")) => "7".to_owned(),
            (Some("number"), _) => "1.5".to_owned(),
            (Some("boolean"), _) => "true".to_owned(),
            _ if item["enum"].is_array() => item["enum"][1].as_str().unwrap().to_owned(),
            _ if name == "readMask" => "title,author.name".to_owned(),
            _ => "text".to_owned(),
        };
        let reply = server
            .send(
                Proto::Http1,
                req("GET", &format!("/v1/shelves/1/books?{name}={value}")),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{name}: {}", reply.text());
        names.push(name.to_owned());
    }
    assert_eq!(
        names,
        [
            "pageSize",
            "pageToken",
            "filter",
            "genres",
            "publishedAfter",
            "minPages",
            "includeDrafts",
            "author.name",
            "author.country",
            "ids",
            "minRating",
            "readMask",
            "hasCover",
            "cursor"
        ]
    );
}

#[tokio::test]
async fn unreadable_headers_and_null_bodies_are_refused_and_an_empty_update_mask_is_none() {
    for proto in PROTOCOLS {
        let server = serve().await;
        server.create("shelves/1", "dune", &dune()).await;
        // Skipping a header the gateway cannot read would turn the write into one the
        // client did not ask for: unconditional, or not idempotent.
        for header in ["idempotency-key", "if-match"] {
            let reply = server
                .send(
                    proto,
                    req("DELETE", "/v1/shelves/1/books/dune").header(header, "k\u{e9}"),
                )
                .await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text());
            assert_eq!(
                violations(&reply.json()),
                [(header.to_owned(), "must be visible ASCII".to_owned())]
            );
        }
        assert!(!server.library.called("DeleteBook"));
        // `null` would unset the body's message, as no body does.
        let reply = server
            .send(
                proto,
                req("PATCH", "/v1/shelves/1/books/dune").body("application/json", "null"),
            )
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text());
        assert_eq!(
            violations(&reply.json()),
            [("body".to_owned(), "must not be null".to_owned())]
        );
        assert!(!server.library.called("UpdateBook"));
        // An empty `updateMask=` is no mask: PUT still replaces everything.
        let reply = server
            .send(
                proto,
                req("PUT", "/v1/shelves/1/books/dune?updateMask=")
                    .json(&json!({"title": "Replaced"})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert_eq!(
            server
                .library
                .last::<pb::UpdateBookRequest>("UpdateBook")
                .update_mask,
            mask(&["*"])
        );
    }
}
