//! Business-registry enrichment: look up a business's legal name, registration status and
//! address by its business id, in an external registry's HTTP JSON API.
//!
//! The registry is someone else's service, reached over the network, and this one must stay
//! fast and correct when it is slow, down or wrong. [`RegistryClient::lookup`] therefore
//! wraps every request in:
//!
//! - **Validation first**: the id must have the shape of a customer's `business_id`
//!   ([`check_business_id`]); it is percent-encoded into the configured [`UrlTemplate`].
//! - **A cache** ([`cache`]): successful answers for `BUSINESS_REGISTRY_CACHE_TTL` (1 h),
//!   "no such business" for `BUSINESS_REGISTRY_NEGATIVE_CACHE_TTL` (1 min), at most
//!   `BUSINESS_REGISTRY_CACHE_SIZE` entries. Failures are never cached.
//! - **Coalescing**: concurrent lookups of one id share one registry request.
//! - **A circuit breaker** ([`breaker`]): after `BUSINESS_REGISTRY_BREAKER_THRESHOLD`
//!   consecutive failed requests the registry is not asked for
//!   `BUSINESS_REGISTRY_BREAKER_COOLDOWN`; lookups answer [`RegistryError::CircuitOpen`] at
//!   once; then one probe decides whether it closes again.
//! - **A timeout per attempt** (`BUSINESS_REGISTRY_TIMEOUT`, 2 s) and **bounded retries**
//!   (`BUSINESS_REGISTRY_RETRIES`, 2) with exponential backoff and jitter, only for
//!   timeouts, connection failures and 5xx answers; never for 4xx or malformed responses.
//! - **A strict contract** ([`contract`], `docs/business-registry.md`): the JSON response is
//!   mapped field by field into a [`BusinessInfo`]; anything else is
//!   [`RegistryError::Malformed`], logged by field path without quoting the response.
//!
//! Errors become service errors with [`RegistryError::into_service_error`] (NOT_FOUND,
//! UNAVAILABLE, FAILED_PRECONDITION when unconfigured). Logs never carry the business id,
//! the registry's answer or its query string (which may hold an API key).
//!
//! A [`RegistryClient`] is cheap to clone and always exists: [`RegistryClient::disabled`]
//! answers [`RegistryError::NotConfigured`], so callers need no `Option`.

pub mod breaker;
pub mod cache;
pub mod clock;
pub mod contract;
pub mod error;
pub mod template;

#[cfg(test)]
mod tests;

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use chrono::Utc;
use http::{HeaderMap, HeaderValue, Uri, header};
use prometheus_client::metrics::{counter::Counter, family::Family};
use tokio::sync::OnceCell;

pub use self::{
    breaker::BreakerState,
    clock::{Clock, ManualClock, SystemClock},
    contract::{BusinessInfo, RegistrationStatus},
    error::{BUSINESS_TYPE, RegistryError, business_name},
    template::UrlTemplate,
};
use self::{breaker::CircuitBreaker, cache::TtlCache};
pub use crate::domain::customer::check_business_id;
use crate::http_client::{HttpClient, HttpError};

/// Largest registry response body read; a larger one is malformed.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// Upper bound of one backoff delay between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How to reach the registry and how hard to try. [`RegistryConfig::new`] gives the defaults
/// of the `BUSINESS_REGISTRY_*` settings.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// The URL template (`BUSINESS_REGISTRY_URL`).
    pub url: UrlTemplate,
    /// The `source` reported with every answer; default: the URL's host
    /// (`BUSINESS_REGISTRY_NAME`).
    pub name: Option<String>,
    /// Sent as `Authorization: Bearer …` when set (`BUSINESS_REGISTRY_TOKEN`).
    pub token: Option<crate::config::Secret>,
    /// Bound on one attempt: connect, TLS, request and the whole body (2 s).
    pub timeout: Duration,
    /// Further attempts after a retryable failure (2).
    pub retries: u32,
    /// First backoff delay; it doubles per retry, with jitter, capped at 5 s (100 ms).
    pub retry_backoff: Duration,
    /// Consecutive failed requests that open the circuit breaker (5).
    pub breaker_threshold: u32,
    /// How long an open breaker refuses calls before one probe (30 s).
    pub breaker_cooldown: Duration,
    /// How long a successful answer is served from the cache; zero disables (1 h).
    pub cache_ttl: Duration,
    /// How long "no such business" is served from the cache; zero disables (1 min).
    pub negative_cache_ttl: Duration,
    /// Most cached answers (10,000).
    pub cache_capacity: usize,
}

impl RegistryConfig {
    /// The defaults for `url`.
    pub fn new(url: UrlTemplate) -> Self {
        Self {
            url,
            name: None,
            token: None,
            timeout: Duration::from_secs(2),
            retries: 2,
            retry_backoff: Duration::from_millis(100),
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_secs(30),
            cache_ttl: Duration::from_secs(3600),
            negative_cache_ttl: Duration::from_secs(60),
            cache_capacity: 10_000,
        }
    }
}

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RegistrySetupError {
    /// The TLS configuration could not be built.
    #[error("business registry client: {0}")]
    Http(#[from] HttpError),
    /// The token cannot be sent in an HTTP header.
    #[error("BUSINESS_REGISTRY_TOKEN must be visible ASCII")]
    InvalidToken,
}

/// A cached answer: the business, or a definite "no such business".
#[derive(Debug, Clone)]
enum Cached {
    Found(Box<BusinessInfo>),
    NotFound,
}

/// One lookup in flight, shared by every concurrent caller asking for the same id.
type Flight = Arc<OnceCell<Result<BusinessInfo, RegistryError>>>;

/// Looks businesses up in the configured registry. Cheap to clone (shared state).
#[derive(Clone)]
pub struct RegistryClient {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    config: RegistryConfig,
    source: String,
    headers: HeaderMap,
    http: HttpClient,
    clock: Arc<dyn Clock>,
    breaker: CircuitBreaker,
    cache: Mutex<TtlCache<Cached>>,
    flights: Mutex<HashMap<String, Flight>>,
    /// Requests by outcome (`customer_api_registry_requests_total`).
    outcomes: Family<Outcome, Counter>,
}

impl fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            None => f.write_str("RegistryClient(disabled)"),
            Some(inner) => f
                .debug_struct("RegistryClient")
                .field("config", &inner.config)
                .field("breaker", &inner.breaker.state())
                .finish_non_exhaustive(),
        }
    }
}

impl RegistryClient {
    /// A client for an unconfigured registry: every lookup of a valid id answers
    /// [`RegistryError::NotConfigured`].
    pub fn disabled() -> Self {
        Self { inner: None }
    }

    /// The client for `config`, or [`RegistryClient::disabled`] for `None`.
    pub fn from_config(config: Option<RegistryConfig>) -> Result<Self, RegistrySetupError> {
        match config {
            Some(config) => Self::new(config),
            None => Ok(Self::disabled()),
        }
    }

    /// [`RegistryClient::from_config`] with its own HTTP client (e.g. one that trusts
    /// `EXTRA_CA_FILE`).
    pub fn from_config_with_http(
        config: Option<RegistryConfig>,
        http: HttpClient,
    ) -> Result<Self, RegistrySetupError> {
        match config {
            Some(config) => Self::with_parts(config, http, Arc::new(SystemClock)),
            None => Ok(Self::disabled()),
        }
    }

    /// A client for `config` on the system clock, trusting Mozilla's root certificates.
    pub fn new(config: RegistryConfig) -> Result<Self, RegistrySetupError> {
        Self::with_parts(config, HttpClient::new()?, Arc::new(SystemClock))
    }

    /// A client with its own HTTP client (e.g. trusting a private CA) and clock (tests move a
    /// [`ManualClock`] to expire cache entries and end breaker cool-downs).
    pub fn with_parts(
        config: RegistryConfig,
        http: HttpClient,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, RegistrySetupError> {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(
            header::USER_AGENT,
            HeaderValue::from_static(concat!("customer-api/", env!("CARGO_PKG_VERSION"))),
        );
        if let Some(token) = config.token.as_deref() {
            let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| RegistrySetupError::InvalidToken)?;
            value.set_sensitive(true);
            headers.insert(header::AUTHORIZATION, value);
        }
        let source = config
            .name
            .clone()
            .filter(|name| !name.trim().is_empty())
            .unwrap_or_else(|| config.url.host().to_owned());
        let breaker = CircuitBreaker::new(
            config.breaker_threshold,
            config.breaker_cooldown,
            clock.clone(),
        );
        let cache = Mutex::new(TtlCache::new(config.cache_capacity));
        Ok(Self {
            inner: Some(Arc::new(Inner {
                config,
                source,
                headers,
                http,
                clock,
                breaker,
                cache,
                flights: Mutex::new(HashMap::new()),
                outcomes: Family::default(),
            })),
        })
    }

    /// Whether a registry is configured.
    pub fn is_configured(&self) -> bool {
        self.inner.is_some()
    }

    /// The registry requests by outcome (`ok`, or [`RegistryError::kind`]; `circuit_open` for
    /// those the breaker refused); `None` when no registry is configured.
    pub fn outcomes(&self) -> Option<Family<Outcome, Counter>> {
        self.inner.as_ref().map(|inner| inner.outcomes.clone())
    }

    /// The circuit breaker's state; `None` when no registry is configured.
    pub fn breaker_state(&self) -> Option<BreakerState> {
        self.inner.as_ref().map(|inner| inner.breaker.state())
    }

    /// The business with `business_id`, from the cache or the registry.
    ///
    /// The id is checked first ([`RegistryError::InvalidId`], nothing is sent), then the
    /// configuration ([`RegistryError::NotConfigured`]). The future may be dropped at any
    /// point (a client deadline): a coalesced caller then takes the request over, and an
    /// abandoned breaker probe lets the next call probe.
    pub async fn lookup(&self, business_id: &str) -> Result<BusinessInfo, RegistryError> {
        validate_business_id(business_id)?;
        let inner = self.inner.as_ref().ok_or(RegistryError::NotConfigured)?;
        if let Some(hit) = inner.cached(business_id) {
            return hit;
        }
        let flight = lock(&inner.flights)
            .entry(business_id.to_owned())
            .or_default()
            .clone();
        let result = flight
            .get_or_init(|| inner.fetch_and_remember(business_id))
            .await
            .clone();
        let mut flights = lock(&inner.flights);
        if flights
            .get(business_id)
            .is_some_and(|current| Arc::ptr_eq(current, &flight))
        {
            flights.remove(business_id);
        }
        result
    }

    /// How many callers wait on the lookup of `business_id` now (tests of coalescing).
    #[cfg(test)]
    fn waiting(&self, business_id: &str) -> usize {
        self.inner
            .as_ref()
            .and_then(|inner| {
                lock(&inner.flights)
                    .get(business_id)
                    .map(|flight| Arc::strong_count(flight) - 1)
            })
            .unwrap_or(0)
    }
}

/// The checks of [`check_business_id`], plus: not empty, and not only dots (which a server
/// could read as a relative path segment).
fn validate_business_id(business_id: &str) -> Result<(), RegistryError> {
    if business_id.is_empty() {
        return Err(RegistryError::InvalidId("a business id is required".into()));
    }
    check_business_id(business_id).map_err(RegistryError::InvalidId)?;
    if business_id.chars().all(|c| c == '.') {
        return Err(RegistryError::InvalidId(
            "must contain a letter or a digit".into(),
        ));
    }
    Ok(())
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The client span of one registry request to `uri` (HTTP client conventions; the URL as
/// its template, without the business id), inside the traced operation if there is one.
fn request_span(template: &UrlTemplate, uri: &Uri) -> Option<crate::telemetry::span::Span> {
    use opentelemetry::KeyValue;
    crate::telemetry::span::child("GET", opentelemetry::trace::SpanKind::Client, || {
        let mut attributes = vec![
            KeyValue::new("http.request.method", "GET"),
            KeyValue::new("url.template", template.to_string()),
        ];
        if let Some(host) = uri.host() {
            attributes.push(KeyValue::new("server.address", host.to_owned()));
        }
        if let Some(port) = uri.port_u16() {
            attributes.push(KeyValue::new("server.port", i64::from(port)));
        }
        attributes
    })
}

/// The label of the registry request counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct Outcome {
    /// `ok`, or the [`RegistryError::kind`] of the failure.
    pub outcome: &'static str,
}

impl Inner {
    fn cached(&self, business_id: &str) -> Option<Result<BusinessInfo, RegistryError>> {
        let now = self.clock.now();
        lock(&self.cache)
            .get(business_id, now)
            .map(|cached| match cached {
                Cached::Found(info) => Ok(*info),
                Cached::NotFound => Err(RegistryError::NotFound),
            })
    }

    async fn fetch_and_remember(&self, business_id: &str) -> Result<BusinessInfo, RegistryError> {
        // A lookup that finished just before this flight began has filled the cache.
        if let Some(hit) = self.cached(business_id) {
            return hit;
        }
        let result = self.fetch(business_id).await;
        let (entry, ttl) = match &result {
            Ok(info) => (Cached::Found(Box::new(info.clone())), self.config.cache_ttl),
            Err(RegistryError::NotFound) => (Cached::NotFound, self.config.negative_cache_ttl),
            Err(_) => return result,
        };
        let now = self.clock.now();
        lock(&self.cache).insert(business_id, entry, now + ttl, now);
        result
    }

    /// Up to `1 + retries` attempts, each admitted by the breaker.
    async fn fetch(&self, business_id: &str) -> Result<BusinessInfo, RegistryError> {
        let uri = self
            .config
            .url
            .expand(business_id)
            .map_err(RegistryError::InvalidId)?;
        let mut last_error = None;
        for attempt in 0..=self.config.retries {
            if attempt > 0 {
                tokio::time::sleep(self.backoff(attempt)).await;
            }
            let permit = match self.breaker.acquire() {
                Ok(permit) => permit,
                // Opened by this lookup's own failures: report what actually went wrong.
                Err(retry_after) => {
                    self.count(RegistryError::CircuitOpen(retry_after).kind());
                    return Err(last_error.unwrap_or(RegistryError::CircuitOpen(retry_after)));
                }
            };
            let outcome = self.attempt(&uri, business_id).await;
            self.count(outcome.as_ref().map_or_else(RegistryError::kind, |_| "ok"));
            match &outcome {
                Err(error) if error.is_registry_failure() => permit.failure(),
                _ => permit.success(),
            }
            match outcome {
                Err(error) if error.is_retryable() && attempt < self.config.retries => {
                    tracing::debug!(attempt, %error, "business registry lookup failed; retrying");
                    last_error = Some(error);
                }
                Err(error) => {
                    if !matches!(error, RegistryError::NotFound) {
                        tracing::warn!(
                            attempts = attempt + 1,
                            registry = %self.source,
                            %error,
                            "business registry lookup failed"
                        );
                    }
                    return Err(error);
                }
                Ok(info) => return Ok(info),
            }
        }
        // The loop returns on its last attempt; this is only reached with zero attempts.
        Err(last_error.unwrap_or(RegistryError::Timeout(self.config.timeout)))
    }

    fn count(&self, outcome: &'static str) {
        self.outcomes.get_or_create(&Outcome { outcome }).inc();
    }

    /// One request, bounded by the per-attempt timeout.
    async fn attempt(&self, uri: &Uri, business_id: &str) -> Result<BusinessInfo, RegistryError> {
        let span = request_span(&self.config.url, uri);
        let traced;
        let headers = match &span {
            None => &self.headers,
            Some(span) => {
                // The registry continues the trace of the call that asked.
                let mut headers = self.headers.clone();
                crate::telemetry::inject(&crate::telemetry::span::context_of(span), &mut headers);
                traced = headers;
                &traced
            }
        };
        let outcome = self.exchange(uri, headers, business_id).await;
        if let Some(mut span) = span {
            use opentelemetry::{KeyValue, trace::Span as _};
            if let Some(status) = outcome.1 {
                span.set_attribute(KeyValue::new(
                    "http.response.status_code",
                    i64::from(status),
                ));
            }
            if let Err(error) = &outcome.0
                && error.is_registry_failure()
            {
                span.set_status(opentelemetry::trace::Status::error(""));
                span.set_attribute(KeyValue::new("error.type", error.kind()));
            }
            span.end();
        }
        outcome.0
    }

    /// One request and its answer (and the HTTP status, if one came).
    async fn exchange(
        &self,
        uri: &Uri,
        headers: &HeaderMap,
        business_id: &str,
    ) -> (Result<BusinessInfo, RegistryError>, Option<u16>) {
        let request = self.http.get(uri, headers, MAX_RESPONSE_BYTES);
        let response = match tokio::time::timeout(self.config.timeout, request).await {
            Err(_) => return (Err(RegistryError::Timeout(self.config.timeout)), None),
            Ok(Err(HttpError::BodyTooLarge(limit))) => {
                let error = RegistryError::Malformed(format!("the body exceeds {limit} bytes"));
                return (Err(error), Some(200));
            }
            Ok(Err(error)) => return (Err(RegistryError::Connection(error.to_string())), None),
            Ok(Ok(response)) => response,
        };
        let status = response.status.as_u16();
        let result = match status {
            200..=299 => contract::parse(&response.body, business_id, &self.source, Utc::now())
                .map_err(RegistryError::Malformed),
            404 | 410 => Err(RegistryError::NotFound),
            429 | 500..=599 => Err(RegistryError::Status(status)),
            _ => Err(RegistryError::Rejected(status)),
        };
        (result, Some(status))
    }

    /// Delay before retry `attempt` (1-based): `retry_backoff × 2^(attempt-1)`, capped, with
    /// "equal jitter" (half fixed, half random) so that callers do not retry in lockstep.
    fn backoff(&self, attempt: u32) -> Duration {
        let exponential = self
            .config
            .retry_backoff
            .saturating_mul(1 << (attempt - 1).min(16))
            .min(MAX_BACKOFF);
        let half = exponential / 2;
        let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        let jitter = match (getrandom::u64(), nanos) {
            (Ok(random), 1..) => Duration::from_nanos(random % nanos),
            _ => Duration::ZERO,
        };
        half + jitter
    }
}
