//! Enforcement: every call to a protected gRPC service is authenticated and its scope checked
//! before the service sees it. Missing or invalid credentials answer UNAUTHENTICATED with a
//! `www-authenticate` header (401 on REST); valid credentials without the scope answer
//! PERMISSION_DENIED naming the scope (403). The caller becomes an `Arc<`[`Principal`]`>` request
//! extension, which the adapter passes on as the actor of writes.

use std::sync::Arc;

use http::Request;
use tonic::{Status, metadata::MetadataValue};

use super::{
    AuthError, Authenticator, Principal,
    limits::{CallerLimits, RateLimits},
    scopes,
};
use crate::{
    grpc::middleware::{Inner, Middleware, ResponseFuture},
    observe::RequestContext,
};

/// Puts a gRPC service behind authentication and the scope table.
///
/// Every call's future holds the checks: one shared reference, not a copy of each of their
/// handles (the authenticator's, the limits'), taken and given back on every call.
#[derive(Debug, Clone)]
pub struct Auth(Arc<Checks>);

/// What [`Auth`] checks calls against.
#[derive(Debug, Clone)]
struct Checks {
    authenticator: Authenticator,
    rate_limits: Option<Arc<RateLimits>>,
    scope: Option<&'static str>,
    callers: Option<CallerLimits>,
}

impl Auth {
    /// Checks calls with `authenticator` against the scope table, then each caller's
    /// `rate_limits`.
    pub fn new(authenticator: Authenticator, rate_limits: Option<RateLimits>) -> Self {
        Self(Arc::new(Checks {
            authenticator,
            rate_limits: rate_limits.map(Arc::new),
            scope: None,
            callers: None,
        }))
    }

    /// Also holds each caller to `callers`' share of calls in flight (RESOURCE_EXHAUSTED
    /// beyond it).
    pub fn with_caller_limits(self, callers: CallerLimits) -> Self {
        let mut checks = Arc::unwrap_or_clone(self.0);
        checks.callers = Some(callers);
        Self(Arc::new(checks))
    }

    /// Requires `scope` for every method of the wrapped service (for services outside the
    /// table, such as reflection when it is configured to be protected).
    pub fn requiring(authenticator: Authenticator, scope: &'static str) -> Self {
        Self(Arc::new(Checks {
            authenticator,
            rate_limits: None,
            scope: Some(scope),
            callers: None,
        }))
    }
}

impl<S: Inner<B>, B: Send + 'static> Middleware<S, B> for Auth {
    fn call(&self, inner: &mut S, mut request: Request<B>) -> ResponseFuture<S::Error> {
        // The readied service handles this call; a fresh clone waits for the next one.
        let clone = inner.clone();
        let mut inner = std::mem::replace(inner, clone);
        let checks = self.0.clone();
        Box::pin(async move {
            let Checks {
                authenticator,
                rate_limits,
                scope: fixed_scope,
                callers,
            } = &*checks;
            let scope = fixed_scope.or_else(|| scopes::required(request.uri().path()));
            // Who is calling is settled first: an anonymous caller learns nothing about
            // which methods exist.
            let principal = match authenticator.authenticate(request.headers()).await {
                Ok(principal) => principal,
                Err(error) => return Ok(unauthenticated(&error).into_http()),
            };
            let Some(scope) = scope else {
                return Ok(unimplemented(request.uri().path()).into_http());
            };
            if let Some(context) = RequestContext::of(&request) {
                context.set_caller(&principal.subject);
            }
            if !principal.has(scope) {
                return Ok(forbidden(&principal, scope).into_http());
            }
            if let Some(limits) = rate_limits
                && let Err(retry_after) = limits.check(&principal.subject)
            {
                return Ok(RateLimits::exceeded(retry_after).into_http());
            }
            let permit = match callers {
                None => None,
                Some(callers) => match callers.try_acquire(&principal.subject) {
                    Some(permit) => Some(permit),
                    None => return Ok(callers.exceeded("calls").into_http()),
                },
            };
            request.extensions_mut().insert(principal);
            let response = inner.call(request).await;
            drop(permit);
            response
        })
    }
}

fn unauthenticated(error: &AuthError) -> Status {
    if let AuthError::Unavailable(detail) = error {
        tracing::warn!(%detail, "credentials could not be checked");
        return Status::unavailable("credentials could not be checked, retry later");
    }
    let challenge = match error {
        AuthError::Missing => r#"Bearer realm="customer-api""#,
        _ => r#"Bearer realm="customer-api", error="invalid_token""#,
    };
    let mut status = Status::unauthenticated(error.to_string());
    status
        .metadata_mut()
        .insert("www-authenticate", MetadataValue::from_static(challenge));
    status
}

/// A method no service here has (the scope table denies by default).
fn unimplemented(path: &str) -> Status {
    let path: String = path.chars().take(200).collect();
    crate::grpc::status::transport_status(
        tonic::Code::Unimplemented,
        "UNIMPLEMENTED",
        format!("unknown method {path}"),
        None,
    )
}

fn forbidden(principal: &Principal, scope: &str) -> Status {
    tracing::info!(subject = %principal.subject, scope, "permission denied");
    let mut status = Status::permission_denied(format!("this call needs the `{scope}` scope"));
    if let Ok(value) =
        format!(r#"Bearer realm="customer-api", error="insufficient_scope", scope="{scope}""#)
            .parse()
    {
        status.metadata_mut().insert("www-authenticate", value);
    }
    status
}
