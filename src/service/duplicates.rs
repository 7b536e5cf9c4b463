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
        list::{self, Page},
        resource::Resource,
        store::{Lock, Repository, Transact as _},
    },
    db::{self, duplicates::Hit, store::PgStore},
    domain::{
        Input as _, Violations,
        customer::{Customer, CustomerInput},
        duplicates::{DuplicateReason, MAX_CANDIDATES, NAME_SIMILARITY, Probe},
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
    /// The candidate, live.
    pub customer: Customer,
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
                    customer: customer.with_retention(self.writer().retention),
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
            |(_, candidate)| list::resource_bytes(&candidate.customer) + 64,
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
