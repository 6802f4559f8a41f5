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
//! - A second CONNECT, a packet only a broker may send, or bytes that are not MQTT close the connection.
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
    ConnAck, Connect, ConnectReturnCode, Packet, PubAck, PubComp, PubRec, SubAck, Subscribe, SubscribeReasonCode,
    UnsubAck, Unsubscribe,
};
use rumqttc::mqttbytes::{self, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::auth::{Access, Refusal};

/// Keep Alive of the guard's own connection to rumqttd; the guard pings it at half that when idle.
const UPSTREAM_KEEP_ALIVE: u16 = 60;
/// Largest packet rumqttd may send to a client: the configured payload limit plus room for the topic.
const UPSTREAM_HEADROOM: usize = 70 * 1024;
/// How long the core may take to accept the guard's connection and to answer its CONNACK (a loaded machine
/// can be slow; a dead core is noticed by the supervisor anyway).
const UPSTREAM_ANSWER: Duration = Duration::from_secs(15);
/// Longest client id let through.
const MAX_CLIENT_ID: usize = 128;
/// Most subscription filters a client other than the server may hold. rumqttd keeps an in-memory log per
/// distinct filter (up to `broker.max_segment_size` × `broker.max_segment_count` bytes each), so filters
/// are what broker memory grows with; a device needs a handful.
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
    /// Bumped when rumqttd is restarted: every connection through the old one closes, so its client
    /// reconnects to the new one.
    pub generation: watch::Receiver<u64>,
    pub stats: Arc<GuardStats>,
}

/// What the guard refused since the broker started.
#[derive(Debug, Default)]
pub struct GuardStats {
    pub connections_refused: AtomicU64,
    pub publishes_refused: AtomicU64,
    pub subscriptions_refused: AtomicU64,
    pub protocol_errors: AtomicU64,
}

/// Why a connection ended.
#[derive(Debug)]
enum End {
    /// The client said DISCONNECT or closed its socket.
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
        let mut buf = BytesMut::with_capacity(4096);
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
        let (mut upstream, ack, ubuf) = match self.open_upstream(&connect).await {
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
            client_id: connect.client_id.clone(),
            keep_alive: Duration::from_secs(u64::from(connect.keep_alive)),
            refused_qos2: HashSet::new(),
            pending_subscribe: HashMap::new(),
            filters: HashSet::new(),
            warned: false,
        };
        let end = self.pump(&mut session, &mut client, &mut upstream, buf, ubuf).await;
        match end {
            End::Client | End::Upstream | End::Restarted => {}
            End::Io(e) => tracing::debug!("MQTT client `{}` from {peer}: {e}", session.client_id),
            End::KeepAlive => {
                tracing::info!("MQTT client `{}` from {peer} was silent past its keep-alive: closed", session.client_id)
            }
            End::Violation(why) => {
                self.stats.protocol_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("MQTT client `{}` from {peer} closed: {why}", printable(&session.client_id));
            }
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
    async fn open_upstream(&self, connect: &Connect) -> std::io::Result<(TcpStream, ConnAck, BytesMut)> {
        let mut up = tokio::time::timeout(UPSTREAM_ANSWER, TcpStream::connect(self.upstream))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
        up.set_nodelay(true)?;
        let mut c = connect.clone();
        c.keep_alive = UPSTREAM_KEEP_ALIVE;
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
        if let Some(end) = self.drain_upstream(s, &mut ubuf, client, &mut to_client).await {
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
                    if let Some(end) = self.drain_upstream(s, &mut ubuf, client, &mut to_client).await {
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
            }
        }
    }

    /// Passes on every whole packet rumqttd has sent; `Some` ends the connection.
    async fn drain_upstream(
        &self,
        s: &mut Session,
        ubuf: &mut BytesMut,
        client: &mut TcpStream,
        to_client: &mut BytesMut,
    ) -> Option<End> {
        loop {
            match take(ubuf, self.max_packet + UPSTREAM_HEADROOM) {
                Ok(Some(p)) => {
                    if !self.on_core_packet(s, p, to_client) {
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
            Packet::Publish(publish) => {
                if access::may_publish(&s.principal, &publish.topic) {
                    let _ = Packet::Publish(publish).write(to_up, big);
                    return None;
                }
                self.stats.publishes_refused.fetch_add(1, Ordering::Relaxed);
                s.warn_once(format_args!("a publish to `{}` was refused and dropped", printable(&publish.topic)));
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
                let allowed: Vec<bool> = sub
                    .filters
                    .iter()
                    .map(|f| {
                        let fits = s.principal == Principal::Server
                            || s.filters.contains(&f.path)
                            || s.filters.len() < MAX_FILTERS_PER_CLIENT;
                        let ok = fits && access::may_subscribe(&s.principal, &f.path);
                        if ok {
                            s.filters.insert(f.path.clone());
                        }
                        ok
                    })
                    .collect();
                if allowed.iter().any(|a| !a) {
                    self.stats.subscriptions_refused.fetch_add(1, Ordering::Relaxed);
                    let refused: Vec<&str> =
                        sub.filters.iter().zip(&allowed).filter(|(_, a)| !**a).map(|(f, _)| f.path.as_str()).collect();
                    s.warn_once(format_args!("subscriptions refused: {}", printable(&refused.join(", "))));
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
            Packet::Disconnect => {
                let _ = Packet::Disconnect.write(to_up, big);
                return Some(End::Client);
            }
            Packet::Connect(_) => return Some(End::Violation("a second CONNECT (MQTT 3.1.1 §3.1.0-2)".into())),
            other => return Some(End::Violation(format!("a client may not send {other:?}"))),
        }
        None
    }

    /// Handles one packet from rumqttd; false ends the connection.
    fn on_core_packet(&self, s: &mut Session, p: Packet, to_client: &mut BytesMut) -> bool {
        let big = usize::MAX;
        match p {
            // The guard answers the client's pings itself and pings rumqttd on its own.
            Packet::PingResp => {}
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

/// One client's state inside the guard.
struct Session {
    principal: Principal,
    client_id: String,
    /// Zero: the client asked for no keep-alive.
    keep_alive: Duration,
    /// QoS 2 publishes the guard refused and acknowledged itself, waiting for their PUBREL.
    refused_qos2: HashSet<u16>,
    /// Subscriptions forwarded without their refused filters: which positions were allowed.
    pending_subscribe: HashMap<u16, Vec<bool>>,
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
