//! The use cases of customer management: one method per operation, for customers (here),
//! companies ([`companies`]) and notes ([`notes`]).
//!
//! This is where the business rules live, once, for every transport: validation,
//! optimistic concurrency (etags), idempotent retries (request ids), soft delete,
//! references between resources and pagination. It owns transactions and knows nothing of tonic, HTTP or JSON; the gRPC
//! adapter (and through it gRPC-web and REST) calls these methods with plain data.
//!
//! Writes run on a spawned task: once a write has started, a client that disconnects or
//! times out cannot cut its transaction short and leave a connection idle in transaction;
//! the write finishes (or rolls back) on its own and the connection returns clean.

pub mod companies;
pub mod error;
pub mod events;
pub mod notes;
pub mod page_token;

use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde::{Serialize, de::DeserializeOwned};
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub use self::error::{Error, Result};
use self::{
    error::reason,
    events::{EventLog, record},
    page_token::PageTokens,
};
use crate::{
    db::{
        Pool, companies as company_queries,
        customers::{self as queries, Cursor, ListQuery},
        models::{CustomerChanges, CustomerRow, NewCustomerRow},
        notes as notes_queries,
        request_ids::{self, Claim},
    },
    domain::{
        Violations,
        customer::{Customer, CustomerData, CustomerInput, PostalAddress, UpdateMask},
        event::EventType,
        filter, names,
        names::{COMPANY_TYPE, CUSTOMER_TYPE, CompanyName, CustomerName},
        order_by,
    },
    redact::mask_pii_owned,
};

/// The actor of the events of purges, which no caller makes.
const PURGE_ACTOR: &str = "system:retention";

/// Default `page_size` of ListCustomers.
pub const DEFAULT_PAGE_SIZE: i32 = 50;
/// Largest `page_size`; larger requests are lowered to it.
pub const MAX_PAGE_SIZE: i32 = 1000;
/// Most names in one BatchGetCustomers.
pub const MAX_BATCH_GET: usize = 1000;

/// A ListCustomers request.
#[derive(Debug, Clone, Default)]
pub struct ListRequest {
    /// Requested page size (0 = default).
    pub page_size: i32,
    /// Token from the previous page.
    pub page_token: String,
    /// AIP-160 filter.
    pub filter: String,
    /// AIP-132 ordering.
    pub order_by: String,
    /// Include soft-deleted customers.
    pub show_deleted: bool,
    /// `companies/{id}`: only that company's customers. Empty: every customer.
    pub parent: String,
}

/// One page of ListCustomers.
#[derive(Debug, Clone)]
pub struct Page {
    /// The customers, in the requested order.
    pub customers: Vec<Customer>,
    /// Token for the next page; empty on the last one.
    pub next_page_token: String,
}

/// An UpdateCustomer request.
#[derive(Debug, Clone, Default)]
pub struct UpdateRequest {
    /// `customer.name`.
    pub name: String,
    /// `customer.etag`: when non-empty, must match.
    pub etag: String,
    /// The new values.
    pub input: CustomerInput,
    /// `update_mask.paths`; `None` (or empty) means "the fields set in `input`".
    pub update_mask: Option<Vec<String>>,
    /// Idempotency key.
    pub request_id: String,
}

/// The customer use cases over one connection pool.
#[derive(Debug, Clone)]
pub struct CustomerService {
    pool: Pool,
    page_tokens: PageTokens,
    events: EventLog,
    registry: crate::registry::RegistryClient,
    /// How long a soft-deleted customer is kept before it is purged; `None`: for ever.
    purge_after: Option<Duration>,
}

impl CustomerService {
    /// A service over `pool`, signing page tokens with `page_tokens`.
    pub fn new(pool: Pool, page_tokens: PageTokens) -> Self {
        let events = EventLog::new(pool.clone(), page_tokens.clone());
        Self {
            pool,
            page_tokens,
            events,
            registry: crate::registry::RegistryClient::disabled(),
            purge_after: None,
        }
    }

    /// This service with soft-deleted customers purged `after` their deletion (AIP-164);
    /// `None` keeps them for ever.
    pub fn with_purge_after(mut self, after: Option<Duration>) -> Self {
        self.purge_after = after;
        self
    }

    /// `customer` with its `expire_time`: the deletion time plus the retention, when purging
    /// is on. Derived rather than stored, so a changed retention applies to every deleted
    /// customer at once, as the purger applies it.
    fn expiring(&self, mut customer: Customer) -> Customer {
        customer.expire_time =
            customer
                .delete_time
                .zip(self.purge_after)
                .and_then(|(deleted, after)| {
                    chrono::Duration::from_std(after)
                        .ok()
                        .and_then(|after| deleted.checked_add_signed(after))
                });
        customer
    }

    /// Purges (deletes for good, with their notes) up to `batch` customers whose retention
    /// after deletion has passed, recording a `CustomerPurged` event for each that carries
    /// no personal data and erasing that data from their earlier events and their notes'
    /// events; the number purged. Instances share the work: rows another purger holds are
    /// skipped.
    pub async fn purge_expired(&self, batch: i64) -> Result<usize> {
        let Some(after) = self.purge_after else {
            return Ok(0);
        };
        self.write(async move |conn| {
            let rows = queries::lock_expired(conn, after, batch).await?;
            let purged_count = rows.len();
            for row in rows {
                notes_queries::delete_all_of(conn, row.id).await?;
                queries::delete_for_good(conn, row.id).await?;
                let purged = Customer::try_from(row)?.purged();
                record(
                    conn,
                    EventType::CustomerPurged,
                    &purged,
                    None,
                    PURGE_ACTOR,
                    None,
                )
                .await?;
                // Its history keeps what happened, not who it was.
                let snapshot = serde_json::to_value(&purged).map_err(|e| Error::internal(&e))?;
                crate::db::events::scrub_customer(conn, &purged.name().to_string(), snapshot)
                    .await?;
            }
            Ok(purged_count)
        })
        .await
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

    /// The event log every change of this service is recorded in.
    pub fn events(&self) -> &EventLog {
        &self.events
    }

    /// Registers a customer. With a `request_id`, a retry returns the first result.
    pub async fn create(
        &self,
        input: CustomerInput,
        request_id: &str,
        actor: &str,
    ) -> Result<Customer> {
        let mut violations = Violations::new();
        let request_id = collect(
            &mut violations,
            names::parse_request_id("request_id", request_id),
        );
        let data = match input.validate("customer") {
            Ok(data) => Some(data),
            Err(more) => {
                violations.extend(more);
                None
            }
        };
        let (Some(request_id), Some(data)) = (request_id, violations.into_result(data)?) else {
            return Err(Error::internal(&Unreachable(
                "validated create without data",
            )));
        };
        // Logged as is: the log writer masks email addresses and phone numbers in every line
        // (`j***@example.com`), which keeps the domain for operators and nothing more.
        tracing::debug!(
            email = %data.email,
            phone = data.phone.as_deref().unwrap_or_default(),
            "creating customer"
        );
        // The actor is part of the fingerprint: a request id is only ever replayed to the
        // caller who first used it.
        let fingerprint = fingerprint("CreateCustomer", &[actor, &json(&input)]);
        let row = NewCustomerRow {
            id: Uuid::now_v7(),
            created_by: Some(actor.to_owned()),
            fields: CustomerChanges::new(&data, actor),
        };
        self.write(async move |conn| {
            if let Some(replayed) = claim(conn, request_id, &fingerprint).await? {
                return Ok(replayed);
            }
            if let Some(company) = &row.fields.company {
                check_company_reference(conn, company).await?;
            }
            let stored = queries::insert(conn, &row).await.map_err(email_conflict)?;
            let customer = Customer::try_from(stored)?;
            let actor = row.created_by.as_deref().unwrap_or_default();
            record(
                conn,
                EventType::CustomerRegistered,
                &customer,
                None,
                actor,
                request_id,
            )
            .await?;
            complete(conn, request_id, &customer).await?;
            Ok(customer)
        })
        .await
    }

    /// Returns one customer, deleted or not.
    pub async fn get(&self, name: &str) -> Result<Customer> {
        let name = CustomerName::parse("name", name)?;
        let mut conn = self.pool.get().await?;
        let row = queries::find(&mut conn, name.id())
            .await?
            .ok_or_else(|| Error::customer_not_found(name))?;
        Ok(self.expiring(Customer::try_from(row)?))
    }

    /// GetCustomer with the FULL view: the customer and its business as the registry reports
    /// it — none when the customer has no business id or the registry does not know it. A
    /// registry that cannot answer fails the call (UNAVAILABLE, with a retry delay): the
    /// caller asked for the registry's data and can fall back to the BASIC view.
    pub async fn get_full(
        &self,
        name: &str,
    ) -> Result<(Customer, Option<crate::registry::BusinessInfo>)> {
        let customer = self.get(name).await?;
        let Some(business_id) = customer.data.business_id.clone() else {
            return Ok((customer, None));
        };
        match self.registry.lookup(&business_id).await {
            Ok(info) => Ok((customer, Some(info))),
            Err(crate::registry::RegistryError::NotFound) => Ok((customer, None)),
            Err(error) => Err(error.into_service_error(&business_id)),
        }
    }

    /// Returns the named customers in request order; NOT_FOUND if any is missing.
    pub async fn batch_get(&self, names: &[String]) -> Result<Vec<Customer>> {
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
        let parsed = violations.into_result(parsed)?;
        let ids: Vec<Uuid> = parsed.iter().map(CustomerName::id).collect();
        let mut conn = self.pool.get().await?;
        let rows = queries::find_many(&mut conn, &ids).await?;
        let by_id: std::collections::HashMap<Uuid, CustomerRow> =
            rows.into_iter().map(|row| (row.id, row)).collect();
        // Request order, duplicates included, as AIP-231 asks.
        parsed
            .iter()
            .map(|name| {
                let row = by_id
                    .get(&name.id())
                    .cloned()
                    .ok_or_else(|| Error::customer_not_found(name))?;
                Ok(self.expiring(Customer::try_from(row)?))
            })
            .collect()
    }

    /// One page of customers matching the filter, in the requested order.
    pub async fn list(&self, request: &ListRequest) -> Result<Page> {
        let mut violations = Violations::new();
        let page_size = match request.page_size {
            size if size < 0 => {
                violations.add("page_size", "must not be negative");
                DEFAULT_PAGE_SIZE
            }
            0 => DEFAULT_PAGE_SIZE,
            size => size.min(MAX_PAGE_SIZE),
        };
        tracing::debug!(filter = %request.filter, order_by = %request.order_by, "listing customers");
        // The parsers mask the input they echo; masking the whole message as well keeps any
        // future message that quotes the filter (which may name an email) safe too.
        let filter = match filter::parse(&request.filter) {
            Ok(filter) => filter,
            Err(error) => {
                violations.add("filter", mask_pii_owned(error.to_string()));
                None
            }
        };
        let order = match order_by::parse(&request.order_by) {
            Ok(order) => order,
            Err(error) => {
                violations.add("order_by", mask_pii_owned(error.to_string()));
                Vec::new()
            }
        };
        let parent = match request.parent.as_str() {
            "" => None,
            parent => collect(&mut violations, CompanyName::parse("parent", parent)),
        };
        violations.into_result(())?;

        let mut query_parts = vec![
            format!("{filter:?}"),
            format!("{order:?}"),
            if request.show_deleted {
                "deleted".to_owned()
            } else {
                "live".to_owned()
            },
        ];
        // Tokens of unrestricted lists keep their pre-`parent` fingerprint (still valid).
        if let Some(parent) = parent {
            query_parts.push(parent.to_string());
        }
        let query = PageTokens::query_fingerprint(
            &query_parts.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        let after = match request.page_token.as_str() {
            "" => None,
            token => Some(self.page_tokens.decode(token, &query).map_err(|e| {
                Error::invalid_field(reason::INVALID_PAGE_TOKEN, "page_token", e.to_string())
            })?),
        };
        let mut conn = self.pool.get().await?;
        // The customers of a company that does not exist are not an empty list (AIP-132).
        if let Some(parent) = parent
            && company_queries::find(&mut conn, parent.id())
                .await?
                .is_none()
        {
            return Err(Error::not_found(COMPANY_TYPE, parent));
        }
        let company = parent.map(|parent| parent.to_string());
        let mut rows = queries::list(
            &mut conn,
            &ListQuery {
                filter: filter.as_ref(),
                order: &order,
                show_deleted: request.show_deleted,
                company: company.as_deref(),
                after: after.as_ref(),
                limit: i64::from(page_size) + 1,
            },
        )
        .await?;
        drop(conn);

        let more = rows.len() > page_size as usize;
        rows.truncate(page_size as usize);
        let next_page_token = match rows.last() {
            Some(last) if more => self
                .page_tokens
                .encode(&query, &Cursor::after(last, &order)),
            _ => String::new(),
        };
        let customers = rows
            .into_iter()
            .map(|row| Customer::try_from(row).map(|customer| self.expiring(customer)))
            .collect::<Result<_, _>>()?;
        Ok(Page {
            customers,
            next_page_token,
        })
    }

    /// Changes the fields selected by the update mask (AIP-134), checking the etag.
    pub async fn update(&self, request: UpdateRequest, actor: &str) -> Result<Customer> {
        let mut violations = Violations::new();
        let name = collect(
            &mut violations,
            CustomerName::parse("customer.name", &request.name),
        );
        let request_id = collect(
            &mut violations,
            names::parse_request_id("request_id", &request.request_id),
        );
        let mask = match request.update_mask.as_deref() {
            Some(paths) if !paths.is_empty() => {
                let (mask, more) = UpdateMask::parse("update_mask", paths);
                violations.extend(more);
                mask
            }
            _ => UpdateMask::Fields(request.input.present_fields()),
        };
        // Check the masked values before touching the database, against a valid stand-in
        // for the stored customer; the merged result is checked again below.
        let mut probe = CustomerInput::from(&stand_in());
        mask.apply(&mut probe, &request.input);
        if let Err(more) = probe.validate("customer") {
            violations.extend(more);
        }
        let (Some(name), Some(request_id)) = violations.into_result((name, request_id))? else {
            return Err(Error::internal(&Unreachable(
                "validated update without parts",
            )));
        };

        tracing::debug!(customer = %name, fields = ?mask, "updating customer");
        let fingerprint = fingerprint(
            "UpdateCustomer",
            &[
                actor,
                &request.name,
                &request.etag,
                &format!("{mask:?}"),
                &json(&request.input),
            ],
        );
        let actor = actor.to_owned();
        self.write(async move |conn| {
            if let Some(replayed) = claim(conn, request_id, &fingerprint).await? {
                return Ok(replayed);
            }
            let current = locked_live(conn, name, &request.etag).await?;
            let mut merged = CustomerInput::from(&current.data);
            mask.apply(&mut merged, &request.input);
            let data = merged.validate("customer")?;
            let customer = if data == current.data {
                // Nothing changes: no write, no new etag.
                current
            } else {
                // Only a new reference is checked: a customer keeps the company it has.
                if let Some(company) = &data.company
                    && data.company != current.data.company
                {
                    check_company_reference(conn, company).await?;
                }
                let row = queries::update(conn, current.id, &CustomerChanges::new(&data, &actor))
                    .await
                    .map_err(email_conflict)?;
                let updated = Customer::try_from(row)?;
                record(
                    conn,
                    EventType::CustomerUpdated,
                    &updated,
                    Some(&current.data),
                    &actor,
                    request_id,
                )
                .await?;
                updated
            };
            complete(conn, request_id, &customer).await?;
            Ok(customer)
        })
        .await
    }

    /// Soft-deletes a customer (AIP-164); its email becomes free.
    pub async fn delete(
        &self,
        name: &str,
        etag: &str,
        request_id: &str,
        actor: &str,
    ) -> Result<Customer> {
        let mut violations = Violations::new();
        let parsed = collect(&mut violations, CustomerName::parse("name", name));
        let request_id = collect(
            &mut violations,
            names::parse_request_id("request_id", request_id),
        );
        let (Some(parsed), Some(request_id)) = violations.into_result((parsed, request_id))? else {
            return Err(Error::internal(&Unreachable(
                "validated delete without parts",
            )));
        };
        tracing::debug!(customer = %parsed, "deleting customer");
        let fingerprint = fingerprint("DeleteCustomer", &[actor, name, etag]);
        let etag = etag.to_owned();
        let actor = actor.to_owned();
        let service = self.clone();
        self.write(async move |conn| {
            if let Some(replayed) = claim(conn, request_id, &fingerprint).await? {
                return Ok(replayed);
            }
            let current = locked_live(conn, parsed, &etag).await?;
            let row = queries::set_deleted(conn, current.id, &actor).await?;
            let customer = service.expiring(Customer::try_from(row)?);
            record(
                conn,
                EventType::CustomerDeleted,
                &customer,
                None,
                &actor,
                request_id,
            )
            .await?;
            complete(conn, request_id, &customer).await?;
            Ok(customer)
        })
        .await
    }

    /// Restores a soft-deleted customer.
    pub async fn undelete(&self, name: &str, etag: &str, actor: &str) -> Result<Customer> {
        let parsed = CustomerName::parse("name", name)?;
        tracing::debug!(customer = %parsed, "undeleting customer");
        let etag = etag.to_owned();
        let actor = actor.to_owned();
        self.write(async move |conn| {
            let current = locked(conn, parsed).await?;
            if !current.is_deleted() {
                return Err(Error::AlreadyExists {
                    message: format!("{parsed} is not deleted"),
                    reason: reason::NOT_DELETED,
                    resource_type: CUSTOMER_TYPE,
                    resource_name: parsed.to_string(),
                });
            }
            check_etag(&current, &etag)?;
            // A company deleted while the customer was deleted does not come back with it
            // (DeleteCompany only detached live customers): restore without it.
            let keep_company = match &current.data.company {
                Some(company) => live_company(conn, company).await?.is_some(),
                None => true,
            };
            let row = queries::restore(conn, current.id, keep_company, &actor)
                .await
                .map_err(email_conflict)?;
            let customer = Customer::try_from(row)?;
            record(
                conn,
                EventType::CustomerUndeleted,
                &customer,
                None,
                &actor,
                None,
            )
            .await?;
            Ok(customer)
        })
        .await
    }

    /// The connections the pool holds and how many of them are idle (for metrics).
    pub fn pool_state(&self) -> (u32, u32) {
        let state = self.pool.state();
        (state.connections, state.idle_connections)
    }

    /// Whether the database answers (for health checks).
    pub async fn ping(&self) -> Result<()> {
        let mut conn = self.pool.get().await?;
        crate::db::ping(&mut conn).await?;
        Ok(())
    }

    /// Forgets request ids older than `ttl`.
    pub async fn purge_request_ids(&self, ttl: Duration) -> Result<usize> {
        let mut conn = self.pool.get().await?;
        Ok(request_ids::purge(&mut conn, ttl).await?)
    }

    /// Runs `body` in a transaction on a spawned task, so that the caller going away (client
    /// cancel, deadline) cannot interrupt it half-way.
    async fn write<T, F>(&self, body: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'r> TransactionBody<'r, T> + Send + 'static,
    {
        let pool = self.pool.clone();
        let events = self.events.clone();
        tokio::spawn(async move {
            let mut conn = pool.get_owned().await?;
            let result = AsyncConnection::transaction(&mut *conn, body).await;
            if result.is_ok() {
                // Committed (perhaps with an event): number it now rather than at the next
                // sweep. A replayed request id wakes the sequencer for nothing, cheaply.
                events.committed();
            }
            result
        })
        .await?
    }
}

/// An async closure over a connection whose future is `Send` (so the transaction can run on
/// a spawned task). Spelled out because diesel-async's equivalent bound is not public.
pub trait TransactionBody<'r, T>:
    AsyncFnOnce(&'r mut AsyncPgConnection) -> Result<T>
    + FnOnce(&'r mut AsyncPgConnection) -> <Self as TransactionBody<'r, T>>::Future
{
    /// The closure's future.
    type Future: Future<Output = Result<T>> + Send;
}

impl<'r, T, F, Fut> TransactionBody<'r, T> for F
where
    F: AsyncFnOnce(&'r mut AsyncPgConnection) -> Result<T>
        + FnOnce(&'r mut AsyncPgConnection) -> Fut,
    Fut: Future<Output = Result<T>> + Send,
{
    type Future = Fut;
}

/// A programming error that validation makes impossible; reported as INTERNAL, never a panic.
#[derive(Debug, thiserror::Error)]
#[error("unreachable: {0}")]
pub(crate) struct Unreachable(pub(crate) &'static str);

/// Moves a violation into `violations`, keeping the value when there is none.
fn collect<T>(
    violations: &mut Violations,
    result: Result<T, crate::domain::FieldViolation>,
) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(violation) => {
            violations.extend(violation.into());
            None
        }
    }
}

/// A valid customer standing in for the stored one when masked input is checked up front.
fn stand_in() -> CustomerData {
    CustomerData {
        given_name: "x".into(),
        family_name: "x".into(),
        email: "x@example.com".into(),
        phone: None,
        address: Some(PostalAddress {
            country_code: "US".into(),
            ..PostalAddress::default()
        }),
        status: crate::domain::customer::Status::Active,
        company: None,
        business_id: None,
        labels: Default::default(),
    }
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// Identifies a request's content, to tell a retry from a reuse of its request id.
fn fingerprint(method: &str, parts: &[&str]) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(method.as_bytes());
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hasher.finalize().to_vec()
}

/// Claims a request id; `Some(first response)` when this is a retry.
async fn claim<T: DeserializeOwned>(
    conn: &mut AsyncPgConnection,
    request_id: Option<Uuid>,
    fingerprint: &[u8],
) -> Result<Option<T>> {
    let Some(request_id) = request_id else {
        return Ok(None);
    };
    match request_ids::claim(conn, request_id, fingerprint).await? {
        Claim::Fresh => Ok(None),
        Claim::Used {
            fingerprint: first,
            response,
        } => {
            if first != fingerprint {
                return Err(Error::invalid_field(
                    reason::REQUEST_ID_REUSED,
                    "request_id",
                    "was already used for a different request; use a new UUID per request",
                ));
            }
            let response = response
                .ok_or_else(|| Error::internal(&Unreachable("request id without response")))?;
            serde_json::from_value(response)
                .map(Some)
                .map_err(|e| Error::internal(&e))
        }
    }
}

/// Records the response of a claimed request id.
async fn complete<T: Serialize>(
    conn: &mut AsyncPgConnection,
    request_id: Option<Uuid>,
    response: &T,
) -> Result<()> {
    if let Some(request_id) = request_id {
        let response = serde_json::to_value(response).map_err(|e| Error::internal(&e))?;
        request_ids::complete(conn, request_id, &response).await?;
    }
    Ok(())
}

/// The company a customer write refers to, share-locked for this transaction, if it is live.
/// The lock makes a concurrent DeleteCompany wait for this write, and this write wait for a
/// DeleteCompany that came first (and then see the company deleted).
async fn live_company(
    conn: &mut AsyncPgConnection,
    reference: &str,
) -> Result<Option<crate::domain::company::Company>> {
    let Ok(name) = CompanyName::parse("", reference) else {
        return Ok(None);
    };
    let Some(row) = company_queries::find_for_share(conn, name.id()).await? else {
        return Ok(None);
    };
    let company = crate::domain::company::Company::try_from(row)?;
    Ok((!company.is_deleted()).then_some(company))
}

/// A new `customer.company` must name a live company: INVALID_ARGUMENT naming the field
/// otherwise.
async fn check_company_reference(conn: &mut AsyncPgConnection, reference: &str) -> Result<()> {
    let Ok(name) = CompanyName::parse("customer.company", reference) else {
        // Validation already checked the form; a malformed name is simply not a company.
        return Err(Error::invalid_field(
            reason::INVALID_FIELDS,
            "customer.company",
            format!("`{reference}` is not a company name"),
        ));
    };
    let row = company_queries::find_for_share(conn, name.id()).await?;
    let problem = match row {
        None => "does not exist",
        Some(row) if row.delete_time.is_some() => "is deleted",
        Some(_) => return Ok(()),
    };
    Err(Error::invalid_field(
        reason::INVALID_FIELDS,
        "customer.company",
        format!("{name} {problem}; refer to a live company or leave the field empty"),
    ))
}

/// The customer, locked for this transaction.
async fn locked(conn: &mut AsyncPgConnection, name: CustomerName) -> Result<Customer> {
    let row = queries::find_for_update(conn, name.id())
        .await?
        .ok_or_else(|| Error::customer_not_found(name))?;
    Ok(Customer::try_from(row)?)
}

/// The live customer, locked, after checking the etag.
async fn locked_live(
    conn: &mut AsyncPgConnection,
    name: CustomerName,
    etag: &str,
) -> Result<Customer> {
    let current = locked(conn, name).await?;
    if current.is_deleted() {
        return Err(Error::FailedPrecondition {
            message: format!("{name} is deleted; undelete it first"),
            reason: reason::DELETED,
            resource_type: CUSTOMER_TYPE,
            resource_name: name.to_string(),
        });
    }
    check_etag(&current, etag)?;
    Ok(current)
}

fn check_etag(current: &Customer, etag: &str) -> Result<()> {
    check_etag_of(
        &current.name().to_string(),
        CUSTOMER_TYPE,
        &current.etag(),
        etag,
    )
}

/// A supplied etag must be the current one (AIP-154); an empty one matches anything.
fn check_etag_of(name: &str, resource_type: &'static str, current: &str, etag: &str) -> Result<()> {
    if etag.is_empty() || etag == current {
        return Ok(());
    }
    Err(Error::Aborted {
        message: format!(
            "{name} was changed since it was read (etag {etag} is not current); read it again and retry"
        ),
        reason: reason::ETAG_MISMATCH,
        resource_type,
        resource_name: name.to_owned(),
    })
}

/// The unique index on live emails turns into ALREADY_EXISTS; anything else is classified
/// as usual.
fn email_conflict(error: diesel::result::Error) -> Error {
    use diesel::result::{DatabaseErrorKind, Error as E};
    match &error {
        E::DatabaseError(DatabaseErrorKind::UniqueViolation, info)
            if info.constraint_name() == Some("customers_live_email_key") =>
        {
            Error::AlreadyExists {
                message: "another live customer already uses this email".into(),
                reason: reason::EMAIL_ALREADY_EXISTS,
                resource_type: CUSTOMER_TYPE,
                resource_name: String::new(),
            }
        }
        _ => error.into(),
    }
}
