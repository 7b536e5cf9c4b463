//! MergeCustomers and UnmergeCustomers (issue 19): duplicates merged into one customer in
//! one transaction on the core's idempotent write path, and undone from the merge record.
//!
//! A merge locks the target and its sources (in id order), checks the target's etag, moves
//! the sources' notes to the target, retires each source (soft-deleted, `merged_into` the
//! target, its external ids released: one version, a `CustomerDeleted` event), then writes
//! the target's merged fields ([`merged_data`]: one version, a `CustomersMerged` event) and
//! stores the merge record: the caller, and the target before and after and each source
//! before, which is what an unmerge restores ([`unmerged_data`]).

use std::collections::{BTreeMap, HashMap};

use uuid::Uuid;

use super::{CustomerService, Error, Result, error::reason};
use crate::{
    core::{
        fingerprint::{Fingerprint, Parts},
        resource::{Resource, check_etag},
        store::{Repository, Storage as _},
        write::{self, Origin, collect},
    },
    db::{self, merges::MergeRow, models::CustomerChanges, store::PgStore},
    domain::{
        Violations,
        customer::Customer,
        event::{Change, EventData, EventType, MergeChange, NewEvent, changed_fields},
        merge::{
            FieldPolicy, MAX_SOURCES, MERGE_TYPE, Merge, MergeOutcome, MergeRef, MovedNote,
            merge_name, merged_data, unmerged_data,
        },
        names::{self, CUSTOMER_TYPE, CustomerName, NoteName, ResourceName as _},
    },
    encoding::proto::{customer_from_bytes, customer_to_bytes},
};

/// A MergeCustomers request.
#[derive(Debug, Clone, Default)]
pub struct MergeRequest {
    /// `customers/{id}`: the customer that stays.
    pub target: String,
    /// The customers merged into it.
    pub sources: Vec<String>,
    /// `field_policy.choices`: field path -> source name.
    pub choices: BTreeMap<String, String>,
    /// The target's etag, when the merge is conditional.
    pub etag: String,
    /// Idempotency key.
    pub request_id: String,
}

/// An UnmergeCustomers request.
#[derive(Debug, Clone, Default)]
pub struct UnmergeRequest {
    /// `customers/{target}/merges/{id}` or `customers/{target}`.
    pub name: String,
    /// Idempotency key.
    pub request_id: String,
}

impl CustomerService<PgStore> {
    /// Merges `sources` into `target` in one transaction (see the module docs). A retry
    /// with the same request id answers as the first call did.
    pub async fn merge(&self, request: MergeRequest, actor: &str) -> Result<MergeOutcome> {
        let mut violations = Violations::new();
        let target = collect(
            &mut violations,
            CustomerName::parse("target", &request.target),
        );
        if request.sources.is_empty() {
            violations.add(
                "sources",
                format!("is required: name 1 to {MAX_SOURCES} customers to merge into the target"),
            );
        } else if request.sources.len() > MAX_SOURCES {
            violations.add(
                "sources",
                format!(
                    "at most {MAX_SOURCES} customers per merge, got {}",
                    request.sources.len()
                ),
            );
        }
        let mut sources: Vec<CustomerName> = Vec::with_capacity(request.sources.len());
        let mut first: HashMap<Uuid, usize> = HashMap::new();
        for (i, text) in request.sources.iter().enumerate().take(MAX_SOURCES) {
            let field = format!("sources[{i}]");
            let Some(source) = collect(&mut violations, CustomerName::parse(&field, text)) else {
                continue;
            };
            if Some(source) == target {
                violations.add(
                    field,
                    "is the target: a customer cannot be merged into itself",
                );
            } else if let Some(earlier) = first.get(&source.id()) {
                violations.add(
                    field,
                    format!("repeats sources[{earlier}]; name each customer once"),
                );
            } else {
                first.insert(source.id(), i);
                sources.push(source);
            }
        }
        let policy = FieldPolicy::parse(&request.choices, &sources)
            .map_err(|more| violations.extend(more))
            .ok();
        let request_id = collect(
            &mut violations,
            names::parse_request_id("request_id", &request.request_id),
        );
        let (Some(target), Some(policy), Some(request_id)) =
            violations.into_result((target, policy, request_id))?
        else {
            return Err(Error::internal(&super::Unreachable(
                "validated merge without parts",
            )));
        };
        let mut input = request.sources.join("\u{1e}");
        for (path, source) in &request.choices {
            input.push_str(&format!("\u{1d}{path}\u{1f}{source}"));
        }
        let fingerprint = Fingerprint::new(
            &Parts {
                etag: request.etag.clone(),
                input: input.into_bytes(),
                ..write::call::<Customer>("Merge", actor, &request.target)
            },
            // A new method: no version-1 record can name it.
            &[],
        );
        let origin = Origin {
            actor: actor.to_owned(),
            request_id,
        };
        let etag = request.etag;
        let retention = self.writer().retention;
        let outcome = self
            .writer()
            .idempotent(request_id, fingerprint, async move |conn| {
                let ids: Vec<Uuid> = sources.iter().map(CustomerName::id).collect();
                let (current, mut locked) = lock_family(conn, target, ids).await?;
                check_etag(&current, &etag)?;
                let mut before = Vec::with_capacity(sources.len());
                for (i, source) in sources.iter().enumerate() {
                    let customer = locked
                        .remove(&source.id())
                        .ok_or_else(|| Customer::not_found(*source))?;
                    if let Some(into) = customer.merged_into {
                        return Err(Error::FailedPrecondition {
                            message: format!(
                                "sources[{i}]: {source} was merged into {into} already"
                            ),
                            reason: reason::CUSTOMER_MERGED,
                            resource_type: CUSTOMER_TYPE,
                            resource_name: source.to_string(),
                        });
                    }
                    if customer.is_deleted() {
                        return Err(Error::FailedPrecondition {
                            message: format!(
                                "sources[{i}]: {source} is deleted; only live customers are merged"
                            ),
                            reason: reason::DELETED,
                            resource_type: CUSTOMER_TYPE,
                            resource_name: source.to_string(),
                        });
                    }
                    before.push(customer);
                }
                let pairs: Vec<(CustomerName, _)> = before
                    .iter()
                    .map(|customer| (customer.name(), customer.data.clone()))
                    .collect();
                let merged = merged_data(&current.data, &pairs, &policy)?;

                let source_ids: Vec<Uuid> = sources.iter().map(CustomerName::id).collect();
                let moved = db::merges::move_notes(conn, target.id(), &source_ids).await?;
                let mut retired = Vec::with_capacity(before.len());
                for source in &before {
                    let row = db::merges::retire_source(
                        conn,
                        source.stored.id,
                        target.id(),
                        &origin.actor,
                    )
                    .await?;
                    let source = Customer::try_from(row)?.with_retention(retention);
                    write::record(conn, EventType::CustomerDeleted, &source, None, &origin).await?;
                    retired.push(source);
                }
                // The sources are deleted now: the target may take an email or external id
                // of theirs.
                Customer::check_references(conn, &merged, Some(&current.data)).await?;
                let updated =
                    Repository::<Customer>::update(conn, &current, &merged, &origin.actor).await?;
                let changed = changed_fields(&current.data, &updated.data);
                let merge_id = Uuid::now_v7();
                let moved_notes: Vec<MovedNote> = moved
                    .iter()
                    .map(|note| MovedNote {
                        previous: NoteName {
                            customer: CustomerName(note.previous),
                            note: note.id,
                        },
                        name: NoteName {
                            customer: target,
                            note: note.id,
                        },
                    })
                    .collect();
                conn.record(NewEvent {
                    event_type: EventType::CustomersMerged,
                    resource: target.to_string(),
                    sequence: updated.stored.version,
                    data: merge_event(
                        &updated,
                        &current,
                        changed.clone(),
                        merge_name(target, merge_id),
                        &sources,
                        &moved_notes,
                    ),
                    actor: origin.actor.clone(),
                    request_id: origin.request_id,
                })
                .await?;
                let row = db::merges::insert(
                    conn,
                    &MergeRow {
                        id: merge_id,
                        target_id: target.id(),
                        source_ids,
                        actor: origin.actor.clone(),
                        request_id: origin.request_id,
                        merge_time: chrono::Utc::now(),
                        changed_fields: changed,
                        target_before: customer_to_bytes(&current),
                        target_after: customer_to_bytes(&updated),
                        sources_before: before.iter().map(customer_to_bytes).collect(),
                        moved_note_ids: moved.iter().map(|note| note.id).collect(),
                        moved_note_sources: moved.iter().map(|note| note.previous).collect(),
                        unmerge_time: None,
                        unmerged_by: None,
                    },
                )
                .await?;
                Ok(MergeOutcome {
                    customer: updated.with_retention(retention),
                    sources: retired,
                    merge: merge_of(row)?,
                })
            })
            .await?;
        tracing::info!(
            target = %outcome.merge.target,
            merge = %outcome.merge.id,
            sources = outcome.merge.sources.len(),
            notes = outcome.merge.moved_notes.len(),
            "merged customers"
        );
        Ok(outcome)
    }

    /// Undoes a merge (see UnmergeCustomers): the sources as they were before it, the
    /// target's merged fields back (what changed since is kept), the moved notes back.
    pub async fn unmerge(&self, request: UnmergeRequest, actor: &str) -> Result<MergeOutcome> {
        let mut violations = Violations::new();
        let reference = collect(&mut violations, MergeRef::parse("name", &request.name));
        let request_id = collect(
            &mut violations,
            names::parse_request_id("request_id", &request.request_id),
        );
        let (Some(reference), Some(request_id)) =
            violations.into_result((reference, request_id))?
        else {
            return Err(Error::internal(&super::Unreachable(
                "validated unmerge without parts",
            )));
        };
        let fingerprint = Fingerprint::new(
            &write::call::<Customer>("Unmerge", actor, &request.name),
            &[],
        );
        let origin = Origin {
            actor: actor.to_owned(),
            request_id,
        };
        let retention = self.writer().retention;
        let outcome = self
            .writer()
            .idempotent(request_id, fingerprint, async move |conn| {
                let target = reference.target();
                let id = match reference {
                    MergeRef::Merge(_, id) => Some(id),
                    MergeRef::Target(_) => None,
                };
                let not_found = || match id {
                    Some(id) => Error::not_found(MERGE_TYPE, merge_name(target, id)),
                    None => Error::not_found(
                        MERGE_TYPE,
                        format!("a merge into {target} that is not undone"),
                    ),
                };
                let record = db::merges::find_for_unmerge(conn, target.id(), id)
                    .await?
                    .ok_or_else(not_found)?;
                let name = merge_name(target, record.id);
                if record.unmerge_time.is_some() {
                    return Err(Error::FailedPrecondition {
                        message: format!("{name} was undone already"),
                        reason: reason::MERGE_ALREADY_UNDONE,
                        resource_type: MERGE_TYPE,
                        resource_name: name,
                    });
                }
                let (current, mut locked) =
                    lock_family(conn, target, record.source_ids.clone()).await?;
                let decode =
                    |bytes: &[u8]| customer_from_bytes(bytes).map_err(|e| Error::internal(&e));
                let before = decode(&record.target_before)?;
                let after = decode(&record.target_after)?;
                let mut restore = Vec::with_capacity(record.source_ids.len());
                for (source, bytes) in record.source_ids.iter().zip(&record.sources_before) {
                    let source_name = CustomerName(*source);
                    let gone = |what: &str| Error::FailedPrecondition {
                        message: format!(
                            "{source_name} {what} since the merge; {name} cannot restore it"
                        ),
                        reason: reason::MERGE_SOURCE_CHANGED,
                        resource_type: CUSTOMER_TYPE,
                        resource_name: source_name.to_string(),
                    };
                    let Some(now) = locked.remove(source) else {
                        return Err(gone("was purged or erased"));
                    };
                    if now.merged_into != Some(target) || !now.is_deleted() {
                        return Err(gone("was undeleted or merged elsewhere"));
                    }
                    restore.push((now, decode(bytes)?));
                }

                let moved = db::merges::move_notes_back(
                    conn,
                    target.id(),
                    &record.moved_note_ids,
                    &record.moved_note_sources,
                )
                .await?;
                let restored = unmerged_data(&current.data, &before.data, &after.data);
                Customer::check_references(conn, &restored, Some(&current.data)).await?;
                let updated =
                    Repository::<Customer>::update(conn, &current, &restored, &origin.actor)
                        .await?;
                let moved_notes: Vec<MovedNote> = moved
                    .iter()
                    .filter_map(|note| {
                        let at = record.moved_note_ids.iter().position(|id| *id == note.id)?;
                        Some(MovedNote {
                            previous: NoteName {
                                customer: target,
                                note: note.id,
                            },
                            name: NoteName {
                                customer: CustomerName(record.moved_note_sources[at]),
                                note: note.id,
                            },
                        })
                    })
                    .collect();
                let sources: Vec<CustomerName> = record
                    .source_ids
                    .iter()
                    .copied()
                    .map(CustomerName)
                    .collect();
                conn.record(NewEvent {
                    event_type: EventType::CustomersUnmerged,
                    resource: target.to_string(),
                    sequence: updated.stored.version,
                    data: merge_event(
                        &updated,
                        &current,
                        changed_fields(&current.data, &updated.data),
                        name.clone(),
                        &sources,
                        &moved_notes,
                    ),
                    actor: origin.actor.clone(),
                    request_id: origin.request_id,
                })
                .await?;
                let mut restored_sources = Vec::with_capacity(restore.len());
                for (now, was) in restore {
                    // A company deleted meanwhile does not come back (as UndeleteCustomer).
                    let probe = Customer {
                        data: was.data.clone(),
                        merged_into: None,
                        ..now.clone()
                    };
                    let data = Customer::restored_data(conn, &probe)
                        .await?
                        .unwrap_or(was.data);
                    let row = db::merges::restore_source(
                        conn,
                        now.stored.id,
                        &CustomerChanges::new(&data, &origin.actor),
                    )
                    .await
                    .map_err(db::store::conflict)?;
                    let source = Customer::try_from(row)?.with_retention(retention);
                    write::record(conn, EventType::CustomerUndeleted, &source, None, &origin)
                        .await?;
                    restored_sources.push(source);
                }
                let row = db::merges::mark_unmerged(conn, record.id, &origin.actor).await?;
                Ok(MergeOutcome {
                    customer: updated.with_retention(retention),
                    sources: restored_sources,
                    merge: merge_of(row)?,
                })
            })
            .await?;
        tracing::info!(
            target = %outcome.merge.target,
            merge = %outcome.merge.id,
            sources = outcome.sources.len(),
            "unmerged customers"
        );
        Ok(outcome)
    }
}

/// The target's event of a merge or unmerge.
fn merge_event(
    updated: &Customer,
    current: &Customer,
    changed_fields: Vec<String>,
    merge: String,
    sources: &[CustomerName],
    moved_notes: &[MovedNote],
) -> EventData {
    EventData::Merge(Box::new(MergeChange {
        change: Change {
            snapshot: updated.clone(),
            changed_fields,
            previous: Some(current.data.clone()),
        },
        merge,
        sources: sources.iter().map(ToString::to_string).collect(),
        moved_notes: moved_notes
            .iter()
            .map(|moved| (moved.previous.to_string(), moved.name.to_string()))
            .collect(),
    }))
}

/// The merge record of a stored row.
fn merge_of(row: MergeRow) -> Result<Merge> {
    let target = CustomerName(row.target_id);
    let moved_notes = row
        .moved_note_ids
        .iter()
        .zip(&row.moved_note_sources)
        .map(|(note, source)| MovedNote {
            previous: NoteName {
                customer: CustomerName(*source),
                note: *note,
            },
            name: NoteName {
                customer: target,
                note: *note,
            },
        })
        .collect();
    Ok(Merge {
        id: row.id,
        target,
        sources: row.source_ids.into_iter().map(CustomerName).collect(),
        changed_fields: row.changed_fields,
        moved_notes,
        actor: row.actor,
        merge_time: row.merge_time,
        unmerge_time: row.unmerge_time,
        unmerged_by: row.unmerged_by,
    })
}

/// Locks the live `target` and the customers `sources` (in one statement, in id order):
/// the target, and the sources by id (those that exist). NOT_FOUND or FAILED_PRECONDITION
/// when the target is missing or deleted.
async fn lock_family(
    conn: &mut diesel_async::AsyncPgConnection,
    target: CustomerName,
    mut ids: Vec<Uuid>,
) -> Result<(Customer, HashMap<Uuid, Customer>)> {
    ids.push(target.id());
    let mut locked = HashMap::new();
    for row in db::merges::lock_customers(conn, &ids).await? {
        let customer = Customer::try_from(row)?;
        locked.insert(customer.stored.id, customer);
    }
    let current = locked
        .remove(&target.id())
        .ok_or_else(|| Customer::not_found(target))?;
    if current.is_deleted() {
        return Err(Customer::deleted(target));
    }
    Ok((current, locked))
}
