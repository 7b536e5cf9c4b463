//! The use cases, one method per operation, for every transport: a thin facade over the
//! resource core.
//!
//! Creates, reads, updates, deletes and undeletes of customers, companies and notes are the
//! core's generic write path ([`crate::core::write`]) applied to the resource declarations
//! in [`crate::resources`]; lists page through [`crate::core::list`]. What is left here is
//! what only one resource does: the customer's batch get, its FULL view (the business
//! registry) and its purge after retention; [`privacy`], the data-subject rights (erasure,
//! export); [`duplicates`], duplicate detection.
//! It knows nothing of tonic, HTTP, JSON or SQL.

pub mod api_keys;
pub mod companies;
pub mod deadline;
pub mod duplicates;
pub mod error;
pub mod events;
pub mod export;
pub mod import;

pub mod merge;
pub mod notes;
pub mod page_token;
pub mod privacy;
pub mod watches;

use crate::domain::names::ResourceName as _;
use std::{sync::Arc, time::Duration};

pub use self::error::{Error, Result};
use self::{error::reason, events::EventLog, page_token::PageTokens};
use crate::{
    core::{
        coalesce::Gates,
        list,
        store::{Repository, Store, Transact},
        write::{self, Origin, Writer, collect},
    },
    db::{self, Pool, customers::Cursor, store::PgStore},
    domain::{
        Violations,
        customer::Customer,
        event::EventType,
        filter::CustomerField,
        legacy, names,
        names::{CompanyName, CustomerName},
        order_by::CustomerOrder,
    },
    resources::Resource,
};

/// The actor of the events of purges, which no caller makes.
const PURGE_ACTOR: &str = "system:retention";

pub use crate::core::list::{DEFAULT_PAGE_SIZE, ListRequest, MAX_PAGE_SIZE, Page};
/// Most names in one BatchGetCustomers.
pub const MAX_BATCH_GET: usize = 1000;
/// Customers BatchGetCustomers reads per statement.
const BATCH_GET_CHUNK: usize = 100;

/// The use cases over a store (PostgreSQL in production, maps in unit tests).
#[derive(Debug, Clone)]
pub struct CustomerService<S = PgStore> {
    writer: Writer<S>,
    page_tokens: PageTokens,
    registry: crate::registry::RegistryClient,
}

impl CustomerService<PgStore> {
    /// A service over `pool`, binding page tokens with `page_tokens`.
    pub fn new(pool: Pool, page_tokens: PageTokens) -> Self {
        let events = EventLog::new(pool.clone(), page_tokens.clone());
        Self::over(PgStore::new(pool, events), page_tokens)
    }

    /// How long a watch stays open through a database outage (default 30 s).
    pub fn with_watch_outage_tolerance(self, tolerance: Duration) -> Self {
        self.events().set_watch_outage_tolerance(tolerance);
        self
    }

    /// The event log every change of this service is recorded in.
    pub fn events(&self) -> &EventLog {
        self.writer.store.events()
    }

    fn pool(&self) -> &Pool {
        self.writer.store.pool()
    }

    /// How long pool checkouts waited (for metrics).
    pub fn pool_wait(&self) -> prometheus_client::metrics::histogram::Histogram {
        self.pool().wait_histogram()
    }

    /// Each shared-read gate's resource, reads queued now and reads answered by another
    /// read's statement so far (for metrics).
    pub fn read_gates(&self) -> [(&'static str, usize, u64); 2] {
        self.writer.gates.stats()
    }

    /// Business-registry requests by outcome (none without a registry).
    pub fn registry_outcomes(
        &self,
    ) -> Option<
        prometheus_client::metrics::family::Family<
            crate::registry::Outcome,
            prometheus_client::metrics::counter::Counter,
        >,
    > {
        self.registry.outcomes()
    }

    /// The connections the pool holds and how many of them are idle (for metrics).
    pub fn pool_state(&self) -> (u32, u32) {
        let state = self.pool().state();
        (state.connections, state.idle_connections)
    }

    /// Whether the database answers (for health checks), asked on a connection user
    /// traffic cannot hold up (`db::Pool::ping`).
    pub async fn ping(&self) -> Result<()> {
        self.pool().ping().await.map_err(|error| {
            tracing::debug!(%error, "database ping failed");
            Error::database_unavailable()
        })
    }

    /// Forgets request ids older than `ttl`, and the operations (imports, whose request id
    /// names them) that stopped moving that long ago; how many of both.
    pub async fn purge_request_ids(&self, ttl: Duration) -> Result<usize> {
        self.writer
            .store
            .read(async move |conn| {
                let request_ids = db::request_ids::purge(conn, ttl).await?;
                let running = import::State::Running as i16;
                Ok(request_ids + db::operations::purge(conn, ttl, running).await?)
            })
            .await
    }

    /// Purges (deletes for good, with their notes) up to `batch` customers whose retention
    /// after deletion has passed, recording a `CustomerPurged` event for each that carries
    /// no personal data and erasing that data from their earlier events and their notes'
    /// events; the number purged. Instances share the work: rows another purger holds are
    /// skipped.
    pub async fn purge_expired(&self, batch: i64) -> Result<usize> {
        let Some(after) = self.writer.retention else {
            return Ok(0);
        };
        self.writer
            .store
            .write(async move |conn| {
                let rows = db::customers::lock_expired(conn, after, batch).await?;
                let purged_count = rows.len();
                let origin = Origin {
                    actor: PURGE_ACTOR.to_owned(),
                    request_id: None,
                };
                for row in rows {
                    db::notes::delete_all_of(conn, row.id).await?;
                    db::customers::delete_for_good(conn, row.id).await?;
                    let purged = Customer::try_from(row)?.purged();
                    write::record(conn, EventType::CustomerPurged, &purged, None, &origin).await?;
                    // Its history keeps what happened, not who it was; its stored
                    // replays keep that a request ran, not what it answered.
                    db::events::scrub_customer(conn, &purged).await?;
                    db::request_ids::erase_customer(conn, purged.stored.id).await?;
                    // Merge records naming it hold its data and can no longer be undone.
                    db::merges::forget_customer(conn, purged.stored.id).await?;
                }
                Ok(purged_count)
            })
            .await
    }

    /// Returns the named customers in request order; NOT_FOUND if any is missing.
    pub async fn batch_get(&self, names: &[String]) -> Result<Vec<crate::pb::Customer>> {
        let mut violations = Violations::new();
        if names.is_empty() {
            violations.add("names", "is required: list at least one customer name");
        } else if names.len() > MAX_BATCH_GET {
            violations.add(
                "names",
                format!("at most {MAX_BATCH_GET} names, got {}", names.len()),
            );
            return Err(violations.into());
        }
        let parsed: Vec<CustomerName> = names
            .iter()
            .enumerate()
            .filter_map(|(i, name)| {
                collect(
                    &mut violations,
                    CustomerName::parse(&format!("names[{i}]"), name),
                )
            })
            .collect();
        // A name asked twice is refused: answering it twice lets a 48 KB request of one
        // name a thousand times build a response a thousand customers large.
        let mut first = std::collections::HashMap::with_capacity(parsed.len());
        for (i, name) in names.iter().enumerate() {
            let Ok(id) = CustomerName::parse("names", name).map(|name| name.id()) else {
                continue;
            };
            if let Some(&earlier) = first.get(&id) {
                violations.add(
                    format!("names[{i}]"),
                    format!("repeats names[{earlier}]; list each customer once"),
                );
            } else {
                first.insert(id, i);
            }
        }
        let parsed = violations.into_result(parsed)?;
        // Read in chunks, counting the answer's bytes as it grows: a batch of large customers
        // is refused once it passes the page budget, before the rest is read or encoded.
        let budget = self.page_tokens.page_bytes();
        let mut by_id = std::collections::HashMap::with_capacity(parsed.len());
        let mut bytes = 0_usize;
        for chunk in parsed.chunks(BATCH_GET_CHUNK) {
            let found = self
                .writer
                .store
                .read(async move |conn| Repository::<Customer>::find_many(conn, chunk).await)
                .await?;
            for customer in found {
                let customer = customer.with_retention(self.writer.retention);
                let id = customer.stored.id;
                let customer = customer.to_message();
                bytes = bytes.saturating_add(list::entry_bytes(&customer));
                if bytes > budget {
                    return Err(Error::invalid_field(
                        reason::RESPONSE_TOO_LARGE,
                        "names",
                        format!(
                            "the customers named are more than one response holds \
                             ({budget} bytes, MAX_RESPONSE_PAGE_BYTES): ask for fewer at a time"
                        ),
                    ));
                }
                by_id.insert(id, customer);
            }
        }
        // Request order, as AIP-231 asks.
        parsed
            .iter()
            .map(|name| {
                by_id
                    .remove(&name.id())
                    .ok_or_else(|| Error::customer_not_found(name))
            })
            .collect()
    }

    /// One page of a customer's events, or every customer's (`customers/-`).
    pub async fn list_events(
        &self,
        request: &ListRequest,
    ) -> Result<Page<crate::domain::event::Event>> {
        self.events().list(request).await
    }

    /// One page of customers matching the filter, in the requested order; `parent`
    /// (`companies/{id}`) keeps that company's customers only.
    pub async fn list(&self, request: &ListRequest) -> Result<Page<crate::pb::Customer>> {
        tracing::debug!(filter = %request.filter, order_by = %request.order_by, "listing customers");
        let mut violations = Violations::new();
        let parent = match request.parent.as_str() {
            "" => None,
            parent => collect(&mut violations, CompanyName::parse("parent", parent)),
        };
        // The v1 fingerprint text (the previous version's `Debug` output), so tokens it issued
        // stay valid; tokens of unrestricted lists keep their pre-`parent` fingerprint.
        let plan = list::plan::<CustomerField, CustomerOrder>(
            &self.page_tokens,
            request,
            violations,
            |filter, order, deleted| {
                let filter = legacy::legacy_debug_filter(filter);
                let order = legacy::legacy_debug_order(order);
                let parent = parent.map(|parent| parent.to_string());
                let mut parts = vec![filter.as_str(), order.as_str(), deleted];
                parts.extend(parent.as_deref());
                PageTokens::query_fingerprint(&parts)
            },
        )?;
        let plan = &plan;
        let rows = self
            .writer
            .store
            .read(async move |conn| {
                // The customers of a company that does not exist are not an empty list
                // (AIP-132).
                if let Some(parent) = parent
                    && db::companies::find(conn, parent.id()).await?.is_none()
                {
                    return Err(Error::not_found(names::COMPANY_TYPE, parent));
                }
                let company = parent.map(|parent| parent.to_string());
                Ok(db::customers::list(conn, &plan.query(), company.as_deref()).await?)
            })
            .await?;
        plan.finish(rows, &self.page_tokens, Cursor::after, |row| {
            Ok(Customer::try_from(row)?.with_retention(self.writer.retention))
        })
    }

    /// GetCustomer with the FULL view: the customer and its business as the registry reports
    /// it — none when the customer has no business id or the registry does not know it. A
    /// registry that cannot answer fails the call (UNAVAILABLE, with a retry delay): the
    /// caller asked for the registry's data and can fall back to the BASIC view.
    pub async fn get_full(
        &self,
        name: &str,
    ) -> Result<(Customer, Option<crate::registry::BusinessInfo>)> {
        let customer = self.writer.get::<Customer>(name).await?;
        let Some(business_id) = customer.data.business_id.clone() else {
            return Ok((customer, None));
        };
        // Boxed: the registry call's future (HTTP client, retries, breaker, span) is large, and
        // inline it would size every GetCustomer's future, copied on each call whatever the view.
        match Box::pin(self.registry.lookup(&business_id)).await {
            Ok(info) => Ok((customer, Some(info))),
            Err(crate::registry::RegistryError::NotFound) => Ok((customer, None)),
            Err(error) => Err(error.into_service_error(&business_id)),
        }
    }
}

impl<S> CustomerService<S>
where
    S: Transact<<S as Store>::Conn>,
{
    /// A service over `store`.
    pub fn over(store: S, page_tokens: PageTokens) -> Self {
        Self {
            writer: Writer {
                store,
                retention: None,
                gates: Arc::default(),
            },
            page_tokens,
            registry: crate::registry::RegistryClient::disabled(),
        }
    }

    /// The write path of every resource: create, get, update, delete and undelete of
    /// customers, companies and notes ([`Writer`]).
    pub fn writer(&self) -> &Writer<S> {
        &self.writer
    }

    /// This service with at most `lanes` reads of a resource type running at once, the
    /// rest sharing statements (`core::coalesce`).
    pub fn with_read_lanes(mut self, lanes: u32) -> Self {
        self.writer.gates = Arc::new(Gates::new(lanes));
        self
    }

    /// This service with soft-deleted customers purged `after` their deletion (AIP-164);
    /// `None` keeps them for ever.
    pub fn with_purge_after(mut self, after: Option<Duration>) -> Self {
        self.writer.retention = after;
        self
    }

    /// This service with business-info lookups answered by `registry`.
    pub fn with_registry(mut self, registry: crate::registry::RegistryClient) -> Self {
        self.registry = registry;
        self
    }

    /// The business named `businesses/{business_id}`, from the external registry (cached).
    pub async fn business_info(&self, name: &str) -> Result<crate::registry::BusinessInfo> {
        let Some(business_id) = name.strip_prefix("businesses/") else {
            return Err(Error::invalid_field(
                reason::INVALID_FIELDS,
                "name",
                "must be businesses/{business_id}",
            ));
        };
        if let Err(description) = crate::domain::customer::check_business_id(business_id) {
            return Err(Error::invalid_field(
                reason::INVALID_FIELDS,
                "name",
                description,
            ));
        }
        self.registry
            .lookup(business_id)
            .await
            .map_err(|error| error.into_service_error(business_id))
    }
}

/// A programming error that validation makes impossible; reported as INTERNAL, never a panic.
#[derive(Debug, thiserror::Error)]
#[error("unreachable: {0}")]
pub(crate) struct Unreachable(pub(crate) &'static str);
