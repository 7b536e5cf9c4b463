//! Client deadlines (`grpc-timeout`) enforced as DEADLINE_EXCEEDED.
//!
//! The deadline a client sends bounds the whole call on the server: when it passes, the
//! handler future is dropped and the client gets DEADLINE_EXCEEDED, the code gRPC clients
//! expect (tonic's own timeout layer answers CANCELLED). Dropping the handler is safe because
//! writes run on spawned tasks (see `service`): a transaction already under way completes
//! or rolls back on its own. The call runs [`within`](crate::service::deadline::within) its
//! deadline, so the database bounds its statements by the time left, and a read abandoned at
//! the deadline has its query cancelled (`db::checkout`).

use std::time::Duration;

use http::Request;
use tonic::Status;

use super::middleware::{Inner, Middleware, ResponseFuture};

/// Bounds each call of a gRPC service by the client's `grpc-timeout`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Deadline;

impl<S: Inner<B>, B> Middleware<S, B> for Deadline {
    fn call(&self, inner: &mut S, request: Request<B>) -> ResponseFuture<S::Error> {
        // A constant name: looking a header up by a `&str` parses and hashes the name first.
        const GRPC_TIMEOUT: http::HeaderName = http::HeaderName::from_static("grpc-timeout");
        let timeout = request
            .headers()
            .get(GRPC_TIMEOUT)
            .and_then(|value| value.to_str().ok())
            .and_then(parse_grpc_timeout);
        let deadline = timeout.map(|timeout| tokio::time::Instant::now() + timeout);
        let call = crate::service::deadline::within(deadline, inner.call(request));
        Box::pin(async move {
            match timeout {
                None => call.await,
                Some(timeout) => match tokio::time::timeout(timeout, call).await {
                    Ok(result) => result,
                    Err(_) => Ok(Status::deadline_exceeded(format!(
                        "the client's deadline of {timeout:?} passed before the call completed"
                    ))
                    .into_http()),
                },
            }
        })
    }
}

/// Parses `grpc-timeout`: at most 8 digits and a unit (H, M, S, m, u, n).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let unit = value.chars().last()?;
    let digits = &value[..value.len() - unit.len_utf8()];
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        'H' => Duration::from_secs(amount * 3600),
        'M' => Duration::from_secs(amount * 60),
        'S' => Duration::from_secs(amount),
        'm' => Duration::from_millis(amount),
        'u' => Duration::from_micros(amount),
        'n' => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_per_spec() {
        for (good, expected) in [
            ("1H", Duration::from_secs(3600)),
            ("250m", Duration::from_millis(250)),
            ("99999999n", Duration::from_nanos(99_999_999)),
            ("5S", Duration::from_secs(5)),
        ] {
            assert_eq!(parse_grpc_timeout(good), Some(expected), "{good}");
        }
        for bad in ["", "S", "123456789S", "10x", "-1S", "1.5S", "é"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad}");
        }
    }
}
