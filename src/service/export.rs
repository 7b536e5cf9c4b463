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

impl CustomerService<PgStore> {
    /// The customers matching `filter` (live ones only unless `show_deleted`), oldest first,
    /// as a stream of results that ends after the last one (or with the error that stopped
    /// it). An invalid filter fails here, before anything is streamed.
    pub async fn export(
        &self,
        filter: &str,
        show_deleted: bool,
    ) -> Result<mpsc::Receiver<Result<Customer>>> {
        let mut violations = Violations::new();
        let filter = list::filter::<CustomerField>(&mut violations, filter);
        let order = list::order::<CustomerOrder>(&mut violations, "");
        violations.into_result(())?;
        let pool = self.writer.store.pool().clone();
        let retention = self.writer.retention;
        let (sender, receiver) = mpsc::channel(AHEAD);
        tracing::debug!(show_deleted, "exporting customers");
        tokio::spawn(async move {
            let walk = pool.run_in(db::Transaction::Snapshot, async |conn| {
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
            });
            if let Err(error) = walk.await {
                let _ = sender.send(Err(error)).await;
            }
        });
        Ok(receiver)
    }
}
