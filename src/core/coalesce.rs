//! Concurrent reads of one resource type share a statement.
//!
//! A [`Gate`] lets at most `lanes` reads of its resource type run at once. A read that finds
//! a lane free runs at once, as it would without the gate: at low load nothing waits and
//! each Get is its own one-row statement. A read that finds every lane busy queues; when a
//! lane's read finishes, the lane passes to the first queued read, which takes every queued
//! read with it (up to `most`) into one `WHERE id = ANY(…)` statement. So batches form only
//! while the database is the queue ("natural batching"): no timer, no added wait, and the
//! database does one statement's work for many Gets.
//!
//! The read that leads a batch runs it in its own task, under its own deadline and trace.
//! If it goes away mid-batch (its client cancelled, its deadline passed), or its batch fails,
//! the reads it carried each read again alone, outside the lanes: the error is the leader's
//! to report, and no read waits for more than one batch that is not its own.

use std::{
    collections::VecDeque,
    future::Future,
    sync::{Mutex, PoisonError},
};

use tokio::sync::oneshot;

use super::resource::Resource;
use crate::{
    domain::{company::Company, customer::Customer, names::ResourceName as _},
    service::Result,
};

/// Reads of one resource type at once unless configured (`DB_READ_LANES`).
pub const DEFAULT_LANES: u32 = 4;
/// Most Gets sharing one statement.
pub const MOST_SHARED: usize = 64;

/// What a queued read is told.
enum Reply<R> {
    /// Its batch ran: the resource, if there is one.
    Found(Option<R>),
    /// A lane is its: lead a batch of whatever is queued.
    Lead,
    /// Its batch failed: read alone.
    Retry,
}

/// A queued read.
struct Waiter<R: Resource> {
    name: R::Name,
    reply: oneshot::Sender<Reply<R>>,
}

struct State<R: Resource> {
    running: usize,
    queued: VecDeque<Waiter<R>>,
    /// Reads answered by a statement another read ran.
    shared: u64,
}

/// Where the reads of one resource type meet (see the module documentation).
pub struct Gate<R: Resource> {
    state: Mutex<State<R>>,
    lanes: usize,
    most: usize,
}

impl<R: Resource> std::fmt::Debug for Gate<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("type", &R::TYPE)
            .field("lanes", &self.lanes)
            .field("most", &self.most)
            .finish_non_exhaustive()
    }
}

impl<R: Resource> Gate<R> {
    /// A gate of `lanes` reads at once (at least one), batching at most `most` names.
    pub fn new(lanes: usize, most: usize) -> Self {
        Self {
            state: Mutex::new(State {
                running: 0,
                queued: VecDeque::new(),
                shared: 0,
            }),
            lanes: lanes.max(1),
            most: most.max(1),
        }
    }

    /// The resource named `name`, deleted or not, read alone by `one` or in a batch by `many`
    /// (the resources among the names it is given, in any order).
    pub async fn read<One, Many, OneRead, ManyRead>(
        &self,
        name: R::Name,
        one: One,
        many: Many,
    ) -> Result<Option<R>>
    where
        One: Fn(R::Name) -> OneRead,
        Many: Fn(Vec<R::Name>) -> ManyRead,
        OneRead: Future<Output = Result<Option<R>>>,
        ManyRead: Future<Output = Result<Vec<R>>>,
    {
        let answer = {
            let mut state = self.lock();
            if state.running < self.lanes {
                state.running += 1;
                None
            } else {
                let (reply, answer) = oneshot::channel();
                state.queued.push_back(Waiter { name, reply });
                Some(answer)
            }
        };
        // A lane, and the queued reads this read leads with it.
        let (lane, batch) = match answer {
            // A free lane means an empty queue (a lane passes to a queued read before it is
            // freed): this read goes alone.
            None => (Lane(self), Vec::new()),
            Some(answer) => {
                let mut queued = Queued {
                    gate: self,
                    answer,
                    led: false,
                };
                match (&mut queued.answer).await {
                    Ok(Reply::Found(found)) => return Ok(found),
                    Ok(Reply::Lead) => {
                        queued.led = true;
                        (Lane(self), self.take_queued())
                    }
                    // The leader went away or its batch failed: this read goes alone, outside
                    // the lanes, so a read waits for at most one batch not its own (an outage
                    // fails each read once, as it would without the gate).
                    Ok(Reply::Retry) | Err(_) => return one(name).await,
                }
            }
        };
        let result = if batch.is_empty() {
            one(name).await
        } else {
            // Boxed: a batch's state (its names, the rows, every reply) would otherwise size
            // every Get's future, moved whole between the layers above.
            Box::pin(async {
                let mut names = Vec::with_capacity(batch.len() + 1);
                names.push(name);
                names.extend(batch.iter().map(|waiter| waiter.name));
                match many(names).await {
                    Ok(found) => Ok(self.answer(name, batch, found)),
                    Err(error) => {
                        for waiter in batch {
                            let _ = waiter.reply.send(Reply::Retry);
                        }
                        Err(error)
                    }
                }
            })
            .await
        };
        drop(lane);
        result
    }

    /// The queued reads a new batch takes: the first `most - 1` (its leader is the last).
    fn take_queued(&self) -> Vec<Waiter<R>> {
        let mut state = self.lock();
        let take = state.queued.len().min(self.most - 1);
        state.queued.drain(..take).collect()
    }

    /// Hands each read of `batch` its resource among `found`; the leader's (`name`) is
    /// returned.
    fn answer(&self, name: R::Name, batch: Vec<Waiter<R>>, mut found: Vec<R>) -> Option<R> {
        self.lock().shared += batch.len() as u64;
        // Each answer is moved out of `found` unless a later read asks for the same resource.
        let ids: Vec<_> = batch.iter().map(|waiter| waiter.name.id()).collect();
        let own = take(&mut found, name, ids.contains(&name.id()));
        for (i, waiter) in batch.into_iter().enumerate() {
            let answer = take(&mut found, waiter.name, ids[i + 1..].contains(&ids[i]));
            let _ = waiter.reply.send(Reply::Found(answer));
        }
        own
    }

    /// Reads waiting for a lane now, and reads answered so far by a statement another read
    /// ran (`/metrics`).
    pub fn stats(&self) -> (usize, u64) {
        let state = self.lock();
        (state.queued.len(), state.shared)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<R>> {
        // The state stays consistent across a panic (every change is one push, pop or count).
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The row of `name` among `found`: cloned when `again` (another read wants it too), else
/// moved out.
fn take<R: Resource>(found: &mut Vec<R>, name: R::Name, again: bool) -> Option<R> {
    let at = found
        .iter()
        .position(|resource| resource.name().id() == name.id())?;
    Some(if again {
        found[at].clone()
    } else {
        found.swap_remove(at)
    })
}

/// A queued read's wait for its answer. Dropped with the lane handed to it but not yet taken
/// up (its caller went away meanwhile), it passes the lane on.
struct Queued<'g, R: Resource> {
    gate: &'g Gate<R>,
    answer: oneshot::Receiver<Reply<R>>,
    /// The lane was handed to it and taken up.
    led: bool,
}

impl<R: Resource> Drop for Queued<'_, R> {
    fn drop(&mut self) {
        if !self.led {
            self.answer.close();
            if let Ok(Reply::Lead) = self.answer.try_recv() {
                drop(Lane(self.gate));
            }
        }
    }
}

/// A held lane: on drop (the batch done, or its leader gone) it passes to the first queued
/// read still waiting, or is freed.
struct Lane<'g, R: Resource>(&'g Gate<R>);

impl<R: Resource> Drop for Lane<'_, R> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        while let Some(waiter) = state.queued.pop_front() {
            if waiter.reply.send(Reply::Lead).is_ok() {
                return;
            }
        }
        state.running -= 1;
    }
}

/// The gates of the resources whose reads are shared: the top-level ones (a note's read
/// also checks its customer, so it runs alone).
#[derive(Debug)]
pub struct Gates {
    /// Customers.
    pub customers: Gate<Customer>,
    /// Companies.
    pub companies: Gate<Company>,
}

impl Gates {
    /// Gates of `lanes` reads at once, each batching at most [`MOST_SHARED`] names.
    pub fn new(lanes: u32) -> Self {
        let lanes = lanes as usize;
        Self {
            customers: Gate::new(lanes, MOST_SHARED),
            companies: Gate::new(lanes, MOST_SHARED),
        }
    }

    /// Each gate's resource (its request field, `customer`) and [`Gate::stats`].
    pub fn stats(&self) -> [(&'static str, usize, u64); 2] {
        let stats = |field, (queued, shared)| (field, queued, shared);
        [
            stats(Customer::FIELD, self.customers.stats()),
            stats(Company::FIELD, self.companies.stats()),
        ]
    }
}

impl Default for Gates {
    fn default() -> Self {
        Self::new(DEFAULT_LANES)
    }
}

#[cfg(test)]
mod tests;
