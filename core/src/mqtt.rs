//! What every MQTT client of this server shares: connection options and an event loop driver that
//! reconnects with backoff and subscribes again on every connection.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, Publish, QoS};

use crate::config::MqttConfig;

/// Options for one client of the configured broker.
pub fn client_options(cfg: &MqttConfig, client_id: &str, clean_session: bool) -> MqttOptions {
    let mut o = MqttOptions::new(client_id, cfg.host.clone(), cfg.port);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_clean_session(clean_session);
    o.set_max_packet_size(cfg.max_packet_size, cfg.max_packet_size);
    o.set_inflight(1000);
    if !cfg.username.is_empty() {
        o.set_credentials(cfg.username.clone(), cfg.password.clone());
    }
    o
}

/// Events the driver hands to its owner.
#[derive(Debug)]
pub enum Incoming {
    /// (Re)connected and subscribed; `session_present` says whether the broker kept our session.
    Connected {
        session_present: bool,
    },
    /// The broker confirmed a subscription: messages on its filter now reach this client.
    Subscribed,
    Publish(Publish),
}

/// Sends small MQTT packets (acks, verdicts, commands) at once instead of letting Nagle's algorithm
/// hold them back for the peer's delayed acknowledgement (tens of milliseconds per round trip).
pub fn no_delay(eventloop: &mut EventLoop) {
    let mut net = eventloop.network_options();
    net.set_tcp_nodelay(true);
    eventloop.set_network_options(net);
}

/// How long a connection must stay up before a later failure counts as new, not as the same one again.
pub const STABLE_AFTER: Duration = Duration::from_secs(5);

/// The wait before reconnecting: doubles from 50 ms to 10 s with each failure, and starts again from 50 ms
/// only once a connection has stayed up for [`STABLE_AFTER`]. A CONNACK alone does not reset it: a broker
/// that accepts the connection and then drops it at once (a packet it refuses, a session it cannot resume)
/// would otherwise be hit again and again, many times a second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    delay: Duration,
    connected_at: Option<std::time::Instant>,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(50);
    const MAX: Duration = Duration::from_secs(10);

    pub fn new() -> Backoff {
        Backoff { delay: Backoff::FIRST, connected_at: None }
    }

    /// The broker accepted a connection at `now`.
    pub fn connected(&mut self, now: std::time::Instant) {
        self.connected_at = Some(now);
    }

    /// The connection failed at `now`: how long to wait before the next attempt.
    pub fn failed(&mut self, now: std::time::Instant) -> Duration {
        if let Some(at) = self.connected_at.take()
            && now.saturating_duration_since(at) >= STABLE_AFTER
        {
            self.delay = Backoff::FIRST;
        }
        let wait = self.delay;
        self.delay = (self.delay * 2).min(Backoff::MAX);
        wait
    }
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff::new()
    }
}

/// The size of a QoS 1 PUBLISH packet of `topic` and `payload_len` bytes as written on the wire: fixed
/// header, remaining length, topic, packet id and payload (what rumqttc compares with its limit).
pub fn publish_packet_size(topic: &str, payload_len: usize) -> usize {
    let remaining = 2 + topic.len() + 2 + payload_len;
    let length_bytes = match remaining {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    };
    1 + length_bytes + remaining
}

/// Whether a QoS 1 publish of `payload_len` bytes on `topic` may be handed to a client whose outgoing limit
/// is `max_packet_size`. A packet over the limit is not just refused: rumqttc fails the whole connection
/// on it and, with a persistent session, sends it again after reconnecting, failing again for ever. So
/// every publish whose size is not fixed by this server is checked first.
pub fn publish_fits(topic: &str, payload_len: usize, max_packet_size: usize) -> bool {
    topic.len() <= usize::from(u16::MAX) && publish_packet_size(topic, payload_len) <= max_packet_size
}

/// Polls `eventloop` forever. On every CONNACK it subscribes to `filters` again (a clean session, or a
/// broker restart, forgets subscriptions); on errors it waits with [`Backoff`] (50 ms to 10 s, reset only
/// after a connection stayed up a while) instead of reconnecting in a hot loop. Incoming publishes go to
/// `sink`, each turned into a `T` the moment it arrives (ingest stamps it with that time, which is when a
/// command without a timestamp happened); the driver stops when the sink's receiver is gone.
pub async fn drive<T: From<Incoming>>(
    mut eventloop: EventLoop,
    client: AsyncClient,
    filters: Vec<(String, QoS)>,
    sink: tokio::sync::mpsc::UnboundedSender<T>,
) {
    no_delay(&mut eventloop);
    let mut backoff = Backoff::new();
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                backoff.connected(std::time::Instant::now());
                if !filters.is_empty() {
                    let subs = filters.iter().map(|(f, qos)| rumqttc::SubscribeFilter::new(f.clone(), *qos));
                    // Never await on the request channel from the polling task: it is the one draining it.
                    if let Err(e) = client.try_subscribe_many(subs.collect::<Vec<_>>()) {
                        tracing::error!("cannot subscribe to {filters:?}: {e}");
                    }
                }
                if sink.send(Incoming::Connected { session_present: ack.session_present }.into()).is_err() {
                    return;
                }
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                if sink.send(Incoming::Subscribed.into()).is_err() {
                    return;
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                if sink.send(Incoming::Publish(p).into()).is_err() {
                    return;
                }
            }
            // Our own DISCONNECT (a clean shutdown): stop rather than reconnect.
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
            Ok(_) => {}
            Err(e) => {
                if sink.is_closed() {
                    return;
                }
                let wait = backoff.failed(std::time::Instant::now());
                tracing::warn!("MQTT connection: {e}; retrying in {wait:?}");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_connection_dropped_right_after_connack_keeps_backing_off() {
        let mut b = Backoff::new();
        let t0 = Instant::now();
        let mut waits = Vec::new();
        let mut now = t0;
        for _ in 0..10 {
            b.connected(now);
            now += Duration::from_millis(10);
            let w = b.failed(now);
            waits.push(w);
            now += w;
        }
        let ms: Vec<u128> = waits.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [50, 100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]);
    }

    #[test]
    fn a_connection_that_stayed_up_starts_the_backoff_again() {
        let mut b = Backoff::new();
        let t0 = Instant::now();
        for _ in 0..5 {
            b.failed(t0);
        }
        b.connected(t0);
        assert_eq!(b.failed(t0 + STABLE_AFTER - Duration::from_millis(1)), Duration::from_millis(1600));
        b.connected(t0);
        assert_eq!(b.failed(t0 + STABLE_AFTER), Duration::from_millis(50));
        // failures without a connection in between keep growing
        assert_eq!(b.failed(t0 + STABLE_AFTER * 3), Duration::from_millis(100));
    }

    #[test]
    fn publish_sizes_match_the_wire_format() {
        // 1 byte header, 1 byte length, 2 + 3 topic, 2 packet id, 10 payload
        assert_eq!(publish_packet_size("a/b", 10), 19);
        // the remaining length takes two bytes from 128 on
        assert_eq!(publish_packet_size("a", 123), 1 + 2 + 128);
        assert!(publish_fits("a/b", 10, 19));
        assert!(!publish_fits("a/b", 10, 18));
        assert!(!publish_fits(&"a".repeat(70_000), 0, usize::MAX), "a topic's length must fit in 16 bits");
    }
}
