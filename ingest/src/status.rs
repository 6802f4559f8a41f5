//! Retained status topics: after every committed change, and all of them again whenever ingest
//! (re)connects, because rumqttd keeps retained messages in memory only.
//!
//! One publisher task per ingest process reads the current status from the database and publishes it.
//! Requests that arrive while it is busy, or within 100 ms of its last round, are merged, so under a
//! burst a machine's status is published at most ten times a second, with its latest state, instead of
//! once per change (every change is in the database).
//!
//! With `ingest.no_signal_after_s` set, the same task also watches for machines that fall silent (or are
//! heard again) and republishes their status with the changed `signal`.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::Duration;

use tokio::sync::mpsc;

use oee_core::payload::Signal;
use oee_core::store::machine::machine_statuses;
use oee_core::topic;
use rumqttc::{AsyncClient, QoS};
use sqlx::PgPool;

/// Shortest time between two rounds of status publishing.
const ROUND_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// What to publish.
#[derive(Debug)]
pub(crate) enum Request {
    All,
    Machines(Vec<i32>),
    /// A status seen on the broker (ours coming back, or one another client wrote).
    Seen {
        topic: String,
        payload: bytes::Bytes,
    },
}

/// The last statuses this publisher wrote on each topic, to tell its own from anyone else's. A few are kept:
/// the echo of one written a moment before the latest is still its own, and the broker already holds the
/// latest.
#[derive(Default)]
pub(crate) struct Written {
    by_topic: HashMap<String, (i32, VecDeque<bytes::Bytes>)>,
}

/// How many of its own latest statuses per topic the publisher recognises.
const RECENT: usize = 4;

impl Written {
    fn record(&mut self, topic: String, machine_id: i32, payload: bytes::Bytes) {
        let (id, recent) = self.by_topic.entry(topic).or_default();
        *id = machine_id;
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back(payload);
    }
}

impl Written {
    /// What to do about a status seen on the broker: nothing when it is the one written last, else the
    /// machine whose status must be written again, or `Err(())` when no machine has that topic (the retained
    /// message is to be cleared).
    async fn judge(&self, pool: &PgPool, topic: &str, payload: &[u8]) -> Option<Result<i32, ()>> {
        match self.by_topic.get(topic) {
            Some((_, recent)) if recent.iter().any(|p| p.as_ref() == payload) => None,
            Some((id, _)) => Some(Ok(*id)),
            None if payload.is_empty() => None,
            None => {
                let segment = topic::parse_status(topic)?;
                match oee_core::store::machine::machine_id_by_segment(pool, segment).await {
                    Ok(Some(id)) => Some(Ok(id)),
                    Ok(None) => Some(Err(())),
                    Err(e) => {
                        tracing::warn!("cannot look up the machine of {topic}: {e}");
                        None
                    }
                }
            }
        }
    }
}

/// Starts the publisher task; it ends when every sender is gone. `no_signal_after`: how long a machine may
/// be silent before its status says so (none: never).
pub(crate) fn start(
    pool: PgPool,
    client: AsyncClient,
    no_signal_after: Option<Duration>,
    max_packet_size: usize,
) -> (mpsc::UnboundedSender<Request>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Request>();
    let task = tokio::spawn(async move {
        // The watch runs a few times per allowed silence, so a machine is shown lost soon after it is.
        let every = no_signal_after.map_or(Duration::from_secs(3600), |a| (a / 4).clamp(ROUND_INTERVAL, MAX_WATCH));
        let mut watch = tokio::time::interval(every);
        watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut silent: BTreeSet<i32> = BTreeSet::new();
        let mut written = Written::default();
        loop {
            let first = tokio::select! {
                r = rx.recv() => match r {
                    Some(r) => r,
                    None => break,
                },
                _ = watch.tick(), if no_signal_after.is_some() => {
                    match silent_changes(&pool, no_signal_after, &mut silent).await {
                        Some(changed) if !changed.is_empty() => Request::Machines(changed),
                        _ => continue,
                    }
                }
            };
            let mut all = false;
            let mut ids = BTreeSet::new();
            let mut seen = Vec::new();
            let mut take = |r: Request| match r {
                Request::All => all = true,
                Request::Machines(m) => ids.extend(m),
                Request::Seen { topic, payload } => seen.push((topic, payload)),
            };
            take(first);
            while let Ok(r) = rx.try_recv() {
                take(r);
            }
            for (topic, payload) in seen {
                match written.judge(&pool, &topic, &payload).await {
                    None => {}
                    Some(Ok(id)) => {
                        tracing::warn!("a status for machine {id} on {topic} was not the server's: writing it again");
                        ids.insert(id);
                    }
                    Some(Err(())) => {
                        tracing::warn!(
                            "a status on {topic}, which names no machine, was not the server's: clearing it"
                        );
                        if client.publish(topic.as_str(), QoS::AtLeastOnce, true, Vec::new()).await.is_ok() {
                            written.record(topic, 0, bytes::Bytes::new());
                        }
                    }
                }
            }
            if all {
                publish(&pool, &client, None, no_signal_after, max_packet_size, &mut written).await;
            } else if !ids.is_empty() {
                let ids: Vec<i32> = ids.into_iter().collect();
                publish(&pool, &client, Some(&ids), no_signal_after, max_packet_size, &mut written).await;
            } else {
                continue;
            }
            // At most one round per interval: a burst of changes costs one status per machine per round,
            // and the CPU stays with ingest.
            tokio::time::sleep(ROUND_INTERVAL).await;
        }
    });
    (tx, task)
}

/// Longest time between two looks for silent machines.
const MAX_WATCH: Duration = Duration::from_secs(30);

/// The machines whose signal changed since the last look (`silent` holds the silent ones).
async fn silent_changes(pool: &PgPool, after: Option<Duration>, silent: &mut BTreeSet<i32>) -> Option<Vec<i32>> {
    let statuses = match machine_statuses(pool, None).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot read machine status to watch for silent machines: {e}");
            return None;
        }
    };
    let now = chrono::Utc::now();
    let now_silent: BTreeSet<i32> = statuses
        .iter()
        .filter(|s| Signal::judge(s.last_signal_at, now, after) == Signal::NoSignal)
        .map(|s| s.machine_id)
        .collect();
    let changed: Vec<i32> = now_silent.symmetric_difference(silent).copied().collect();
    for id in now_silent.difference(silent) {
        tracing::warn!("machine {id}: no signal for more than {:?}", after.unwrap_or_default());
    }
    *silent = now_silent;
    Some(changed)
}

/// Publishes the status of the given machines (all when `None`) on their id topic and, when they have
/// one, their topic-name topic. A status larger than `max_packet_size` (a very long machine name under a
/// small limit) is not published: rumqttc would fail the connection on it again and again.
pub(crate) async fn publish(
    pool: &PgPool,
    client: &AsyncClient,
    ids: Option<&[i32]>,
    no_signal_after: Option<Duration>,
    max_packet_size: usize,
    written: &mut Written,
) {
    let statuses = match machine_statuses(pool, ids).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot read machine status to publish: {e}");
            return;
        }
    };
    let now = chrono::Utc::now();
    for mut s in statuses {
        s.signal = Signal::judge(s.last_signal_at, now, no_signal_after);
        let Ok(body) = serde_json::to_vec(&s) else { continue };
        let mut topics = vec![topic::status(&s.machine_id.to_string())];
        topics.extend(s.topic_name.as_deref().map(topic::status));
        for t in topics {
            if !oee_core::mqtt::publish_fits(&t, body.len(), max_packet_size) {
                tracing::warn!(
                    "machine {} status not published on {t}: {} bytes exceed mqtt.max_packet_size ({max_packet_size})",
                    s.machine_id,
                    oee_core::mqtt::publish_packet_size(&t, body.len())
                );
                continue;
            }
            written.record(t.clone(), s.machine_id, bytes::Bytes::from(body.clone()));
            if let Err(e) = client.publish(t, QoS::AtLeastOnce, true, body.clone()).await {
                tracing::warn!("cannot publish machine {} status: {e}", s.machine_id);
            }
        }
    }
}
