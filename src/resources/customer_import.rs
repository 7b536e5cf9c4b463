//! One batch of an import of customers (ImportCustomers), on the core's write path.
//!
//! A batch runs inside one [`Transact::write`](crate::core::store::Transact::write)
//! transaction: what it writes commits together or not at all. Its rows arrive validated
//! exactly as CreateCustomer validates (`CustomerInput::validate`); what only the database
//! can say is asked once for the whole batch ([`Bulk`]): which emails and external ids live
//! customers hold, which companies are live (share-locked, as a single create does). Rows
//! repeating an email or an external id of an earlier row of the batch are rejected (rows
//! of earlier batches are in the table by then, so the probe finds them). New customers are
//! inserted in one statement and their `CustomerRegistered` events in another; an upsert's
//! matched customers are changed one by one through the core's [`change`] (the row lock,
//! references, the version bump and the `CustomerUpdated` event, or nothing when nothing
//! changes), as UpsertCustomer does without an update mask.

use std::collections::{HashMap, HashSet};

use uuid::Uuid;

use crate::{
    core::{
        store::{Bulk, Lock, NewEvent, Repository},
        write::{Origin, change, locked_live, update_mask},
    },
    domain::{
        Input as _, Violations,
        customer::{Customer, CustomerData, CustomerInput, clip},
        event::EventType,
        names::{CompanyName, CustomerName, ResourceName as _},
    },
    resources::Resource,
    service::Result,
};

/// How import rows become customers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every row registers a new customer.
    CreateOnly,
    /// A row whose external ids a live customer holds updates it; any other registers one.
    UpsertByExternalId,
}

/// A row that passed CreateCustomer's validation.
#[derive(Debug, Clone)]
pub struct Row {
    /// Its line (or position) in the input.
    pub line: i64,
    /// The fields as sent (an upsert applies the ones it sets).
    pub input: CustomerInput,
    /// The fields validated.
    pub data: CustomerData,
}

/// What a batch did (or, for a dry run, would do).
#[derive(Debug, Default)]
pub struct BatchOutcome {
    /// Customers registered.
    pub created: i64,
    /// Customers changed.
    pub updated: i64,
    /// Rows matching a customer that they did not change.
    pub unchanged: i64,
    /// Rows rejected by what the database holds, by line.
    pub rejected: Vec<(i64, Violations)>,
}

/// The violation path of the external id of `source`.
fn external_id_path(source: &str) -> String {
    format!("customer.external_ids[\"{}\"]", clip(source))
}

/// Writes (unless `dry_run`) the rows of one batch, inside the caller's transaction.
pub async fn commit_batch<C>(
    conn: &mut C,
    rows: Vec<Row>,
    mode: Mode,
    dry_run: bool,
    origin: &Origin,
) -> Result<BatchOutcome>
where
    C: Bulk + Repository<Customer>,
{
    let mut outcome = BatchOutcome::default();

    // Repeats within the batch: the first row wins.
    let mut emails: HashMap<String, i64> = HashMap::new();
    let mut pairs: HashMap<(String, String), i64> = HashMap::new();
    let mut candidates = Vec::with_capacity(rows.len());
    for row in rows {
        let mut violations = Violations::new();
        let email = row.data.email.to_lowercase();
        match emails.get(&email) {
            Some(first) => violations.add(
                "customer.email",
                format!("repeats the email of line {first}; an email belongs to one customer"),
            ),
            None => {
                emails.insert(email, row.line);
            }
        }
        for (source, id) in &row.data.external_ids {
            match pairs.get(&(source.clone(), id.clone())) {
                Some(first) => violations.add(
                    external_id_path(source),
                    format!("repeats the external id of line {first}"),
                ),
                None => {
                    pairs.insert((source.clone(), id.clone()), row.line);
                }
            }
        }
        if mode == Mode::UpsertByExternalId && row.data.external_ids.is_empty() {
            violations.add(
                "customer.external_ids",
                "is required in IMPORT_MODE_UPSERT_BY_EXTERNAL_ID: the keys a row is matched by",
            );
        }
        if violations.is_empty() {
            candidates.push(row);
        } else {
            // Its email and keys stay claimed by it: a later repeat is still a repeat.
            outcome.rejected.push((row.line, violations));
        }
    }

    // What the table holds, asked once for the batch.
    let wanted_emails: Vec<String> = candidates
        .iter()
        .map(|row| row.data.email.to_lowercase())
        .collect();
    let email_holders = conn.live_emails(&wanted_emails).await?;
    let wanted_pairs: Vec<(String, String)> = candidates
        .iter()
        .flat_map(|row| row.data.external_ids.clone())
        .collect();
    let pair_holders = conn.external_id_holders(&wanted_pairs).await?;
    let mut companies: Vec<CompanyName> = candidates
        .iter()
        .filter_map(|row| row.data.company.as_deref())
        .filter_map(|company| CompanyName::parse("customer.company", company).ok())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    companies.sort_by_key(CompanyName::id);
    let live_companies = conn.live_companies(&companies).await?;

    let mut creates: Vec<(CustomerName, CustomerData)> = Vec::new();
    let mut updates: Vec<(CustomerName, Row)> = Vec::new();
    for row in candidates {
        let mut violations = Violations::new();
        if let Some(company) = &row.data.company {
            let live = CompanyName::parse("customer.company", company)
                .is_ok_and(|name| live_companies.contains(&name));
            if !live {
                violations.add(
                    "customer.company",
                    format!(
                        "{company} does not exist or is deleted; refer to a live company or \
                         leave the field empty"
                    ),
                );
            }
        }
        let holders: Vec<(&String, Uuid)> = row
            .data
            .external_ids
            .iter()
            .filter_map(|(source, id)| {
                pair_holders
                    .get(&(source.clone(), id.clone()))
                    .map(|holder| (source, *holder))
            })
            .collect();
        let target = match mode {
            Mode::CreateOnly => {
                for (source, holder) in &holders {
                    violations.add(
                        external_id_path(source),
                        format!(
                            "another live customer ({}) already has this external id",
                            CustomerName(*holder)
                        ),
                    );
                }
                None
            }
            Mode::UpsertByExternalId => {
                let distinct: HashSet<Uuid> = holders.iter().map(|(_, holder)| *holder).collect();
                if distinct.len() > 1 {
                    violations.add(
                        "customer.external_ids",
                        "name different live customers; a row is matched by keys of one",
                    );
                }
                distinct.into_iter().next()
            }
        };
        if let Some(holder) = email_holders.get(&row.data.email.to_lowercase())
            && Some(*holder) != target
        {
            violations.add(
                "customer.email",
                "another live customer already uses this email",
            );
        }
        if !violations.is_empty() {
            outcome.rejected.push((row.line, violations));
            continue;
        }
        match target {
            None => creates.push((CustomerName(Uuid::now_v7()), row.data)),
            Some(holder) => updates.push((CustomerName(holder), row)),
        }
    }

    outcome.created = i64::try_from(creates.len()).unwrap_or(i64::MAX);
    if !dry_run && !creates.is_empty() {
        let created = conn.insert_customers(&creates, &origin.actor).await?;
        let events = created
            .iter()
            .map(|customer| event(EventType::CustomerRegistered, customer, None, origin))
            .collect();
        conn.record_many(events).await?;
    }
    for (name, row) in updates {
        let mut ignored = Violations::new();
        let mask = update_mask::<Customer>(&mut ignored, None, &row.input);
        if dry_run {
            let current = Repository::<Customer>::find(conn, name, Lock::None).await?;
            let Some(current) = current else { continue };
            let mut merged = CustomerInput::from(current.data());
            mask.apply(&mut merged, &row.input);
            match merged.validate(Customer::FIELD) {
                Ok(data) if &data == current.data() => outcome.unchanged += 1,
                Ok(_) => outcome.updated += 1,
                Err(violations) => outcome.rejected.push((row.line, violations)),
            }
            continue;
        }
        let current = locked_live::<Customer, _>(conn, name, "").await?;
        let version = current.stored.version;
        let mut merged = CustomerInput::from(current.data());
        mask.apply(&mut merged, &row.input);
        let merged_valid = merged.validate(Customer::FIELD);
        if let Err(violations) = merged_valid {
            outcome.rejected.push((row.line, violations));
            continue;
        }
        let changed = change(conn, current, &merged, origin).await?;
        if changed.stored.version == version {
            outcome.unchanged += 1;
        } else {
            outcome.updated += 1;
        }
    }
    outcome.rejected.sort_by_key(|(line, _)| *line);
    Ok(outcome)
}

/// The outbox event of `event_type` about `customer`.
fn event(
    event_type: EventType,
    customer: &Customer,
    previous: Option<&CustomerData>,
    origin: &Origin,
) -> NewEvent {
    NewEvent {
        event_type,
        resource: customer.name().to_string(),
        sequence: Customer::sequence(event_type, customer),
        data: Customer::event(event_type, customer, previous),
        actor: origin.actor.clone(),
        request_id: origin.request_id,
    }
}
