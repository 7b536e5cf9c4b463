//! Enforcement: every call to a protected gRPC service is authenticated and its scope checked
//! before the service sees it. Missing or invalid credentials answer UNAUTHENTICATED with a
//! `www-authenticate` header (401 on REST); valid credentials without the scope answer
//! PERMISSION_DENIED naming the scope (403). The caller becomes a [`Principal`] request
//! extension, which the adapter passes on as the actor of writes.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use http::{Request, Response};
use tonic::{Status, body::Body, metadata::MetadataValue, server::NamedService};
use tower::{Layer, Service};

use super::{AuthError, Authenticator, Principal, limits::RateLimits, scopes};

/// Wraps a gRPC service with [`Auth`].
#[derive(Debug, Clone)]
pub struct AuthLayer {
    authenticator: Authenticator,
    rate_limits: Option<Arc<RateLimits>>,
    scope: Option<&'static str>,
}

impl AuthLayer {
    /// Checks calls with `authenticator` against the scope table, then each caller's
    /// `rate_limits`.
    pub fn new(authenticator: Authenticator, rate_limits: Option<RateLimits>) -> Self {
        Self {
            authenticator,
            rate_limits: rate_limits.map(Arc::new),
            scope: None,
        }
    }

    /// Requires `scope` for every method of the wrapped service (for services outside the
    /// table, such as reflection when it is configured to be protected).
    pub fn requiring(authenticator: Authenticator, scope: &'static str) -> Self {
        Self {
            authenticator,
            rate_limits: None,
            scope: Some(scope),
        }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Auth<S> {
        Auth {
            inner,
            authenticator: self.authenticator.clone(),
            rate_limits: self.rate_limits.clone(),
            scope: self.scope,
        }
    }
}

/// A gRPC service behind authentication and the scope table.
#[derive(Debug, Clone)]
pub struct Auth<S> {
    inner: S,
    authenticator: Authenticator,
    rate_limits: Option<Arc<RateLimits>>,
    scope: Option<&'static str>,
}

impl<S: NamedService> NamedService for Auth<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<Request<B>> for Auth<S>
where
    S: Service<Request<B>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // The readied service handles this call; a fresh clone waits for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let authenticator = self.authenticator.clone();
        let rate_limits = self.rate_limits.clone();
        let fixed_scope = self.scope;
        Box::pin(async move {
            let Some(scope) = fixed_scope.or_else(|| scopes::required(request.uri().path())) else {
                return Ok(
                    Status::permission_denied("this method is not available to any caller")
                        .into_http(),
                );
            };
            let principal = match authenticator.authenticate(request.headers()).await {
                Ok(principal) => principal,
                Err(error) => return Ok(unauthenticated(&error).into_http()),
            };
            if !principal.has(scope) {
                return Ok(forbidden(&principal, scope).into_http());
            }
            if let Some(limits) = &rate_limits
                && let Err(retry_after) = limits.check(&principal.subject)
            {
                return Ok(RateLimits::exceeded(retry_after).into_http());
            }
            request.extensions_mut().insert(principal);
            inner.call(request).await
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
