//! Commands out, verdicts back: the MQTT client with which a service that takes requests over HTTP (the
//! bridge, the web side's history forms) publishes each command with a request id and its own reply topic,
//! and hands the verdict that comes back to the waiting request. On request the same client follows the
//! machines' retained status topics and fans every status out to its listeners (the tablets' websockets).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::access::ServerSeal;
use crate::config::MqttConfig;
use crate::mqtt::{self, Incoming};
use crate::payload::{MachineStatus, ReplyTo, SessionCommand};
use crate::topic;
use crate::verdict::Verdict;
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
    /// Refused before publishing: the command does not fit one MQTT packet.
    #[error(
        "the command is larger than one MQTT packet ({limit} bytes, mqtt.max_packet_size) allows: send less in one request"
    )]
    TooLarge { limit: usize },
    /// Refused before publishing: MQTT cannot carry the topic (a wildcard, a NUL, non-ASCII).
    #[error("`{0}` is not a topic a command can be published to: name the machine by its id or topic name")]
    BadTopic(String),
}

impl SendError {
    /// The HTTP status that says what to do: 503 retry later, 413 send less, 400 fix the request.
    pub fn status(&self) -> u16 {
        match self {
            SendError::NotConnected | SendError::Timeout(_) | SendError::Publish(_) => 503,
            SendError::TooLarge { .. } => 413,
            SendError::BadTopic(_) => 400,
        }
    }

    /// Whether nothing was wrong with the command itself, so that sending it again later may succeed.
    pub fn is_retryable(&self) -> bool {
        self.status() == 503
    }
}

/// How many statuses a websocket may fall behind before it re-reads the machine from the database. A full
/// republish (ingest reconnecting) is one status per machine, so this covers large plants without lag.
const STATUS_BACKLOG: usize = 4096;

/// A request/reply client of the broker, shared by a service's request handlers.
pub struct Replies {
    client: AsyncClient,
    reply_topic: String,
    /// Largest packet the broker connection takes: a larger publish would break the connection every
    /// request shares, so it is refused before publishing.
    max_packet_size: usize,
    /// The requests waiting for a verdict, by request id: a request that reuses the id of one still waiting
    /// waits for the same verdict instead of publishing the command again.
    pending: Mutex<HashMap<String, Vec<oneshot::Sender<Verdict>>>>,
    connected: watch::Receiver<bool>,
    /// Weak, so that the channel closes (and every websocket with it) when the MQTT tasks stop.
    statuses: broadcast::WeakSender<Arc<MachineStatus>>,
}

impl Replies {
    /// Connects a client named for `service` (`bridge`, `web`; its client id is the server's, so it must log
    /// in as the server) and returns it with the tasks that drive it (abort them to stop it). With
    /// `follow_statuses` it also subscribes to every machine's status, for [`Replies::statuses`].
    pub fn start(cfg: &MqttConfig, service: &str, follow_statuses: bool) -> (Arc<Replies>, Vec<JoinHandle<()>>) {
        let instance = uuid::Uuid::new_v4().simple().to_string();
        let client_id = format!("{}-{service}-{}", cfg.client_id_prefix, &instance[..12]);
        let reply_topic = format!("{}/{client_id}", topic::REPLIES);
        let (client, eventloop) = AsyncClient::new(mqtt::client_options(cfg, &client_id, true), 20_000);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (connected_tx, connected) = watch::channel(false);
        let (statuses, _) = broadcast::channel(STATUS_BACKLOG);
        let replies = Arc::new(Replies {
            client: client.clone(),
            reply_topic: reply_topic.clone(),
            max_packet_size: cfg.max_packet_size,
            pending: Mutex::new(HashMap::new()),
            connected,
            statuses: statuses.downgrade(),
        });
        let mut filters = vec![(reply_topic, QoS::AtLeastOnce)];
        if follow_statuses {
            filters.push((topic::status("+"), QoS::AtLeastOnce));
        }
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
    /// Once the client stops, the receiver says `Closed`; a client that does not follow statuses gets none.
    pub fn statuses(&self) -> broadcast::Receiver<Arc<MachineStatus>> {
        match self.statuses.upgrade() {
            Some(tx) => tx.subscribe(),
            None => broadcast::channel(1).1,
        }
    }

    fn deliver(&self, verdict: Verdict) {
        let Some(id) = verdict.request_id.clone() else { return };
        let waiters = self.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        for w in waiters.into_iter().flatten() {
            let _ = w.send(verdict.clone());
        }
    }

    /// Publishes `command` (any serialisable command payload) to `topic` and waits for its verdict.
    pub async fn send<C: Serialize>(&self, topic: String, command: C, timeout: Duration) -> Result<Verdict, SendError> {
        self.send_with_id(topic, command, None, timeout).await
    }

    /// As [`Replies::send`], with the caller's request id (for idempotent retries) instead of a fresh one.
    /// While a request with the same id waits for its verdict, this one waits for that verdict too.
    pub async fn send_with_id<C: Serialize>(
        &self,
        topic: String,
        command: C,
        request_id: Option<String>,
        timeout: Duration,
    ) -> Result<Verdict, SendError> {
        let request_id = request_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let mut body = serde_json::to_value(command).map_err(|e| SendError::Publish(e.to_string()))?;
        let reply = ReplyTo {
            request_id: Some(request_id.clone()),
            reply_to: Some(self.reply_topic.clone()),
            received_at: None,
        };
        if let (Some(obj), Ok(serde_json::Value::Object(extra))) = (body.as_object_mut(), serde_json::to_value(reply)) {
            obj.extend(extra);
        }
        let payload = serde_json::to_vec(&body).map_err(|e| SendError::Publish(e.to_string()))?;
        if !topic::valid_publish_topic(&topic) {
            return Err(SendError::BadTopic(topic));
        }
        if !mqtt::publish_fits(&topic, payload.len(), self.max_packet_size) {
            return Err(SendError::TooLarge { limit: self.max_packet_size });
        }
        self.wait_connected(timeout).await?;
        let (waiter, first) = self.wait_for(&request_id);
        if first && let Err(e) = self.client.publish(topic, QoS::AtLeastOnce, false, payload).await {
            // Every request waiting for this id learns that nothing was sent.
            self.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&request_id);
            return Err(SendError::Publish(e.to_string()));
        }
        waiter.verdict(timeout).await
    }

    /// Sends a tablet session command to machine `machine_id`, sealed as the server (ingest takes a session
    /// command under no other seal), and waits for its verdict. The seal covers the request id, so the
    /// command is published under the id it was sealed with.
    pub async fn send_session(
        &self,
        machine_id: i32,
        mut command: SessionCommand,
        seal: &ServerSeal,
        timeout: Duration,
    ) -> Result<Verdict, SendError> {
        let topic = topic::command(&machine_id.to_string(), topic::CommandKind::Session);
        command.seal(&topic, seal, chrono::Utc::now());
        let request_id = command.reply.request_id.clone();
        self.send_with_id(topic, command, request_id, timeout).await
    }

    /// Registers a wait for the verdict of `request_id`; `true` when no other request waits for it, so this
    /// one publishes the command.
    fn wait_for<'a>(&'a self, request_id: &'a str) -> (Waiter<'a>, bool) {
        let (tx, rx) = oneshot::channel();
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let waiters = pending.entry(request_id.to_string()).or_default();
        let first = waiters.iter().all(|w| w.is_closed());
        waiters.push(tx);
        (Waiter { replies: self, request_id, rx }, first)
    }

    /// Drops the waits for `request_id` whose requests are gone (timed out or cancelled).
    fn prune(&self, request_id: &str) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(waiters) = pending.get_mut(request_id) {
            waiters.retain(|w| !w.is_closed());
            if waiters.is_empty() {
                pending.remove(request_id);
            }
        }
    }

    async fn wait_connected(&self, timeout: Duration) -> Result<(), SendError> {
        let mut rx = self.connected.clone();
        match tokio::time::timeout(timeout, rx.wait_for(|c| *c)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(SendError::NotConnected),
        }
    }
}

/// One request's wait for a verdict; however the wait ends (answer, timeout, the request cancelled), the
/// wait is removed from the pending ones.
struct Waiter<'a> {
    replies: &'a Replies,
    request_id: &'a str,
    rx: oneshot::Receiver<Verdict>,
}

impl Waiter<'_> {
    async fn verdict(mut self, timeout: Duration) -> Result<Verdict, SendError> {
        match tokio::time::timeout(timeout, &mut self.rx).await {
            Ok(Ok(v)) => Ok(v),
            // The request that published it failed to: nothing was sent.
            Ok(Err(_)) => Err(SendError::Publish("the command with this request id could not be sent".into())),
            Err(_) => Err(SendError::Timeout(timeout)),
        }
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        self.rx.close();
        self.replies.prune(self.request_id);
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
