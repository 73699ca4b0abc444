//! The approvals port ([`harombe_core::ApprovalStore`]) next to the audit log.
//!
//! Each backend turns a decision into one compare-and-set from `pending`; what is shared
//! lives here: the registry of waiters (so a decision made through the same instance wakes
//! its waiter at once), the wait loop, and the rules for reading a refused decision.
//! How a decision made elsewhere reaches a waiter is the backend's business: LISTEN/NOTIFY
//! on PostgreSQL, `PRAGMA data_version` polled while someone waits on SQLite.

pub(crate) mod memory;
pub(crate) mod postgres;
pub(crate) mod sqlite;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use harombe_core::store::Backend;
use harombe_core::{
    AgentId, Approval, ApprovalError, ApprovalId, ApprovalRequest, ApprovalState, SessionId,
    StoreError, ThreatLevel,
};
use time::OffsetDateTime;
use tokio::sync::Notify;

/// The most approvals one `list` returns.
pub(crate) const MAX_LIST: u32 = 1_000;

pub(crate) fn clamp_limit(limit: u32) -> u32 {
    limit.clamp(1, MAX_LIST)
}

/// Who is waiting for which approval, and one [`Notify`] per waited id.
#[derive(Debug, Default)]
pub(crate) struct Waiters {
    inner: Mutex<WaitersInner>,
}

#[derive(Debug, Default)]
struct WaitersInner {
    ids: HashMap<ApprovalId, Entry>,
    /// Whether a backend's watcher (the SQLite poller) is running for these waiters.
    watching: bool,
}

#[derive(Debug)]
struct Entry {
    notify: Arc<Notify>,
    count: usize,
}

/// One registered waiter; deregisters when dropped.
pub(crate) struct WaitGuard {
    waiters: Arc<Waiters>,
    id: ApprovalId,
    notify: Arc<Notify>,
}

impl Drop for WaitGuard {
    fn drop(&mut self) {
        let mut inner = self.waiters.lock();
        if let Some(e) = inner.ids.get_mut(&self.id) {
            e.count -= 1;
            if e.count == 0 {
                inner.ids.remove(&self.id);
            }
        }
    }
}

impl Waiters {
    fn lock(&self) -> std::sync::MutexGuard<'_, WaitersInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a waiter for `id`. The flag is true when no watcher runs yet: the caller
    /// starts one (and it is then marked as running).
    pub(crate) fn register(self: &Arc<Self>, id: ApprovalId) -> (WaitGuard, bool) {
        let mut inner = self.lock();
        let entry = inner.ids.entry(id).or_insert_with(|| Entry {
            notify: Arc::new(Notify::new()),
            count: 0,
        });
        entry.count += 1;
        let notify = entry.notify.clone();
        let start = !inner.watching;
        inner.watching = true;
        (
            WaitGuard {
                waiters: self.clone(),
                id,
                notify,
            },
            start,
        )
    }

    /// Wakes the waiters of `id`, if any; they re-read the approval.
    pub(crate) fn wake(&self, id: ApprovalId) {
        if let Some(e) = self.lock().ids.get(&id) {
            e.notify.notify_waiters();
        }
    }

    /// Wakes every waiter (after a lost notification channel came back).
    pub(crate) fn wake_all(&self) {
        for e in self.lock().ids.values() {
            e.notify.notify_waiters();
        }
    }

    /// The ids someone waits for.
    pub(crate) fn ids(&self) -> Vec<ApprovalId> {
        self.lock().ids.keys().copied().collect()
    }

    /// For a watcher: when nobody waits any more, marks the watcher stopped and returns
    /// true (the watcher then exits; the next waiter starts a new one).
    pub(crate) fn stop_watching_if_idle(&self) -> bool {
        let mut inner = self.lock();
        if inner.ids.is_empty() {
            inner.watching = false;
            true
        } else {
            false
        }
    }
}

/// The wait loop every backend shares: arm the wake-up, read, and sleep until woken or
/// out of time. Arming before reading means a decision between the read and the sleep
/// still wakes us.
pub(crate) async fn wait_until_decided<F, Fut>(
    guard: WaitGuard,
    timeout: Duration,
    read: F,
) -> Result<Approval, ApprovalError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Option<Approval>, StoreError>>,
{
    let id = guard.id;
    let until = tokio::time::Instant::now()
        .checked_add(timeout)
        .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(100 * 365 * 86_400));
    loop {
        let notified = guard.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let a = read().await?.ok_or(ApprovalError::NotFound(id))?;
        if a.state.is_final() {
            return Ok(a);
        }
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep_until(until) => return Ok(a),
        }
    }
}

/// Why a decision on `stored` (read after the compare-and-set matched nothing) was refused.
pub(crate) fn refusal(id: ApprovalId, stored: Option<Approval>) -> ApprovalError {
    match stored {
        None => ApprovalError::NotFound(id),
        Some(a) => match a.state {
            ApprovalState::Approved | ApprovalState::Denied => ApprovalError::AlreadyDecided {
                id,
                state: a.state,
                by: a.decided_by,
            },
            ApprovalState::Expired => ApprovalError::Expired {
                id,
                deadline: a.request.deadline,
            },
            // Still pending, so the deadline had passed at `at`.
            ApprovalState::Pending => ApprovalError::Expired {
                id,
                deadline: a.request.deadline,
            },
        },
    }
}

/// Whether an approval read as of `now` belongs in a list filtered by `state`.
pub(crate) fn in_state(a: &Approval, state: Option<ApprovalState>, now: OffsetDateTime) -> bool {
    state.is_none_or(|s| a.state_at(now) == s)
}

/// Reports an approval as of `now` (a pending one past its deadline reads as expired).
pub(crate) fn as_of(mut a: Approval, now: OffsetDateTime) -> Approval {
    a.state = a.state_at(now);
    a
}

/// Times are stored in microseconds; a request is normalised to that precision when filed
/// so what `create` returns equals what `get` reads back.
pub(crate) fn normalised(mut r: ApprovalRequest) -> ApprovalRequest {
    r.created = to_micros_precision(r.created);
    r.deadline = to_micros_precision(r.deadline);
    r
}

pub(crate) fn to_micros_precision(t: OffsetDateTime) -> OffsetDateTime {
    from_micros(crate::sql::micros(t))
}

pub(crate) fn from_micros(us: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

pub(crate) fn duplicate(id: ApprovalId) -> StoreError {
    StoreError::InvalidInput {
        field: "id",
        problem: format!("approval {id} already exists"),
    }
}

/// Checks what a request carries before it is stored.
pub(crate) fn validate(r: &ApprovalRequest) -> Result<(), StoreError> {
    if r.tool.is_empty() {
        return Err(StoreError::InvalidInput {
            field: "tool",
            problem: "is empty".into(),
        });
    }
    if r.deadline < r.created {
        return Err(StoreError::InvalidInput {
            field: "deadline",
            problem: format!("{} is before created ({})", r.deadline, r.created),
        });
    }
    if let Some(risk) = r.risk.filter(|x| !x.is_finite()) {
        return Err(StoreError::InvalidInput {
            field: "risk",
            problem: format!("{risk} is not a finite number"),
        });
    }
    Ok(())
}

/// One stored row's columns, in the order both backends select them.
pub(crate) struct Row {
    pub id: ApprovalId,
    pub agent: String,
    pub session: Option<String>,
    pub tool: String,
    pub arguments: String,
    pub binding: String,
    pub reasons: String,
    pub threat_level: Option<String>,
    pub risk: Option<f64>,
    pub created: i64,
    pub deadline: i64,
    pub state: String,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub reason: Option<String>,
}

pub(crate) const COLUMNS: &str = "id, agent, session, tool, arguments, binding, reasons, \
     threat_level, risk, created, deadline, state, decided_by, decided_at, reason";

impl Row {
    /// Decodes a stored row, naming the approval and the column when it is damaged.
    pub(crate) fn decode(self, backend: Backend) -> Result<Approval, StoreError> {
        let id = self.id;
        let bad = |column: &str, problem: String| StoreError::Database {
            backend,
            message: format!("approval {id}: column {column}: {problem}"),
            retriable: false,
        };
        let threat_level = match self.threat_level {
            None => None,
            Some(t) => Some(
                serde_json::from_value::<ThreatLevel>(serde_json::Value::String(t))
                    .map_err(|e| bad("threat_level", e.to_string()))?,
            ),
        };
        let request = ApprovalRequest {
            id,
            agent: AgentId::new(self.agent).map_err(|e| bad("agent", e.to_string()))?,
            session: self
                .session
                .map(SessionId::new)
                .transpose()
                .map_err(|e| bad("session", e.to_string()))?,
            tool: self.tool,
            arguments: serde_json::from_str(&self.arguments)
                .map_err(|e| bad("arguments", e.to_string()))?,
            binding: self.binding,
            reasons: serde_json::from_str(&self.reasons)
                .map_err(|e| bad("reasons", e.to_string()))?,
            threat_level,
            risk: self.risk,
            created: from_micros(self.created),
            deadline: from_micros(self.deadline),
        };
        Ok(Approval {
            request,
            state: self.state.parse().map_err(|e| bad("state", e))?,
            decided_by: self.decided_by,
            decided_at: self.decided_at.map(from_micros),
            reason: self.reason,
        })
    }
}

/// The JSON text of a request's arguments and reasons.
pub(crate) fn json_columns(r: &ApprovalRequest) -> (String, String) {
    (
        serde_json::to_string(&r.arguments).unwrap_or_else(|_| "null".into()),
        serde_json::to_string(&r.reasons).unwrap_or_else(|_| "[]".into()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiters_deregister_and_the_watcher_stops_when_idle() {
        let w = Arc::new(Waiters::default());
        let (a, b) = (ApprovalId::new(), ApprovalId::new());
        let (g1, start) = w.register(a);
        assert!(start, "the first waiter starts the watcher");
        let (g2, start) = w.register(a);
        assert!(!start);
        let (g3, _) = w.register(b);
        let mut ids = w.ids();
        ids.sort();
        let mut want = vec![a, b];
        want.sort();
        assert_eq!(ids, want);
        drop(g1);
        assert!(!w.stop_watching_if_idle());
        drop((g2, g3));
        assert!(w.ids().is_empty());
        assert!(w.stop_watching_if_idle());
        assert!(w.register(a).1, "a new waiter starts a new watcher");
    }

    #[tokio::test]
    async fn a_wake_between_read_and_sleep_is_not_lost() {
        let w = Arc::new(Waiters::default());
        let id = ApprovalId::new();
        let now = OffsetDateTime::now_utc();
        let pending = Approval::pending(ApprovalRequest {
            id,
            agent: AgentId::new("a").unwrap(),
            session: None,
            tool: "t".into(),
            arguments: serde_json::json!({}),
            binding: String::new(),
            reasons: vec![],
            threat_level: None,
            risk: None,
            created: now,
            deadline: now + time::Duration::hours(1),
        });
        let reads = std::sync::atomic::AtomicUsize::new(0);
        let (guard, _) = w.register(id);
        let w2 = w.clone();
        // The first read returns pending and wakes (as a decision landing right after the
        // read would); the second returns the decision. Without the wake-up armed before
        // the read, this would sleep for the whole hour.
        let got = wait_until_decided(guard, Duration::from_secs(3600), || {
            let n = reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut a = pending.clone();
            if n == 0 {
                w2.wake(id);
            } else {
                a.state = ApprovalState::Approved;
            }
            async move { Ok(Some(a)) }
        })
        .await
        .unwrap();
        assert_eq!(got.state, ApprovalState::Approved);
        assert_eq!(reads.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
