//! The company use cases: the core's write path for companies (see
//! `crate::resources::companies` for their rule), and ListCompanies.

use super::{CustomerService, Result};
use crate::{
    core::{
        list::{self, Paging},
        store::Transact,
    },
    db::{self, customers::Cursor, store::PgStore},
    domain::{Violations, company::Company, filter::CompanyField, legacy, order_by::CompanyOrder},
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

impl CustomerService<PgStore> {
    /// One page of companies matching the filter, in the requested order.
    pub async fn list_companies(
        &self,
        request: &CompanyListRequest,
    ) -> Result<super::Page<Company>> {
        let mut violations = Violations::new();
        let size = list::page_size(&mut violations, request.page_size);
        let filter = list::filter::<CompanyField>(&mut violations, &request.filter);
        let order = list::order::<CompanyOrder>(&mut violations, &request.order_by);
        violations.into_result(())?;

        let query = super::PageTokens::query_fingerprint(&[
            "companies",
            &legacy::legacy_debug_company_filter(&filter),
            &legacy::legacy_debug_company_order(&order),
            if request.show_deleted {
                "deleted"
            } else {
                "live"
            },
        ]);
        let paging: Paging<Cursor> =
            list::paging(&self.page_tokens, size, &request.page_token, query)?;
        let show_deleted = request.show_deleted;
        let (rows, (paging, order)) = self
            .writer
            .store
            .read(async move |conn| {
                let rows = db::companies::list(
                    conn,
                    &db::companies::ListQuery {
                        filter: filter.as_ref(),
                        order: &order,
                        show_deleted,
                        after: paging.after.as_ref(),
                        limit: paging.limit(),
                    },
                )
                .await?;
                Ok((rows, (paging, order)))
            })
            .await?;
        let (rows, next_page_token) = list::page(rows, &paging, &self.page_tokens, |row| {
            db::companies::cursor_after(row, &order)
        });
        let companies = rows
            .into_iter()
            .map(Company::try_from)
            .collect::<Result<_, _>>()?;
        Ok(super::Page {
            items: companies,
            next_page_token,
        })
    }
}
