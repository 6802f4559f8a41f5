//! Commands out, verdicts back: the bridge's MQTT client publishes each command with a fresh request id
//! and its own reply topic, and hands the verdict that comes back to the waiting request. The same client
//! follows the machines' retained status topics and fans every status out to the tablets' websockets.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oee_core::config::MqttConfig;
use oee_core::mqtt::{self, Incoming};
use oee_core::payload::{MachineStatus, ReplyTo};
use oee_core::topic;
use oee_core::verdict::Verdict;
use rumqttc::{AsyncClient, QoS};
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// Why a command got no verdict.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("the message broker is not reachable")]
    NotConnected,
    #[error("ingest did not answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot publish the command: {0}")]
    Publish(String),
}

/// How many statuses a websocket may fall behind before it re-reads the machine from the database. A full
/// republish (ingest reconnecting) is one status per machine, so this covers large plants without lag.
const STATUS_BACKLOG: usize = 4096;

pub(crate) struct Replies {
    client: AsyncClient,
    reply_topic: String,
    pending: Mutex<HashMap<String, oneshot::Sender<Verdict>>>,
    connected: watch::Receiver<bool>,
    /// Weak, so that the channel closes (and every websocket with it) when the MQTT tasks stop.
    statuses: broadcast::WeakSender<Arc<MachineStatus>>,
}

impl Replies {
    pub(crate) fn start(cfg: &MqttConfig) -> (Arc<Replies>, Vec<JoinHandle<()>>) {
        let instance = uuid::Uuid::new_v4().simple().to_string();
        let client_id = format!("{}-bridge-{}", cfg.client_id_prefix, &instance[..12]);
        let reply_topic = format!("{}/{client_id}", topic::REPLIES);
        let (client, eventloop) = AsyncClient::new(mqtt::client_options(cfg, &client_id, true), 20_000);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (connected_tx, connected) = watch::channel(false);
        let (statuses, _) = broadcast::channel(STATUS_BACKLOG);
        let replies = Arc::new(Replies {
            client: client.clone(),
            reply_topic: reply_topic.clone(),
            pending: Mutex::new(HashMap::new()),
            connected,
            statuses: statuses.downgrade(),
        });
        let filters = vec![reply_topic, topic::status("+")];
        let driver = tokio::spawn(mqtt::drive(eventloop, client, filters, tx));
        let me = replies.clone();
        let receiver = tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                match event {
                    Incoming::Connected { .. } => {}
                    // Verdicts reach us once the reply topic's subscription is confirmed.
                    Incoming::Subscribed => {
                        let _ = connected_tx.send(true);
                    }
                    Incoming::Publish(p) if p.topic == me.reply_topic => {
                        match serde_json::from_slice::<Verdict>(&p.payload) {
                            Ok(v) => me.deliver(v),
                            Err(e) => tracing::warn!("unreadable verdict on {}: {e}", p.topic),
                        }
                    }
                    Incoming::Publish(p) => fan_out_status(&statuses, &p.topic, &p.payload),
                }
            }
        });
        (replies, vec![driver, receiver])
    }

    /// Every machine status published from now on, for one listener. A listener that falls more than
    /// [`STATUS_BACKLOG`] statuses behind gets `Lagged` and should read the current state again.
    /// Once the bridge stops, the receiver says `Closed`.
    pub(crate) fn statuses(&self) -> broadcast::Receiver<Arc<MachineStatus>> {
        match self.statuses.upgrade() {
            Some(tx) => tx.subscribe(),
            None => broadcast::channel(1).1,
        }
    }

    fn deliver(&self, verdict: Verdict) {
        let Some(id) = verdict.request_id.clone() else { return };
        let waiter = self.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        if let Some(w) = waiter {
            let _ = w.send(verdict);
        }
    }

    /// Publishes `command` (any serialisable command payload) to `topic` and waits for its verdict.
    pub(crate) async fn send<C: Serialize>(
        &self,
        topic: String,
        command: C,
        timeout: Duration,
    ) -> Result<Verdict, SendError> {
        self.send_with_id(topic, command, None, timeout).await
    }

    /// As [`Replies::send`], with the caller's request id (for idempotent retries) instead of a fresh one.
    pub(crate) async fn send_with_id<C: Serialize>(
        &self,
        topic: String,
        command: C,
        request_id: Option<String>,
        timeout: Duration,
    ) -> Result<Verdict, SendError> {
        self.wait_connected(timeout).await?;
        let request_id = request_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let mut body = serde_json::to_value(command).map_err(|e| SendError::Publish(e.to_string()))?;
        let reply = ReplyTo { request_id: Some(request_id.clone()), reply_to: Some(self.reply_topic.clone()) };
        if let (Some(obj), Ok(serde_json::Value::Object(extra))) = (body.as_object_mut(), serde_json::to_value(reply)) {
            obj.extend(extra);
        }
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).insert(request_id.clone(), tx);
        let payload = serde_json::to_vec(&body).map_err(|e| SendError::Publish(e.to_string()))?;
        if let Err(e) = self.client.publish(topic, QoS::AtLeastOnce, false, payload).await {
            self.forget(&request_id);
            return Err(SendError::Publish(e.to_string()));
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(v)) => Ok(v),
            _ => {
                self.forget(&request_id);
                Err(SendError::Timeout(timeout))
            }
        }
    }

    fn forget(&self, request_id: &str) {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(request_id);
    }

    async fn wait_connected(&self, timeout: Duration) -> Result<(), SendError> {
        let mut rx = self.connected.clone();
        match tokio::time::timeout(timeout, rx.wait_for(|c| *c)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(SendError::NotConnected),
        }
    }
}

/// Passes a status on to the listeners. A machine with a topic name has its status published twice, on its
/// id topic and its name topic: only the id topic's copy is passed on.
fn fan_out_status(listeners: &broadcast::Sender<Arc<MachineStatus>>, topic: &str, payload: &[u8]) {
    // An empty retained message only clears the topic.
    if payload.is_empty() {
        return;
    }
    let segment =
        topic.strip_prefix(topic::MACHINES).and_then(|r| r.strip_prefix('/')).and_then(|r| r.split('/').next());
    let Some(topic::MachineRef::Id(id)) = segment.and_then(topic::machine_ref) else { return };
    match serde_json::from_slice::<MachineStatus>(payload) {
        // No listener is not an error: statuses flow whether or not a tablet is connected.
        Ok(s) if s.machine_id == id => {
            let _ = listeners.send(Arc::new(s));
        }
        Ok(s) => tracing::warn!("status of machine {} published on {topic}", s.machine_id),
        Err(e) => tracing::warn!("unreadable machine status on {topic}: {e}"),
    }
}
