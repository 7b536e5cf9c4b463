//! The content types a gRPC path speaks, and a clear refusal of every other.
//!
//! tonic answers any request on `/{package.Service}/{method}` as gRPC whatever its content
//! type (`text/plain` included, and `application/grpc+json` is decoded as protobuf), and the
//! gRPC-web layer answers what it does not know over HTTP/1.1 with an empty 400. So before
//! either, [`GrpcContentType`] lets through gRPC (`application/grpc[+proto]`) and gRPC-web
//! (`application/grpc-web[-text][+proto]`), hands Connect requests (`GET`, or a `POST` of
//! `application/json`, `application/proto`, `application/connect+json|proto`) to the Connect
//! adapter where the service has one ([`gateway::connect`]), and answers everything else with
//! 415 Unsupported Media Type and an AIP-193 JSON body naming what is accepted — the same
//! error the REST gateway gives a body that is not JSON.

use std::{
    convert::Infallible,
    task::{Context, Poll},
};

use bytes::Bytes;
use futures_util::{TryFutureExt, future};
use gateway::connect::Connect;
use http::{HeaderMap, Request, Response, StatusCode, header};
use tower::Service;

/// The content types (lowercase) a gRPC path serves.
pub const ACCEPTED: [&str; 6] = [
    "application/grpc",
    "application/grpc+proto",
    "application/grpc-web",
    "application/grpc-web+proto",
    "application/grpc-web-text",
    "application/grpc-web-text+proto",
];

/// A gRPC service that refuses requests of other content types, or passes Connect requests
/// to `connect` (see the module docs).
#[derive(Debug, Clone)]
pub struct GrpcContentType<S> {
    grpc: S,
    connect: Option<Connect>,
}

impl<S> GrpcContentType<S> {
    /// gRPC and gRPC-web only.
    pub fn new(grpc: S) -> Self {
        Self {
            grpc,
            connect: None,
        }
    }

    /// gRPC, gRPC-web and Connect.
    pub fn with_connect(grpc: S, connect: Connect) -> Self {
        Self {
            grpc,
            connect: Some(connect),
        }
    }
}

/// The response body: the inner service's, or the refusal's (or Connect's).
pub type Body<B> = http_body_util::Either<B, axum::body::Body>;

type Accepted<B> = fn(Response<B>) -> Response<Body<B>>;

type Other<B> = future::BoxFuture<'static, Result<Response<Body<B>>, Infallible>>;

impl<S, B, RB> Service<Request<B>> for GrpcContentType<S>
where
    S: Service<Request<B>, Response = Response<RB>, Error = Infallible>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    RB: Send + 'static,
{
    type Response = Response<Body<RB>>;
    type Error = Infallible;
    type Future = future::Either<future::MapOk<S::Future, Accepted<RB>>, Other<RB>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.grpc.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if is_grpc(request.headers()) {
            let accepted: Accepted<RB> = |response| response.map(http_body_util::Either::Left);
            return future::Either::Left(self.grpc.call(request).map_ok(accepted));
        }
        if let Some(connect) = &mut self.connect
            && gateway::connect::is_connect(request.method(), request.headers())
        {
            let call = connect.call(request);
            return future::Either::Right(Box::pin(async move {
                let response = call.await?;
                Ok(response.map(http_body_util::Either::Right))
            }));
        }
        let response = refusal(
            request.headers(),
            request.uri().path(),
            self.connect.is_some(),
        );
        future::Either::Right(Box::pin(future::ready(Ok(
            response.map(http_body_util::Either::Right)
        ))))
    }
}

/// Whether a request is gRPC or gRPC-web (exactly: tonic and tonic-web take no parameters,
/// but in any case).
fn is_grpc(headers: &HeaderMap) -> bool {
    // Compared in place (every gRPC call asks): no lowercased copy.
    headers
        .get(header::CONTENT_TYPE)
        .map(|value| value.as_bytes().trim_ascii())
        .is_some_and(|essence| {
            ACCEPTED
                .iter()
                .any(|accepted| accepted.as_bytes().eq_ignore_ascii_case(essence))
        })
}

/// The 415 answer to a request whose content type a gRPC path does not speak; `connect`:
/// the path also serves the Connect protocol.
fn refusal(headers: &HeaderMap, path: &str, connect: bool) -> Response<axum::body::Body> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
    let got = match &content_type {
        Some(text) => format!("`{}`", crate::domain::syntax::clip(text, 80)),
        None => "no content type".to_owned(),
    };
    let connect = if connect {
        ", Connect (`application/json` or `application/proto` for unary methods, \
         `application/connect+json` or `application/connect+proto` for streams, `GET` for reads)"
    } else {
        ""
    };
    let message = format!(
        "{got} is not supported on {path}: send gRPC (`application/grpc` or \
         `application/grpc+proto`) or gRPC-web (`application/grpc-web`, \
         `application/grpc-web-text`, optionally `+proto`){connect}; for REST/JSON use the \
         routes described at /openapi.json"
    );
    gateway::HttpError::with_status(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        tonic::Code::InvalidArgument,
        "UNSUPPORTED_MEDIA_TYPE",
        message,
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(content_type: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(value) = content_type {
            headers.insert(header::CONTENT_TYPE, value.parse().unwrap());
        }
        headers
    }

    #[test]
    fn grpc_and_grpc_web_pass_and_everything_else_is_refused() {
        for accepted in [
            "application/grpc",
            "application/grpc+proto",
            "Application/GRPC-Web",
            "application/grpc-web-text+proto",
        ] {
            assert!(is_grpc(&with(Some(accepted))), "{accepted}");
        }
        for refused in [
            Some("text/plain"),
            Some("application/grpc+json"),
            Some("application/grpc-web+json"),
            Some("application/connect+proto"),
            Some("application/json"),
            Some("application/proto"),
            Some("application/grpc; charset=utf-8"),
            None,
        ] {
            assert!(!is_grpc(&with(refused)), "{refused:?}");
            let response = refusal(&with(refused), "/s/m", false);
            assert_eq!(
                response.status(),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{refused:?}"
            );
            assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        }
    }

    #[test]
    fn connect_content_types_go_to_connect_and_others_are_not() {
        let post = http::Method::POST;
        for connect in [
            "application/json",
            "application/json; charset=utf-8",
            "application/proto",
            "application/connect+json",
            "application/connect+proto",
        ] {
            assert!(
                gateway::connect::is_connect(&post, &with(Some(connect))),
                "{connect}"
            );
        }
        for other in [
            Some("text/plain"),
            Some("application/grpc+json"),
            Some("application/proto; charset=utf-8"),
            None,
        ] {
            assert!(
                !gateway::connect::is_connect(&post, &with(other)),
                "{other:?}"
            );
        }
        assert!(gateway::connect::is_connect(
            &http::Method::GET,
            &with(None)
        ));
    }
}
