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

impl CustomerService<PgStore> {
    /// One page of companies matching the filter, in the requested order.
    pub async fn list_companies(
        &self,
        request: &super::ListRequest,
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
