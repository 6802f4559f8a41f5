//! Applying a batch of commands: parse, judge in arrival order against locked machine rows, write in one
//! transaction, then acknowledge, answer and publish status.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use oee_core::access::ServerSeal;
use oee_core::activity::{self, Change, MachineSnapshot};
use oee_core::config::IngestConfig;
use oee_core::history::{self, Span};
use oee_core::payload::{
    HistoryActivityCommand, HistoryJobCommand, HistoryProductionCommand, JobEndCommand, JobStartCommand,
    ProductionCommand, SessionAction, SessionCommand, StateCommand, TelemetryCommand,
};
use oee_core::production::{self, Totals};
use oee_core::store::command::{
    self as store, ProductionCursor, ProductionRow, RawEvent, RememberedVerdict, RequestScope, TelemetryRow,
};
use oee_core::store::history as history_store;
use oee_core::topic::{self, CommandKind, MachineRef};
use oee_core::verdict::{Refusal, Verdict, echo};
use rumqttc::{AsyncClient, Publish, QoS};
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot, watch};

use crate::{Stats, status};

/// A message as it arrived.
#[derive(Debug, Clone)]
pub struct Received {
    pub publish: Publish,
    pub received_at: DateTime<Utc>,
}

/// A command read from its topic and payload.
enum Command {
    State(StateCommand),
    Telemetry(TelemetryCommand),
    JobStart(JobStartCommand),
    JobEnd(JobEndCommand),
    Production(ProductionCommand),
    HistoryActivity(HistoryActivityCommand),
    HistoryJob(HistoryJobCommand),
    HistoryProduction(HistoryProductionCommand),
    Session(SessionCommand),
}

impl Command {
    fn reply(&self) -> &oee_core::payload::ReplyTo {
        match self {
            Command::State(c) => &c.reply,
            Command::Telemetry(c) => &c.reply,
            Command::JobStart(c) => &c.reply,
            Command::JobEnd(c) => &c.reply,
            Command::Production(c) => &c.reply,
            Command::HistoryActivity(c) => &c.reply,
            Command::HistoryJob(c) => &c.reply,
            Command::HistoryProduction(c) => &c.reply,
            Command::Session(c) => &c.reply,
        }
    }

    fn timestamp(&self) -> Option<DateTime<Utc>> {
        match self {
            Command::State(c) => c.timestamp,
            Command::Telemetry(c) => c.timestamp,
            Command::JobStart(c) => c.timestamp,
            Command::JobEnd(c) => c.timestamp,
            Command::Production(c) => c.timestamp,
            // History edits take effect when they arrive, among the live commands around them.
            Command::HistoryActivity(_) | Command::HistoryJob(_) | Command::HistoryProduction(_) => None,
            // A login or logout happens when it arrives.
            Command::Session(_) => None,
        }
    }

    fn user_id(&self) -> Option<i32> {
        match self {
            Command::State(c) => c.user_id,
            Command::JobStart(c) => c.user_id,
            Command::JobEnd(c) => c.user_id,
            Command::HistoryActivity(c) => c.user_id,
            Command::Session(c) => c.user_id,
            Command::Telemetry(_) | Command::Production(_) | Command::HistoryJob(_) | Command::HistoryProduction(_) => {
                None
            }
        }
    }
}

/// One command of a batch on its way to a verdict.
struct Item {
    received: Received,
    machine: Option<MachineRef>,
    /// The command's kind, from its topic (a request id counts per machine and kind).
    kind: Option<CommandKind>,
    command: Result<Command, Refusal>,
    reply_to: Option<String>,
    request_id: Option<String>,
    verdict: Option<Verdict>,
    /// Refused with this; kept as a raw event.
    refusal: Option<Refusal>,
}

impl Item {
    fn new(mut received: Received, seal: &ServerSeal) -> Item {
        // Only plain topics name a machine: a topic with a NUL or other control character could not even be
        // looked up (PostgreSQL refuses the text), and no machine's topic name has one.
        let plain = topic::valid_publish_topic(&received.publish.topic);
        let parsed = if plain { topic::parse_command(&received.publish.topic) } else { None };
        let kind = parsed.as_ref().map(|(_, k)| *k);
        let payload = &received.publish.payload;
        let (machine, command) = match parsed {
            Some((m, CommandKind::State)) => (Some(m), StateCommand::parse(payload).map(Command::State)),
            Some((m, CommandKind::Telemetry)) => (Some(m), TelemetryCommand::parse(payload).map(Command::Telemetry)),
            Some((m, CommandKind::JobStart)) => (Some(m), JobStartCommand::parse(payload).map(Command::JobStart)),
            Some((m, CommandKind::JobEnd)) => (Some(m), JobEndCommand::parse(payload).map(Command::JobEnd)),
            Some((m, CommandKind::Production)) => (Some(m), ProductionCommand::parse(payload).map(Command::Production)),
            Some((m, CommandKind::HistoryActivity)) => {
                (Some(m), HistoryActivityCommand::parse(payload).map(Command::HistoryActivity))
            }
            Some((m, CommandKind::HistoryJob)) => (Some(m), HistoryJobCommand::parse(payload).map(Command::HistoryJob)),
            Some((m, CommandKind::HistoryProduction)) => {
                (Some(m), HistoryProductionCommand::parse(payload).map(Command::HistoryProduction))
            }
            // Only the server may log operators in and out: its seal says the command is its own.
            Some((m, CommandKind::Session)) => (
                Some(m),
                SessionCommand::parse(payload)
                    .and_then(|c| {
                        if c.sealed_by_server(&received.publish.topic, seal, received.received_at) {
                            Ok(c)
                        } else {
                            Err(Refusal::NotFromServer("session"))
                        }
                    })
                    .map(Command::Session),
            ),
            None => (
                None,
                Err(Refusal::Malformed(format!(
                    "`{}` is not a command topic: publish to oee/v1/machines/{{machine}}/{{command}}",
                    echo(received.publish.topic.escape_debug())
                ))),
            ),
        };
        // Even a command that fails to parse is answered when its reply topic can be read and is a topic
        // ingest may publish to.
        let reply = match &command {
            Ok(c) => c.reply().clone(),
            Err(_) => oee_core::payload::ReplyTo::salvage(&received.publish.payload),
        };
        // The HTTP bridge received it first: it happened then (never later than it reached ingest).
        if let Some(at) = reply.received_at {
            received.received_at = received.received_at.min(at);
        }
        Item {
            received,
            machine,
            kind,
            command,
            reply_to: reply.reply_to,
            request_id: reply.request_id,
            verdict: None,
            refusal: None,
        }
    }

    /// When the command says it happened, else when it arrived; never after it arrived (see [`stamp`]).
    fn effective_time(&self) -> DateTime<Utc> {
        let received = self.received.received_at;
        self.command.as_ref().ok().and_then(Command::timestamp).map_or(received, |t| t.min(received))
    }

    fn refuse(&mut self, refusal: Refusal) {
        self.verdict = Some(Verdict::refused(self.request_id.clone(), &refusal));
        self.refusal = Some(refusal);
    }

    /// Where this command's request id counts, once its machine is known.
    fn scope(&self, machine_id: Option<i32>) -> Option<RequestScope> {
        Some(RequestScope {
            request_id: self.request_id.clone()?,
            machine_id: machine_id?,
            kind: self.kind?.suffix().to_string(),
        })
    }
}

/// What a committed batch changed.
#[derive(Default)]
struct Outcome {
    changed_machines: Vec<i32>,
}

/// What a batch task hands back: its items and whether it committed (`Ok(None)`: rolled back because
/// the batch before it failed).
type Applied = (Vec<Item>, Result<Option<Outcome>, oee_core::Error>);

/// What the worker waits for next.
enum Next {
    Finished(Result<Applied, tokio::task::JoinError>),
    Message(Option<crate::Arrived>),
}

/// A batch being applied by its own task.
struct InFlight {
    task: tokio::task::JoinHandle<Applied>,
    /// Kept to apply the batch again should its task die.
    received: Vec<Received>,
    /// Every message to acknowledge once the batch is done, in the order the broker delivered them: its
    /// commands, and the statuses and pings that arrived among them or while it was applied.
    acks: Vec<Publish>,
    /// Fires once this batch holds its row locks (or failed before); taken by the next batch.
    locked: Option<oneshot::Receiver<()>>,
    /// `Some(true)` once committed, `Some(false)` if it did not commit.
    done: watch::Receiver<Option<bool>>,
}

impl InFlight {
    fn spawn(
        worker: Arc<Worker>,
        mut items: Vec<Item>,
        acks: Vec<Publish>,
        prev_locked: Option<oneshot::Receiver<()>>,
        prev_done: watch::Receiver<Option<bool>>,
    ) -> InFlight {
        let received = items.iter().map(|i| i.received.clone()).collect();
        let (locked_tx, locked) = oneshot::channel();
        let (done_tx, done) = watch::channel(None);
        let task = tokio::spawn(async move {
            let mut stage = Stage { prev_locked, locked: Some(locked_tx), prev_done };
            let result = apply(&worker.pool, &mut items, &worker.cfg, &worker.known_ids, Some(&mut stage)).await;
            let _ = done_tx.send(Some(matches!(result, Ok(Some(_)))));
            (items, result)
        });
        InFlight { task, received, acks, locked: Some(locked), done }
    }
}

/// The ordering hooks of a pipelined batch.
struct Stage {
    prev_locked: Option<oneshot::Receiver<()>>,
    locked: Option<oneshot::Sender<()>>,
    prev_done: watch::Receiver<Option<bool>>,
}

impl Stage {
    async fn before_locking(&mut self) {
        if let Some(rx) = self.prev_locked.take() {
            // An error means the batch before ended without locking: nothing to wait for.
            let _ = rx.await;
        }
    }

    fn after_locking(&mut self) {
        if let Some(tx) = self.locked.take() {
            let _ = tx.send(());
        }
    }

    /// Whether the batch before committed (waiting until it is known).
    async fn prev_committed(&mut self) -> bool {
        match self.prev_done.wait_for(Option::is_some).await {
            Ok(v) => v.unwrap_or(false),
            Err(_) => false,
        }
    }
}

/// The batch processor.
pub(crate) struct Worker {
    pool: PgPool,
    client: AsyncClient,
    cfg: IngestConfig,
    /// The client's outgoing packet limit (`mqtt.max_packet_size`): a verdict larger than this is dropped.
    max_packet_size: usize,
    stats: Arc<Stats>,
    /// Where the main connection's worker sends status to publish (every status again when it
    /// (re)connects); `None` for workers that never change a machine's state.
    status: Option<mpsc::UnboundedSender<status::Request>>,
    /// Checks the seal of commands only the server may send.
    seal: Arc<ServerSeal>,
    /// Machine ids known to exist. Machines are never deleted, so an id seen once stays valid and
    /// readings for it need no look-up.
    known_ids: std::sync::Mutex<HashSet<i32>>,
}

impl Worker {
    pub(crate) fn new(
        pool: PgPool,
        client: AsyncClient,
        cfg: IngestConfig,
        max_packet_size: usize,
        stats: Arc<Stats>,
        status: Option<mpsc::UnboundedSender<status::Request>>,
        seal: Arc<ServerSeal>,
    ) -> Worker {
        Worker { pool, client, cfg, max_packet_size, stats, status, seal, known_ids: Default::default() }
    }

    /// Applies batches as they come, with up to two in flight: while one commits, the next is judged and
    /// written. A batch takes its row locks only after the one before it took its own (so PostgreSQL makes
    /// it wait for that commit wherever they share a machine) and commits only after that one committed;
    /// if that one failed, it rolls back and both are redone one after the other. Verdicts, acknowledgements
    /// and status go out in batch order.
    pub(crate) async fn run(
        self: Arc<Self>,
        mut rx: mpsc::UnboundedReceiver<crate::Arrived>,
        subscribed: watch::Sender<bool>,
    ) {
        let max = self.cfg.batch_max.max(1);
        let mut in_flight: std::collections::VecDeque<InFlight> = Default::default();
        // The first batch has nothing to wait for.
        let (first_done, _) = watch::channel(Some(true));
        loop {
            // Never hold more than two batches; otherwise wait for whichever comes first: the oldest batch
            // finishing, or new messages.
            let full = in_flight.len() >= 2;
            let next = match in_flight.front_mut() {
                Some(oldest) if full => Next::Finished((&mut oldest.task).await),
                Some(oldest) => tokio::select! {
                    biased;
                    done = &mut oldest.task => Next::Finished(done),
                    m = rx.recv() => Next::Message(m),
                },
                None => Next::Message(rx.recv().await),
            };
            let first = match next {
                Next::Finished(done) => {
                    if let Some(oldest) = in_flight.pop_front() {
                        self.complete(done, oldest.received, oldest.acks).await;
                    }
                    continue;
                }
                Next::Message(Some(m)) => m,
                Next::Message(None) => return,
            };
            let (batch, reconnected) = match crate::fill(first, &mut rx, max) {
                crate::Delivery::Connected => (Vec::new(), true),
                crate::Delivery::Subscribed => {
                    subscribed.send_replace(true);
                    (Vec::new(), false)
                }
                crate::Delivery::Batch { publishes, reconnected, subscribed: confirmed } => {
                    if confirmed {
                        subscribed.send_replace(true);
                    }
                    (publishes, reconnected)
                }
            };
            if reconnected && let Some(status) = &self.status {
                // The broker may have restarted and lost its retained messages: publish every status again.
                let _ = status.send(status::Request::All);
            }
            // The broker takes acknowledgements only in the order it delivered (one out of order ends the
            // connection, and every command not yet acknowledged is delivered again): a status or ping is
            // acknowledged with the commands around it, never before a command that came first.
            let acks: Vec<Publish> = batch.iter().map(|r| r.publish.clone()).collect();
            let batch = self.divert_statuses(batch);
            if batch.is_empty() {
                match in_flight.back_mut() {
                    Some(newest) => newest.acks.extend(acks),
                    None => self.acknowledge(&acks).await,
                }
                continue;
            }
            let items = self.parse(batch);
            let (prev_locked, prev_done) = match in_flight.back_mut() {
                Some(prev) => (prev.locked.take(), prev.done.clone()),
                None => (None, first_done.subscribe()),
            };
            in_flight.push_back(InFlight::spawn(self.clone(), items, acks, prev_locked, prev_done));
        }
    }

    /// Takes the statuses seen on the broker out of the batch and hands them to the status publisher, which
    /// puts the database's status back wherever another client wrote a status; pings are answered. Neither is
    /// acknowledged here: see [`Worker::acknowledge`].
    fn divert_statuses(&self, batch: Vec<Received>) -> Vec<Received> {
        let Some(status) = &self.status else { return batch };
        batch
            .into_iter()
            .filter_map(|r| {
                // Both arrive at QoS 0 (see `crate::start`): nothing to acknowledge.
                if r.publish.topic == oee_core::health::PING {
                    tokio::spawn(answer_ping(self.pool.clone(), self.client.clone(), r.publish.payload));
                    return None;
                }
                if topic::parse_status(&r.publish.topic).is_none() {
                    return Some(r);
                }
                let _ = status.send(status::Request::Seen { topic: r.publish.topic, payload: r.publish.payload });
                None
            })
            .collect()
    }

    fn parse(&self, batch: Vec<Received>) -> Vec<Item> {
        Stats::add(&self.stats.received, batch.len() as u64);
        Stats::add(&self.stats.batches, 1);
        let mut items: Vec<Item> = batch.into_iter().map(|r| Item::new(r, &self.seal)).collect();
        for item in &mut items {
            if let Err(r) = &item.command {
                let r = r.clone();
                Stats::add(&self.stats.malformed, 1);
                item.refuse(r);
            }
        }
        items
    }

    /// Finishes the oldest batch in flight: answers it if it committed, otherwise applies it again on its
    /// own (with retries) first.
    async fn complete(
        &self,
        done: Result<Applied, tokio::task::JoinError>,
        received: Vec<Received>,
        acks: Vec<Publish>,
    ) {
        let (mut items, result) = match done {
            Ok(applied) => applied,
            Err(e) => {
                // The messages are still unacknowledged; apply them again from what was received.
                tracing::error!("a batch task failed ({e}); applying its commands again");
                (self.parse(received), Ok(None))
            }
        };
        let outcome = match result {
            Ok(Some(outcome)) => outcome,
            Ok(None) => {
                reset_verdicts(&mut items);
                self.commit_with_retry(&mut items).await
            }
            Err(e) => {
                if is_transient(&e) {
                    Stats::add(&self.stats.database_retries, 1);
                    tracing::warn!("database unavailable ({e}); retrying the batch");
                }
                reset_verdicts(&mut items);
                self.commit_with_retry(&mut items).await
            }
        };
        self.finish(items, outcome, &acks).await;
    }

    /// Commits the batch; transient database failures are retried (the messages stay unacknowledged, so
    /// nothing is lost meanwhile). A batch that fails for another reason is applied command by command,
    /// so one bad command cannot block the others.
    async fn commit_with_retry(&self, items: &mut [Item]) -> Outcome {
        let mut backoff = Duration::from_millis(100);
        loop {
            match apply(&self.pool, items, &self.cfg, &self.known_ids, None).await.map(Option::unwrap_or_default) {
                Ok(outcome) => return outcome,
                Err(e) if is_transient(&e) => {
                    Stats::add(&self.stats.database_retries, 1);
                    tracing::warn!("database unavailable ({e}); retrying the batch in {backoff:?}");
                    reset_verdicts(items);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
                Err(e) => {
                    tracing::error!("a batch of {} commands failed ({e}); applying them one by one", items.len());
                    reset_verdicts(items);
                    return self.commit_one_by_one(items).await;
                }
            }
        }
    }

    async fn commit_one_by_one(&self, items: &mut [Item]) -> Outcome {
        let mut changed = Vec::new();
        // In the order the batch would have applied them.
        let mut order: Vec<usize> = (0..items.len()).collect();
        order.sort_by_key(|&i| items[i].effective_time());
        for index in order {
            let one = std::slice::from_mut(&mut items[index]);
            let mut backoff = Duration::from_millis(100);
            loop {
                match apply(&self.pool, one, &self.cfg, &self.known_ids, None).await.map(Option::unwrap_or_default) {
                    Ok(o) => {
                        changed.extend(o.changed_machines);
                        break;
                    }
                    Err(e) if is_transient(&e) => {
                        reset_verdicts(one);
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                    }
                    Err(e) => {
                        // The others are stored without it; it would fail the same way again.
                        tracing::error!(topic = %one[0].received.publish.topic, "command cannot be stored: {e}");
                        one[0].refuse(Refusal::Unstorable(storable_text(&echo(&e))));
                        keep_refusals(&self.pool, one).await;
                        break;
                    }
                }
            }
        }
        changed.sort_unstable();
        changed.dedup();
        Outcome { changed_machines: changed }
    }

    /// After the commit: acknowledge every message (`acks`, in the order they were delivered), answer where
    /// asked, publish changed statuses.
    async fn finish(&self, items: Vec<Item>, outcome: Outcome, acks: &[Publish]) {
        self.acknowledge(acks).await;
        for item in &items {
            match &item.verdict {
                Some(v) if v.ok => Stats::add(&self.stats.applied, 1),
                _ => Stats::add(&self.stats.refused, 1),
            }
            if let (Some(topic), Some(verdict)) = (&item.reply_to, &item.verdict) {
                self.answer(topic, verdict).await;
            }
        }
        if !outcome.changed_machines.is_empty()
            && let Some(status) = &self.status
        {
            let _ = status.send(status::Request::Machines(outcome.changed_machines));
        }
    }

    /// Acknowledges `publishes`, which must be in the order the broker delivered them and come after every
    /// message acknowledged before.
    async fn acknowledge(&self, publishes: &[Publish]) {
        for p in publishes {
            if let Err(e) = self.client.ack(p).await {
                tracing::warn!("cannot acknowledge a message on {}: {e}", p.topic);
            }
        }
    }

    /// Publishes a verdict once, or drops it with a warning: a packet over the client's limit would fail the
    /// connection and, with the persistent session, fail it again after every reconnection, so it is never
    /// handed to the client.
    async fn answer(&self, topic: &str, verdict: &Verdict) {
        let body = match serde_json::to_vec(verdict) {
            Ok(body) => body,
            Err(e) => return tracing::warn!("cannot encode a verdict for {topic}: {e}"),
        };
        if !oee_core::mqtt::publish_fits(topic, body.len(), self.max_packet_size) {
            tracing::warn!(
                "verdict for {topic} dropped: {} bytes exceed mqtt.max_packet_size ({})",
                oee_core::mqtt::publish_packet_size(topic, body.len()),
                self.max_packet_size
            );
            return;
        }
        if let Err(e) = self.client.publish(topic, QoS::AtLeastOnce, false, body).await {
            tracing::warn!("verdict for {topic} dropped: {e}");
        }
    }
}

fn reset_verdicts(items: &mut [Item]) {
    for item in items.iter_mut() {
        if item.command.is_ok() {
            item.verdict = None;
            item.refusal = None;
        }
    }
}

/// Best effort: keep refused messages even when the batch could not be written.
async fn keep_refusals(pool: &PgPool, items: &[Item]) {
    let events = raw_events(items);
    if events.is_empty() {
        return;
    }
    let result = async {
        let mut tx = pool.begin().await?;
        store::record_raw_events(&mut tx, &events).await?;
        tx.commit().await?;
        Ok::<_, oee_core::Error>(())
    }
    .await;
    if let Err(e) = result {
        tracing::error!("cannot keep {} refused messages: {e}", events.len());
    }
}

fn raw_events(items: &[Item]) -> Vec<RawEvent> {
    items
        .iter()
        .filter_map(|i| {
            let r = i.refusal.as_ref()?;
            Some(RawEvent {
                received_at: i.received.received_at,
                topic: storable_text(&i.received.publish.topic),
                payload: i.received.publish.payload.to_vec(),
                status: r.status() as i16,
                error: storable_text(&r.to_string()),
            })
        })
        .collect()
}

/// Text as PostgreSQL can store it: a NUL (which it refuses) written as `\0`. Payloads are kept as bytes;
/// this is for the topic and the reason kept beside them, so keeping a refusal can never fail its batch.
fn storable_text(text: &str) -> String {
    if text.contains('\0') { text.replace('\0', "\\0") } else { text.to_string() }
}

/// Whether a database error may pass by itself (connection lost, server restarting, overload).
fn is_transient(e: &oee_core::Error) -> bool {
    match e {
        oee_core::Error::Database(db) => match db {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Tls(_) => true,
            sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(d) => d.code().is_some_and(|c| {
                c.starts_with("08") || c.starts_with("53") || c.starts_with("57P") || c == "40001" || c == "40P01"
            }),
            _ => false,
        },
        _ => false,
    }
}

/// Judges and writes `items` in one transaction. Items that already have a verdict (unreadable ones)
/// are only recorded.
async fn apply(
    pool: &PgPool,
    items: &mut [Item],
    cfg: &IngestConfig,
    known_ids: &std::sync::Mutex<HashSet<i32>>,
    mut stage: Option<&mut Stage>,
) -> Result<Option<Outcome>, oee_core::Error> {
    let now = Utc::now();
    let mut tx = pool.begin().await?;

    // Machines whose state may change are locked; machines that only get readings are just looked up.
    let (mut lock_ids, mut lock_slugs, mut read_ids, mut read_slugs) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut code_ids = Vec::new();
    let mut user_ids = Vec::new();
    for item in items.iter().filter(|i| i.verdict.is_none()) {
        let (ids, slugs) = match &item.command {
            Ok(Command::Telemetry(_)) | Err(_) => (&mut read_ids, &mut read_slugs),
            Ok(c) => {
                user_ids.extend(c.user_id());
                match c {
                    Command::State(s) => code_ids.extend(activity::requested_code(s.machine_state, s.activity_code_id)),
                    Command::HistoryActivity(h) => code_ids.extend(h.activity_code_id),
                    _ => {}
                }
                (&mut lock_ids, &mut lock_slugs)
            }
        };
        match &item.machine {
            Some(MachineRef::Id(id)) => ids.push(*id),
            Some(MachineRef::Slug(s)) => slugs.push(s.clone()),
            None => {}
        }
    }
    for v in [&mut lock_ids, &mut read_ids, &mut code_ids] {
        v.sort_unstable();
        v.dedup();
    }
    let mut known: HashSet<i32> = HashSet::new();
    {
        let cache = known_ids.lock().unwrap_or_else(|p| p.into_inner());
        read_ids.retain(|id| {
            let cached = cache.contains(id);
            if cached {
                known.insert(*id);
            }
            !cached
        });
    }
    if let Some(s) = stage.as_deref_mut() {
        s.before_locking().await;
    }
    let locked = if lock_ids.is_empty() && lock_slugs.is_empty() {
        Vec::new()
    } else {
        store::lock_machines(&mut tx, &lock_ids, &lock_slugs).await?
    };
    if let Some(s) = stage.as_deref_mut() {
        s.after_locking();
        // A state command's machine lock already made this wait for any earlier commit of the same
        // command; readings take no lock, so a redelivered reading waits for the batch before.
        let reading_with_id =
            items.iter().any(|i| i.request_id.is_some() && matches!(i.command, Ok(Command::Telemetry(_))));
        if reading_with_id && !s.prev_committed().await {
            tx.rollback().await?;
            return Ok(None);
        }
    }

    let read = if read_ids.is_empty() && read_slugs.is_empty() {
        Vec::new()
    } else {
        store::find_machines(&mut tx, &read_ids, &read_slugs).await?
    };
    code_ids.extend(locked.iter().map(|m| m.job_start_code_id));
    code_ids.sort_unstable();
    code_ids.dedup();
    let codes = if code_ids.is_empty() { HashMap::new() } else { store::codes(&mut tx, &code_ids).await? };
    user_ids.sort_unstable();
    user_ids.dedup();
    let users: HashSet<i32> = store::existing_users(&mut tx, &user_ids).await?.into_iter().collect();

    let start_codes: HashMap<i32, i32> = locked.iter().map(|m| (m.snapshot.id, m.job_start_code_id)).collect();
    let mut machines: HashMap<i32, MachineSnapshot> = HashMap::new();
    let mut by_slug: HashMap<String, i32> = HashMap::new();
    for (id, slug) in read {
        known.insert(id);
        if let Some(s) = slug {
            by_slug.insert(s, id);
        }
    }
    for m in locked {
        known.insert(m.snapshot.id);
        if let Some(s) = &m.topic_name {
            by_slug.insert(s.clone(), m.snapshot.id);
        }
        machines.insert(m.snapshot.id, m.snapshot);
    }

    known_ids.lock().unwrap_or_else(|p| p.into_inner()).extend(known.iter().copied());
    let skew = chrono::Duration::seconds(cfg.max_future_skew_s as i64);
    let resolve = |named: &Option<MachineRef>| match named {
        Some(MachineRef::Id(id)) => known.contains(id).then_some(*id),
        Some(MachineRef::Slug(s)) => by_slug.get(s).copied(),
        None => None,
    };
    // Request ids answered before on the same machine and kind of command (a redelivery) get the same
    // answer and are not applied again.
    let scopes: Vec<RequestScope> =
        items.iter().filter(|i| i.verdict.is_none()).filter_map(|i| i.scope(resolve(&i.machine))).collect();
    let remembered: HashMap<RequestScope, RememberedVerdict> = store::remembered_verdicts(&mut tx, &scopes)
        .await?
        .into_iter()
        .map(|r| (RequestScope { request_id: r.request_id.clone(), machine_id: r.machine_id, kind: r.kind.clone() }, r))
        .collect();
    // Where each counting machine's next production record starts, read once for the batch and then kept
    // up to date in memory as the batch's commands are judged.
    let mut counting: Vec<i32> = items
        .iter()
        .filter(|i| i.verdict.is_none() && matches!(i.command, Ok(Command::Production(_))))
        .filter_map(|i| resolve(&i.machine))
        .filter(|id| machines.contains_key(id))
        .collect();
    counting.sort_unstable();
    counting.dedup();
    let mut cursors: HashMap<i32, ProductionCursor> =
        store::production_cursors(&mut tx, &counting).await?.into_iter().map(|c| (c.machine_id, c)).collect();
    let mut pending = Pending::default();
    let mut readings: Vec<TelemetryRow> = Vec::new();
    let mut to_remember: Vec<RememberedVerdict> = Vec::new();
    let mut answered_here: HashMap<RequestScope, Verdict> = HashMap::new();
    // MQTT keeps order only within one topic, so a machine's commands on different topics (state, job
    // start, job end) may arrive out of order: apply them in the order of their time (their `timestamp`,
    // else arrival, which keeps arrival order among unstamped ones).
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| items[i].effective_time());
    for index in order {
        let item = &mut items[index];
        if item.verdict.is_some() {
            continue;
        }
        let machine_id = resolve(&item.machine);
        let scope = item.scope(machine_id);
        if let Some(scope) = &scope {
            if let Some(r) = remembered.get(scope) {
                item.verdict = Some(remembered_verdict(r));
                continue;
            }
            if let Some(v) = answered_here.get(scope) {
                item.verdict = Some(v.clone());
                continue;
            }
        }
        let Ok(command) = &item.command else { continue };
        let named = item.machine.as_ref();
        let received_at = item.received.received_at;
        match command {
            Command::State(c) => match judge(c, named, machine_id, &mut machines, &codes, &users, received_at, skew) {
                Ok(change) => {
                    item.verdict = Some(Verdict::applied(item.request_id.clone(), Some(change.code_id)));
                    let job = machines.get(&change.machine_id).and_then(|m| m.active_job_id);
                    if let (Some(note), Some(job)) = (&c.job_note, job) {
                        pending.notes.push((job, note.clone()));
                    }
                    pending.changes.push(change);
                }
                Err(refusal) => item.refuse(refusal),
            },
            Command::JobStart(c) => {
                let judged =
                    target(named, machine_id, &mut machines, &users, c.user_id, c.timestamp, received_at, skew)
                        .and_then(|(m, at)| {
                            let code_id = start_codes.get(&m.id).copied().unwrap_or(activity::UP_CODE_ID);
                            let code = *codes.get(&code_id).ok_or(Refusal::UnknownCode(code_id))?;
                            activity::judge_job_start(m, code, at, c.user_id)
                        });
                match judged {
                    Ok(change) => {
                        let job = store::insert_job(
                            &mut tx,
                            change.machine_id,
                            &c.job_number,
                            c.ideal_cycle_time_s,
                            change.at,
                        )
                        .await?;
                        if let Some(m) = machines.get_mut(&change.machine_id) {
                            m.active_job_id = Some(job);
                            m.apply(&change);
                        }
                        if let Some(cursor) = cursors.get_mut(&change.machine_id) {
                            cursor.job = Some((job, change.at));
                            cursor.from = Some(change.at);
                        }
                        pending.jobs.insert(change.machine_id, Some(job));
                        item.verdict = Some(Verdict::applied(item.request_id.clone(), Some(change.code_id)));
                        pending.changes.push(change);
                    }
                    Err(refusal) => item.refuse(refusal),
                }
            }
            Command::JobEnd(c) => {
                let judged =
                    target(named, machine_id, &mut machines, &users, c.user_id, c.timestamp, received_at, skew)
                        .and_then(|(m, at)| Ok((activity::judge_job_end(m, at, c.user_id)?, m.active_job_id)));
                match judged {
                    Ok((change, Some(job))) => {
                        // Counts of this batch for the job are not written yet: its last record ends where
                        // the cursor says.
                        let cursor = cursors.get_mut(&change.machine_id);
                        let from = cursor.as_ref().filter(|c| c.job.map(|j| j.0) == Some(job)).and_then(|c| c.from);
                        store::end_job(&mut tx, job, change.at, c.good, c.rejects, from).await?;
                        if let Some(cursor) = cursor {
                            cursor.job = None;
                            cursor.from = Some(change.at);
                        }
                        if let Some(m) = machines.get_mut(&change.machine_id) {
                            m.active_job_id = None;
                            m.apply(&change);
                        }
                        pending.jobs.insert(change.machine_id, None);
                        item.verdict = Some(Verdict::applied(item.request_id.clone(), Some(change.code_id)));
                        pending.changes.push(change);
                    }
                    Ok((change, None)) => item.refuse(Refusal::NoActiveJob(change.machine_id)),
                    Err(refusal) => item.refuse(refusal),
                }
            }
            Command::Production(c) => {
                let judged = target(named, machine_id, &mut machines, &users, None, c.timestamp, received_at, skew)
                    .and_then(|(m, at)| {
                        let cursor = cursors.get_mut(&m.id).ok_or(Refusal::UnknownMachine(m.id.to_string()))?;
                        count(m, cursor, c, at)
                    });
                match judged {
                    Ok((row, totals)) => {
                        if let Some(totals) = totals {
                            pending.counters.insert(row.machine_id, (totals, row.end));
                        }
                        item.verdict = Some(Verdict::applied(item.request_id.clone(), None));
                        pending.production.push(row);
                    }
                    Err(refusal) => item.refuse(refusal),
                }
            }
            Command::HistoryActivity(_) | Command::HistoryJob(_) | Command::HistoryProduction(_) => {
                let judged =
                    target(named, machine_id, &mut machines, &users, command.user_id(), None, received_at, skew)
                        .map(|(m, _)| m.id);
                let edited = match judged {
                    Err(refusal) => Err(refusal),
                    Ok(id) => {
                        // An edit reads and writes the tables directly: what the batch judged before it
                        // is written first.
                        pending.write(&mut tx).await?;
                        let Some(m) = machines.get_mut(&id) else { continue };
                        let edited = match command {
                            Command::HistoryActivity(c) => {
                                edit_activity(&mut tx, c, m, &codes, now, received_at).await?
                            }
                            Command::HistoryJob(c) => edit_job(&mut tx, c, id, now, received_at).await?,
                            Command::HistoryProduction(c) => edit_record(&mut tx, c, id, received_at).await?,
                            _ => continue,
                        };
                        if edited.is_ok() {
                            pending.changed.insert(id);
                            if cursors.contains_key(&id) {
                                for c in store::production_cursors(&mut tx, &[id]).await? {
                                    cursors.insert(c.machine_id, c);
                                }
                            }
                        }
                        edited
                    }
                };
                match edited {
                    Ok(row) => item.verdict = Some(Verdict::created(item.request_id.clone(), row)),
                    Err(refusal) => item.refuse(refusal),
                }
            }
            Command::Session(c) => {
                let judged = target(named, machine_id, &mut machines, &users, c.user_id, None, received_at, skew);
                let session = match judged {
                    Err(refusal) => Err(refusal),
                    Ok((m, at)) => session(&mut tx, c, m, at).await?,
                };
                match session {
                    Ok(change) => {
                        if let Some(m) = machines.get_mut(&change.machine_id) {
                            m.apply(&change);
                        }
                        item.verdict = Some(Verdict::applied(item.request_id.clone(), Some(change.code_id)));
                        pending.changes.push(change);
                    }
                    Err(refusal) => item.refuse(refusal),
                }
            }
            Command::Telemetry(t) => match reading(t, named, machine_id, received_at, skew) {
                Ok(row) => {
                    item.verdict = Some(Verdict::applied(item.request_id.clone(), None));
                    readings.push(row);
                }
                Err(refusal) => item.refuse(refusal),
            },
        }
        if let (Some(scope), Some(v)) = (scope, &item.verdict) {
            answered_here.insert(scope.clone(), v.clone());
            to_remember.push(RememberedVerdict {
                request_id: scope.request_id,
                machine_id: scope.machine_id,
                kind: scope.kind,
                status: v.status as i16,
                reason: v.reason.clone(),
                message: v.message.clone(),
                code_id: v.activity_code_id,
                row_id: v.id,
            });
        }
    }

    pending.write(&mut tx).await?;
    store::insert_telemetry(&mut tx, &readings).await?;
    store::remember_verdicts(&mut tx, &to_remember).await?;
    store::record_raw_events(&mut tx, &raw_events(items)).await?;
    if let Some(s) = stage
        && !s.prev_committed().await
    {
        tx.rollback().await?;
        return Ok(None);
    }
    tx.commit().await?;

    let mut changed_machines: Vec<i32> = pending.changed.into_iter().collect();
    changed_machines.sort_unstable();
    Ok(Some(Outcome { changed_machines }))
}

#[allow(clippy::too_many_arguments)]
fn judge(
    command: &StateCommand,
    named: Option<&MachineRef>,
    machine_id: Option<i32>,
    machines: &mut HashMap<i32, MachineSnapshot>,
    codes: &HashMap<i32, activity::Code>,
    users: &HashSet<i32>,
    received_at: DateTime<Utc>,
    skew: chrono::Duration,
) -> Result<Change, Refusal> {
    let code_id = activity::requested_code(command.machine_state, command.activity_code_id).ok_or(Refusal::NoCodeGiven);
    let (snapshot, at) =
        target(named, machine_id, machines, users, command.user_id, command.timestamp, received_at, skew)?;
    let code_id = code_id?;
    let code = *codes.get(&code_id).ok_or(Refusal::UnknownCode(code_id))?;
    let change = activity::judge(snapshot, code, at, command.user_id)?;
    snapshot.apply(&change);
    Ok(change)
}

/// The machine a state-changing command names, after the checks every such command gets (the machine and
/// user exist, the time is not in the future), and the time it happened.
#[allow(clippy::too_many_arguments)]
fn target<'m>(
    named: Option<&MachineRef>,
    machine_id: Option<i32>,
    machines: &'m mut HashMap<i32, MachineSnapshot>,
    users: &HashSet<i32>,
    user_id: Option<i32>,
    timestamp: Option<DateTime<Utc>>,
    received_at: DateTime<Utc>,
    skew: chrono::Duration,
) -> Result<(&'m mut MachineSnapshot, DateTime<Utc>), Refusal> {
    let snapshot = machine_id
        .and_then(|id| machines.get_mut(&id))
        .ok_or_else(|| Refusal::UnknownMachine(named.map(|m| m.to_string()).unwrap_or_default()))?;
    if let Some(user) = user_id
        && !users.contains(&user)
    {
        return Err(Refusal::UnknownUser(user));
    }
    let mut at = stamp(timestamp, received_at, skew)?;
    if timestamp.is_none() {
        // The server's own stamp: two requests received a moment apart may reach ingest the other way
        // round; the later one then happens as soon as the machine's order allows instead of being refused.
        at = at.max(snapshot.since);
    }
    Ok((snapshot, at))
}

/// When a command happened: its own timestamp, or when ingest received it. A timestamp ahead of the receipt
/// by at most `skew` (a device clock running fast) is taken as the receipt, never later: a change stamped
/// in the future would move the machine's current activity there and refuse every change until then.
/// Further ahead is refused.
fn stamp(
    timestamp: Option<DateTime<Utc>>,
    received_at: DateTime<Utc>,
    skew: chrono::Duration,
) -> Result<DateTime<Utc>, Refusal> {
    match timestamp {
        None => Ok(received_at),
        Some(at) if at <= received_at => Ok(at),
        Some(at) if at <= received_at + skew => Ok(received_at),
        Some(at) => Err(Refusal::InFuture { at, skew_s: skew.num_seconds().max(0) as u64 }),
    }
}

fn reading(
    t: &TelemetryCommand,
    named: Option<&MachineRef>,
    machine_id: Option<i32>,
    received_at: DateTime<Utc>,
    skew: chrono::Duration,
) -> Result<TelemetryRow, Refusal> {
    let machine_id =
        machine_id.ok_or_else(|| Refusal::UnknownMachine(named.map(|m| m.to_string()).unwrap_or_default()))?;
    let ts = stamp(t.timestamp, received_at, skew)?;
    Ok(TelemetryRow { machine_id, ts, data: serde_json::Value::Object(t.values.clone()) })
}

fn remembered_verdict(r: &RememberedVerdict) -> Verdict {
    Verdict {
        request_id: Some(r.request_id.clone()),
        status: r.status as u16,
        ok: r.status == 200,
        reason: r.reason.clone(),
        message: r.message.clone(),
        activity_code_id: r.code_id,
        id: r.row_id,
    }
}

/// What a batch has judged but not yet written, and which machines it changed.
#[derive(Default)]
struct Pending {
    /// Activity changes in the order they were accepted.
    changes: Vec<Change>,
    /// Machines' new running job (or none).
    jobs: HashMap<i32, Option<i64>>,
    production: Vec<ProductionRow>,
    /// Machines' counter totals after their last running-total message, and when it was counted.
    counters: HashMap<i32, (Totals, DateTime<Utc>)>,
    /// Text to append to jobs' notes.
    notes: Vec<(i64, String)>,
    /// Machines whose status must be published again.
    changed: HashSet<i32>,
}

impl Pending {
    /// Writes what is pending with one array statement per kind of write.
    async fn write(&mut self, tx: &mut sqlx::Transaction<'_, sqlx::Postgres>) -> Result<(), oee_core::Error> {
        store::apply_changes(tx, &self.changes).await?;
        self.changed.extend(self.changes.drain(..).map(|c| c.machine_id));
        let mut jobs: Vec<(i32, Option<i64>)> = self.jobs.drain().collect();
        jobs.sort_unstable();
        store::set_active_jobs(tx, &jobs).await?;
        store::insert_production(tx, &self.production).await?;
        self.production.clear();
        let mut counters: Vec<(i32, Totals, DateTime<Utc>)> =
            self.counters.drain().map(|(m, (totals, at))| (m, totals, at)).collect();
        counters.sort_unstable_by_key(|c| c.0);
        store::save_counter_totals(tx, &counters).await?;
        store::append_job_notes(tx, &self.notes).await?;
        self.notes.clear();
        Ok(())
    }
}

/// Logs an operator in or out on the machine's tablet: the session rows, and the machine's new segment
/// ([`activity::judge_operator_change`]).
async fn session(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    c: &SessionCommand,
    m: &MachineSnapshot,
    at: DateTime<Utc>,
) -> Result<Result<Change, Refusal>, oee_core::Error> {
    let user_id = match c.action {
        SessionAction::Login => Some(c.user_id.ok_or(Refusal::MissingField("user_id"))),
        SessionAction::Logout => None,
    }
    .transpose();
    let change = match user_id.and_then(|user| activity::judge_operator_change(m, at, user)) {
        Ok(change) => change,
        Err(refusal) => return Ok(Err(refusal)),
    };
    let done = match change.user_id {
        Some(user) => oee_core::store::tablet::begin_session(tx, c.input_device_id, m.id, user, at).await?.map(|_| ()),
        None => oee_core::store::tablet::end_session(tx, c.input_device_id, m.id, at).await?,
    };
    Ok(done.map(|()| change))
}

/// Judges a production message: the record it makes (for the machine's running job, or for no job when none
/// runs: the parts were made all the same) and the counter totals to keep when it carried totals. The
/// record starts where the job's (or, with no job, the machine's) latest record ended, else at the job's
/// start (reference §4.2 `produced`); a count stamped before that makes a record of no length at its time.
fn count(
    machine: &MachineSnapshot,
    cursor: &mut ProductionCursor,
    command: &ProductionCommand,
    at: DateTime<Utc>,
) -> Result<(ProductionRow, Option<Totals>), Refusal> {
    let job = machine.active_job_id;
    if let Some((job_id, job_start)) = cursor.job.filter(|j| Some(j.0) == job)
        && at < job_start
    {
        return Err(Refusal::CountsBeforeJob { machine_id: machine.id, job_id, job_start, at });
    }
    let counted = production::count(cursor.totals, command.counts);
    let start = cursor.from.map_or(at, |from| from.min(at));
    cursor.from = Some(cursor.from.map_or(at, |from| from.max(at)));
    let totals = matches!(command.counts, oee_core::payload::Counts::Totals { .. }).then_some(counted.totals);
    cursor.totals = counted.totals;
    let row = ProductionRow {
        machine_id: machine.id,
        job_id: job,
        start,
        end: at,
        good: counted.good,
        rejects: counted.rejects,
    };
    Ok((row, totals))
}

/// A history edit's outcome: the row it added or changed, or why it was refused (before writing anything).
type Edited = Result<i64, Refusal>;

/// A history edit's times must not lie after the moment ingest received it: no skew is allowed, since an
/// activity ending (or starting) later would move the machine's current activity into the future.
fn past(times: &[Option<DateTime<Utc>>], received_at: DateTime<Utc>) -> Result<(), Refusal> {
    match times.iter().flatten().find(|t| **t > received_at) {
        Some(at) => Err(Refusal::HistoryInFuture { at: *at, received_at }),
        None => Ok(()),
    }
}

/// Adds a past activity or changes one (reference §4.7), making room among the machine's other
/// activities, and keeps the machine row (and `machine`) in step with its open activity.
async fn edit_activity(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    c: &HistoryActivityCommand,
    machine: &mut MachineSnapshot,
    codes: &HashMap<i32, activity::Code>,
    now: DateTime<Utc>,
    received_at: DateTime<Utc>,
) -> Result<Edited, oee_core::Error> {
    let machine_id = machine.id;
    let old = match c.activity_id {
        None => None,
        Some(activity_id) => match history_store::activity(&mut **tx, activity_id).await? {
            Some((m, a)) if m == machine_id => Some(a),
            _ => return Ok(Err(Refusal::UnknownActivity { machine_id, activity_id })),
        },
    };
    let span = match old {
        Some(a) if a.span.end.is_none() => {
            if c.end_time.is_some() {
                return Ok(Err(Refusal::CurrentActivityEnd { machine_id, activity_id: a.id }));
            }
            Span { start: c.start_time.unwrap_or(a.span.start), end: None }
        }
        Some(a) => Span { start: c.start_time.unwrap_or(a.span.start), end: c.end_time.or(a.span.end) },
        None => match (c.start_time, c.end_time) {
            (Some(start), Some(end)) => Span::closed(start, end),
            (None, _) => return Ok(Err(Refusal::MissingField("start_time"))),
            (_, None) => return Ok(Err(Refusal::MissingField("end_time"))),
        },
    };
    if let Some(end) = span.end
        && end < span.start
    {
        return Ok(Err(Refusal::EndBeforeStart { start: span.start, end }));
    }
    if let Err(r) = past(&[Some(span.start), span.end], received_at) {
        return Ok(Err(r));
    }
    let Some(code_id) = c.activity_code_id.or(old.map(|a| a.code_id)) else {
        return Ok(Err(Refusal::MissingField("activity_code_id")));
    };
    let code = match codes.get(&code_id) {
        Some(code) => *code,
        None => match store::codes(tx, &[code_id]).await?.remove(&code_id) {
            Some(code) => code,
            None => return Ok(Err(Refusal::UnknownCode(code_id))),
        },
    };
    let jobs = history_store::jobs_overlapping(tx, machine_id, span, None).await?;
    if let Err(r) = history::check_uptime(machine_id, code, span, &jobs, now) {
        return Ok(Err(r));
    }
    let old_span = old.map(|a| a.span);
    let others = history_store::activities_near(tx, machine_id, span, old_span, old.map(|a| a.id)).await?;
    let fixes = history::make_room(old_span, span, &others);
    history_store::apply_fixes(tx, machine_id, &fixes).await?;
    let id = match (old, span.end) {
        (Some(a), _) => {
            history_store::update_activity(tx, a.id, code_id, span, c.user_id).await?;
            a.id
        }
        (None, Some(end)) => {
            history_store::insert_activity(tx, machine_id, code_id, span.start, end, c.user_id).await?
        }
        (None, None) => return Ok(Err(Refusal::MissingField("end_time"))),
    };
    if let Some((code_id, since, user_id)) = history_store::sync_current_activity(tx, machine_id).await? {
        machine.code_id = code_id;
        machine.since = since;
        machine.user_id = user_id;
    }
    Ok(Ok(id))
}

/// Adds a past job with its counts, or changes a job (its end too: the reference never saved it); one job
/// at a time on a machine.
async fn edit_job(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    c: &HistoryJobCommand,
    machine_id: i32,
    now: DateTime<Utc>,
    received_at: DateTime<Utc>,
) -> Result<Edited, oee_core::Error> {
    let Some(job_id) = c.job_id else {
        let (Some(number), Some(start), Some(end)) = (c.job_number.as_deref(), c.start_time, c.end_time) else {
            return Ok(Err(Refusal::MissingField("job_number, start_time and end_time")));
        };
        let span = Span::closed(start, end);
        if let Err(r) = past(&[Some(end)], received_at) {
            return Ok(Err(r));
        }
        let others = history_store::jobs_overlapping(tx, machine_id, span, None).await?;
        if let Err(r) = history::check_jobs_apart(machine_id, span, &others, now) {
            return Ok(Err(r));
        }
        let ict = c.ideal_cycle_time_s.filter(|x| *x > 0.0);
        let (good, rejects) = (c.good.unwrap_or(0), c.rejects.unwrap_or(0));
        return Ok(Ok(history_store::insert_past_job(tx, machine_id, number, ict, start, end, good, rejects).await?));
    };
    let job = match history_store::job(&mut **tx, job_id).await? {
        Some(j) if j.machine_id == machine_id => j,
        _ => return Ok(Err(Refusal::UnknownJob { machine_id, job_id })),
    };
    if job.active && c.end_time.is_some() {
        return Ok(Err(Refusal::RunningJobEnd { machine_id, job_id }));
    }
    let old = job.job.span;
    let span = Span { start: c.start_time.unwrap_or(old.start), end: c.end_time.or(old.end) };
    if let Some(end) = span.end
        && end < span.start
    {
        return Ok(Err(Refusal::EndBeforeStart { start: span.start, end }));
    }
    if let Err(r) = past(&[Some(span.start), span.end], received_at) {
        return Ok(Err(r));
    }
    let others = history_store::jobs_overlapping(tx, machine_id, span, Some(job_id)).await?;
    if let Err(r) = history::check_jobs_apart(machine_id, span, &others, now) {
        return Ok(Err(r));
    }
    let records = history_store::job_records(tx, job_id).await?;
    let change = match history::job_records(job_id, span, &records, c.good, c.rejects, span != old, now) {
        Ok(change) => change,
        Err(r) => return Ok(Err(r)),
    };
    let ict = c.ideal_cycle_time_s.map(|x| (x > 0.0).then_some(x));
    history_store::update_job(tx, job_id, span, c.job_number.as_deref(), ict).await?;
    match change {
        history::RecordChange::Keep => {}
        history::RecordChange::Overwrite { id, start, end, good, rejects } => {
            history_store::update_record(tx, id, (start, end), good, rejects).await?;
        }
        history::RecordChange::Create { start, end, good, rejects } => {
            history_store::insert_record(tx, machine_id, Some(job_id), (start, end), good, rejects).await?;
        }
    }
    Ok(Ok(job_id))
}

/// Adds a production record (for one of the machine's jobs, or none) or changes one.
async fn edit_record(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    c: &HistoryProductionCommand,
    machine_id: i32,
    received_at: DateTime<Utc>,
) -> Result<Edited, oee_core::Error> {
    let Some(record_id) = c.record_id else {
        if let Some(job_id) = c.job_id
            && history_store::job(&mut **tx, job_id).await?.is_none_or(|j| j.machine_id != machine_id)
        {
            return Ok(Err(Refusal::UnknownJob { machine_id, job_id }));
        }
        let (Some(start), Some(end)) = (c.start_time, c.end_time) else {
            return Ok(Err(Refusal::MissingField("start_time and end_time")));
        };
        if let Err(r) = past(&[Some(end)], received_at) {
            return Ok(Err(r));
        }
        let (good, rejects) = (c.good.unwrap_or(0), c.rejects.unwrap_or(0));
        return Ok(Ok(history_store::insert_record(tx, machine_id, c.job_id, (start, end), good, rejects).await?));
    };
    let old = match history_store::record(&mut **tx, record_id).await? {
        Some((m, _, r)) if m == machine_id => r,
        _ => return Ok(Err(Refusal::UnknownRecord { machine_id, record_id })),
    };
    let start = c.start_time.unwrap_or(old.span.start);
    let end = c.end_time.or(old.span.end).unwrap_or(start);
    if end < start {
        return Ok(Err(Refusal::EndBeforeStart { start, end }));
    }
    if let Err(r) = past(&[Some(start), Some(end)], received_at) {
        return Ok(Err(r));
    }
    let (good, rejects) = (c.good.unwrap_or(old.good), c.rejects.unwrap_or(old.rejects));
    history_store::update_record(tx, record_id, (start, end), good, rejects).await?;
    Ok(Ok(record_id))
}

/// Answers a health ping: 200 when ingest's database answers, 503 with the reason otherwise.
async fn answer_ping(pool: PgPool, client: AsyncClient, payload: bytes::Bytes) {
    let Ok(ping) = serde_json::from_slice::<oee_core::health::Ping>(&payload) else { return };
    if !topic::valid_reply_topic(&ping.reply_to) {
        return;
    }
    let verdict = match oee_core::store::ping(&pool).await {
        Ok(()) => Verdict::applied(Some(ping.request_id), None),
        Err(e) => Verdict::refused(Some(ping.request_id), &Refusal::Storage(e.to_string())),
    };
    if let Ok(body) = serde_json::to_vec(&verdict) {
        let _ = client.try_publish(ping.reply_to, QoS::AtLeastOnce, false, body);
    }
}
