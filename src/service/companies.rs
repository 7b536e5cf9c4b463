//! The company use cases: the core's write path for companies (see
//! `crate::resources::companies` for their rule), and ListCompanies.

use super::{CustomerService, Result};
use crate::{
    core::{list, store::Transact},
    db::{self, store::PgStore},
    domain::{Violations, company::Company, filter::CompanyField, legacy, order_by::CompanyOrder},
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
