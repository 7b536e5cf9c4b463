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
//!
//! A dry run (`validate_only`) commits nothing, so its earlier batches are not in the table:
//! what they would have registered is kept aside ([`Earlier`]) and asked alongside it, so a
//! file repeating an email or a key across batches gets the answer a real run would give.

use std::{
    collections::{HashMap, HashSet},
    hash::{BuildHasher, RandomState},
};

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
    /// A dry run's new customers, for the batches after it ([`Earlier`]).
    pub claims: Claims,
}

/// What the earlier batches of a dry run would have registered: the emails and external ids
/// of their new customers, each with the id it would have had. Kept as 64-bit hashes under a
/// per-import random key (about 50 bytes a registered row, so ~50 MB for a million; a
/// collision, about one chance in 10^7 at that size, would only misreport one row of a dry
/// run). A dry run that is resumed after breaking off starts this anew.
#[derive(Debug, Clone, Default)]
pub struct Earlier {
    hasher: RandomState,
    emails: HashMap<u64, Uuid>,
    pairs: HashMap<u64, Uuid>,
}

impl Earlier {
    fn email(&self, lowercase: &str) -> u64 {
        self.hasher.hash_one(lowercase)
    }

    fn pair(&self, source: &str, id: &str) -> u64 {
        self.hasher.hash_one((source, id))
    }

    /// Adds what a batch would have registered.
    pub fn extend(&mut self, claims: Claims) {
        self.emails.extend(claims.emails);
        self.pairs.extend(claims.pairs);
    }
}

/// What one dry-run batch would have registered, for [`Earlier::extend`].
#[derive(Debug, Default)]
pub struct Claims {
    emails: Vec<(u64, Uuid)>,
    pairs: Vec<(u64, Uuid)>,
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
    dry_run: Option<&Earlier>,
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
    let mut email_holders = conn.live_emails(&wanted_emails).await?;
    let wanted_pairs: Vec<(String, String)> = candidates
        .iter()
        .flat_map(|row| row.data.external_ids.clone())
        .collect();
    let mut pair_holders = conn.external_id_holders(&wanted_pairs).await?;
    if let Some(earlier) = dry_run {
        for email in wanted_emails {
            if let Some(id) = earlier.emails.get(&earlier.email(&email)) {
                email_holders.entry(email).or_insert(*id);
            }
        }
        for (source, id) in wanted_pairs {
            if let Some(holder) = earlier.pairs.get(&earlier.pair(&source, &id)) {
                pair_holders.entry((source, id)).or_insert(*holder);
            }
        }
    }
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
    if let Some(earlier) = dry_run {
        for (name, data) in &creates {
            let email = earlier.email(&data.email.to_lowercase());
            outcome.claims.emails.push((email, name.0));
            for (source, id) in &data.external_ids {
                outcome
                    .claims
                    .pairs
                    .push((earlier.pair(source, id), name.0));
            }
        }
    } else if !creates.is_empty() {
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
        if dry_run.is_some() {
            let current = Repository::<Customer>::find(conn, name, Lock::None).await?;
            let Some(current) = current else {
                // A customer an earlier row of this import would register: the row would
                // update it.
                outcome.updated += 1;
                continue;
            };
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
