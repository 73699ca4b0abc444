//! The group-commit writer shared by both backends.
//!
//! Producers send `Job`s (one event, or a group from `append_many`) through a channel
//! bounded in events by a semaphore; one writer takes everything waiting (up to
//! `batch_max` events), commits it in one transaction and only then answers each producer.
//! The committer is backend-specific; the batching, back-pressure and shutdown are here,
//! once. The writer is a task for an async committer (PostgreSQL) or its own thread for a
//! blocking one (SQLite): a commit then goes from the producer's task to the writer thread
//! and back, with no runtime task or blocking-pool hand-off in between.

use std::future::Future;
use std::sync::{Arc, Mutex};

use harombe_core::{Appended, AuditEvent, StoreError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::{FullPolicy, StoreOptions};

/// An event ready to be chained: validated and encoded by the producer, so the writer only
/// hashes and writes.
#[derive(Debug)]
pub(crate) struct Pending {
    pub event: AuditEvent,
    pub body: Vec<u8>,
}

/// A producer's events, queued together so the writer can commit them in one group.
struct Job {
    pending: Vec<Pending>,
    /// This job's room in the queue, given back when the writer takes it.
    room: OwnedSemaphorePermit,
    reply: Reply,
}

/// Commits a batch in one transaction and returns one result per event, in order. An
/// `Err` from the commit itself applies to every event of the batch.
pub(crate) trait Committer: Send + 'static {
    fn commit(
        &mut self,
        batch: Vec<Pending>,
    ) -> impl Future<Output = Result<Vec<Result<Appended, StoreError>>, StoreError>> + Send;

    /// Runs once after the last batch, before the queue reports itself closed.
    fn finish(self) -> impl Future<Output = ()> + Send
    where
        Self: Sized,
    {
        async {}
    }
}

/// [`Committer`] for a committer that blocks (runs on the queue's own writer thread).
pub(crate) trait BlockingCommitter: Send + 'static {
    fn commit(
        &mut self,
        batch: Vec<Pending>,
    ) -> Result<Vec<Result<Appended, StoreError>>, StoreError>;

    /// Takes a group's answers after its commit. By default they are sent at once; a
    /// committer whose commits become durable later (SQLite, whose WAL is fsynced on
    /// another thread) holds them until then, and the writer goes on with the next group.
    fn deliver(&mut self, answers: Answers) {
        answers.send();
    }

    /// Runs once after the last batch, before the queue reports itself closed.
    fn finish(self)
    where
        Self: Sized,
    {
    }
}

#[derive(Debug)]
pub(crate) struct Queue {
    tx: Mutex<Option<mpsc::UnboundedSender<Job>>>,
    writer: tokio::sync::Mutex<Option<JoinHandle<()>>>,
    /// One permit per event that may wait for the writer (the channel itself is unbounded).
    room: Arc<Semaphore>,
    policy: FullPolicy,
    capacity: usize,
    /// Most events in one job: a job always fits in the queue and in one group.
    job_max: usize,
}

impl Queue {
    pub fn start<C: Committer>(committer: C, options: &StoreOptions) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let writer = tokio::spawn(run(rx, committer, options.batch_max.max(1)));
        Self::with_writer(tx, writer, options)
    }

    /// A queue whose writer is a thread named `name` that runs `committer`.
    pub fn start_thread<C: BlockingCommitter>(
        committer: C,
        options: &StoreOptions,
        name: &str,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (done, stopped) = oneshot::channel::<()>();
        let batch_max = options.batch_max.max(1);
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                run_blocking(rx, committer, batch_max);
                let _ = done.send(());
            })?;
        let writer = tokio::spawn(async move {
            let _ = stopped.await;
        });
        Ok(Self::with_writer(tx, writer, options))
    }

    fn with_writer(
        tx: mpsc::UnboundedSender<Job>,
        writer: JoinHandle<()>,
        options: &StoreOptions,
    ) -> Self {
        let capacity = options.queue_capacity.max(1);
        let batch_max = options.batch_max.max(1);
        Self {
            tx: Mutex::new(Some(tx)),
            writer: tokio::sync::Mutex::new(Some(writer)),
            room: Arc::new(Semaphore::new(capacity)),
            policy: options.full_policy,
            capacity,
            job_max: capacity.min(batch_max),
        }
    }

    fn sender(&self) -> Result<mpsc::UnboundedSender<Job>, StoreError> {
        self.tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(StoreError::Closed)
    }

    /// Queues encoded events (at most `job_max`) and returns the receiver of their results
    /// (resolved once durable), in order.
    async fn submit(
        &self,
        tx: &mpsc::UnboundedSender<Job>,
        pending: Vec<Pending>,
    ) -> Result<oneshot::Receiver<Vec<Result<Appended, StoreError>>>, StoreError> {
        // `pending.len() <= job_max <= capacity`, so the permits can always be granted.
        let n = u32::try_from(pending.len()).unwrap_or(u32::MAX);
        let room = match self.policy {
            FullPolicy::Wait => self.room.clone().acquire_many_owned(n).await.ok(),
            FullPolicy::Reject => match self.room.clone().try_acquire_many_owned(n) {
                Ok(p) => Some(p),
                Err(TryAcquireError::NoPermits) => {
                    return Err(StoreError::QueueFull {
                        capacity: self.capacity,
                    });
                }
                Err(TryAcquireError::Closed) => None,
            },
        };
        let room = room.ok_or(StoreError::Closed)?;
        let (reply, rx) = oneshot::channel();
        tx.send(Job {
            pending,
            room,
            reply,
        })
        .map_err(|_| StoreError::Closed)?;
        Ok(rx)
    }

    pub async fn append(&self, event: AuditEvent) -> Result<Appended, StoreError> {
        let tx = self.sender()?;
        let body = event.encode()?;
        let rx = self.submit(&tx, vec![Pending { event, body }]).await?;
        drop(tx);
        let mut results = rx.await.map_err(|_| StoreError::Closed)?;
        results.pop().unwrap_or(Err(StoreError::Closed))
    }

    /// Encodes and queues the events in jobs of up to `job_max`, so a producer's events
    /// are committed together; the next job is encoded while the writer commits the last.
    pub async fn append_many(&self, events: Vec<AuditEvent>) -> Vec<Result<Appended, StoreError>> {
        let tx = match self.sender() {
            Ok(tx) => tx,
            Err(e) => return events.iter().map(|_| Err(e.clone())).collect(),
        };
        // Each event's result, in order; queued events are filled in once committed.
        let mut out: Vec<Result<Appended, StoreError>> = Vec::with_capacity(events.len());
        let mut waiting = Vec::new();
        let mut job = Vec::new();
        let mut slots = Vec::new();
        let total = events.len();
        for (i, event) in events.into_iter().enumerate() {
            match event.encode() {
                Ok(body) => {
                    out.push(Err(StoreError::Closed));
                    slots.push(i);
                    job.push(Pending { event, body });
                }
                Err(e) => out.push(Err(e.into())),
            }
            if !job.is_empty() && (job.len() == self.job_max || i + 1 == total) {
                let rx = self.submit(&tx, std::mem::take(&mut job)).await;
                waiting.push((std::mem::take(&mut slots), rx));
            }
        }
        drop(tx);
        for (slots, rx) in waiting {
            let results = match rx {
                Ok(rx) => rx.await.unwrap_or_default(),
                Err(e) => vec![Err(e); slots.len()],
            };
            let mut results = results.into_iter();
            for i in slots {
                out[i] = results.next().unwrap_or(Err(StoreError::Closed));
            }
        }
        out
    }

    /// Refuses new events and waits until every queued one is committed.
    pub async fn close(&self) {
        drop(self.tx.lock().unwrap_or_else(|e| e.into_inner()).take());
        if let Some(writer) = self.writer.lock().await.take() {
            let _ = writer.await;
        }
    }
}

/// Where a job's results go.
type Reply = oneshot::Sender<Vec<Result<Appended, StoreError>>>;

/// A group taken from the queue: its events in order, and each job's event count and reply.
struct Group {
    batch: Vec<Pending>,
    replies: Vec<(usize, Reply)>,
}

/// Takes `first` and the jobs waiting behind it until `batch_max` events (a job that does
/// not fit is left in `carried` and starts the next group).
fn gather(
    first: Job,
    rx: &mut mpsc::UnboundedReceiver<Job>,
    carried: &mut Option<Job>,
    batch_max: usize,
) -> Group {
    let mut jobs = vec![first];
    let mut events = jobs[0].pending.len();
    while events < batch_max {
        match rx.try_recv() {
            Ok(job) if events + job.pending.len() <= batch_max => {
                events += job.pending.len();
                jobs.push(job);
            }
            Ok(job) => {
                *carried = Some(job);
                break;
            }
            Err(_) => break,
        }
    }
    let mut batch = Vec::with_capacity(events);
    let mut replies = Vec::with_capacity(jobs.len());
    for job in jobs {
        replies.push((job.pending.len(), job.reply));
        batch.extend(job.pending);
        // The events left the queue: their room is free for producers again.
        drop(job.room);
    }
    Group { batch, replies }
}

/// A group's answers: each job's event count and reply, and the group's outcome.
pub(crate) struct Answers {
    replies: Vec<(usize, Reply)>,
    outcome: Result<Vec<Result<Appended, StoreError>>, StoreError>,
}

impl Answers {
    /// Whether the group's transaction committed (some events may still have been
    /// refused on their own, as duplicates).
    pub fn committed(&self) -> bool {
        self.outcome.is_ok()
    }

    /// The last chain position the group took, if it took any.
    pub fn last_seq(&self) -> Option<u64> {
        let results = self.outcome.as_ref().ok()?;
        results
            .iter()
            .rev()
            .find_map(|r| r.as_ref().ok().map(|a| a.seq))
    }

    /// Answers each job with its events' results.
    pub fn send(self) {
        match self.outcome {
            Ok(results) => {
                let mut results = results.into_iter();
                for (n, reply) in self.replies {
                    let _ = reply.send(results.by_ref().take(n).collect());
                }
            }
            Err(e) => Self::send_err(self.replies, &e),
        }
    }

    /// Answers every event of the group with `e` instead of its result.
    pub fn fail(self, e: &StoreError) {
        Self::send_err(self.replies, e);
    }

    fn send_err(replies: Vec<(usize, Reply)>, e: &StoreError) {
        let events: usize = replies.iter().map(|(n, _)| n).sum();
        tracing::error!(error = %e, events, "audit commit failed");
        for (n, reply) in replies {
            let _ = reply.send(vec![Err(e.clone()); n]);
        }
    }
}

/// The writer task: groups, commits, answers, until every sender is gone.
async fn run<C: Committer>(
    mut rx: mpsc::UnboundedReceiver<Job>,
    mut committer: C,
    batch_max: usize,
) {
    let mut carried: Option<Job> = None;
    loop {
        let next = match carried.take() {
            Some(job) => Some(job),
            None => rx.recv().await,
        };
        let Some(first) = next else { break };
        let Group { batch, replies } = gather(first, &mut rx, &mut carried, batch_max);
        let outcome = committer.commit(batch).await;
        Answers { replies, outcome }.send();
    }
    committer.finish().await;
}

/// The writer thread: [`run`] for a blocking committer.
fn run_blocking<C: BlockingCommitter>(
    mut rx: mpsc::UnboundedReceiver<Job>,
    mut committer: C,
    batch_max: usize,
) {
    let mut carried: Option<Job> = None;
    while let Some(first) = carried.take().or_else(|| rx.blocking_recv()) {
        let Group { batch, replies } = gather(first, &mut rx, &mut carried, batch_max);
        let outcome = committer.commit(batch);
        committer.deliver(Answers { replies, outcome });
    }
    committer.finish();
}
