//! FindDuplicateCustomers (issue 19): the live customers that may be the same person as a
//! stored customer or as a customer's values, best first, with the reasons.
//!
//! The probe's values are put in normal form ([`Probe`]); one statement
//! (`db::duplicates::find`) finds, scores and ranks the candidates over indexes on the same
//! normal forms. Pages are offsets into that ranking in a page token bound to the probe, at
//! most [`MAX_CANDIDATES`] deep.

use crate::domain::names::ResourceName as _;

use super::{CustomerService, Error, Result};
use crate::{
    core::{
        fingerprint::{Fingerprint, Parts},
        list::{self, Page},
        resource::Resource,
        store::{Lock, Repository, Transact as _},
    },
    db::{self, duplicates::Hit, store::PgStore},
    domain::{
        Input as _, Violations,
        customer::{Customer, CustomerInput},
        duplicates::{
            DuplicatePolicy, DuplicateReason, LIKELY_DUPLICATE, MAX_CANDIDATES,
            MAX_CREATE_CANDIDATES, NAME_SIMILARITY, Probe,
        },
        names::CustomerName,
    },
    service::page_token::PageTokens,
};

/// A FindDuplicateCustomers request: `name` or `customer`.
#[derive(Debug, Clone, Default)]
pub struct DuplicatesRequest {
    /// A stored customer to probe with (not a candidate itself).
    pub name: String,
    /// Values to probe with.
    pub customer: Option<CustomerInput>,
    /// Requested page size.
    pub page_size: i32,
    /// Token of the previous page.
    pub page_token: String,
}

/// One possible duplicate.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The candidate, live, as its contract message.
    pub customer: crate::pb::Customer,
    /// 0..1, higher is likelier.
    pub score: f64,
    /// What matched, strongest first.
    pub reasons: Vec<DuplicateReason>,
}

/// A probe over a customer's values; `prefix` names the request field of violations.
pub fn probe_of(prefix: &str, input: &CustomerInput) -> std::result::Result<Probe, Violations> {
    Probe::new(
        prefix,
        &input.given_name,
        &input.family_name,
        &input.email,
        &input.phone,
        &input.company,
        &input.external_ids,
    )
}

/// The probe of the values a request sent (`customer`): each value given must be one a
/// customer may hold, checked by the customer's own rules (so the OpenAPI document can say
/// what is accepted), but none is required: an empty given name, family name or email is
/// not given. Then [`probe_of`].
pub fn requested_probe(input: &CustomerInput) -> std::result::Result<Probe, Violations> {
    let mut whole = input.clone();
    // What a customer requires and a probe does not: valid stand-ins, compared with nothing.
    for (value, stand_in) in [
        (&mut whole.given_name, "-"),
        (&mut whole.family_name, "-"),
        (&mut whole.email, "probe@example.com"),
    ] {
        if value.is_empty() {
            *value = stand_in.to_owned();
        }
    }
    whole.validate("customer")?;
    probe_of("customer.", input)
}

impl CustomerService<PgStore> {
    /// The live customers that may be the same person as the probe, best first.
    pub async fn find_duplicates(&self, request: DuplicatesRequest) -> Result<Page<Candidate>> {
        let mut violations = Violations::new();
        let size = list::page_size(&mut violations, request.page_size);
        let by_name = match (request.name.as_str(), &request.customer) {
            ("", None) => {
                violations.add(
                    "name",
                    "set `name` (a stored customer) or `customer` (values)",
                );
                None
            }
            ("", Some(_)) => None,
            (_, Some(_)) => {
                violations.add("customer", "set either `name` or `customer`, not both");
                None
            }
            (name, None) => match CustomerName::parse("name", name) {
                Ok(name) => Some(name),
                Err(violation) => {
                    violations.extend(violation.into());
                    None
                }
            },
        };
        let given = match &request.customer {
            Some(input) => requested_probe(input)
                .map_err(|more| violations.extend(more))
                .ok(),
            None => None,
        };
        violations.into_result(())?;
        let (probe, except) = match (given, by_name) {
            (Some(probe), _) => (probe, None),
            (None, Some(name)) => {
                let stored = self
                    .writer()
                    .store
                    .read(async move |conn| {
                        Repository::<Customer>::find(conn, name, Lock::None)
                            .await?
                            .ok_or_else(|| Customer::not_found(name))
                    })
                    .await?;
                let probe = probe_of("customer.", &CustomerInput::from(&stored.data))?;
                (probe, Some(name.id()))
            }
            (None, None) => {
                return Err(Error::internal(&super::Unreachable(
                    "validated duplicate probe without a probe",
                )));
            }
        };
        let mut external: Vec<String> = Vec::new();
        for (source, id) in &probe.external_ids {
            external.push(format!("{source}\u{1f}{id}"));
        }
        let except_text = except.map(|id| id.to_string()).unwrap_or_default();
        let query = PageTokens::query_fingerprint(&[
            "duplicates",
            &except_text,
            &probe.email,
            &probe.phone,
            &probe.full_name,
            &probe.company,
            &external.join("\u{1e}"),
        ]);
        let paging = list::paging::<i64>(&self.page_tokens, size, &request.page_token, query)?;
        let offset = paging.after.unwrap_or(0).clamp(0, MAX_CANDIDATES);
        let limit = paging.limit().min(MAX_CANDIDATES - offset);
        let found = self
            .writer()
            .store
            .read(async move |conn| {
                let hits = db::duplicates::find(conn, &probe, except, limit, offset).await?;
                let ids: Vec<uuid::Uuid> = hits.iter().map(|hit| hit.id).collect();
                let rows = db::customers::find_many(conn, &ids).await?;
                Ok::<_, Error>((hits, rows))
            })
            .await?;
        let (hits, rows) = found;
        let mut by_id = std::collections::HashMap::with_capacity(rows.len());
        for row in rows {
            by_id.insert(row.id, Customer::try_from(row)?);
        }
        let mut candidates = Vec::with_capacity(hits.len());
        for (index, hit) in hits.into_iter().enumerate() {
            // A candidate changed between the two statements (deleted, say) is left out.
            let Some(customer) = by_id.remove(&hit.id) else {
                continue;
            };
            candidates.push((
                offset + index as i64 + 1,
                Candidate {
                    customer: customer
                        .with_retention(self.writer().retention)
                        .to_message(),
                    score: (hit.score * 1000.0).round() / 1000.0,
                    reasons: reasons(&hit),
                },
            ));
        }
        let (page, next_page_token) = list::page(
            candidates,
            &paging,
            &self.page_tokens,
            |last| last.0,
            // A candidate is its customer plus a score and a few reasons.
            |(_, candidate)| list::entry_bytes(&candidate.customer) + 64,
        );
        // The ranking goes no deeper than MAX_CANDIDATES.
        let at_end = page.last().is_some_and(|last| last.0 >= MAX_CANDIDATES);
        Ok(Page {
            items: page.into_iter().map(|(_, candidate)| candidate).collect(),
            next_page_token: if at_end {
                String::new()
            } else {
                next_page_token
            },
        })
    }
}

/// The header (REST) and response metadata (gRPC) of CreateCustomer with
/// `duplicate_policy = WARN`: the likely duplicates, best first, comma-separated.
pub const DUPLICATE_CANDIDATES_HEADER: &str = "duplicate-candidates";

impl CustomerService<PgStore> {
    /// CreateCustomer under a duplicate policy (`customer.v1.DuplicatePolicy` number): the
    /// new customer and, with WARN, the names of the live customers likely the same person
    /// (best first, at most [`MAX_CREATE_CANDIDATES`]). REJECT refuses (ALREADY_EXISTS,
    /// [`Error::Duplicates`]) while there are any; its check and the insert are one
    /// transaction, and a retry with the same request id replays the first answer without
    /// checking again. WARN looks after the create, leaving out the new customer itself, so
    /// a retry names the same candidates.
    pub async fn create_customer(
        &self,
        input: CustomerInput,
        request_id: &str,
        policy: i32,
        actor: &str,
    ) -> Result<(Customer, Vec<String>)> {
        let policy = DuplicatePolicy::from_number("duplicate_policy", policy)?;
        let writer = self.writer();
        match policy {
            DuplicatePolicy::Allow => Ok((
                writer
                    .create::<Customer>("", input, request_id, actor)
                    .await?,
                Vec::new(),
            )),
            DuplicatePolicy::Warn => {
                let created = writer
                    .create::<Customer>("", input, request_id, actor)
                    .await?;
                let except = created.stored.id;
                let probe = probe_of("customer.", &CustomerInput::from(&created.data)).ok();
                let candidates = match probe {
                    None => Vec::new(),
                    Some(probe) => {
                        writer
                            .store
                            .read(async move |conn| likely(conn, &probe, Some(except)).await)
                            .await?
                    }
                };
                Ok((created, candidates))
            }
            DuplicatePolicy::Reject => self
                .create_rejecting(input, request_id, actor)
                .await
                .map(|created| (created, Vec::new())),
        }
    }

    /// CreateCustomer with `duplicate_policy = REJECT`.
    async fn create_rejecting(
        &self,
        input: CustomerInput,
        request_id: &str,
        actor: &str,
    ) -> Result<Customer> {
        use crate::domain::Input as _;
        let mut violations = Violations::new();
        let request_id = crate::core::write::collect(
            &mut violations,
            crate::domain::names::parse_request_id("request_id", request_id),
        );
        let data = input
            .validate(Customer::FIELD)
            .map_err(|more| violations.extend(more))
            .ok();
        let (Some(request_id), Some(data)) = violations.into_result((request_id, data))? else {
            return Err(Error::internal(&super::Unreachable(
                "validated create without parts",
            )));
        };
        let probe = probe_of("customer.", &CustomerInput::from(&data)).ok();
        let fingerprint = Fingerprint::new(
            &Parts {
                input: Customer::canonical_input(&input),
                // Another request than a create without the check.
                mask: vec!["duplicate_policy=REJECT".to_owned()],
                ..crate::core::write::call::<Customer>("Create", actor, "")
            },
            &[],
        );
        let origin = crate::core::write::Origin {
            actor: actor.to_owned(),
            request_id,
        };
        let name = CustomerName(uuid::Uuid::now_v7());
        self.writer()
            .idempotent(request_id, fingerprint, async move |conn| {
                if let Some(probe) = probe {
                    let candidates = likely(conn, &probe, None).await?;
                    if !candidates.is_empty() {
                        return Err(Error::Duplicates {
                            message: format!(
                                "{} live customer{} likely the same person (duplicate_policy \
                                 REJECT): {}; merge them, or create with duplicate_policy ALLOW",
                                candidates.len(),
                                if candidates.len() == 1 {
                                    " is"
                                } else {
                                    "s are"
                                },
                                candidates.join(", ")
                            ),
                            reason: super::error::reason::DUPLICATE_CUSTOMER,
                            resource_type: crate::domain::names::CUSTOMER_TYPE,
                            candidates,
                        });
                    }
                }
                crate::core::write::insert_new(conn, name, &data, &origin).await
            })
            .await
    }
}

/// The names of the live customers at least [`LIKELY_DUPLICATE`] like `probe`, best first.
async fn likely(
    conn: &mut diesel_async::AsyncPgConnection,
    probe: &Probe,
    except: Option<uuid::Uuid>,
) -> Result<Vec<String>> {
    let hits = db::duplicates::find(conn, probe, except, MAX_CREATE_CANDIDATES, 0).await?;
    Ok(hits
        .iter()
        .filter(|hit| hit.score >= LIKELY_DUPLICATE)
        .map(|hit| CustomerName(hit.id).to_string())
        .collect())
}

/// What matched, strongest first.
fn reasons(hit: &Hit) -> Vec<DuplicateReason> {
    [
        (hit.same_email, DuplicateReason::SameEmail),
        (hit.same_external_id, DuplicateReason::SameExternalId),
        (hit.same_phone, DuplicateReason::SamePhone),
        (
            hit.name_similarity >= NAME_SIMILARITY,
            DuplicateReason::SimilarName,
        ),
        (hit.same_local_part, DuplicateReason::SameEmailLocalPart),
        (hit.same_company, DuplicateReason::SameCompany),
    ]
    .into_iter()
    .filter_map(|(matched, reason)| matched.then_some(reason))
    .collect()
}
