//! Who holds each client id, and the name each connection has towards rumqttd.
//!
//! rumqttd remembers every client id it has seen until it stops (a record of ten connection events, and a
//! persistent session's state), so clients that pick a new random id for each clean-session connection, as
//! many command-line tools and libraries do, would grow its memory without end. A clean session has nothing
//! worth remembering: the guard connects it to rumqttd under a seat name (`oee-seat-N`, under the client id
//! prefix reserved to the server, so no client can take it) that is reused once the connection has ended,
//! so rumqttd knows at most as many names as there were connections open at once. A persistent session
//! keeps its client id, which is where rumqttd finds its state.
//!
//! With names no longer matching, rumqttd cannot see that two connections use one client id, so the guard
//! does what MQTT 3.1.1 (§3.1.4-2) asks: a new connection with a client id in use ends the old one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// Every client id in use, and the seat names free for reuse.
pub(crate) struct Sessions {
    /// Seat names are `{prefix}-seat-{n}`.
    prefix: String,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Each client id in use: its connection's number and how to end that connection.
    holders: HashMap<String, (u64, oneshot::Sender<()>)>,
    free_seats: Vec<u32>,
    seats: u32,
    connections: u64,
}

/// One connection's hold on its client id (and its seat); dropping it lets both go.
pub(crate) struct Hold {
    sessions: Arc<Sessions>,
    client_id: String,
    connection: u64,
    seat: Option<u32>,
    /// Fires when a newer connection took the client id over; `None` for an empty client id.
    pub(crate) taken_over: Option<oneshot::Receiver<()>>,
}

impl Hold {
    /// The client id rumqttd knows this connection by.
    pub(crate) fn upstream_id(&self) -> String {
        match self.seat {
            Some(seat) => format!("{}-seat-{seat}", self.sessions.prefix),
            None => self.client_id.clone(),
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let mut inner = self.sessions.lock();
        if inner.holders.get(&self.client_id).is_some_and(|(c, _)| *c == self.connection) {
            inner.holders.remove(&self.client_id);
        }
        if let Some(seat) = self.seat {
            inner.free_seats.push(seat);
        }
    }
}

impl Sessions {
    /// Seats named under the server's client id prefix `prefix`.
    pub(crate) fn new(prefix: &str) -> Sessions {
        Sessions { prefix: prefix.to_string(), inner: Mutex::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every update is a handful of inserts and removes that leave the maps whole if one panics.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes `client_id` for a new connection, ending the connection that held it; a clean session also
    /// takes a seat. An empty client id (a clean session the server names) is never anybody else's.
    pub(crate) fn take(self: &Arc<Sessions>, client_id: &str, clean_session: bool) -> Hold {
        let (tx, taken_over) = oneshot::channel();
        let mut inner = self.lock();
        inner.connections += 1;
        let connection = inner.connections;
        let seat = clean_session.then(|| {
            inner.free_seats.pop().unwrap_or_else(|| {
                inner.seats += 1;
                inner.seats
            })
        });
        let taken_over = (!client_id.is_empty()).then(|| {
            if let Some((_, end_old)) = inner.holders.insert(client_id.to_string(), (connection, tx)) {
                let _ = end_old.send(());
            }
            taken_over
        });
        drop(inner);
        Hold { sessions: self.clone(), client_id: client_id.to_string(), connection, seat, taken_over }
    }

    /// How many seat names rumqttd has been given so far: the most clean sessions open at once.
    #[cfg(test)]
    fn seats(&self) -> u32 {
        self.lock().seats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seats_are_reused_so_rumqttd_learns_few_names_whatever_ids_clients_pick() {
        let sessions = Arc::new(Sessions::new("oee"));
        for i in 0..100 {
            let hold = sessions.take(&format!("random-{i}"), true);
            assert_eq!(hold.upstream_id(), "oee-seat-1");
        }
        let a = sessions.take("a", true);
        let b = sessions.take("b", true);
        assert_ne!(a.upstream_id(), b.upstream_id());
        assert_eq!(sessions.seats(), 2);
        // A persistent session keeps its id, where rumqttd keeps its state.
        assert_eq!(sessions.take("plc-1", false).upstream_id(), "plc-1");
    }

    #[test]
    fn a_new_connection_with_an_id_in_use_ends_the_old_one_and_keeps_the_id() {
        let sessions = Arc::new(Sessions::new("oee"));
        let taken = |h: &mut Hold| h.taken_over.as_mut().is_some_and(|r| r.try_recv().is_ok());
        let mut old = sessions.take("plc-1", true);
        let mut other = sessions.take("plc-2", true);
        let new = sessions.take("plc-1", true);
        assert!(taken(&mut old));
        assert!(!taken(&mut other));
        // The old connection ending does not free the id the new one holds.
        drop(old);
        let mut newest = sessions.take("plc-1", false);
        drop(new);
        assert!(!taken(&mut newest));
        // Empty ids are each their own.
        let first = sessions.take("", true);
        let _second = sessions.take("", true);
        assert!(first.taken_over.is_none());
    }
}
