//! ExportCustomers (issue 18): every customer matching a filter, streamed from one
//! consistent snapshot in constant memory.
//!
//! A spawned task holds one pooled connection in a read-only REPEATABLE READ transaction and
//! walks the list path's keyset order (`create_time`, then id) in batches of
//! [`BATCH`] rows, sending each customer into a bounded channel: the reader's pace sets the
//! walk's (back-pressure), so memory stays at one batch plus the channel whatever the size
//! of the export. Every batch reads the same snapshot, so a customer written during the
//! export is seen as it was when the export began (or not at all), never twice. A reader
//! that goes away ends the walk at the next send, and the transaction with it.

use tokio::sync::mpsc;

use super::{CustomerService, Error, Result};
use crate::{
    core::list,
    db::{
        self,
        customers::{Cursor, ListQuery},
        store::PgStore,
    },
    domain::{Violations, customer::Customer, filter::CustomerField, order_by::CustomerOrder},
    resources::Resource,
};

/// Rows read per statement.
pub const BATCH: i64 = 500;

/// Customers sent ahead of the reader.
const AHEAD: usize = 256;

/// Most external id sources an export names (its CSV has a column for each).
pub const MAX_EXTERNAL_ID_SOURCES: usize = 1000;

/// An export under way.
#[derive(Debug)]
pub struct Export {
    /// The sources of the external ids customers of the snapshot hold (live ones; deleted
    /// ones too with `show_deleted`), sorted: the `external_ids.<source>` columns of a CSV
    /// export, known before its header is written.
    pub external_id_sources: Vec<String>,
    /// The customers, oldest first, ending after the last one (or with the error that
    /// stopped the walk).
    pub customers: mpsc::Receiver<Result<Customer>>,
}

impl CustomerService<PgStore> {
    /// The customers matching `filter` (live ones only unless `show_deleted`) from one
    /// snapshot. An invalid filter, or a database that cannot begin the snapshot, fails
    /// here, before anything is streamed.
    pub async fn export(&self, filter: &str, show_deleted: bool) -> Result<Export> {
        let mut violations = Violations::new();
        let filter = list::filter::<CustomerField>(&mut violations, filter);
        let order = list::order::<CustomerOrder>(&mut violations, "");
        violations.into_result(())?;
        let pool = self.writer.store.pool().clone();
        let retention = self.writer.retention;
        tracing::debug!(show_deleted, "exporting customers");
        let mut checkout = pool.get().await?;
        let conn: &mut crate::db::Conn = &mut checkout;
        pool.begin_snapshot(conn).await?;
        let limit = MAX_EXTERNAL_ID_SOURCES as i64 + 1;
        let sources = match db::customers::external_id_sources(conn, show_deleted, limit).await {
            Ok(sources) if sources.len() <= MAX_EXTERNAL_ID_SOURCES => Ok(sources),
            Ok(_) => Err(Error::FailedPrecondition {
                message: format!(
                    "customers hold external ids of more than {MAX_EXTERNAL_ID_SOURCES} \
                     sources; an export names at most that many"
                ),
                reason: super::error::reason::TOO_MANY_EXTERNAL_ID_SOURCES,
                resource_type: crate::domain::names::CUSTOMER_TYPE,
                resource_name: "customers".into(),
            }),
            Err(error) => Err(error.into()),
        };
        let external_id_sources = match sources {
            Ok(sources) => sources,
            Err(error) => {
                let ended = db::finish(conn, Err(error)).await;
                checkout.done();
                return ended;
            }
        };
        let (sender, receiver) = mpsc::channel(AHEAD);
        tokio::spawn(async move {
            let conn: &mut crate::db::Conn = &mut checkout;
            let result = async {
                let mut after: Option<Cursor> = None;
                loop {
                    let query = ListQuery {
                        filter: filter.as_ref(),
                        order: &order,
                        show_deleted,
                        after: after.as_ref(),
                        limit: BATCH,
                    };
                    let rows = db::customers::list(conn, &query, None).await?;
                    let last_batch = (rows.len() as i64) < BATCH;
                    for row in rows {
                        after = Some(Cursor::after(&row, &order));
                        let customer = Customer::try_from(row)?.with_retention(retention);
                        if sender.send(Ok(customer)).await.is_err() {
                            return Ok::<_, Error>(());
                        }
                    }
                    if last_batch {
                        return Ok(());
                    }
                }
            }
            .await;
            match db::finish(conn, result).await {
                Ok(()) => checkout.done(),
                Err(error) => {
                    let _ = sender.send(Err(error)).await;
                }
            }
        });
        Ok(Export {
            external_id_sources,
            customers: receiver,
        })
    }
}
