//! ExportCustomers (issue 18): every customer matching a filter, streamed from one
//! consistent snapshot in constant memory.
//!
//! A spawned task holds one pooled connection in a read-only REPEATABLE READ transaction (the
//! pool's runner, `Pool::run_in(Transaction::Snapshot)`) and
//! walks the list path's keyset order (`create_time`, then id) in batches of
//! [`BATCH`] rows, sending each customer into a bounded channel: the reader's pace sets the
//! walk's (back-pressure), so memory stays at one batch plus the channel whatever the size
//! of the export. Every batch reads the same snapshot, so a customer written during the
//! export is seen as it was when the export began (or not at all), never twice. A reader
//! that goes away ends the walk at the next send, and the transaction with it.
//!
//! Before the first row, the same snapshot gives the sources of the external ids its
//! customers hold ([`Export::external_id_sources`]): a CSV export's header names a column per
//! source, so it must know them all before the first row (`convert::csv`).

use tokio::sync::{mpsc, oneshot};

use super::{CustomerService, Error, Result};
use crate::{
    core::list,
    db::{
        self, Transaction,
        customers::{Cursor, ListQuery},
        store::PgStore,
    },
    domain::{
        Violations,
        customer::Customer,
        filter::{CustomerField, Expr},
        order_by::{CustomerOrder, OrderKey},
    },
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
        // The walk runs in the pool's standard transaction runner, in a snapshot
        // (`Transaction::Snapshot`), on a task of its own: the runner holds the connection
        // until the walk ends, while this call returns once the snapshot has given the
        // external id sources (or failed to).
        let (head, sources) = oneshot::channel();
        let (sender, receiver) = mpsc::channel(AHEAD);
        tokio::spawn(async move {
            let mut outlet = Outlet {
                head: Some(head),
                rows: sender,
            };
            let walked = pool
                .run_in(Transaction::Snapshot, async |conn| {
                    let sources = external_id_sources(conn, show_deleted).await?;
                    if let Some(head) = outlet.head.take() {
                        // A caller gone before the first row ends the walk here.
                        if head.send(Ok(sources)).is_err() {
                            return Ok(());
                        }
                    }
                    walk(
                        conn,
                        &outlet.rows,
                        filter.as_ref(),
                        &order,
                        show_deleted,
                        retention,
                    )
                    .await
                })
                .await;
            // The error goes where the caller waits: before the first row, the call's
            // answer; after it, the end of the stream.
            if let Err(error) = walked {
                match outlet.head.take() {
                    Some(head) => {
                        let _ = head.send(Err(error));
                    }
                    None => {
                        let _ = outlet.rows.send(Err(error)).await;
                    }
                }
            }
        });
        let external_id_sources = sources.await.map_err(|_| {
            Error::internal(&super::Unreachable(
                "the export task ended without an answer",
            ))
        })??;
        Ok(Export {
            external_id_sources,
            customers: receiver,
        })
    }
}

/// Where an export's task answers: the call (the external id sources, or the error that
/// stopped the export before its first row), then the stream of customers.
struct Outlet {
    /// The call's answer, until it is sent.
    head: Option<oneshot::Sender<Result<Vec<String>>>>,
    /// The customers, then the error that stopped the walk, if one did.
    rows: mpsc::Sender<Result<Customer>>,
}

/// The sources of the external ids the snapshot's customers hold, at most
/// [`MAX_EXTERNAL_ID_SOURCES`].
async fn external_id_sources(conn: &mut db::Conn, show_deleted: bool) -> Result<Vec<String>> {
    let limit = MAX_EXTERNAL_ID_SOURCES as i64 + 1;
    let sources = db::customers::external_id_sources(conn, show_deleted, limit).await?;
    if sources.len() > MAX_EXTERNAL_ID_SOURCES {
        return Err(Error::FailedPrecondition {
            message: format!(
                "customers hold external ids of more than {MAX_EXTERNAL_ID_SOURCES} \
                 sources; an export names at most that many"
            ),
            reason: super::error::reason::TOO_MANY_EXTERNAL_ID_SOURCES,
            resource_type: crate::domain::names::CUSTOMER_TYPE,
            resource_name: "customers".into(),
        });
    }
    Ok(sources)
}

/// Sends the snapshot's customers matching `filter` into `rows`, oldest first, in batches of
/// [`BATCH`]; a reader gone ends the walk (successfully: the snapshot read nothing wrong).
async fn walk(
    conn: &mut db::Conn,
    rows: &mpsc::Sender<Result<Customer>>,
    filter: Option<&Expr<CustomerField>>,
    order: &[OrderKey<CustomerOrder>],
    show_deleted: bool,
    retention: Option<std::time::Duration>,
) -> Result<()> {
    let mut after: Option<Cursor> = None;
    loop {
        let query = ListQuery {
            filter,
            order,
            show_deleted,
            after: after.as_ref(),
            limit: BATCH,
        };
        let batch = db::customers::list(conn, &query, None).await?;
        let last_batch = (batch.len() as i64) < BATCH;
        for row in batch {
            after = Some(Cursor::after(&row, order));
            let customer = Customer::try_from(row)?.with_retention(retention);
            if rows.send(Ok(customer)).await.is_err() {
                return Ok(());
            }
        }
        if last_batch {
            return Ok(());
        }
    }
}
