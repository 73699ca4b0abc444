//! The group-commit writer shared by both backends.
//!
//! Producers send `Job`s through a bounded channel; one writer task takes everything
//! waiting (up to `batch_max`), commits it in one transaction and only then answers each
//! producer. The committer is backend-specific; the batching, back-pressure and shutdown
//! are here, once.

use std::future::Future;
use std::sync::Mutex;

use harombe_core::{Appended, AuditEvent, StoreError};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::{FullPolicy, StoreOptions};

/// An event ready to be chained: validated and encoded by the producer, so the writer only
/// hashes and writes.
#[derive(Debug)]
pub(crate) struct Pending {
    pub event: AuditEvent,
    pub body: Vec<u8>,
}

struct Job {
    pending: Pending,
    reply: oneshot::Sender<Result<Appended, StoreError>>,
}

/// Commits a batch in one transaction and returns one result per event, in order. An
/// `Err` from the commit itself applies to every event of the batch.
pub(crate) trait Committer: Send + 'static {
    fn commit(
        &mut self,
        batch: Vec<Pending>,
    ) -> impl Future<Output = Result<Vec<Result<Appended, StoreError>>, StoreError>> + Send;
}

#[derive(Debug)]
pub(crate) struct Queue {
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    writer: tokio::sync::Mutex<Option<JoinHandle<()>>>,
    policy: FullPolicy,
    capacity: usize,
}

impl Queue {
    pub fn start<C: Committer>(committer: C, options: &StoreOptions) -> Self {
        let capacity = options.queue_capacity.max(1);
        let (tx, rx) = mpsc::channel(capacity);
        let writer = tokio::spawn(run(rx, committer, options.batch_max.max(1)));
        Self {
            tx: Mutex::new(Some(tx)),
            writer: tokio::sync::Mutex::new(Some(writer)),
            policy: options.full_policy,
            capacity,
        }
    }

    fn sender(&self) -> Result<mpsc::Sender<Job>, StoreError> {
        self.tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(StoreError::Closed)
    }

    /// Queues one event and returns the receiver of its result (resolved once durable).
    async fn submit(
        &self,
        tx: &mpsc::Sender<Job>,
        event: AuditEvent,
    ) -> Result<oneshot::Receiver<Result<Appended, StoreError>>, StoreError> {
        let body = event.encode()?;
        let (reply, rx) = oneshot::channel();
        let job = Job {
            pending: Pending { event, body },
            reply,
        };
        match self.policy {
            FullPolicy::Wait => tx.send(job).await.map_err(|_| StoreError::Closed)?,
            FullPolicy::Reject => tx.try_send(job).map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => StoreError::QueueFull {
                    capacity: self.capacity,
                },
                mpsc::error::TrySendError::Closed(_) => StoreError::Closed,
            })?,
        }
        Ok(rx)
    }

    pub async fn append(&self, event: AuditEvent) -> Result<Appended, StoreError> {
        let tx = self.sender()?;
        let rx = self.submit(&tx, event).await?;
        drop(tx);
        rx.await.map_err(|_| StoreError::Closed)?
    }

    pub async fn append_many(&self, events: Vec<AuditEvent>) -> Vec<Result<Appended, StoreError>> {
        let tx = match self.sender() {
            Ok(tx) => tx,
            Err(e) => return events.iter().map(|_| Err(e.clone())).collect(),
        };
        let mut waiting = Vec::with_capacity(events.len());
        for event in events {
            waiting.push(self.submit(&tx, event).await);
        }
        drop(tx);
        let mut out = Vec::with_capacity(waiting.len());
        for w in waiting {
            out.push(match w {
                Ok(rx) => rx.await.unwrap_or(Err(StoreError::Closed)),
                Err(e) => Err(e),
            });
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

async fn run<C: Committer>(mut rx: mpsc::Receiver<Job>, mut committer: C, batch_max: usize) {
    let mut jobs = Vec::with_capacity(batch_max);
    while rx.recv_many(&mut jobs, batch_max).await > 0 {
        let mut replies = Vec::with_capacity(jobs.len());
        let mut batch = Vec::with_capacity(jobs.len());
        for job in jobs.drain(..) {
            replies.push(job.reply);
            batch.push(job.pending);
        }
        match committer.commit(batch).await {
            Ok(results) => {
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, events = replies.len(), "audit commit failed");
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}
