//! The three ways to call the service, as a client would.
//!
//! - gRPC: the tonic client generated from `proto/`, over `connections` HTTP/2 connections
//!   (one [`Channel`] each) shared by all workers, with a bearer token and a deadline on every
//!   call, as production clients send them.
//! - gRPC-web (`application/grpc-web+proto`) and REST/JSON: hyper's HTTP/1.1 client, one
//!   keep-alive connection per worker (how browsers and most REST clients use HTTP/1.1). The
//!   gRPC-web framing is done by hand: a 5-byte header per message, and the status in the
//!   headers or in a trailer frame.
//! - REST/JSON over HTTP/2 (cleartext, prior knowledge): hyper's HTTP/2 client over the same
//!   number of shared connections as gRPC, so that REST and gRPC are compared on one
//!   transport and one connection shape.

use std::{net::SocketAddr, time::Duration};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderValue, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1::SendRequest, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use tonic::{
    metadata::MetadataValue,
    transport::{Channel, Endpoint},
};

use crate::pb::customer_service_client::CustomerServiceClient;

/// The deadline every gRPC call carries (`grpc-timeout`).
pub const DEADLINE: Duration = Duration::from_secs(10);

/// What every client needs to reach the server.
#[derive(Debug, Clone)]
pub struct Target {
    /// Server address.
    pub addr: SocketAddr,
    /// `Bearer <token>`.
    pub authorization: HeaderValue,
}

impl Target {
    /// A target calling `addr` with `token`.
    pub fn new(addr: SocketAddr, token: &str) -> Result<Self, String> {
        let authorization = HeaderValue::try_from(format!("Bearer {token}"))
            .map_err(|_| "the token is not a valid header value".to_owned())?;
        Ok(Self {
            addr,
            authorization,
        })
    }
}

/// A gRPC client on one of the shared HTTP/2 connections.
#[derive(Clone)]
pub struct Grpc {
    client: CustomerServiceClient<Channel>,
    authorization: MetadataValue<tonic::metadata::Ascii>,
}

impl Grpc {
    /// Opens `connections` HTTP/2 connections; worker `i` should use `clients[i % len]`.
    pub async fn connect(target: &Target, connections: usize) -> Result<Vec<Self>, String> {
        let authorization = MetadataValue::try_from(target.authorization.as_bytes())
            .map_err(|e| format!("authorization metadata: {e}"))?;
        let mut clients = Vec::with_capacity(connections);
        for _ in 0..connections.max(1) {
            let channel = Endpoint::from_shared(format!("http://{}", target.addr))
                .map_err(|e| e.to_string())?
                .tcp_nodelay(true)
                .connect()
                .await
                .map_err(|e| format!("connect to {}: {e}", target.addr))?;
            clients.push(Self {
                client: CustomerServiceClient::new(channel),
                authorization: authorization.clone(),
            });
        }
        Ok(clients)
    }

    /// A request with the credentials and deadline.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", self.authorization.clone());
        request.set_timeout(DEADLINE);
        request
    }

    /// The generated client (cheap to clone; shares the connection).
    pub fn client(&mut self) -> &mut CustomerServiceClient<Channel> {
        &mut self.client
    }
}

/// How a failed gRPC call is counted: its code and the start of its message, with digits
/// blanked so that failures of one kind are counted together.
pub fn grpc_error(status: &tonic::Status) -> String {
    let message: String = status
        .message()
        .chars()
        .take(60)
        .map(|c| if c.is_ascii_digit() { '#' } else { c })
        .collect();
    format!("grpc {:?}: {message}", status.code())
}

/// One HTTP/1.1 keep-alive connection.
pub struct Http1 {
    target: Target,
    sender: SendRequest<Full<Bytes>>,
}

impl Http1 {
    /// Connects to the target.
    pub async fn connect(target: &Target) -> Result<Self, String> {
        let stream = tokio::net::TcpStream::connect(target.addr)
            .await
            .map_err(|e| format!("connect to {}: {e}", target.addr))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP/1.1 handshake: {e}"))?;
        tokio::spawn(connection);
        Ok(Self {
            target: target.clone(),
            sender,
        })
    }

    /// Sends `request` (adding host and credentials) and reads the whole response.
    pub async fn send(
        &mut self,
        mut request: Request<Full<Bytes>>,
    ) -> Result<(http::response::Parts, Bytes), String> {
        let headers = request.headers_mut();
        headers.insert(header::AUTHORIZATION, self.target.authorization.clone());
        if let Ok(host) = HeaderValue::try_from(self.target.addr.to_string()) {
            headers.insert(header::HOST, host);
        }
        if self.sender.is_closed() {
            *self = Self::connect(&self.target).await?;
        }
        self.sender
            .ready()
            .await
            .map_err(|e| format!("connection: {e}"))?;
        whole(self.sender.send_request(request).await).await
    }

    /// A gRPC-web call of `method` (`/customer.v1.CustomerService/GetCustomer`); the decoded
    /// response message.
    pub async fn grpc_web<Req: Message, Resp: Message + Default>(
        &mut self,
        method: &str,
        message: &Req,
    ) -> Result<Resp, String> {
        let mut body = BytesMut::with_capacity(5 + message.encoded_len());
        body.put_u8(0);
        body.put_u32(u32::try_from(message.encoded_len()).map_err(|e| e.to_string())?);
        message.encode(&mut body).map_err(|e| e.to_string())?;
        let request = Request::post(method)
            .header(header::CONTENT_TYPE, "application/grpc-web+proto")
            .header(header::ACCEPT, "application/grpc-web+proto")
            .header("x-grpc-web", "1")
            .header("grpc-timeout", "10S")
            .body(Full::new(body.freeze()))
            .map_err(|e| e.to_string())?;
        let (parts, body) = self.send(request).await?;
        if parts.status != StatusCode::OK {
            return Err(format!("http {}", parts.status.as_u16()));
        }
        decode_grpc_web(&parts.headers, body)
    }
}

/// A request stream on one of the shared HTTP/2 connections (cleartext, prior knowledge).
#[derive(Clone)]
pub struct Http2 {
    target: Target,
    sender: http2::SendRequest<Full<Bytes>>,
}

impl Http2 {
    /// Opens `connections` HTTP/2 connections; worker `i` should use `clients[i % len]`.
    pub async fn connect(target: &Target, connections: usize) -> Result<Vec<Self>, String> {
        let mut clients = Vec::with_capacity(connections);
        for _ in 0..connections.max(1) {
            let stream = tokio::net::TcpStream::connect(target.addr)
                .await
                .map_err(|e| format!("connect to {}: {e}", target.addr))?;
            stream.set_nodelay(true).map_err(|e| e.to_string())?;
            let (sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
            tokio::spawn(connection);
            clients.push(Self {
                target: target.clone(),
                sender,
            });
        }
        Ok(clients)
    }

    /// Sends `request` (a path-only URI; scheme, authority and credentials are added) and
    /// reads the whole response.
    pub async fn send(
        &mut self,
        mut request: Request<Full<Bytes>>,
    ) -> Result<(http::response::Parts, Bytes), String> {
        let uri = format!("http://{}{}", self.target.addr, request.uri());
        *request.uri_mut() = uri.parse().map_err(|e| format!("uri: {e}"))?;
        request
            .headers_mut()
            .insert(header::AUTHORIZATION, self.target.authorization.clone());
        self.sender
            .ready()
            .await
            .map_err(|e| format!("connection: {e}"))?;
        whole(self.sender.send_request(request).await).await
    }
}

/// A sent request's response, read to its end.
async fn whole(
    response: hyper::Result<http::Response<hyper::body::Incoming>>,
) -> Result<(http::response::Parts, Bytes), String> {
    let (parts, body) = response.map_err(|e| format!("send: {e}"))?.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| format!("response body: {e}"))?
        .to_bytes();
    Ok((parts, body))
}

/// The message of a gRPC-web response body, or the failure its status names. A
/// trailers-only response carries `grpc-status` in the headers; otherwise it is in the
/// trailer frame (flag 0x80) after the data frame.
fn decode_grpc_web<Resp: Message + Default>(
    headers: &http::HeaderMap,
    mut body: Bytes,
) -> Result<Resp, String> {
    if let Some(status) = headers.get("grpc-status")
        && status != "0"
    {
        return Err(format!("grpc status {}", status.to_str().unwrap_or("?")));
    }
    let mut message = None;
    let mut status = None;
    while body.remaining() >= 5 {
        let flags = body.get_u8();
        let length = body.get_u32() as usize;
        if body.remaining() < length {
            return Err("truncated gRPC-web frame".into());
        }
        let frame = body.split_to(length);
        if flags & 0x80 == 0 {
            message = Some(Resp::decode(frame).map_err(|e| format!("decode: {e}"))?);
        } else {
            let trailers = String::from_utf8_lossy(&frame).into_owned();
            status = trailers.lines().find_map(|line| {
                line.trim()
                    .strip_prefix("grpc-status:")
                    .map(|code| code.trim().to_owned())
            });
        }
    }
    match status.as_deref() {
        Some("0") | None if message.is_some() => message.ok_or_else(String::new),
        Some(code) => Err(format!("grpc status {code}")),
        None => Err("no message and no status".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb;

    fn frame(flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![flags];
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn grpc_web_bodies_decode_to_message_or_status() {
        let customer = pb::Customer {
            given_name: "Ada".into(),
            ..Default::default()
        };
        let mut body = frame(0, &customer.encode_to_vec());
        body.extend(frame(0x80, b"grpc-status:0\r\ngrpc-message:\r\n"));
        let decoded: pb::Customer =
            decode_grpc_web(&http::HeaderMap::new(), Bytes::from(body)).unwrap();
        assert_eq!(decoded.given_name, "Ada");

        let failed = frame(0x80, b"grpc-status:5\r\ngrpc-message:not found\r\n");
        let error = decode_grpc_web::<pb::Customer>(&http::HeaderMap::new(), Bytes::from(failed))
            .unwrap_err();
        assert_eq!(error, "grpc status 5");

        let mut headers = http::HeaderMap::new();
        headers.insert("grpc-status", HeaderValue::from_static("16"));
        let error = decode_grpc_web::<pb::Customer>(&headers, Bytes::new()).unwrap_err();
        assert_eq!(error, "grpc status 16");
    }
}
