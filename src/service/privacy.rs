//! Data-subject rights (issue 19): erasure of one customer at once (EraseCustomer), and
//! everything held about one customer in one document (ExportCustomerData).
//!
//! An erasure is the purge's work ([`CustomerService::purge_expired`]) for one customer,
//! live or soft-deleted, without waiting for retention, on the core's idempotent write path
//! (a request id makes it retry-safe), plus what only an erasure does: the stored responses
//! of earlier requests about the customer are cleared, and the erasure is recorded in the
//! erasure log with the caller, a reason from a closed list and the caller's reference.
//! Nothing it writes or logs holds personal data.

use crate::domain::names::ResourceName as _;

use super::{CustomerService, Error, Result};
use crate::{
    core::{
        fingerprint::{Fingerprint, Parts},
        resource::Resource,
        store::{Lock, Repository, Transact as _},
        write::{self, Origin, collect},
    },
    db::{self, store::PgStore},
    domain::{
        Violations,
        customer::Customer,
        erasure::{Erasure, ErasureReason, parse_reference},
        event::EventType,
        names::{self, CustomerName},
        note::Note,
    },
};

/// Rows read per statement while a data export collects notes and events.
const EXPORT_BATCH: i32 = 1000;

/// Everything held about one customer (ExportCustomerData).
#[derive(Debug, Clone)]
pub struct DataExport {
    /// The customer.
    pub customer: Customer,
    /// Its business as the registry reports it, when it has a business id the registry knows.
    pub business: Option<crate::registry::BusinessInfo>,
    /// Its notes, newest first.
    pub notes: Vec<Note>,
    /// Its events and its notes', oldest first.
    pub events: Vec<crate::domain::event::Event>,
    /// When the export was put together.
    pub export_time: chrono::DateTime<chrono::Utc>,
}

/// An EraseCustomer request.
#[derive(Debug, Clone, Default)]
pub struct EraseRequest {
    /// `customers/{id}`.
    pub name: String,
    /// `customer.v1.ErasureReason` number.
    pub reason: i32,
    /// The caller's reference (`""`: none).
    pub reference: String,
    /// Idempotency key.
    pub request_id: String,
}

impl CustomerService<PgStore> {
    /// Erases a customer, live or soft-deleted, in one transaction: its notes, its row (and
    /// with it its external ids), the stored responses of requests about it; its past events
    /// and its notes' keep what happened but not who it was; a `CustomerErased` event tells
    /// downstream systems; the erasure log records it. A customer erased before answers its
    /// erasure record.
    pub async fn erase(&self, request: EraseRequest, actor: &str) -> Result<Erasure> {
        let mut violations = Violations::new();
        let name = collect(&mut violations, CustomerName::parse("name", &request.name));
        let reason = collect(
            &mut violations,
            ErasureReason::from_number("reason", request.reason),
        );
        let reference = collect(
            &mut violations,
            parse_reference("reference", &request.reference),
        );
        let request_id = collect(
            &mut violations,
            names::parse_request_id("request_id", &request.request_id),
        );
        let (Some(name), Some(reason), Some(reference), Some(request_id)) =
            violations.into_result((name, reason, reference, request_id))?
        else {
            return Err(Error::internal(&super::Unreachable(
                "validated erasure without parts",
            )));
        };
        let fingerprint = Fingerprint::new(
            &Parts {
                // The reason and reference as the input: a retry must repeat them.
                input: format!("{}\u{1f}{}", reason.as_str(), request.reference).into_bytes(),
                ..write::call::<Customer>("Erase", actor, &request.name)
            },
            // A new method: no version-1 record can name it.
            &[],
        );
        let origin = Origin {
            actor: actor.to_owned(),
            request_id,
        };
        let erasure = self
            .writer()
            .idempotent(request_id, fingerprint, async move |conn| {
                let Some(current) = Repository::<Customer>::find(conn, name, Lock::Update).await?
                else {
                    return db::erasure::find(conn, name.id())
                        .await?
                        .ok_or_else(|| Customer::not_found(name));
                };
                let replays =
                    db::erasure::forget_replays(conn, &name.to_string(), origin.request_id).await?;
                let notes = db::notes::delete_all_of(conn, name.id()).await?;
                // Merge records naming it hold its data; the merges stay done.
                db::merges::forget_customer(conn, name.id()).await?;
                db::customers::delete_for_good(conn, name.id()).await?;
                let erased = current.purged();
                let scrubbed = db::events::scrub_customer(conn, &erased).await?;
                // Recorded after the scrub, which would count it too.
                write::record(conn, EventType::CustomerErased, &erased, None, &origin).await?;
                let erasure = Erasure {
                    customer: name,
                    reason,
                    reference,
                    actor: origin.actor.clone(),
                    erase_time: chrono::Utc::now(),
                    notes_erased: count(notes),
                    events_scrubbed: count(scrubbed),
                    replays_erased: count(replays),
                };
                Ok(db::erasure::record(conn, &erasure, origin.request_id).await?)
            })
            .await?;
        // Who and why, never whom: the former name is a random id.
        tracing::info!(
            customer = %erasure.customer,
            reason = erasure.reason.as_str(),
            notes = erasure.notes_erased,
            events = erasure.events_scrubbed,
            replays = erasure.replays_erased,
            "erased customer"
        );
        Ok(erasure)
    }
}

/// A row count as stored.
fn count(rows: usize) -> i64 {
    i64::try_from(rows).unwrap_or(i64::MAX)
}

impl CustomerService<PgStore> {
    /// Everything held about a customer, live or soft-deleted: the customer, its notes, its
    /// events and its notes' (the audit trail), and its business as the registry reports it.
    /// A registry that cannot answer leaves `business` out (logged) rather than failing the
    /// export: it is the registry's data, cached, not the person's.
    pub async fn export_data(&self, name: &str) -> Result<DataExport> {
        let name = CustomerName::parse("name", name)?;
        let export_time = chrono::Utc::now();
        let (customer, notes) = self
            .writer()
            .store
            .read(async move |conn| {
                let customer = Repository::<Customer>::find(conn, name, Lock::None)
                    .await?
                    .ok_or_else(|| Customer::not_found(name))?;
                let mut notes: Vec<Note> = Vec::new();
                loop {
                    let after = notes
                        .last()
                        .map(|note| (note.stored.create_time, note.stored.id));
                    let batch =
                        db::notes::list(conn, Some(name.id()), after, EXPORT_BATCH.into()).await?;
                    let done = batch.len() < EXPORT_BATCH as usize;
                    notes.extend(batch.into_iter().map(Note::from));
                    if done {
                        return Ok((customer, notes));
                    }
                }
            })
            .await?;
        let mut events = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = self
                .events()
                .list(&super::ListRequest {
                    parent: name.to_string(),
                    page_size: EXPORT_BATCH,
                    page_token,
                    ..super::ListRequest::default()
                })
                .await?;
            events.extend(page.items);
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        let business = match &customer.data.business_id {
            None => None,
            Some(business_id) => match Box::pin(self.registry.lookup(business_id)).await {
                Ok(info) => Some(info),
                Err(crate::registry::RegistryError::NotFound) => None,
                Err(error) => {
                    tracing::warn!(%error, customer = %name, "data export without business info");
                    None
                }
            },
        };
        tracing::info!(customer = %name, notes = notes.len(), events = events.len(), "exported customer data");
        Ok(DataExport {
            customer: customer.with_retention(self.writer().retention),
            business,
            notes,
            events,
            export_time,
        })
    }
}
