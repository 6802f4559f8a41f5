//! The devices connected now, kept in step with the database: a device revoked while connected is
//! disconnected, and a device whose machines change gets its new rights on the connections it has open.
//!
//! A change reaches the guard two ways. The store functions that change a device (`revoke`,
//! `set_machines`) announce it with a PostgreSQL notification, and the device's connections are re-checked
//! at once. And every `broker.device_recheck_s` seconds every connected device is read again, which
//! catches what no notification announced: an edit made in SQL, a machine given a topic name, a
//! notification lost while the listening connection was down. When the database cannot be read, rights
//! stay as they are and are checked again at the next round: an outage does not disconnect the plant.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oee_core::access::Principal;
use tokio::sync::{mpsc, watch};

use crate::auth::Access;

/// What the database announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The named device changed.
    Device(String),
    /// Announcements may have been missed (the listening connection was lost): re-check every device.
    Missed,
}

/// A task that passes the database's announcements of device changes on to the broker until the receiver
/// is gone.
pub type Follower = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// The rights of one open connection now: `None` once its device is revoked.
pub(crate) type Rights = watch::Receiver<Option<Principal>>;

/// The open connections of each device, by device name, each with the sender of its rights.
type Open = HashMap<String, HashMap<u64, watch::Sender<Option<Principal>>>>;

/// Every open connection of every device.
#[derive(Default)]
pub(crate) struct Devices {
    open: Mutex<Open>,
    next_id: AtomicU64,
}

/// One connection's place among [`Devices`]; leaving it (dropping) takes the connection off the list.
pub(crate) struct Membership {
    devices: Arc<Devices>,
    name: String,
    id: u64,
    pub(crate) rights: Rights,
}

impl Drop for Membership {
    fn drop(&mut self) {
        let mut open = self.devices.lock();
        if let Some(conns) = open.get_mut(&self.name) {
            conns.remove(&self.id);
            if conns.is_empty() {
                open.remove(&self.name);
            }
        }
    }
}

impl Devices {
    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        // A panic while holding this lock leaves the map whole (every update is one insert or remove).
        self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Puts a connection of `principal` on the list, when it is a device; others have rights that do not
    /// change while the server runs.
    pub(crate) fn join(self: &Arc<Devices>, principal: &Principal) -> Option<Membership> {
        let Principal::Device { name, machines } = principal else { return None };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rights) = watch::channel(Some(device(name, machines.clone())));
        self.lock().entry(name.clone()).or_default().insert(id, tx);
        Some(Membership { devices: self.clone(), name: name.clone(), id, rights })
    }

    /// The names of the devices connected now.
    pub(crate) fn connected(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// Whether `name` has a connection open now.
    pub(crate) fn is_connected(&self, name: &str) -> bool {
        self.lock().contains_key(name)
    }

    /// Hands the device `name` its rights now to each of its open connections: its machines' topic
    /// segments, or `None` when it is revoked. Connections whose rights are unchanged are not disturbed.
    pub(crate) fn apply(&self, name: &str, machines: Option<&[String]>) {
        let now = machines.map(|m| device(name, m.to_vec()));
        if let Some(conns) = self.lock().get(name) {
            for tx in conns.values() {
                tx.send_if_modified(|current| {
                    if *current == now {
                        return false;
                    }
                    current.clone_from(&now);
                    true
                });
            }
        }
    }
}

/// A device principal with its machines in a fixed order, so that rights read twice compare equal.
fn device(name: &str, mut machines: Vec<String>) -> Principal {
    machines.sort_unstable();
    machines.dedup();
    Principal::Device { name: name.to_string(), machines }
}

/// Keeps every connected device's rights in step with the database: on each announced change, and every
/// `every` whatever was announced.
pub(crate) async fn keep_in_step(
    devices: Arc<Devices>,
    access: Arc<dyn Access>,
    mut changes: mpsc::Receiver<Change>,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut announcements = true;
    let mut failing = false;
    loop {
        let names = tokio::select! {
            _ = tick.tick() => devices.connected(),
            change = changes.recv(), if announcements => match change {
                Some(Change::Device(name)) if devices.is_connected(&name) => vec![name],
                Some(Change::Device(_)) => continue,
                Some(Change::Missed) => devices.connected(),
                // No announcements to be had: the periodic re-check goes on alone.
                None => {
                    announcements = false;
                    continue;
                }
            },
        };
        if names.is_empty() {
            continue;
        }
        match access.standing(&names).await {
            Ok(now) => {
                if failing {
                    tracing::info!("connected MQTT devices are checked against the database again");
                    failing = false;
                }
                for name in &names {
                    devices.apply(name, now.get(name).map(Vec::as_slice));
                }
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(
                        "cannot re-check the connected MQTT devices ({e}): they keep their rights until the \
                         database answers again"
                    );
                    failing = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plc(machines: &[&str]) -> Principal {
        Principal::Device { name: "plc-1".into(), machines: machines.iter().map(|m| m.to_string()).collect() }
    }

    #[test]
    fn a_revoked_device_loses_its_rights_on_every_connection_and_others_keep_theirs() {
        let devices = Arc::new(Devices::default());
        let a = devices.join(&plc(&["4", "press"])).unwrap();
        let b = devices.join(&plc(&["press", "4"])).unwrap();
        let other = devices.join(&Principal::Device { name: "plc-2".into(), machines: vec![] }).unwrap();
        assert!(devices.join(&Principal::Server).is_none());
        let mut names = devices.connected();
        names.sort();
        assert_eq!(names, ["plc-1", "plc-2"]);

        // The same machines in another order: nothing changed, nobody is disturbed.
        devices.apply("plc-1", Some(&["press".to_string(), "4".to_string()]));
        assert!(!a.rights.has_changed().unwrap());

        devices.apply("plc-1", Some(&["5".to_string()]));
        assert_eq!(*a.rights.borrow(), Some(plc(&["5"])));
        assert_eq!(*b.rights.borrow(), Some(plc(&["5"])));
        devices.apply("plc-1", None);
        assert_eq!(*a.rights.borrow(), None);
        assert!(other.rights.borrow().is_some());

        drop(a);
        assert!(devices.is_connected("plc-1"));
        drop(b);
        assert!(!devices.is_connected("plc-1"));
    }
}
