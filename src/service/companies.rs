//! The company use cases: the core's write path for companies (see
//! `crate::resources::companies` for their rule), and ListCompanies.

use super::{CustomerService, Result};
use crate::{
    core::{
        fingerprint::{Fingerprint, Parts},
        list,
        resource::Resource as _,
        store::Transact,
        write,
    },
    db::{self, store::PgStore},
    domain::{
        Input as _, Violations,
        company::{Company, CompanyInput},
        duplicates::{DuplicatePolicy, MAX_CREATE_CANDIDATES},
        filter::CompanyField,
        legacy,
        names::CompanyName,
        order_by::CompanyOrder,
    },
};

impl CustomerService<PgStore> {
    /// One page of companies matching the filter, in the requested order.
    pub async fn list_companies(
        &self,
        request: &super::ListRequest,
    ) -> Result<super::Page<crate::pb::Company>> {
        let plan = list::plan::<CompanyField, CompanyOrder>(
            &self.page_tokens,
            request,
            Violations::new(),
            |filter, order, deleted| {
                super::PageTokens::query_fingerprint(&[
                    "companies",
                    &legacy::legacy_debug_company_filter(filter),
                    &legacy::legacy_debug_company_order(order),
                    deleted,
                ])
            },
        )?;
        let plan = &plan;
        let rows = self
            .writer
            .store
            .read(async move |conn| Ok(db::companies::list(conn, &plan.query()).await?))
            .await?;
        plan.finish(
            rows,
            &self.page_tokens,
            db::companies::cursor_after,
            |row| Ok(Company::try_from(row)?),
        )
    }
}

impl CustomerService<PgStore> {
    /// CreateCompany under a duplicate policy (`customer.v1.DuplicatePolicy` number): the
    /// new company and, with WARN, the live companies with the same domain (oldest first, at
    /// most [`MAX_CREATE_CANDIDATES`]); REJECT refuses while there are any, its check and
    /// insert one transaction, a retry with the request id replaying the first answer.
    pub async fn create_company(
        &self,
        input: CompanyInput,
        request_id: &str,
        policy: i32,
        actor: &str,
    ) -> Result<(Company, Vec<String>)> {
        let policy = DuplicatePolicy::from_number("duplicate_policy", policy)?;
        let writer = self.writer();
        match policy {
            DuplicatePolicy::Allow => Ok((
                writer
                    .create::<Company>("", input, request_id, actor)
                    .await?,
                Vec::new(),
            )),
            DuplicatePolicy::Warn => {
                let created = writer
                    .create::<Company>("", input, request_id, actor)
                    .await?;
                let Some(domain) = created.data.domain.clone() else {
                    return Ok((created, Vec::new()));
                };
                let except = created.stored.id;
                let ids = writer
                    .store
                    .read(async move |conn| {
                        Ok(db::companies::live_with_domain(
                            conn,
                            &domain,
                            Some(except),
                            MAX_CREATE_CANDIDATES,
                        )
                        .await?)
                    })
                    .await?;
                Ok((created, names_of(ids)))
            }
            DuplicatePolicy::Reject => {
                let mut violations = Violations::new();
                let request_id = write::collect(
                    &mut violations,
                    crate::domain::names::parse_request_id("request_id", request_id),
                );
                let data = input
                    .validate(Company::FIELD)
                    .map_err(|more| violations.extend(more))
                    .ok();
                let (Some(request_id), Some(data)) = violations.into_result((request_id, data))?
                else {
                    return Err(super::Error::internal(&super::Unreachable(
                        "validated create without parts",
                    )));
                };
                let fingerprint = Fingerprint::new(
                    &Parts {
                        input: Company::canonical_input(&input),
                        // Another request than a create without the check.
                        mask: vec!["duplicate_policy=REJECT".to_owned()],
                        ..write::call::<Company>("Create", actor, "")
                    },
                    &[],
                );
                let origin = write::Origin {
                    actor: actor.to_owned(),
                    request_id,
                };
                let name = CompanyName(uuid::Uuid::now_v7());
                let created = writer
                    .idempotent(request_id, fingerprint, async move |conn| {
                        if let Some(domain) = &data.domain {
                            let ids = db::companies::live_with_domain(
                                conn,
                                domain,
                                None,
                                MAX_CREATE_CANDIDATES,
                            )
                            .await?;
                            if !ids.is_empty() {
                                let candidates = names_of(ids);
                                return Err(super::Error::Duplicates {
                                    message: format!(
                                        "live companies have the domain {domain} \
                                         (duplicate_policy REJECT): {}; use one of them, or \
                                         create with duplicate_policy ALLOW",
                                        candidates.join(", ")
                                    ),
                                    reason: super::error::reason::DUPLICATE_COMPANY,
                                    resource_type: crate::domain::names::COMPANY_TYPE,
                                    candidates,
                                });
                            }
                        }
                        write::insert_new(conn, name, &data, &origin).await
                    })
                    .await?;
                Ok((created, Vec::new()))
            }
        }
    }
}

/// Company names of `ids`.
fn names_of(ids: Vec<uuid::Uuid>) -> Vec<String> {
    ids.into_iter()
        .map(|id| CompanyName(id).to_string())
        .collect()
}
