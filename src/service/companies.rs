//! The company use cases: create, get, list, update and (soft) delete companies.
//!
//! Companies follow the customer rules (validation listing every violation, etags checked
//! under the row lock, request ids, soft delete, keyset pagination) plus one of their own:
//! a company is not deleted while live customers belong to it, unless the caller asks for
//! `force`, which detaches those customers (clears their `company`) in the same transaction,
//! each with its own CustomerUpdated event. Customer writes that set a company share-lock
//! its row (see `check_company_reference`), so a delete and such a write take turns and
//! neither can leave a live customer pointing at a deleted company.

use diesel_async::AsyncPgConnection;
use uuid::Uuid;

use super::{
    DEFAULT_PAGE_SIZE, Error, MAX_PAGE_SIZE, Result, Unreachable, claim, collect, complete,
    error::reason,
    events::{Origin, record, record_company},
    fingerprint, json,
    page_token::PageTokens,
};
use crate::{
    db::{
        companies::{self as queries, ListQuery, cursor_after},
        customers as customer_queries,
        models::{CompanyChanges, NewCompanyRow},
    },
    domain::{
        Violations,
        company::{Company, CompanyInput, CompanyMask},
        customer::Customer,
        event::EventType,
        filter::{self, CompanyField},
        legacy,
        names::{self, COMPANY_TYPE, CompanyName},
        order_by::{self, CompanyOrder},
    },
    redact::mask_pii_owned,
};

/// A ListCompanies request.
#[derive(Debug, Clone, Default)]
pub struct CompanyListRequest {
    /// Requested page size (0 = default).
    pub page_size: i32,
    /// Token from the previous page.
    pub page_token: String,
    /// AIP-160 filter over company fields.
    pub filter: String,
    /// AIP-132 ordering over company fields.
    pub order_by: String,
    /// Include soft-deleted companies.
    pub show_deleted: bool,
}

/// One page of ListCompanies.
#[derive(Debug, Clone)]
pub struct CompanyPage {
    /// The companies, in the requested order.
    pub companies: Vec<Company>,
    /// Token for the next page; empty on the last one.
    pub next_page_token: String,
}

/// An UpdateCompany request.
#[derive(Debug, Clone, Default)]
pub struct CompanyUpdateRequest {
    /// `company.name`.
    pub name: String,
    /// `company.etag`: when non-empty, must match.
    pub etag: String,
    /// The new values.
    pub input: CompanyInput,
    /// `update_mask.paths`; `None` (or empty) means "the fields set in `input`".
    pub update_mask: Option<Vec<String>>,
    /// Idempotency key.
    pub request_id: String,
}

/// A DeleteCompany request.
#[derive(Debug, Clone, Default)]
pub struct CompanyDeleteRequest {
    /// The company's name.
    pub name: String,
    /// When non-empty, must match.
    pub etag: String,
    /// Detach live customers instead of refusing.
    pub force: bool,
    /// Idempotency key.
    pub request_id: String,
}

impl super::CustomerService {
    /// Creates a company. With a `request_id`, a retry returns the first result.
    pub async fn create_company(
        &self,
        input: CompanyInput,
        request_id: &str,
        actor: &str,
    ) -> Result<Company> {
        let mut violations = Violations::new();
        let request_id = collect(
            &mut violations,
            names::parse_request_id("request_id", request_id),
        );
        let data = match input.validate("company") {
            Ok(data) => Some(data),
            Err(more) => {
                violations.extend(more);
                None
            }
        };
        let (Some(request_id), Some(data)) = (request_id, violations.into_result(data)?) else {
            return Err(Error::internal(&Unreachable(
                "validated company create without data",
            )));
        };
        let fingerprint = fingerprint("CreateCompany", &[actor, &json(&input)]);
        let row = NewCompanyRow {
            id: Uuid::now_v7(),
            created_by: Some(actor.to_owned()),
            fields: CompanyChanges::new(&data, actor),
        };
        let actor = actor.to_owned();
        self.write(async move |conn| {
            if let Some(replayed) = claim(conn, request_id, &fingerprint).await? {
                return Ok(replayed);
            }
            let stored = queries::insert(conn, &row)
                .await
                .map_err(business_id_conflict)?;
            let company = Company::try_from(stored)?;
            let origin = Origin {
                actor: &actor,
                request_id,
            };
            record_company(conn, EventType::CompanyCreated, &company, None, origin).await?;
            complete(conn, request_id, &company).await?;
            Ok(company)
        })
        .await
    }

    /// Returns one company, deleted or not.
    pub async fn get_company(&self, name: &str) -> Result<Company> {
        let name = CompanyName::parse("name", name)?;
        let mut conn = self.pool.get().await?;
        let row = queries::find(&mut conn, name.id())
            .await?
            .ok_or_else(|| Error::not_found(COMPANY_TYPE, name))?;
        Ok(Company::try_from(row)?)
    }

    /// One page of companies matching the filter, in the requested order.
    pub async fn list_companies(&self, request: &CompanyListRequest) -> Result<CompanyPage> {
        let mut violations = Violations::new();
        let page_size = match request.page_size {
            size if size < 0 => {
                violations.add("page_size", "must not be negative");
                DEFAULT_PAGE_SIZE
            }
            0 => DEFAULT_PAGE_SIZE,
            size => size.min(MAX_PAGE_SIZE),
        };
        let filter = filter::parse::<CompanyField>(&request.filter).unwrap_or_else(|error| {
            violations.add("filter", mask_pii_owned(error.to_string()));
            None
        });
        let order = order_by::parse::<CompanyOrder>(&request.order_by).unwrap_or_else(|error| {
            violations.add("order_by", mask_pii_owned(error.to_string()));
            Vec::new()
        });
        violations.into_result(())?;

        // The v1 fingerprint text (the previous version's `Debug` output), so tokens it issued
        // stay valid.
        let query = PageTokens::query_fingerprint(&[
            "companies",
            &legacy::legacy_debug_company_filter(&filter),
            &legacy::legacy_debug_company_order(&order),
            if request.show_deleted {
                "deleted"
            } else {
                "live"
            },
        ]);
        let after = match request.page_token.as_str() {
            "" => None,
            token => Some(self.page_tokens.decode(token, &query).map_err(|e| {
                Error::invalid_field(reason::INVALID_PAGE_TOKEN, "page_token", e.to_string())
            })?),
        };
        let mut conn = self.pool.get().await?;
        let mut rows = queries::list(
            &mut conn,
            &ListQuery {
                filter: filter.as_ref(),
                order: &order,
                show_deleted: request.show_deleted,
                after: after.as_ref(),
                limit: i64::from(page_size) + 1,
            },
        )
        .await?;
        drop(conn);

        let more = rows.len() > page_size as usize;
        rows.truncate(page_size as usize);
        let next_page_token = match rows.last() {
            Some(last) if more => self.page_tokens.encode(&query, &cursor_after(last, &order)),
            _ => String::new(),
        };
        let companies = rows
            .into_iter()
            .map(Company::try_from)
            .collect::<Result<_, _>>()?;
        Ok(CompanyPage {
            companies,
            next_page_token,
        })
    }

    /// Changes the fields selected by the update mask (AIP-134), checking the etag.
    pub async fn update_company(
        &self,
        request: CompanyUpdateRequest,
        actor: &str,
    ) -> Result<Company> {
        let mut violations = Violations::new();
        let name = collect(
            &mut violations,
            CompanyName::parse("company.name", &request.name),
        );
        let request_id = collect(
            &mut violations,
            names::parse_request_id("request_id", &request.request_id),
        );
        let mask = match request.update_mask.as_deref() {
            Some(paths) if !paths.is_empty() => {
                let (mask, more) = CompanyMask::parse("update_mask", paths);
                violations.extend(more);
                mask
            }
            _ => CompanyMask::Fields(request.input.present_fields()),
        };
        // Check the masked values up front against a valid stand-in for the stored company,
        // so every violation is reported before the database is touched.
        let mut probe = CompanyInput {
            display_name: "x".into(),
            ..CompanyInput::default()
        };
        mask.apply(&mut probe, &request.input);
        if let Err(more) = probe.validate("company") {
            violations.extend(more);
        }
        let (Some(name), Some(request_id)) = violations.into_result((name, request_id))? else {
            return Err(Error::internal(&Unreachable(
                "validated company update without parts",
            )));
        };
        let fingerprint = fingerprint(
            "UpdateCompany",
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
            let current = locked_live_company(conn, name, &request.etag).await?;
            let mut merged = CompanyInput::from(&current.data);
            mask.apply(&mut merged, &request.input);
            let data = merged.validate("company")?;
            let company = if data == current.data {
                // Nothing changes: no write, no new etag, no event.
                current
            } else {
                let row = queries::update(conn, current.id, &CompanyChanges::new(&data, &actor))
                    .await
                    .map_err(business_id_conflict)?;
                let updated = Company::try_from(row)?;
                let origin = Origin {
                    actor: &actor,
                    request_id,
                };
                record_company(
                    conn,
                    EventType::CompanyUpdated,
                    &updated,
                    Some(&current.data),
                    origin,
                )
                .await?;
                updated
            };
            complete(conn, request_id, &company).await?;
            Ok(company)
        })
        .await
    }

    /// Soft-deletes a company (AIP-164): refused while live customers belong to it, unless
    /// `force` detaches them in the same transaction.
    pub async fn delete_company(
        &self,
        request: CompanyDeleteRequest,
        actor: &str,
    ) -> Result<Company> {
        let mut violations = Violations::new();
        let name = collect(&mut violations, CompanyName::parse("name", &request.name));
        let request_id = collect(
            &mut violations,
            names::parse_request_id("request_id", &request.request_id),
        );
        let (Some(name), Some(request_id)) = violations.into_result((name, request_id))? else {
            return Err(Error::internal(&Unreachable(
                "validated company delete without parts",
            )));
        };
        let fingerprint = fingerprint(
            "DeleteCompany",
            &[
                actor,
                &request.name,
                &request.etag,
                if request.force { "force" } else { "" },
            ],
        );
        let actor = actor.to_owned();
        self.write(async move |conn| {
            if let Some(replayed) = claim(conn, request_id, &fingerprint).await? {
                return Ok(replayed);
            }
            // The company's update lock first: customer writes that refer to it hold its
            // share lock, so from here on no new live customer can join it.
            let current = locked_live_company(conn, name, &request.etag).await?;
            let reference = name.to_string();
            if request.force {
                let detached = customer_queries::detach_company(conn, &reference, &actor).await?;
                for row in detached {
                    let customer = Customer::try_from(row)?;
                    let mut previous = customer.data.clone();
                    previous.company = Some(reference.clone());
                    record(
                        conn,
                        EventType::CustomerUpdated,
                        &customer,
                        Some(&previous),
                        &actor,
                        request_id,
                    )
                    .await?;
                }
            } else {
                let members = customer_queries::count_live_in_company(conn, &reference).await?;
                if members > 0 {
                    return Err(Error::FailedPrecondition {
                        message: format!(
                            "{name} has {members} live customer(s); move them to another \
                             company first, or delete with force=true to detach them"
                        ),
                        reason: reason::COMPANY_HAS_CUSTOMERS,
                        resource_type: COMPANY_TYPE,
                        resource_name: reference,
                    });
                }
            }
            let row = queries::set_deleted(conn, current.id, &actor, true).await?;
            let company = Company::try_from(row)?;
            let origin = Origin {
                actor: &actor,
                request_id,
            };
            record_company(conn, EventType::CompanyDeleted, &company, None, origin).await?;
            complete(conn, request_id, &company).await?;
            Ok(company)
        })
        .await
    }

    /// Restores a soft-deleted company (AIP-164).
    pub async fn undelete_company(&self, name: &str, etag: &str, actor: &str) -> Result<Company> {
        let name = CompanyName::parse("name", name)?;
        let etag = etag.to_owned();
        let actor = actor.to_owned();
        self.write(async move |conn| {
            let row = queries::find_for_update(conn, name.id())
                .await?
                .ok_or_else(|| Error::not_found(COMPANY_TYPE, name))?;
            let current = Company::try_from(row)?;
            if !current.is_deleted() {
                return Err(Error::AlreadyExists {
                    message: format!("{name} is not deleted"),
                    reason: reason::COMPANY_NOT_DELETED,
                    resource_type: COMPANY_TYPE,
                    resource_name: name.to_string(),
                });
            }
            super::check_etag_of(&name.to_string(), COMPANY_TYPE, &current.etag(), &etag)?;
            let row = queries::set_deleted(conn, current.id, &actor, false)
                .await
                .map_err(business_id_conflict)?;
            let company = Company::try_from(row)?;
            let origin = Origin {
                actor: &actor,
                request_id: None,
            };
            record_company(conn, EventType::CompanyUndeleted, &company, None, origin).await?;
            Ok(company)
        })
        .await
    }
}

/// The live company, locked for this transaction, after checking the etag.
async fn locked_live_company(
    conn: &mut AsyncPgConnection,
    name: CompanyName,
    etag: &str,
) -> Result<Company> {
    let row = queries::find_for_update(conn, name.id())
        .await?
        .ok_or_else(|| Error::not_found(COMPANY_TYPE, name))?;
    let current = Company::try_from(row)?;
    if current.is_deleted() {
        return Err(Error::FailedPrecondition {
            message: format!("{name} is deleted"),
            reason: reason::COMPANY_DELETED,
            resource_type: COMPANY_TYPE,
            resource_name: name.to_string(),
        });
    }
    super::check_etag_of(&name.to_string(), COMPANY_TYPE, &current.etag(), etag)?;
    Ok(current)
}

/// The unique index on live business ids turns into ALREADY_EXISTS.
fn business_id_conflict(error: diesel::result::Error) -> Error {
    use diesel::result::{DatabaseErrorKind, Error as E};
    match &error {
        E::DatabaseError(DatabaseErrorKind::UniqueViolation, info)
            if info.constraint_name() == Some("companies_live_business_id_key") =>
        {
            Error::AlreadyExists {
                message: "another live company already has this business_id".into(),
                reason: reason::BUSINESS_ID_ALREADY_EXISTS,
                resource_type: COMPANY_TYPE,
                resource_name: String::new(),
            }
        }
        _ => error.into(),
    }
}
