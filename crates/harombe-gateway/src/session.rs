//! MCP sessions: who owns them, what they negotiated, their server-to-client stream, and
//! the calls they have in flight (for cancellation).

use std::collections::{HashMap, VecDeque};
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
    stream: Mutex<Option<mpsc::Sender<Vec<u8>>>>,
    backlog: Mutex<VecDeque<Vec<u8>>>,
    backlog_max: usize,
    /// Client raw id -> (upstream index, upstream id).
    in_flight: Mutex<HashMap<String, (usize, u64)>>,
}

impl Session {
    pub fn new(id: SessionId, agent: AgentId, protocol: String, backlog_max: usize) -> Self {
        Self {
            id,
            agent,
            protocol,
            last_seen: Mutex::new(Instant::now()),
            stream: Mutex::new(None),
            backlog: Mutex::new(VecDeque::new()),
            backlog_max,
            in_flight: Mutex::new(HashMap::new()),
        }
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

    /// Sends a server-to-client message on the session's stream, or keeps it (bounded,
    /// oldest dropped) until a stream is opened.
    pub fn deliver(&self, msg: Vec<u8>) {
        let tx = self
            .stream
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let msg = match tx {
            Some(tx) => match tx.try_send(msg) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(m) | mpsc::error::TrySendError::Closed(m)) => m,
            },
            None => msg,
        };
        let mut b = self.backlog.lock().unwrap_or_else(|e| e.into_inner());
        if b.len() >= self.backlog_max {
            b.pop_front();
            tracing::warn!(session = %self.id, "session stream backlog full; oldest message dropped");
        }
        b.push_back(msg);
    }

    /// Opens (or replaces) the stream; returns its receiver with the backlog queued first.
    pub fn open_stream(&self, capacity: usize) -> mpsc::Receiver<Vec<u8>> {
        let (tx, rx) = mpsc::channel(capacity.max(1) + self.backlog_max);
        let backlog: Vec<Vec<u8>> = self
            .backlog
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        for m in backlog {
            let _ = tx.try_send(m);
        }
        *self.stream.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
        rx
    }

    /// Attaches an existing sender as the stream (stdio: stdout).
    pub fn attach(&self, tx: mpsc::Sender<Vec<u8>>) {
        *self.stream.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
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

    /// Closes sessions idle longer than `max_idle`.
    pub fn expire(&self, max_idle: Duration) -> usize {
        let mut m = self.map.write().unwrap_or_else(|e| e.into_inner());
        let before = m.len();
        m.retain(|_, s| s.idle() < max_idle);
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
        let mut rx = s.open_stream(4);
        assert_eq!(rx.try_recv().unwrap(), vec![1]);
        assert_eq!(rx.try_recv().unwrap(), vec![2]);
        s.deliver(vec![9]);
        assert_eq!(rx.try_recv().unwrap(), vec![9]);
        assert!(s.begin("1", 0, 5));
        assert!(!s.begin("1", 0, 6));
        assert_eq!(s.lookup("1"), Some((0, 5)));
        s.end("1");
        assert!(s.begin("1", 0, 7));
    }
}
