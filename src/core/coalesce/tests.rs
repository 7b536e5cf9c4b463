//! The gate's batching, hand-offs and failures. Every future is polled by hand (once per
//! step, with a no-op waker), so each interleaving below is the one written, not a race.

use std::{
    collections::VecDeque,
    future::Future,
    pin::Pin,
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use futures_util::FutureExt as _;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::Gate;
use crate::{
    core::{memory::MemStore, write::Writer},
    domain::{
        company::{Company, CompanyInput},
        names::{CompanyName, ResourceName as _},
    },
    service::{Error, Result},
};

/// One statement the gate ran.
#[derive(Debug, PartialEq, Eq)]
enum Call {
    One(Uuid),
    Many(Vec<Uuid>),
}

/// A database of companies whose statements are recorded and can be held open.
struct Db {
    rows: Vec<Company>,
    calls: Mutex<Vec<Call>>,
    holds: Mutex<VecDeque<oneshot::Receiver<()>>>,
    fail_many: AtomicBool,
}

impl Db {
    async fn with(count: usize) -> Self {
        let writer = Writer {
            store: MemStore::default(),
            retention: None,
            gates: std::sync::Arc::default(),
        };
        let mut rows = Vec::new();
        for i in 0..count {
            let input = CompanyInput {
                display_name: format!("Company {i}"),
                ..CompanyInput::default()
            };
            rows.push(
                writer
                    .create::<Company>("", input, "", "user:a")
                    .await
                    .unwrap(),
            );
        }
        Self {
            rows,
            calls: Mutex::new(Vec::new()),
            holds: Mutex::new(VecDeque::new()),
            fail_many: AtomicBool::new(false),
        }
    }

    fn name(&self, i: usize) -> CompanyName {
        self.rows[i].name()
    }

    /// The next statement waits until the sender is used or dropped.
    fn hold_next(&self) -> oneshot::Sender<()> {
        let (release, hold) = oneshot::channel();
        self.holds.lock().unwrap().push_back(hold);
        release
    }

    fn calls(&self) -> Vec<Call> {
        std::mem::take(&mut self.calls.lock().unwrap())
    }

    async fn run(&self, call: Call) {
        self.calls.lock().unwrap().push(call);
        let hold = self.holds.lock().unwrap().pop_front();
        if let Some(hold) = hold {
            let _ = hold.await;
        }
    }

    async fn one(&self, name: CompanyName) -> Result<Option<Company>> {
        self.run(Call::One(name.id())).await;
        Ok(self
            .rows
            .iter()
            .find(|row| row.name().id() == name.id())
            .cloned())
    }

    async fn many(&self, names: Vec<CompanyName>) -> Result<Vec<Company>> {
        self.run(Call::Many(names.iter().map(|name| name.id()).collect()))
            .await;
        if self.fail_many.load(Ordering::Relaxed) {
            return Err(Error::internal(&std::io::Error::other("connection lost")));
        }
        // In an order of the database's own, not the names'.
        Ok(self
            .rows
            .iter()
            .rev()
            .filter(|row| names.iter().any(|name| name.id() == row.name().id()))
            .cloned()
            .collect())
    }
}

type Read<'a> = Pin<Box<dyn Future<Output = Result<Option<Company>>> + 'a>>;

fn read<'a>(gate: &'a Gate<Company>, db: &'a Db, name: CompanyName) -> Read<'a> {
    Box::pin(gate.read(name, |name| db.one(name), |names| db.many(names)))
}

/// Polls once: the answer's company (`Some(None)`: none found), or `None` while it waits.
fn step(read: &mut Read<'_>) -> Option<Option<CompanyName>> {
    read.as_mut()
        .now_or_never()
        .map(|result| result.unwrap().map(|company| company.name()))
}

fn missing() -> CompanyName {
    CompanyName::child((), Uuid::now_v7())
}

fn one(name: CompanyName) -> Call {
    Call::One(name.id())
}

fn many(names: &[CompanyName]) -> Call {
    Call::Many(names.iter().map(|name| name.id()).collect())
}

/// A read of company 0 holding the gate's only lane (its statement open until the returned
/// sender is used), and reads of `queued` waiting behind it.
fn behind_a_held_read<'a>(
    gate: &'a Gate<Company>,
    db: &'a Db,
    queued: &[CompanyName],
) -> (oneshot::Sender<()>, Read<'a>, Vec<Read<'a>>) {
    let release = db.hold_next();
    let mut first = read(gate, db, db.name(0));
    assert_eq!(step(&mut first), None);
    let mut waiting: Vec<_> = queued.iter().map(|&name| read(gate, db, name)).collect();
    for read in &mut waiting {
        assert_eq!(step(read), None);
    }
    (release, first, waiting)
}

#[tokio::test]
async fn a_read_with_a_lane_free_runs_alone_at_once() {
    let db = Db::with(2).await;
    let gate = Gate::new(2, 64);
    let mut first = read(&gate, &db, db.name(0));
    let release = db.hold_next();
    assert_eq!(step(&mut first), None);
    // The second lane is free: the second read does not wait for the first.
    let mut second = read(&gate, &db, db.name(1));
    assert_eq!(step(&mut second), Some(Some(db.name(1))));
    release.send(()).unwrap();
    assert_eq!(step(&mut first), Some(Some(db.name(0))));
    assert_eq!(db.calls(), [one(db.name(0)), one(db.name(1))]);
}

#[tokio::test]
async fn reads_queued_behind_busy_lanes_share_one_statement() {
    let db = Db::with(3).await;
    let gate = Gate::new(1, 64);
    let names = [db.name(1), db.name(2), db.name(1), missing()];
    let (release, mut first, mut queued) = behind_a_held_read(&gate, &db, &names);
    release.send(()).unwrap();
    assert_eq!(step(&mut first), Some(Some(db.name(0))));
    // The lane passed to the first queued read, which leads the rest in one statement.
    assert_eq!(step(&mut queued[0]), Some(Some(db.name(1))));
    assert_eq!(step(&mut queued[1]), Some(Some(db.name(2))));
    assert_eq!(step(&mut queued[2]), Some(Some(db.name(1))));
    assert_eq!(step(&mut queued[3]), Some(None));
    assert_eq!(db.calls(), [one(db.name(0)), many(&names)]);
    // The lane is free again.
    let mut later = read(&gate, &db, db.name(2));
    assert_eq!(step(&mut later), Some(Some(db.name(2))));
    assert_eq!(db.calls(), [one(db.name(2))]);
}

#[tokio::test]
async fn a_batch_takes_at_most_its_share_and_leaves_the_rest_queued() {
    let db = Db::with(4).await;
    let gate = Gate::new(1, 2);
    let names = [db.name(1), db.name(2), db.name(3)];
    let (release, mut first, mut queued) = behind_a_held_read(&gate, &db, &names);
    release.send(()).unwrap();
    assert_eq!(step(&mut first), Some(Some(db.name(0))));
    assert_eq!(step(&mut queued[0]), Some(Some(db.name(1))));
    assert_eq!(step(&mut queued[1]), Some(Some(db.name(2))));
    // Led by the next hand-off, alone.
    assert_eq!(step(&mut queued[2]), Some(Some(db.name(3))));
    assert_eq!(
        db.calls(),
        [one(db.name(0)), many(&names[..2]), one(db.name(3))]
    );
}

#[tokio::test]
async fn a_leader_that_goes_away_hands_its_lane_on() {
    let db = Db::with(2).await;
    let gate = Gate::new(1, 64);
    let (_release, first, mut queued) = behind_a_held_read(&gate, &db, &[db.name(1)]);
    drop(first);
    assert_eq!(step(&mut queued[0]), Some(Some(db.name(1))));
    assert_eq!(db.calls(), [one(db.name(0)), one(db.name(1))]);
}

#[tokio::test]
async fn reads_whose_batch_lost_its_leader_read_alone() {
    let db = Db::with(3).await;
    let gate = Gate::new(1, 64);
    let names = [db.name(1), db.name(2)];
    let (release, mut first, mut queued) = behind_a_held_read(&gate, &db, &names);
    let _held = db.hold_next();
    release.send(()).unwrap();
    assert_eq!(step(&mut first), Some(Some(db.name(0))));
    // The second leads a batch with the third, and goes away while it runs.
    let mut third = queued.pop().unwrap();
    assert_eq!(step(&mut queued[0]), None);
    drop(queued);
    assert_eq!(step(&mut third), Some(Some(db.name(2))));
    assert_eq!(db.calls(), [one(db.name(0)), many(&names), one(db.name(2))]);
}

#[tokio::test]
async fn a_read_gone_before_taking_up_its_lane_passes_it_on() {
    let db = Db::with(3).await;
    let gate = Gate::new(1, 64);
    let (release, mut first, mut queued) =
        behind_a_held_read(&gate, &db, &[db.name(1), db.name(2)]);
    release.send(()).unwrap();
    // The lane is handed to the second, which goes away without being polled again.
    assert_eq!(step(&mut first), Some(Some(db.name(0))));
    let mut third = queued.pop().unwrap();
    drop(queued);
    assert_eq!(step(&mut third), Some(Some(db.name(2))));
    let mut later = read(&gate, &db, db.name(1));
    assert_eq!(step(&mut later), Some(Some(db.name(1))));
    assert_eq!(
        db.calls(),
        [one(db.name(0)), one(db.name(2)), one(db.name(1))]
    );
}

#[tokio::test]
async fn a_failed_batch_fails_its_leader_and_the_rest_read_alone() {
    let db = Db::with(3).await;
    let gate = Gate::new(1, 64);
    let names = [db.name(1), db.name(2)];
    let (release, mut first, mut queued) = behind_a_held_read(&gate, &db, &names);
    db.fail_many.store(true, Ordering::Relaxed);
    release.send(()).unwrap();
    assert_eq!(step(&mut first), Some(Some(db.name(0))));
    let failed = queued[0].as_mut().now_or_never().unwrap();
    assert!(matches!(failed, Err(Error::Internal { .. })), "{failed:?}");
    assert_eq!(step(&mut queued[1]), Some(Some(db.name(2))));
    assert_eq!(db.calls(), [one(db.name(0)), many(&names), one(db.name(2))]);
}
