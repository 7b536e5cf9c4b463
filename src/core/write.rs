//! The one write path: validate → idempotent transaction (check the parent, lock, check the
//! etag, change, record the event, then claim the request id and store the response in one
//! statement; a used id rolls back and takes the path that claims first) → respond.
//!
//! Every create, update, delete and undelete of every resource runs through these functions;
//! a resource contributes only its declaration ([`Resource`]) and its hooks.

use std::time::Duration;

use uuid::Uuid;

use super::{
    fingerprint::{Fingerprint, Parts},
    mask::Mask,
    replay::Replayable,
    resource::{Resource, check_etag},
    store::{Claim, Lock, NewEvent, Repository, Restore, Storage, Store, Transact, TxBody},
};
use crate::{
    domain::{
        FieldViolation, Input, Violations,
        event::EventType,
        names::{self, ParentName, ResourceName},
    },
    service::{Error, Result, Unreachable, error::reason},
};

/// Who makes a change and under which request id: carried into its events.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The caller.
    pub actor: String,
    /// The call's request id.
    pub request_id: Option<Uuid>,
}

/// An update (AIP-134) of a resource with raw input `I`.
#[derive(Debug, Clone, Default)]
pub struct UpdateRequest<I> {
    /// The resource's name.
    pub name: String,
    /// When non-empty, must match.
    pub etag: String,
    /// The new values.
    pub input: I,
    /// `update_mask.paths`; `None` (or empty) means "the fields set in `input`".
    pub update_mask: Option<Vec<String>>,
    /// Idempotency key.
    pub request_id: String,
    /// AIP-134: create the resource under `name` when there is none.
    pub allow_missing: bool,
}

/// A delete of a resource.
#[derive(Debug, Clone, Default)]
pub struct DeleteRequest {
    /// The resource's name.
    pub name: String,
    /// When non-empty, must match.
    pub etag: String,
    /// Idempotency key.
    pub request_id: String,
    /// DeleteCompany: detach live customers instead of refusing.
    pub force: bool,
}

/// The write path over a store.
#[derive(Debug, Clone)]
pub struct Writer<S> {
    /// Where resources live.
    pub store: S,
    /// How long a soft-deleted customer is kept before it is purged; `None`: for ever.
    pub retention: Option<Duration>,
    /// Where concurrent Gets meet to share a statement.
    pub gates: std::sync::Arc<super::coalesce::Gates>,
}

impl<S> Writer<S>
where
    S: Transact<<S as Store>::Conn>,
{
    /// Creates a resource under `parent` (`""` for top-level resources). With a request id,
    /// a retry returns the first result.
    pub async fn create<R: Resource>(
        &self,
        parent: &str,
        input: R::Input,
        request_id: &str,
        actor: &str,
    ) -> Result<R>
    where
        S::Conn: Repository<R>,
    {
        let mut violations = Violations::new();
        let parsed_parent = collect(&mut violations, parent_name::<R>(parent));
        let request_id = collect(
            &mut violations,
            names::parse_request_id("request_id", request_id),
        );
        let data = input
            .validate(R::FIELD)
            .map_err(|more| violations.extend(more))
            .ok();
        let (Some(parsed_parent), Some(request_id), Some(data)) =
            violations.into_result((parsed_parent, request_id, data))?
        else {
            return Err(Error::internal(&Unreachable(
                "validated create without parts",
            )));
        };
        R::trace_create(&data);
        let parts = Parts {
            input: R::canonical_input(&input),
            ..call::<R>("Create", actor, parent)
        };
        // Version 1 spelled the input as text: rendered only for a record that old.
        let (legacy_actor, legacy_parent) = (actor.to_owned(), parent.to_owned());
        let fingerprint = Fingerprint::deferred(&parts, move || {
            let mut legacy = vec![legacy_actor.clone()];
            if !legacy_parent.is_empty() {
                legacy.push(legacy_parent.clone());
            }
            legacy.push(R::legacy_input(&input));
            legacy
        });
        let name = R::Name::child(parsed_parent, Uuid::now_v7());
        let origin = Origin {
            actor: actor.to_owned(),
            request_id,
        };
        self.optimistic(request_id, fingerprint, async move |conn: &mut S::Conn| {
            insert_new(conn, name, &data, &origin).await
        })
        .await
    }

    /// Returns one resource, deleted or not.
    pub async fn get<R: Resource>(&self, name: &str) -> Result<R>
    where
        S::Conn: Repository<R>,
    {
        let name = R::Name::parse("name", name)?;
        let found = match R::gate(&self.gates) {
            // Top-level: concurrent Gets share a statement.
            Some(gate) => {
                let store = &self.store;
                let one = move |name| {
                    store.read(async move |conn: &mut S::Conn| {
                        Repository::<R>::find(conn, name, Lock::None).await
                    })
                };
                let many = move |names: Vec<R::Name>| {
                    store.read(async move |conn: &mut S::Conn| {
                        Repository::<R>::find_many(conn, &names).await
                    })
                };
                gate.read(name, one, many).await?
            }
            None => {
                self.store
                    .read(async move |conn: &mut S::Conn| {
                        R::check_parent(conn, name, false).await?;
                        Repository::<R>::find(conn, name, Lock::None).await
                    })
                    .await?
            }
        };
        found
            .map(|resource| R::with_retention(resource, self.retention))
            .ok_or_else(|| R::not_found(name))
    }

    /// Changes the fields selected by the update mask (AIP-134), checking the etag under the
    /// row lock. A change that changes nothing writes nothing: no new etag, no event.
    pub async fn update<R: Resource>(
        &self,
        request: UpdateRequest<R::Input>,
        actor: &str,
    ) -> Result<R>
    where
        S::Conn: Repository<R>,
    {
        let mut violations = Violations::new();
        let name = collect(
            &mut violations,
            R::Name::parse(&format!("{}.name", R::FIELD), &request.name),
        );
        let request_id = collect(
            &mut violations,
            names::parse_request_id("request_id", &request.request_id),
        );
        let mask = update_mask::<R>(
            &mut violations,
            request.update_mask.as_deref(),
            &request.input,
        );
        // Check the masked values before touching the database, against a valid stand-in
        // for the stored fields; the merged result is checked again under the lock.
        let probe = masked_stand_in::<R>(&mask, &request.input);
        if let Err(more) = probe.validate(R::FIELD) {
            violations.extend(more);
        }
        let (Some(name), Some(request_id)) = violations.into_result((name, request_id))? else {
            return Err(Error::internal(&Unreachable(
                "validated update without parts",
            )));
        };
        tracing::debug!(resource = %name, fields = ?mask.canonical_paths(), "updating {}", R::FIELD);
        let legacy_mask = R::legacy_mask(&mask);
        let legacy_input = R::legacy_input(&request.input);
        let fingerprint = Fingerprint::new(
            &Parts {
                etag: request.etag.clone(),
                mask: mask.canonical_paths(),
                input: R::canonical_input(&request.input),
                allow_missing: request.allow_missing,
                ..call::<R>("Update", actor, &request.name)
            },
            &[
                actor,
                &request.name,
                &request.etag,
                &legacy_mask,
                &legacy_input,
            ],
        );
        let origin = Origin {
            actor: actor.to_owned(),
            request_id,
        };
        let UpdateRequest {
            etag,
            input,
            allow_missing,
            ..
        } = request;
        self.optimistic(request_id, fingerprint, async move |conn: &mut S::Conn| {
            if allow_missing && etag.is_empty() {
                // Two creates of one missing name take turns: the second finds the first's.
                conn.lock_key(&name.to_string()).await?;
                if Repository::<R>::find(conn, name, Lock::None)
                    .await?
                    .is_none()
                {
                    let mut fresh = R::Input::default();
                    mask.apply(&mut fresh, &input);
                    let data = fresh.validate(R::FIELD)?;
                    return insert_new(conn, name, &data, &origin).await;
                }
            }
            let current = locked_live::<R, _>(conn, name, &etag).await?;
            let mut merged = R::Input::from(current.data());
            mask.apply(&mut merged, &input);
            change(conn, current, &merged, &origin).await
        })
        .await
    }

    /// Deletes a resource (softly, or for good for resources without undelete), checking the
    /// etag. The resource as deleted (or as it was last).
    pub async fn delete<R: Resource>(&self, request: DeleteRequest, actor: &str) -> Result<R>
    where
        S::Conn: Repository<R>,
    {
        let (name, request_id) = named_request::<R>(&request.name, &request.request_id)?;
        tracing::debug!(resource = %name, "deleting {}", R::FIELD);
        let mut legacy = vec![actor, request.name.as_str(), request.etag.as_str()];
        if R::HAS_FORCE {
            legacy.push(if request.force { "force" } else { "" });
        }
        let fingerprint = Fingerprint::new(
            &Parts {
                etag: request.etag.clone(),
                force: request.force,
                ..call::<R>("Delete", actor, &request.name)
            },
            &legacy,
        );
        let origin = Origin {
            actor: actor.to_owned(),
            request_id,
        };
        let retention = self.retention;
        let DeleteRequest { etag, force, .. } = request;
        self.optimistic(request_id, fingerprint, async move |conn: &mut S::Conn| {
            let current = locked_live::<R, _>(conn, name, &etag).await?;
            R::before_delete(conn, &current, force, &origin).await?;
            let removed = Repository::<R>::remove(conn, &current, &origin.actor).await?;
            let removed = R::with_retention(removed, retention);
            record(conn, R::EVENTS.deleted, &removed, None, &origin).await?;
            Ok(removed)
        })
        .await
    }

    /// Restores a soft-deleted resource (AIP-164), checking the etag; under a request id, a
    /// retry gets the first answer (AIP-155).
    pub async fn undelete<R: Resource>(
        &self,
        name: &str,
        etag: &str,
        request_id: &str,
        actor: &str,
    ) -> Result<R>
    where
        S::Conn: Restore<R>,
    {
        let (parsed, request_id) = named_request::<R>(name, request_id)?;
        tracing::debug!(resource = %parsed, "undeleting {}", R::FIELD);
        let fingerprint = Fingerprint::new(
            &Parts {
                etag: etag.to_owned(),
                ..call::<R>("Undelete", actor, name)
            },
            &[actor, name, etag],
        );
        let etag = etag.to_owned();
        let origin = Origin {
            actor: actor.to_owned(),
            request_id,
        };
        let Some(undeleted) = R::EVENTS.undeleted else {
            return Err(Error::internal(&Unreachable(
                "undelete of a hard-deleted resource",
            )));
        };
        let name = parsed;
        self.optimistic(request_id, fingerprint, async move |conn: &mut S::Conn| {
            let current = Repository::<R>::find(conn, name, Lock::Update)
                .await?
                .ok_or_else(|| R::not_found(name))?;
            if !current.is_deleted() {
                return Err(Error::AlreadyExists {
                    message: format!("{name} is not deleted"),
                    reason: R::REASONS.not_deleted,
                    resource_type: R::TYPE,
                    resource_name: name.to_string(),
                });
            }
            check_etag(&current, &etag)?;
            let data = R::restored_data(conn, &current).await?;
            let restored = conn.restore(&current, data.as_ref(), &origin.actor).await?;
            record(conn, undeleted, &restored, None, &origin).await?;
            Ok(restored)
        })
        .await
    }

    /// [`Writer::idempotent`] for a write of one resource, claiming its request id last: the
    /// body runs first, then one statement claims the id and stores the response. When the
    /// id turns out used (a retry: its first write committed), the transaction rolls back
    /// and the request runs again on [`Writer::idempotent`]'s path, which replays the first
    /// response or refuses a different request.
    ///
    /// A first attempt thus saves a statement and a round trip, and writes the
    /// `request_ids` row once instead of inserting and then updating it (issue 20). A retry
    /// pays for its body twice, so this is for bodies of a bounded handful of statements;
    /// heavier writes (imports, merges, erasures) claim first. A retry's body may fail
    /// where the first attempt succeeded (the email it registered is taken, the etag it
    /// checked has moved on): every failure that a first write can explain is therefore
    /// answered on the claiming path too; only the database being unreachable or too slow
    /// is not (running again would only wait for it twice).
    ///
    /// Two requests with one id racing, one on each path, can each hold what the other
    /// waits for (the claim, a row lock): PostgreSQL ends the one it picks as a deadlock,
    /// and that one, a failure like any other, gets its answer on the claiming path.
    pub async fn optimistic<R, F>(
        &self,
        request_id: Option<Uuid>,
        fingerprint: Fingerprint,
        body: F,
    ) -> Result<R>
    where
        R: Replayable + Send + 'static,
        F: for<'r> TxBody<'r, S::Conn, R> + Clone + Send + 'static,
    {
        let Some(id) = request_id else {
            return self.idempotent(None, fingerprint, body).await;
        };
        let first = body.clone();
        let claimed = fingerprint.current.clone();
        let attempt = self
            .store
            .write(async move |conn: &mut S::Conn| {
                let response = first(conn).await?;
                let owner = response.personal_data_of();
                if conn
                    .claim_with_response(id, &claimed, response.store_replay(), owner)
                    .await?
                {
                    Ok(response)
                } else {
                    Err(request_id_taken())
                }
            })
            .await;
        match attempt {
            // Boxed: a rare path, whose state would otherwise enlarge every write's future
            // (moved whole, by memcpy, each time the call's future is boxed or spawned).
            Err(error) if answered_by_the_claim(&error) => {
                Box::pin(self.idempotent(request_id, fingerprint, body)).await
            }
            settled => settled,
        }
    }

    /// Runs `body` in a write transaction under a request id: a retry of the same request
    /// (same fingerprint) gets the first response instead of a second write; a different
    /// request with the same id is refused.
    pub async fn idempotent<R, F>(
        &self,
        request_id: Option<Uuid>,
        fingerprint: Fingerprint,
        body: F,
    ) -> Result<R>
    where
        R: Replayable + Send + 'static,
        F: for<'r> TxBody<'r, S::Conn, R> + Send + 'static,
    {
        self.store
            .write(async move |conn: &mut S::Conn| {
                if let Some(request_id) = request_id {
                    match conn.claim(request_id, &fingerprint.current).await? {
                        Claim::Fresh => {}
                        Claim::Used {
                            fingerprint: first,
                            response,
                        } => {
                            if !fingerprint.matches(&first) {
                                return Err(Error::invalid_field(
                                    reason::REQUEST_ID_REUSED,
                                    "request_id",
                                    "was already used for a different request; use a new UUID \
                                     per request",
                                ));
                            }
                            // The stored response, or the answer to a retry of a
                            // request whose response was forgotten (`Forgotten::answer`).
                            return R::load_replay(response);
                        }
                    }
                }
                let response = body(conn).await?;
                if let Some(request_id) = request_id {
                    let owner = response.personal_data_of();
                    conn.complete(request_id, response.store_replay(), owner)
                        .await?;
                }
                Ok(response)
            })
            .await
    }
}

/// What rolls back an optimistic write whose request id a committed write used. Never sent:
/// [`Writer::optimistic`] answers it on the claiming path.
fn request_id_taken() -> Error {
    Error::Aborted {
        message: "the request id was used by a committed write".to_owned(),
        reason: "REQUEST_ID_TAKEN",
        resource_type: "",
        resource_name: String::new(),
    }
}

/// Whether an optimistic write's failure may be a retry's (its first write committed), to be
/// answered on the claiming path: all but the database's being unreachable or too slow.
fn answered_by_the_claim(error: &Error) -> bool {
    !matches!(
        error,
        Error::Unavailable { .. } | Error::DeadlineExceeded { .. }
    )
}

/// The `name` and `request_id` of a request about one resource (delete, undelete), both
/// checked: every problem of the two is reported at once.
fn named_request<R: Resource>(name: &str, request_id: &str) -> Result<(R::Name, Option<Uuid>)> {
    name_and_request_id::<R::Name>(name, request_id)
}

/// The `name` (of any resource type `N`) and `request_id` of a write, both checked: every
/// problem of the two is reported at once.
pub(crate) fn name_and_request_id<N: ResourceName>(
    name: &str,
    request_id: &str,
) -> Result<(N, Option<Uuid>)> {
    let mut violations = Violations::new();
    let name = collect(&mut violations, N::parse("name", name));
    let request_id = collect(
        &mut violations,
        names::parse_request_id("request_id", request_id),
    );
    match violations.into_result((name, request_id))? {
        (Some(name), Some(request_id)) => Ok((name, request_id)),
        _ => Err(Error::internal(&Unreachable(
            "validated request without a name",
        ))),
    }
}

/// Inside a write: stores a new resource under `name` (its parent live, its references
/// checked) and records its created event.
pub async fn insert_new<R: Resource, C: Storage + Repository<R>>(
    conn: &mut C,
    name: R::Name,
    data: &R::Data,
    origin: &Origin,
) -> Result<R> {
    R::check_parent(conn, name, true).await?;
    R::check_references(conn, data, None).await?;
    let created = Repository::<R>::insert(conn, name, data, &origin.actor).await?;
    record(conn, R::EVENTS.created, &created, None, origin).await?;
    Ok(created)
}

/// Inside a write: gives the locked, live `current` the fields `merged` (validated here)
/// and records its updated event. Nothing changed means nothing written: `current` back.
pub async fn change<R: Resource, C: Storage + Repository<R>>(
    conn: &mut C,
    current: R,
    merged: &R::Input,
    origin: &Origin,
) -> Result<R> {
    let data = merged.validate(R::FIELD)?;
    if &data == current.data() {
        return Ok(current);
    }
    R::check_references(conn, &data, Some(current.data())).await?;
    let updated = Repository::<R>::update(conn, &current, &data, &origin.actor).await?;
    record(
        conn,
        R::EVENTS.updated,
        &updated,
        Some(current.data()),
        origin,
    )
    .await?;
    Ok(updated)
}

/// The live resource, locked for this transaction (its parent checked and share-locked
/// first), after checking the etag.
pub async fn locked_live<R: Resource, C: Storage + Repository<R>>(
    conn: &mut C,
    name: R::Name,
    etag: &str,
) -> Result<R> {
    R::check_parent(conn, name, true).await?;
    let current = Repository::<R>::find(conn, name, Lock::Update)
        .await?
        .ok_or_else(|| R::not_found(name))?;
    if current.is_deleted() {
        return Err(R::deleted(name));
    }
    check_etag(&current, etag)?;
    Ok(current)
}

/// Records the event of `event_type` about `snapshot` in the outbox.
pub async fn record<R: Resource, C: Storage>(
    conn: &mut C,
    event_type: EventType,
    snapshot: &R,
    previous: Option<&R::Data>,
    origin: &Origin,
) -> Result<()> {
    conn.record(NewEvent {
        event_type,
        resource: snapshot.name().to_string(),
        sequence: R::sequence(event_type, snapshot),
        data: R::event(event_type, snapshot, previous),
        actor: origin.actor.clone(),
        request_id: origin.request_id,
    })
    .await
}

/// The parent named in a create of `R` (`""` for top-level resources).
fn parent_name<R: Resource>(
    parent: &str,
) -> Result<<R::Name as ResourceName>::Parent, FieldViolation> {
    <R::Name as ResourceName>::Parent::parse_parent("parent", parent)
}

/// The fingerprint parts of every write: the RPC (`{verb}{KIND}`), the caller, and the
/// resource name (for a create, the parent) as the request spelled it.
pub fn call<R: Resource>(verb: &str, actor: &str, name: &str) -> Parts {
    Parts {
        method: [verb, R::KIND].concat(),
        actor: actor.to_owned(),
        name: name.to_owned(),
        ..Parts::default()
    }
}

/// The mask of an update: `paths` when it names any (its violations added to `violations`),
/// else the fields `input` sets (AIP-134's implied mask).
pub fn update_mask<R: Resource>(
    violations: &mut Violations,
    paths: Option<&[String]>,
    input: &R::Input,
) -> Mask<R::Field> {
    match paths {
        Some(paths) if !paths.is_empty() => {
            let (mask, more) = Mask::parse("update_mask", paths, R::PROTO);
            violations.extend(more);
            mask
        }
        _ => Mask::Fields(input.present_fields()),
    }
}

/// A valid stand-in for the stored fields with the masked fields of `input`: what an
/// update's values are checked as before the stored row is read.
pub fn masked_stand_in<R: Resource>(mask: &Mask<R::Field>, input: &R::Input) -> R::Input {
    let mut probe = R::stand_in();
    mask.apply(&mut probe, input);
    probe
}

/// Moves a violation into `violations`, keeping the value when there is none.
pub fn collect<T>(violations: &mut Violations, result: Result<T, FieldViolation>) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(violation) => {
            violations.extend(violation.into());
            None
        }
    }
}
