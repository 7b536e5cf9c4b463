//! The content types a gRPC path speaks, and a clear refusal of every other.
//!
//! tonic answers any request on `/{package.Service}/{method}` as gRPC whatever its content
//! type (`text/plain` included, and `application/grpc+json` is decoded as protobuf), and the
//! gRPC-web layer answers what it does not know over HTTP/1.1 with an empty 400. So before
//! either, [`GrpcContentType`] lets through gRPC (`application/grpc[+proto]`) and gRPC-web
//! (`application/grpc-web[-text][+proto]`) and answers everything else with 415 Unsupported
//! Media Type and an AIP-193 JSON body naming what is accepted — the same error the REST
//! gateway gives a body that is not JSON.

use std::{
    convert::Infallible,
    task::{Context, Poll},
};

use futures_util::{TryFutureExt, future};
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

/// A gRPC service that refuses requests of other content types (see the module docs).
#[derive(Debug, Clone)]
pub struct GrpcContentType<S>(pub S);

/// The response body: the inner service's, or the refusal's JSON.
pub type Body<B> = http_body_util::Either<B, axum::body::Body>;

type Accepted<B> = fn(Response<B>) -> Response<Body<B>>;

impl<S, B, RB> Service<Request<B>> for GrpcContentType<S>
where
    S: Service<Request<B>, Response = Response<RB>, Error = Infallible>,
{
    type Response = Response<Body<RB>>;
    type Error = Infallible;
    type Future = future::Either<
        future::MapOk<S::Future, Accepted<RB>>,
        future::Ready<Result<Self::Response, Infallible>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        match refusal(request.headers(), request.uri().path()) {
            None => {
                let accepted: Accepted<RB> = |response| response.map(http_body_util::Either::Left);
                future::Either::Left(self.0.call(request).map_ok(accepted))
            }
            Some(response) => future::Either::Right(future::ready(Ok(
                response.map(http_body_util::Either::Right)
            ))),
        }
    }
}

/// The 415 answer to a request whose content type a gRPC path does not speak, if it is one.
fn refusal(headers: &HeaderMap, path: &str) -> Option<Response<axum::body::Body>> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
    // Exactly (tonic and tonic-web take no parameters), but in any case.
    let essence = content_type
        .as_deref()
        .map(|text| text.trim().to_ascii_lowercase());
    if essence
        .as_deref()
        .is_some_and(|essence| ACCEPTED.contains(&essence))
    {
        return None;
    }
    let got = match &content_type {
        Some(text) => format!("`{}`", crate::domain::syntax::clip(text, 80)),
        None => "no content type".to_owned(),
    };
    let message = format!(
        "{got} is not supported on {path}: send gRPC (`application/grpc` or \
         `application/grpc+proto`) or gRPC-web (`application/grpc-web`, \
         `application/grpc-web-text`, optionally `+proto`); for JSON use the REST routes \
         described at /openapi.json"
    );
    Some(
        gateway::HttpError::with_status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            tonic::Code::InvalidArgument,
            "UNSUPPORTED_MEDIA_TYPE",
            message,
        )
        .into_response(),
    )
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
    fn grpc_and_grpc_web_pass_and_everything_else_is_415() {
        for accepted in [
            "application/grpc",
            "application/grpc+proto",
            "Application/GRPC-Web",
            "application/grpc-web-text+proto",
        ] {
            assert!(
                refusal(&with(Some(accepted)), "/s/m").is_none(),
                "{accepted}"
            );
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
            let response = refusal(&with(refused), "/s/m").unwrap();
            assert_eq!(
                response.status(),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{refused:?}"
            );
            assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        }
    }
}
