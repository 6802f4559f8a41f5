//! The guard: the MQTT listener devices talk to, in front of rumqttd.
//!
//! rumqttd panics on some topics (a first character that is not ASCII kills its router thread), closes
//! any connection that asks for Keep Alive 0 without a CONNACK, ignores a second CONNECT, and has no
//! topic rights. So no client talks to it directly: each client connection is read here packet by packet
//! with rumqttc's MQTT 3.1.1 codec, checked, and only then handed to rumqttd over its own loopback
//! connection, which carries the server's internal credentials. What the guard decides:
//!
//! - CONNECT: protocol 3.1.1 only, a printable client id, credentials through [`Access`], the server's
//!   client ids reserved to the server, the will's topic checked like a publish. Keep Alive is kept by
//!   the guard itself (0 means none, as MQTT 3.1.1 says); the upstream connection has its own.
//! - PUBLISH: [`access::may_publish`]; a refused message is acknowledged and dropped (what Mosquitto does
//!   with a denied publish), so a device is not stuck retrying it.
//! - SUBSCRIBE: [`access::may_subscribe`] per filter; a refused filter gets the failure return code 0x80.
//!   A shared subscription (`$share/…`) is refused to a persistent session: rumqttd's router panics when a
//!   persistent session that was the last member of a shared group ends with deliveries unacknowledged
//!   (it looks up the group it has just removed), which would take every client's routing down with it.
//! - A second CONNECT, a packet only a broker may send, or bytes that are not MQTT close the connection.
//! - A device's rights follow the database while it is connected (see [`crate::devices`]): revoked, its
//!   connections close; given other machines, publishes and subscriptions are judged by the new rights, and
//!   filters it may no longer hold are unsubscribed on its behalf.
//!
//! The will is kept by the guard, not given to rumqttd: the guard publishes it (at most at QoS 1) when a
//! connection ends without DISCONNECT, if the client may still publish there, and never forwards a
//! DISCONNECT. Closing the upstream connection is then the only way rumqttd learns of the end, so it
//! sees exactly one disconnection per connection. A DISCONNECT followed by the socket's end gave it two: it
//! logged "no-connection id … is already gone" at ERROR for every clean disconnect, and when a new
//! connection had meanwhile been given the freed connection id, the second one ended that connection.
//!
//! Packet ids pass through unchanged, so acknowledgements need no translation.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use oee_core::access::{self, Principal};
use rumqttc::mqttbytes::v4::{
    ConnAck, Connect, ConnectReturnCode, LastWill, Packet, PubAck, PubComp, PubRec, Publish, SubAck, Subscribe,
    SubscribeReasonCode, UnsubAck, Unsubscribe,
};
use rumqttc::mqttbytes::{self, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::auth::{Access, Refusal};
use crate::budget::{self, Book};
use crate::devices::{Devices, Membership};
use crate::sessions::{Hold, Sessions};

/// Keep Alive of the guard's own connection to rumqttd; the guard pings it at half that when idle.
const UPSTREAM_KEEP_ALIVE: u16 = 60;
/// Largest packet rumqttd may send to a client: the configured payload limit plus room for the topic.
const UPSTREAM_HEADROOM: usize = 70 * 1024;
/// How long the core may take to accept the guard's connection and to answer its CONNACK (a loaded machine
/// can be slow; a dead core is noticed by the supervisor anyway).
const UPSTREAM_ANSWER: Duration = Duration::from_secs(15);
/// How long the guard waits for rumqttd to close its side after the guard closed its own, before it drops
/// the socket anyway.
const UPSTREAM_CLOSE: Duration = Duration::from_secs(2);
/// How long a connection refused for want of room may take to send its CONNECT and read the answer.
const REFUSAL_WAIT: Duration = Duration::from_secs(2);
/// Capacity a connection's buffer starts with, and the most it keeps while empty.
const BUFFER_START: usize = 4096;
const BUFFER_KEPT: usize = 64 * 1024;
/// Longest client id let through.
const MAX_CLIENT_ID: usize = 128;
/// Most subscription filters a client other than the server may hold at once (a device needs a handful);
/// the filters of all clients together are bounded by `broker.max_filters` (see [`crate::budget`]).
pub(crate) const MAX_FILTERS_PER_CLIENT: usize = 32;

/// What every guarded connection shares.
pub(crate) struct Guard {
    /// rumqttd's internal listener and the credentials it requires.
    pub upstream: SocketAddr,
    pub upstream_user: String,
    pub upstream_password: String,
    pub access: Arc<dyn Access>,
    /// Client ids beginning with this (`{prefix}-…`, or the prefix itself) belong to the server.
    pub reserved_prefix: String,
    /// Largest packet a client may send.
    pub max_packet: usize,
    /// How long a new connection has to send its CONNECT.
    pub connect_timeout: Duration,
    /// Most client connections open at once (`broker.max_connections`).
    pub max_connections: usize,
    /// Bumped when rumqttd is restarted: every connection through the old one closes, so its client
    /// reconnects to the new one.
    pub generation: watch::Receiver<u64>,
    pub stats: Arc<GuardStats>,
    /// Every open connection of a device, so that a change of the device in the database reaches it.
    pub devices: Arc<Devices>,
    /// The distinct filters, topics and retained topics that clients other than the server brought into
    /// the core.
    pub filters: Book,
    pub topics: Book,
    pub retained: Book,
    /// Who holds each client id, and the names connections have towards rumqttd.
    pub sessions: Arc<Sessions>,
}

/// What the guard refused since the broker started.
#[derive(Debug, Default)]
pub struct GuardStats {
    pub connections_refused: AtomicU64,
    pub publishes_refused: AtomicU64,
    pub subscriptions_refused: AtomicU64,
    pub protocol_errors: AtomicU64,
    /// Connections closed because their device was revoked.
    pub connections_revoked: AtomicU64,
    /// Filters unsubscribed on a device's behalf because its rights no longer cover them.
    pub subscriptions_withdrawn: AtomicU64,
    /// Messages not delivered to a device because its rights no longer cover their topic.
    pub deliveries_withheld: AtomicU64,
    /// Client connections that were let in and have ended.
    pub connections_ended: AtomicU64,
}

/// Why a connection ended.
#[derive(Debug)]
enum End {
    /// The client said DISCONNECT.
    Disconnect,
    /// The client closed its socket without DISCONNECT.
    Client,
    /// rumqttd closed its side.
    Upstream,
    /// A rule of the protocol was broken (logged once per connection).
    Violation(String),
    Io(std::io::Error),
    /// The client was silent for longer than its Keep Alive allows.
    KeepAlive,
    /// rumqttd was restarted.
    Restarted,
    /// The device was revoked.
    Revoked,
    /// A newer connection with the same client id took over.
    TakenOver,
}

impl From<std::io::Error> for End {
    fn from(e: std::io::Error) -> End {
        End::Io(e)
    }
}

impl Guard {
    /// Serves one client connection until it ends.
    pub(crate) async fn serve(self: Arc<Guard>, mut client: TcpStream, peer: SocketAddr) {
        let _ = client.set_nodelay(true);
        let mut buf = BytesMut::with_capacity(BUFFER_START);
        let connect =
            match tokio::time::timeout(self.connect_timeout, read_packet(&mut client, &mut buf, self.max_packet)).await
            {
                Ok(Ok(Some(Packet::Connect(c)))) => c,
                Ok(Err(mqttbytes::Error::InvalidProtocol | mqttbytes::Error::InvalidProtocolLevel(_))) => {
                    // MQTT 3.1 and 5 clients are told why (3.1.1 §3.2.2.3 return code 1).
                    let _ = write(
                        &mut client,
                        &Packet::ConnAck(ConnAck::new(ConnectReturnCode::RefusedProtocolVersion, false)),
                    )
                    .await;
                    self.stats.connections_refused.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Ok(Ok(_)) | Ok(Err(_)) | Err(_) => {
                    self.stats.protocol_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!("MQTT connection from {peer} closed: it did not begin with a CONNECT");
                    return;
                }
            };
        let principal = match self.admit(&connect).await {
            Ok(p) => p,
            Err(code) => {
                self.stats.connections_refused.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    "MQTT client `{}` from {peer} refused: {}",
                    printable(&connect.client_id),
                    refusal_text(code)
                );
                let _ = write(&mut client, &Packet::ConnAck(ConnAck::new(code, false))).await;
                return;
            }
        };
        let membership = self.devices.join(&principal);
        let principal = membership.as_ref().and_then(|m| m.rights.borrow().clone()).unwrap_or(principal);
        let hold = self.sessions.take(&connect.client_id, connect.clean_session);
        let (mut upstream, ack, ubuf) = match self.open_upstream(&connect, hold.upstream_id()).await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(
                    "MQTT client `{}` from {peer}: the broker core is not answering ({e})",
                    connect.client_id
                );
                let _ =
                    write(&mut client, &Packet::ConnAck(ConnAck::new(ConnectReturnCode::ServiceUnavailable, false)))
                        .await;
                return;
            }
        };
        if write(&mut client, &Packet::ConnAck(ack.clone())).await.is_err() || ack.code != ConnectReturnCode::Success {
            return;
        }
        let mut session = Session {
            principal,
            membership,
            hold,
            client_id: connect.client_id.clone(),
            clean_session: connect.clean_session,
            keep_alive: Duration::from_secs(u64::from(connect.keep_alive)),
            will: connect.last_will,
            refused_qos2: HashSet::new(),
            withheld_qos2: HashSet::new(),
            pending_subscribe: HashMap::new(),
            own_unsubscribes: HashSet::new(),
            filters: HashSet::new(),
            warned: false,
        };
        let end = self.pump(&mut session, &mut client, &mut upstream, buf, ubuf).await;
        self.stats.connections_ended.fetch_add(1, Ordering::Relaxed);
        let will = match &end {
            End::Disconnect | End::Upstream | End::Restarted => false,
            End::Client => true,
            End::TakenOver => {
                tracing::debug!(
                    "MQTT client `{}` from {peer} closed: a newer connection took its client id over",
                    printable(&session.client_id)
                );
                true
            }
            End::Revoked => {
                self.stats.connections_revoked.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    "MQTT client `{}` from {peer} closed: its device was revoked",
                    printable(&session.client_id)
                );
                false
            }
            End::Io(e) => {
                tracing::debug!("MQTT client `{}` from {peer}: {e}", printable(&session.client_id));
                true
            }
            End::KeepAlive => {
                tracing::info!(
                    "MQTT client `{}` from {peer} was silent past its keep-alive: closed",
                    printable(&session.client_id)
                );
                true
            }
            End::Violation(why) => {
                self.stats.protocol_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("MQTT client `{}` from {peer} closed: {why}", printable(&session.client_id));
                true
            }
        };
        // A connection that ended without DISCONNECT publishes its will (MQTT 3.1.1 §3.1.2.5), unless its
        // device was revoked. The client's socket is closed first, so it does not wait on rumqttd.
        drop(client);
        if matches!(end, End::Upstream | End::Restarted) {
            return;
        }
        if will {
            self.publish_will(&mut session, &mut upstream).await;
        }
        close_upstream(upstream).await;
    }

    /// Answers a connection beyond `broker.max_connections` with CONNACK "server unavailable", once its
    /// CONNECT has arrived (MQTT 3.1.1 lets the server send nothing before), and closes it.
    pub(crate) async fn refuse_full(&self, mut client: TcpStream, peer: SocketAddr) {
        self.stats.connections_refused.fetch_add(1, Ordering::Relaxed);
        let mut buf = BytesMut::with_capacity(1024);
        let wait = self.connect_timeout.min(REFUSAL_WAIT);
        if let Ok(Ok(Some(Packet::Connect(c)))) =
            tokio::time::timeout(wait, read_packet(&mut client, &mut buf, self.max_packet)).await
        {
            tracing::debug!(
                "MQTT client `{}` from {peer} refused: broker.max_connections reached",
                printable(&c.client_id)
            );
            let ack = Packet::ConnAck(ConnAck::new(ConnectReturnCode::ServiceUnavailable, false));
            let _ = tokio::time::timeout(wait, write(&mut client, &ack)).await;
        }
    }

    /// Decides who the client is, or the CONNACK code that refuses it.
    async fn admit(&self, connect: &Connect) -> Result<Principal, ConnectReturnCode> {
        let id = &connect.client_id;
        if id.len() > MAX_CLIENT_ID || !id.bytes().all(|b| (0x20..0x7f).contains(&b) && !b"+#/$".contains(&b)) {
            return Err(ConnectReturnCode::BadClientId);
        }
        if id.is_empty() && !connect.clean_session {
            // 3.1.1 §3.1.3-8: a client without an id cannot have a session to keep.
            return Err(ConnectReturnCode::BadClientId);
        }
        let login = connect.login.as_ref().map(|l| (l.username.as_str(), l.password.as_str()));
        let principal = self.access.authenticate(id, login).await.map_err(|r| match r {
            Refusal::BadCredentials => ConnectReturnCode::BadUserNamePassword,
            Refusal::NotAuthorized => ConnectReturnCode::NotAuthorized,
            Refusal::Unavailable => ConnectReturnCode::ServiceUnavailable,
        })?;
        let reserved = id == &self.reserved_prefix || id.starts_with(&format!("{}-", self.reserved_prefix));
        if reserved && principal != Principal::Server {
            return Err(ConnectReturnCode::NotAuthorized);
        }
        if let Some(will) = &connect.last_will
            && !access::may_publish(&principal, &will.topic)
        {
            return Err(ConnectReturnCode::NotAuthorized);
        }
        Ok(principal)
    }

    /// Connects to rumqttd on the client's behalf and returns its CONNACK, and whatever arrived right
    /// behind it (a resumed session's redeliveries).
    async fn open_upstream(
        &self,
        connect: &Connect,
        upstream_id: String,
    ) -> std::io::Result<(TcpStream, ConnAck, BytesMut)> {
        let mut up = tokio::time::timeout(UPSTREAM_ANSWER, TcpStream::connect(self.upstream))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
        up.set_nodelay(true)?;
        let mut c = connect.clone();
        c.client_id = upstream_id;
        c.keep_alive = UPSTREAM_KEEP_ALIVE;
        c.last_will = None;
        c.login = None;
        c.set_login(self.upstream_user.clone(), self.upstream_password.clone());
        write(&mut up, &Packet::Connect(c)).await?;
        let mut buf = BytesMut::new();
        match tokio::time::timeout(UPSTREAM_ANSWER, read_packet(&mut up, &mut buf, 1024)).await {
            Ok(Ok(Some(Packet::ConnAck(ack)))) => Ok((up, ack, buf)),
            Ok(Ok(other)) => Err(std::io::Error::other(format!("answered {other:?} instead of CONNACK"))),
            Ok(Err(e)) => Err(std::io::Error::other(e.to_string())),
            Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no CONNACK")),
        }
    }

    /// Moves packets both ways until either side ends.
    async fn pump(
        &self,
        s: &mut Session,
        client: &mut TcpStream,
        up: &mut TcpStream,
        mut cbuf: BytesMut,
        mut ubuf: BytesMut,
    ) -> End {
        let mut to_client = BytesMut::new();
        let mut to_up = BytesMut::new();
        let mut generation = self.generation.clone();
        generation.mark_unchanged();
        let mut client_seen = Instant::now();
        let mut up_sent = Instant::now();
        let mut ping = tokio::time::interval(Duration::from_secs(u64::from(UPSTREAM_KEEP_ALIVE) / 2));
        ping.tick().await;
        // Packets a client read left in the buffer with its CONNECT (pipelined) are handled first.
        let mut pending_client = !cbuf.is_empty();
        if let Some(end) = self.drain_upstream(s, &mut ubuf, client, up, &mut to_client).await {
            return end;
        }
        loop {
            if pending_client {
                pending_client = false;
                client_seen = Instant::now();
                loop {
                    match take(&mut cbuf, self.max_packet) {
                        Ok(Some(p)) => {
                            if let Some(end) = self.on_client_packet(s, p, &mut to_client, &mut to_up) {
                                let _ = flush(client, &mut to_client).await;
                                let _ = flush(up, &mut to_up).await;
                                return end;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => return End::Violation(format!("unreadable packet: {e}")),
                    }
                }
                if !to_up.is_empty() {
                    up_sent = Instant::now();
                }
                if let Err(e) = flush(up, &mut to_up).await {
                    tracing::debug!("upstream write: {e}");
                    return End::Upstream;
                }
                if let Err(e) = flush(client, &mut to_client).await {
                    return End::Io(e);
                }
            }
            for b in [&mut cbuf, &mut ubuf, &mut to_client, &mut to_up] {
                shrink(b);
            }
            let deadline = (!s.keep_alive.is_zero()).then(|| client_seen + s.keep_alive + s.keep_alive / 2);
            tokio::select! {
                r = client.read_buf(&mut cbuf) => match r {
                    Ok(0) => return End::Client,
                    Ok(_) => pending_client = true,
                    Err(e) => return End::Io(e),
                },
                r = up.read_buf(&mut ubuf) => {
                    match r {
                        Ok(0) | Err(_) => return End::Upstream,
                        Ok(_) => {}
                    }
                    if let Some(end) = self.drain_upstream(s, &mut ubuf, client, up, &mut to_client).await {
                        return end;
                    }
                }
                _ = async { tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)).await }, if deadline.is_some() => {
                    return End::KeepAlive;
                }
                _ = ping.tick() => {
                    if up_sent.elapsed() >= Duration::from_secs(u64::from(UPSTREAM_KEEP_ALIVE) / 2) {
                        to_up.clear();
                        let _ = Packet::PingReq.write(&mut to_up, 16);
                        if flush(up, &mut to_up).await.is_err() {
                            return End::Upstream;
                        }
                        up_sent = Instant::now();
                    }
                }
                _ = generation.changed() => return End::Restarted,
                _ = taken_over(&mut s.hold.taken_over) => return End::TakenOver,
                rights = rights_change(&mut s.membership) => {
                    let Some(principal) = rights else { return End::Revoked };
                    s.principal = principal;
                    self.withdraw(s, &mut to_up);
                    if !to_up.is_empty() {
                        up_sent = Instant::now();
                    }
                    if flush(up, &mut to_up).await.is_err() {
                        return End::Upstream;
                    }
                }
            }
        }
    }

    /// Passes on every whole packet rumqttd has sent; `Some` ends the connection.
    async fn drain_upstream(
        &self,
        s: &mut Session,
        ubuf: &mut BytesMut,
        client: &mut TcpStream,
        up: &mut TcpStream,
        to_client: &mut BytesMut,
    ) -> Option<End> {
        let mut to_up = BytesMut::new();
        loop {
            match take(ubuf, self.max_packet + UPSTREAM_HEADROOM) {
                Ok(Some(p)) => {
                    if !self.on_core_packet(s, p, to_client, &mut to_up) {
                        return Some(End::Upstream);
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!("unreadable packet from the broker core: {e}");
                    return Some(End::Upstream);
                }
            }
        }
        if flush(up, &mut to_up).await.is_err() {
            return Some(End::Upstream);
        }
        flush(client, to_client).await.err().map(End::Io)
    }

    /// Handles one packet from the client: what to pass on, what to answer. `Some` ends the connection.
    fn on_client_packet(
        &self,
        s: &mut Session,
        p: Packet,
        to_client: &mut BytesMut,
        to_up: &mut BytesMut,
    ) -> Option<End> {
        let big = usize::MAX;
        match p {
            Packet::Publish(mut publish) => {
                let Err(why) = self.judge_publish(s, &mut publish) else {
                    let _ = Packet::Publish(publish).write(to_up, big);
                    return None;
                };
                self.stats.publishes_refused.fetch_add(1, Ordering::Relaxed);
                s.warn_once(format_args!(
                    "a publish to `{}` was refused and dropped ({why})",
                    printable(&publish.topic)
                ));
                match publish.qos {
                    QoS::AtMostOnce => {}
                    QoS::AtLeastOnce => {
                        let _ = Packet::PubAck(PubAck::new(publish.pkid)).write(to_client, big);
                    }
                    QoS::ExactlyOnce => {
                        s.refused_qos2.insert(publish.pkid);
                        let _ = Packet::PubRec(PubRec::new(publish.pkid)).write(to_client, big);
                    }
                }
            }
            Packet::PubRel(rel) => {
                if s.refused_qos2.remove(&rel.pkid) {
                    let _ = Packet::PubComp(PubComp::new(rel.pkid)).write(to_client, big);
                } else {
                    let _ = Packet::PubRel(rel).write(to_up, big);
                }
            }
            p @ (Packet::PubAck(_) | Packet::PubRec(_) | Packet::PubComp(_)) => {
                let _ = p.write(to_up, big);
            }
            Packet::Subscribe(sub) => {
                let verdicts: Vec<Result<(), &str>> =
                    sub.filters.iter().map(|f| self.judge_filter(s, &f.path)).collect();
                let allowed: Vec<bool> = verdicts.iter().map(Result::is_ok).collect();
                if allowed.iter().any(|a| !a) {
                    self.stats.subscriptions_refused.fetch_add(1, Ordering::Relaxed);
                    let refused: Vec<String> = sub
                        .filters
                        .iter()
                        .zip(&verdicts)
                        .filter_map(|(f, v)| v.err().map(|why| format!("{} ({why})", printable(&f.path))))
                        .collect();
                    s.warn_once(format_args!("subscriptions refused: {}", refused.join(", ")));
                }
                if allowed.iter().all(|a| !a) {
                    let codes = vec![SubscribeReasonCode::Failure; allowed.len()];
                    let _ = Packet::SubAck(SubAck::new(sub.pkid, codes)).write(to_client, big);
                    return None;
                }
                let filters = sub.filters.into_iter().zip(&allowed).filter(|(_, a)| **a).map(|(f, _)| f).collect();
                if allowed.iter().any(|a| !a) {
                    s.pending_subscribe.insert(sub.pkid, allowed);
                }
                let _ = Packet::Subscribe(Subscribe { pkid: sub.pkid, filters }).write(to_up, big);
            }
            Packet::Unsubscribe(unsub) => {
                let topics: Vec<String> =
                    unsub.topics.into_iter().filter(|t| oee_core::topic::valid_filter(t)).collect();
                for t in &topics {
                    s.filters.remove(t);
                }
                if topics.is_empty() {
                    let _ = Packet::UnsubAck(UnsubAck::new(unsub.pkid)).write(to_client, big);
                } else {
                    let _ = Packet::Unsubscribe(Unsubscribe { pkid: unsub.pkid, topics }).write(to_up, big);
                }
            }
            Packet::PingReq => {
                let _ = Packet::PingResp.write(to_client, big);
            }
            // Not passed on: the will is the guard's, and rumqttd learns of the end when the guard closes.
            Packet::Disconnect => return Some(End::Disconnect),
            Packet::Connect(_) => return Some(End::Violation("a second CONNECT (MQTT 3.1.1 §3.1.0-2)".into())),
            other => return Some(End::Violation(format!("a client may not send {other:?}"))),
        }
        None
    }

    /// Whether the client may subscribe to `filter` now, or why not; an allowed filter is counted as held.
    fn judge_filter(&self, s: &mut Session, filter: &str) -> Result<(), &'static str> {
        if !access::may_subscribe(&s.principal, filter) {
            return Err("not allowed");
        }
        if !s.clean_session && is_shared(filter) {
            return Err("a shared subscription needs a clean session: connect with clean session set");
        }
        if s.principal == Principal::Server || s.filters.contains(filter) {
            s.filters.insert(filter.to_string());
            return Ok(());
        }
        if s.filters.len() >= MAX_FILTERS_PER_CLIENT {
            return Err("a client holds at most 32 filters");
        }
        if budget::narrows_a_server_log(filter) {
            return Err("narrower than the server's command filter: subscribe to that");
        }
        if !self.filters.admit(filter, *self.generation.borrow()) {
            return Err("broker.max_filters reached");
        }
        s.filters.insert(filter.to_string());
        Ok(())
    }

    /// Whether the client may publish to `topic` now, or why not; for a publish of another client than the
    /// server that asks to be retained beyond `broker.max_retained`, clears the retain flag instead.
    fn judge_publish(&self, s: &mut Session, publish: &mut Publish) -> Result<(), &'static str> {
        if !access::may_publish(&s.principal, &publish.topic) {
            return Err("not allowed");
        }
        if s.principal == Principal::Server {
            return Ok(());
        }
        let core = *self.generation.borrow();
        if !self.topics.admit(&publish.topic, core) {
            return Err("broker.max_topics reached");
        }
        // rumqttd clears a topic's retained message on any publish with an empty payload.
        if publish.payload.is_empty() {
            self.retained.forget(&publish.topic, core);
        } else if publish.retain && !self.retained.admit(&publish.topic, core) {
            publish.retain = false;
            s.warn_once(format_args!(
                "a retained publish to `{}` was delivered but not retained: broker.max_retained reached",
                printable(&publish.topic)
            ));
        }
        Ok(())
    }

    /// Handles one packet from rumqttd; false ends the connection.
    fn on_core_packet(&self, s: &mut Session, p: Packet, to_client: &mut BytesMut, to_up: &mut BytesMut) -> bool {
        let big = usize::MAX;
        match p {
            // The guard answers the client's pings itself and pings rumqttd on its own.
            Packet::PingResp => {}
            Packet::UnsubAck(ack) if s.own_unsubscribes.remove(&ack.pkid) => {}
            // A message the device may no longer read (its rights changed, or a resumed session holds a
            // filter granted under the old ones): acknowledged to rumqttd, not delivered.
            Packet::Publish(p) if !may_read(&s.principal, &p.topic) => {
                self.stats.deliveries_withheld.fetch_add(1, Ordering::Relaxed);
                match p.qos {
                    QoS::AtMostOnce => {}
                    QoS::AtLeastOnce => {
                        let _ = Packet::PubAck(PubAck::new(p.pkid)).write(to_up, big);
                    }
                    QoS::ExactlyOnce => {
                        s.withheld_qos2.insert(p.pkid);
                        let _ = Packet::PubRec(PubRec::new(p.pkid)).write(to_up, big);
                    }
                }
            }
            Packet::PubRel(rel) if s.withheld_qos2.remove(&rel.pkid) => {
                let _ = Packet::PubComp(PubComp::new(rel.pkid)).write(to_up, big);
            }
            Packet::SubAck(mut ack) => {
                if let Some(allowed) = s.pending_subscribe.remove(&ack.pkid) {
                    let mut granted = ack.return_codes.into_iter();
                    ack.return_codes = allowed
                        .iter()
                        .map(|a| {
                            if *a {
                                granted.next().unwrap_or(SubscribeReasonCode::Failure)
                            } else {
                                SubscribeReasonCode::Failure
                            }
                        })
                        .collect();
                }
                let _ = Packet::SubAck(ack).write(to_client, big);
            }
            p @ (Packet::Publish(_)
            | Packet::PubAck(_)
            | Packet::PubRec(_)
            | Packet::PubRel(_)
            | Packet::PubComp(_)
            | Packet::UnsubAck(_)) => {
                let _ = p.write(to_client, big);
            }
            _ => return false,
        }
        true
    }
}

impl Guard {
    /// After a change of a device's rights: unsubscribes on its behalf the filters it may no longer hold.
    fn withdraw(&self, s: &mut Session, to_up: &mut BytesMut) {
        let lost: Vec<String> = s.filters.iter().filter(|f| !access::may_subscribe(&s.principal, f)).cloned().collect();
        if lost.is_empty() {
            return;
        }
        for f in &lost {
            s.filters.remove(f);
        }
        self.stats.subscriptions_withdrawn.fetch_add(lost.len() as u64, Ordering::Relaxed);
        tracing::info!(
            "MQTT client `{}`: its device's rights changed; unsubscribed from {}",
            printable(&s.client_id),
            printable(&lost.join(", "))
        );
        // From the top of the range, which a client reaches last; its UNSUBACK is recognised by the id, and
        // rumqttd answers a connection's packets in order, so a client's own UNSUBSCRIBE sent later with
        // the same id gets the later answer.
        let pkid = (1..=u16::MAX).rev().find(|id| !s.own_unsubscribes.contains(id)).unwrap_or(u16::MAX);
        s.own_unsubscribes.insert(pkid);
        let _ = Packet::Unsubscribe(Unsubscribe { pkid, topics: lost }).write(to_up, usize::MAX);
    }

    /// Publishes the client's will, when it has one and may still publish to its topic.
    async fn publish_will(&self, s: &mut Session, up: &mut TcpStream) {
        let Some(will) = s.will.take() else { return };
        if !access::may_publish(&s.principal, &will.topic) {
            return;
        }
        // rumqttd delivers a QoS 2 message only after a PUBREL, which a closing connection would not send.
        let qos = if will.qos == QoS::AtMostOnce { QoS::AtMostOnce } else { QoS::AtLeastOnce };
        let pkid = if qos == QoS::AtMostOnce { 0 } else { 1 };
        let publish = Publish { dup: false, qos, retain: will.retain, topic: will.topic, pkid, payload: will.message };
        if let Err(e) = tokio::time::timeout(UPSTREAM_CLOSE, write(up, &Packet::Publish(publish))).await {
            tracing::debug!("MQTT client `{}`: its will could not be handed over: {e}", printable(&s.client_id));
        }
    }
}

/// Whether `filter` joins a shared group (MQTT 5's `$share/{group}/{filter}`, which rumqttd also takes on
/// MQTT 3.1.1 connections).
fn is_shared(filter: &str) -> bool {
    filter.starts_with("$share/")
}

/// Whether a message on `topic` may be delivered to `who`: a device only what it may subscribe to now;
/// others whatever they subscribed to.
fn may_read(who: &Principal, topic: &str) -> bool {
    !matches!(who, Principal::Device { .. }) || access::may_subscribe(who, topic)
}

/// The client's next rights, once they change; `None` when its device was revoked. Never ready for a client
/// whose rights cannot change while the server runs.
async fn rights_change(membership: &mut Option<Membership>) -> Option<Principal> {
    if let Some(m) = membership
        && m.rights.changed().await.is_ok()
    {
        return m.rights.borrow_and_update().clone();
    }
    std::future::pending().await
}

/// Ready once a newer connection took the client's id over.
async fn taken_over(signal: &mut Option<tokio::sync::oneshot::Receiver<()>>) {
    if let Some(rx) = signal
        && rx.await.is_ok()
    {
        return;
    }
    // The id was let go without a takeover (cannot happen while the connection holds it): never again.
    *signal = None;
    std::future::pending::<()>().await
}

/// Closes the guard's side of a connection to rumqttd and waits (bounded) until rumqttd closed its own, so
/// rumqttd reads a clean end of stream, never a reset.
async fn close_upstream(mut up: TcpStream) {
    let _ = up.shutdown().await;
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(UPSTREAM_CLOSE, async {
        while let Ok(n) = up.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

/// One client's state inside the guard.
struct Session {
    /// Who the client is, with its rights now.
    principal: Principal,
    /// A device's place among the connected devices, through which changes of its rights arrive.
    membership: Option<Membership>,
    /// Its hold on its client id (and its name towards rumqttd), kept until the upstream connection is closed.
    hold: Hold,
    client_id: String,
    /// Whether the session ends with the connection; a persistent one may not join shared groups.
    clean_session: bool,
    /// Zero: the client asked for no keep-alive.
    keep_alive: Duration,
    /// Published by the guard when the connection ends without DISCONNECT.
    will: Option<LastWill>,
    /// QoS 2 publishes the guard refused and acknowledged itself, waiting for their PUBREL.
    refused_qos2: HashSet<u16>,
    /// QoS 2 messages from rumqttd the guard withheld and acknowledged itself, waiting for their PUBREL.
    withheld_qos2: HashSet<u16>,
    /// Subscriptions forwarded without their refused filters: which positions were allowed.
    pending_subscribe: HashMap<u16, Vec<bool>>,
    /// Packet ids of UNSUBSCRIBEs the guard sent on the client's behalf, whose UNSUBACK is the guard's.
    own_unsubscribes: HashSet<u16>,
    /// The filters the client holds (counted against [`MAX_FILTERS_PER_CLIENT`]).
    filters: HashSet<String>,
    warned: bool,
}

impl Session {
    /// Logs the first refusal of a connection as a warning and the rest quietly, so a faulty device
    /// repeating itself does not flood the log.
    fn warn_once(&mut self, what: std::fmt::Arguments<'_>) {
        if self.warned {
            tracing::debug!("MQTT client `{}`: {what}", self.client_id);
        } else {
            self.warned = true;
            tracing::warn!(
                "MQTT client `{}`: {what} (further refusals of this connection are logged at debug level)",
                self.client_id
            );
        }
    }
}

/// Reads bytes until one whole packet is in `buf`; `None` when the peer closed first.
async fn read_packet(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    max: usize,
) -> Result<Option<Packet>, mqttbytes::Error> {
    loop {
        if let Some(p) = take(buf, max)? {
            return Ok(Some(p));
        }
        match stream.read_buf(buf).await {
            Ok(0) | Err(_) => return Ok(None),
            Ok(_) => {}
        }
    }
}

/// The next whole packet in `buf`, if one has arrived.
fn take(buf: &mut BytesMut, max: usize) -> Result<Option<Packet>, mqttbytes::Error> {
    if buf.is_empty() {
        return Ok(None);
    }
    match Packet::read(buf, max) {
        Ok(p) => Ok(Some(p)),
        Err(mqttbytes::Error::InsufficientBytes(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Gives back the memory of a buffer a large packet grew, once it is empty: an idle connection then costs a
/// few KiB whatever it once carried.
fn shrink(buf: &mut BytesMut) {
    if buf.is_empty() && buf.capacity() > BUFFER_KEPT {
        *buf = BytesMut::with_capacity(BUFFER_START);
    }
}

async fn write(stream: &mut TcpStream, p: &Packet) -> std::io::Result<()> {
    let mut b = BytesMut::new();
    p.write(&mut b, usize::MAX).map_err(|e| std::io::Error::other(e.to_string()))?;
    stream.write_all(&b).await
}

async fn flush(stream: &mut TcpStream, buf: &mut BytesMut) -> std::io::Result<()> {
    if buf.is_empty() {
        return Ok(());
    }
    let r = stream.write_all(buf).await;
    buf.clear();
    r
}

/// A client-supplied string made safe for the log.
fn printable(s: &str) -> String {
    let mut out: String = s.chars().take(120).flat_map(char::escape_default).collect();
    if s.chars().count() > 120 {
        out.push('…');
    }
    out
}

fn refusal_text(code: ConnectReturnCode) -> &'static str {
    match code {
        ConnectReturnCode::BadClientId => {
            "client id not allowed (printable ASCII without + # / $, at most 128 bytes; an empty id needs a clean session)"
        }
        ConnectReturnCode::BadUserNamePassword => "wrong user name or password",
        ConnectReturnCode::NotAuthorized => {
            "not authorized (anonymous MQTT is off, the client id is reserved for the server, or the will's topic is not allowed)"
        }
        ConnectReturnCode::ServiceUnavailable => "credentials cannot be checked now (database unavailable)",
        ConnectReturnCode::RefusedProtocolVersion => "only MQTT 3.1.1 is spoken",
        ConnectReturnCode::Success => "",
    }
}
