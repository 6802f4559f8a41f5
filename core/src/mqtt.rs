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

/// Polls `eventloop` forever. On every CONNACK it subscribes to `filters` again (a clean session, or a
/// broker restart, forgets subscriptions); on errors it waits with exponential backoff (50 ms to 10 s)
/// instead of reconnecting in a hot loop. Incoming publishes go to `sink`; the driver stops when the
/// sink's receiver is gone.
pub async fn drive(
    mut eventloop: EventLoop,
    client: AsyncClient,
    filters: Vec<String>,
    sink: tokio::sync::mpsc::UnboundedSender<Incoming>,
) {
    no_delay(&mut eventloop);
    let mut backoff = Duration::from_millis(50);
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                backoff = Duration::from_millis(50);
                if !filters.is_empty() {
                    let subs = filters.iter().map(|f| rumqttc::SubscribeFilter::new(f.clone(), QoS::AtLeastOnce));
                    // Never await on the request channel from the polling task: it is the one draining it.
                    if let Err(e) = client.try_subscribe_many(subs.collect::<Vec<_>>()) {
                        tracing::error!("cannot subscribe to {filters:?}: {e}");
                    }
                }
                if sink.send(Incoming::Connected { session_present: ack.session_present }).is_err() {
                    return;
                }
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                if sink.send(Incoming::Subscribed).is_err() {
                    return;
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                if sink.send(Incoming::Publish(p)).is_err() {
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
                tracing::warn!("MQTT connection: {e}; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}
