//! MCP sessions: who owns them, what they negotiated, their server-to-client stream, and
//! the calls they have in flight (for cancellation).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use harombe_core::{AgentId, SessionId};
use rand::Rng;
use tokio::sync::mpsc;

use crate::error::GatewayError;

/// One session.
#[derive(Debug)]
pub struct Session {
    pub id: SessionId,
    pub agent: AgentId,
    pub protocol: String,
    last_seen: Mutex<Instant>,
    outbox: Mutex<Outbox>,
    backlog_max: usize,
    /// Client raw id -> (upstream index, upstream id).
    in_flight: Mutex<HashMap<String, (usize, u64)>>,
    /// Resource URIs this session subscribed to through the gateway.
    subscriptions: Mutex<HashSet<String>>,
    /// The least severe log message this session asked for ([`log_rank`]; 0: it never
    /// sent `logging/setLevel`).
    log_level: AtomicU8,
}

/// The severities of MCP log messages (`logging/setLevel`, `notifications/message`), least
/// severe first.
pub const LOG_LEVELS: [&str; 8] = [
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

/// 1 (`debug`) to 8 (`emergency`); `None` for anything else.
pub fn log_rank(level: &str) -> Option<u8> {
    LOG_LEVELS
        .iter()
        .position(|l| *l == level)
        .and_then(|i| u8::try_from(i + 1).ok())
}

/// Whether a log message at `level` goes to a session that asked for `min` and up (0: it
/// never asked; a level that is no MCP level is delivered).
pub fn log_wanted(min: u8, level: Option<&str>) -> bool {
    min == 0 || level.and_then(log_rank).is_none_or(|r| r >= min)
}

impl Session {
    pub fn new(id: SessionId, agent: AgentId, protocol: String, backlog_max: usize) -> Self {
        Self {
            id,
            agent,
            protocol,
            last_seen: Mutex::new(Instant::now()),
            outbox: Mutex::new(Outbox::default()),
            backlog_max,
            in_flight: Mutex::new(HashMap::new()),
            subscriptions: Mutex::new(HashSet::new()),
            log_level: AtomicU8::new(0),
        }
    }

    /// The least severe log message this session asked for (0: it never asked).
    pub fn log_level(&self) -> u8 {
        self.log_level.load(Ordering::Relaxed)
    }

    pub fn set_log_level(&self, rank: u8) {
        self.log_level.store(rank, Ordering::Relaxed);
    }

    /// Resource subscriptions one session may hold.
    pub const MAX_SUBSCRIPTIONS: usize = 1024;

    /// How many resources this session subscribed to.
    pub fn subscriptions(&self) -> usize {
        self.subscriptions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Records a `resources/subscribe` (`on`) or `resources/unsubscribe` of `uri`.
    pub fn subscribe(&self, uri: String, on: bool) {
        let mut s = self.subscriptions.lock().unwrap_or_else(|e| e.into_inner());
        if on {
            s.insert(uri);
        } else {
            s.remove(&uri);
        }
    }

    /// Whether this session subscribed to `uri`.
    pub fn subscribed(&self, uri: &str) -> bool {
        self.subscriptions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(uri)
    }

    pub fn touch(&self) {
        *self.last_seen.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    fn idle(&self) -> Duration {
        self.last_seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .elapsed()
    }

    /// Whether a client is listening on the session's stream right now (an open `GET`
    /// stream, or stdio's output).
    fn listening(&self) -> bool {
        match &self.outbox().sink {
            Some(Sink::Events(tx)) => !tx.is_closed(),
            Some(Sink::Lines(tx)) => !tx.is_closed(),
            None => false,
        }
    }

    fn outbox(&self) -> std::sync::MutexGuard<'_, Outbox> {
        self.outbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends a server-to-client message on the session's stream. Every message gets the
    /// next event id and stays in a bounded history (the last `backlog_max`), so a client
    /// that reconnects with `Last-Event-ID` gets what it missed, in order. An SSE stream
    /// that cannot keep up is closed (the client resumes from its last id) rather than
    /// skipping a message.
    pub fn deliver(&self, msg: Vec<u8>) {
        let mut o = self.outbox();
        o.next_id += 1;
        let id = o.next_id;
        if o.history.len() >= self.backlog_max.max(1)
            && let Some((old, _)) = o.history.pop_front()
            && old > o.delivered
        {
            tracing::warn!(session = %self.id, "session stream backlog full; oldest message dropped");
        }
        o.history.push_back((id, msg.clone()));
        match &o.sink {
            Some(Sink::Events(tx)) => match tx.try_send((id, msg)) {
                Ok(()) => o.delivered = id,
                Err(_) => o.sink = None,
            },
            Some(Sink::Lines(tx)) => {
                if tx.try_send(msg).is_ok() {
                    o.delivered = id;
                } else {
                    tracing::warn!(session = %self.id, "client output full or closed; message dropped");
                }
            }
            None => {}
        }
    }

    /// Opens (or replaces) the SSE stream. It starts with the kept messages after
    /// `last_event_id` (the client's `Last-Event-ID`), or, without one, with those never
    /// handed to a stream; each item carries its event id.
    pub fn open_stream(
        &self,
        capacity: usize,
        last_event_id: Option<u64>,
    ) -> mpsc::Receiver<(u64, Vec<u8>)> {
        let (tx, rx) = mpsc::channel(capacity.max(1) + self.backlog_max);
        let mut o = self.outbox();
        let after = last_event_id.unwrap_or(o.delivered);
        if let Some((first, _)) = o.history.front()
            && *first > after + 1
        {
            tracing::warn!(session = %self.id, after, first, "resumed stream: older messages are no longer kept");
        }
        let mut last = o.delivered;
        for (id, m) in o.history.iter().filter(|(id, _)| *id > after) {
            if tx.try_send((*id, m.clone())).is_ok() {
                last = last.max(*id);
            }
        }
        o.delivered = last;
        o.sink = Some(Sink::Events(tx));
        rx
    }

    /// Attaches an existing sender as the stream (stdio: stdout, a line per message).
    pub fn attach(&self, tx: mpsc::Sender<Vec<u8>>) {
        self.outbox().sink = Some(Sink::Lines(tx));
    }

    /// Registers a client request in flight; `false` if that id is already in flight.
    pub fn begin(&self, client_id: &str, upstream: usize, upstream_id: u64) -> bool {
        let mut m = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        if m.contains_key(client_id) {
            return false;
        }
        m.insert(client_id.to_owned(), (upstream, upstream_id));
        true
    }

    pub fn end(&self, client_id: &str) {
        self.in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(client_id);
    }

    pub fn lookup(&self, client_id: &str) -> Option<(usize, u64)> {
        self.in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(client_id)
            .copied()
    }
}

/// Where a session's server-to-client messages go.
#[derive(Debug)]
enum Sink {
    /// An SSE stream (`GET`): messages with their event ids.
    Events(mpsc::Sender<(u64, Vec<u8>)>),
    /// stdio: raw messages.
    Lines(mpsc::Sender<Vec<u8>>),
}

#[derive(Debug, Default)]
struct Outbox {
    sink: Option<Sink>,
    /// The last event id given out.
    next_id: u64,
    /// The highest id handed to a stream.
    delivered: u64,
    history: VecDeque<(u64, Vec<u8>)>,
}

/// All sessions.
#[derive(Debug)]
pub struct Sessions {
    map: RwLock<HashMap<String, Arc<Session>>>,
    max: usize,
    backlog: usize,
}

impl Sessions {
    pub fn new(max: usize, backlog: usize) -> Self {
        Self {
            map: RwLock::new(HashMap::new()),
            max,
            backlog,
        }
    }

    /// Creates a session with a fresh random id (128 bits, hex).
    pub fn create(&self, agent: AgentId, protocol: String) -> Result<Arc<Session>, GatewayError> {
        let id = hex::encode(rand::rng().random::<[u8; 16]>());
        let id = SessionId::new(id).map_err(|e| GatewayError::Internal(e.to_string()))?;
        let s = Arc::new(Session::new(id.clone(), agent, protocol, self.backlog));
        let mut m = self.map.write().unwrap_or_else(|e| e.into_inner());
        if m.len() >= self.max {
            return Err(GatewayError::ResourceLimit(format!(
                "{} sessions are open; the limit is {}",
                m.len(),
                self.max
            )));
        }
        m.insert(id.to_string(), s.clone());
        Ok(s)
    }

    /// The session `id` if it exists and belongs to `agent`.
    pub fn get(&self, id: &str, agent: &AgentId) -> Result<Arc<Session>, GatewayError> {
        let m = self.map.read().unwrap_or_else(|e| e.into_inner());
        match m.get(id) {
            Some(s) if s.agent == *agent => {
                s.touch();
                Ok(s.clone())
            }
            // Another agent's session is reported as unknown: no oracle for session ids.
            _ => Err(GatewayError::UnknownSession(truncate(id))),
        }
    }

    pub fn remove(&self, id: &str, agent: &AgentId) -> Result<(), GatewayError> {
        let mut m = self.map.write().unwrap_or_else(|e| e.into_inner());
        match m.get(id) {
            Some(s) if s.agent == *agent => {
                m.remove(id);
                Ok(())
            }
            _ => Err(GatewayError::UnknownSession(truncate(id))),
        }
    }

    pub fn all(&self) -> Vec<Arc<Session>> {
        self.map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub fn len(&self) -> usize {
        self.map.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Closes sessions idle longer than `max_idle`. A session whose client is listening
    /// on its stream is in use however long ago it last sent anything; once the stream
    /// closes, its idle time counts from the last sweep that saw it open.
    pub fn expire(&self, max_idle: Duration) -> usize {
        let mut m = self.map.write().unwrap_or_else(|e| e.into_inner());
        let before = m.len();
        m.retain(|_, s| {
            if s.listening() {
                s.touch();
                return true;
            }
            s.idle() < max_idle
        });
        before - m.len()
    }
}

fn truncate(id: &str) -> String {
    id.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_levels_are_ordered_and_filter_only_known_ones() {
        assert_eq!(log_rank("debug"), Some(1));
        assert_eq!(log_rank("emergency"), Some(8));
        assert_eq!(log_rank("Debug"), None);
        let warning = log_rank("warning").unwrap();
        assert!(log_wanted(warning, Some("error")));
        assert!(log_wanted(warning, Some("warning")));
        assert!(!log_wanted(warning, Some("info")));
        // Never asked: everything; a level that is none of MCP's: delivered.
        assert!(log_wanted(0, Some("debug")));
        assert!(log_wanted(warning, Some("verbose")));
        assert!(log_wanted(warning, None));
    }

    #[test]
    fn sessions_are_bounded_and_owned() {
        let s = Sessions::new(2, 4);
        let a = AgentId::new("a").unwrap();
        let b = AgentId::new("b").unwrap();
        let s1 = s.create(a.clone(), "v".into()).unwrap();
        s.create(a.clone(), "v".into()).unwrap();
        assert_eq!(s.create(a.clone(), "v".into()).unwrap_err().code(), -32006);
        assert!(s.get(s1.id.as_str(), &a).is_ok());
        assert!(matches!(
            s.get(s1.id.as_str(), &b),
            Err(GatewayError::UnknownSession(_))
        ));
        assert!(s.remove(s1.id.as_str(), &b).is_err());
        s.remove(s1.id.as_str(), &a).unwrap();
        assert!(s.get(s1.id.as_str(), &a).is_err());
    }

    #[test]
    fn a_session_with_a_listener_does_not_expire() {
        let s = Sessions::new(4, 4);
        let a = AgentId::new("a").unwrap();
        let quiet = s.create(a.clone(), "v".into()).unwrap();
        let listening = s.create(a.clone(), "v".into()).unwrap();
        let rx = listening.open_stream(4, None);
        // Everything is idle past a zero limit; only the listened-to session stays.
        assert_eq!(s.expire(Duration::ZERO), 1);
        assert!(s.get(quiet.id.as_str(), &a).is_err());
        assert!(s.get(listening.id.as_str(), &a).is_ok());
        assert_eq!(s.expire(Duration::from_secs(60)), 0);
        // The client hung up: the session is idle again and goes.
        drop(rx);
        assert_eq!(s.expire(Duration::ZERO), 1);
        assert!(s.get(listening.id.as_str(), &a).is_err());
    }

    #[test]
    fn backlog_is_bounded_and_replayed() {
        let s = Session::new(
            SessionId::new("x").unwrap(),
            AgentId::new("a").unwrap(),
            "v".into(),
            2,
        );
        for i in 0..3u8 {
            s.deliver(vec![i]);
        }
        let mut rx = s.open_stream(4, None);
        assert_eq!(rx.try_recv().unwrap(), (2, vec![1]));
        assert_eq!(rx.try_recv().unwrap(), (3, vec![2]));
        s.deliver(vec![9]);
        assert_eq!(rx.try_recv().unwrap(), (4, vec![9]));
        assert!(rx.try_recv().is_err());
        assert!(s.begin("1", 0, 5));
        assert!(!s.begin("1", 0, 6));
        assert_eq!(s.lookup("1"), Some((0, 5)));
        s.end("1");
        assert!(s.begin("1", 0, 7));
    }

    #[test]
    fn reconnecting_with_last_event_id_resumes_in_order() {
        let s = Session::new(
            SessionId::new("x").unwrap(),
            AgentId::new("a").unwrap(),
            "v".into(),
            8,
        );
        let mut rx = s.open_stream(4, None);
        for i in 1..=3u8 {
            s.deliver(vec![i]);
        }
        assert_eq!(rx.try_recv().unwrap(), (1, vec![1]));
        // The connection drops after event 1; events 2 and 3 were in flight and lost.
        drop(rx);
        s.deliver(vec![4]);
        let mut rx = s.open_stream(4, Some(1));
        let got: Vec<(u64, Vec<u8>)> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(got, vec![(2, vec![2]), (3, vec![3]), (4, vec![4])]);
        // Without Last-Event-ID only what no stream was handed is replayed: nothing.
        let mut rx = s.open_stream(4, None);
        assert!(rx.try_recv().is_err());
        s.deliver(vec![5]);
        assert_eq!(rx.try_recv().unwrap(), (5, vec![5]));
    }

    #[test]
    fn a_stream_that_cannot_keep_up_is_closed_not_skipped() {
        let s = Session::new(
            SessionId::new("x").unwrap(),
            AgentId::new("a").unwrap(),
            "v".into(),
            1,
        );
        // Capacity 1 + backlog 1 = 2 buffered messages.
        let mut rx = s.open_stream(1, None);
        for i in 1..=3u8 {
            s.deliver(vec![i]);
        }
        assert_eq!(rx.try_recv().unwrap(), (1, vec![1]));
        assert_eq!(rx.try_recv().unwrap(), (2, vec![2]));
        assert!(matches!(
            rx.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
        // Resuming after 2 gets 3.
        let mut rx = s.open_stream(1, Some(2));
        assert_eq!(rx.try_recv().unwrap(), (3, vec![3]));
    }
}
