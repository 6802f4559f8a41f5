//! Whether the server's parts work: the broker answers a connection, and ingest answers a ping over it
//! (a round trip through the broker, ingest and ingest's database connection). Used by `/health`.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, Packet, QoS};
use serde::{Deserialize, Serialize};

use crate::config::MqttConfig;
use crate::topic;

/// The topic ingest answers pings on. Only the server may publish there.
pub const PING: &str = "oee/v1/health/ping";

/// A ping to ingest: where to answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ping {
    pub request_id: String,
    pub reply_to: String,
}

/// How long a probe waits for each answer.
const PROBE_LIMIT: Duration = Duration::from_secs(3);

/// What the broker and ingest said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub broker: Result<(), String>,
    pub ingest: Result<(), String>,
}

/// Connects to the broker as the server (`mqtt` carries the server's credentials) and pings ingest.
pub async fn probe(mqtt: &MqttConfig) -> Probe {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let client_id = format!("{}-health-{}", mqtt.client_id_prefix, &id[..12]);
    let mut options = crate::mqtt::client_options(mqtt, &client_id, true);
    options.set_keep_alive(Duration::from_secs(10));
    let (client, mut eventloop) = AsyncClient::new(options, 10);
    let reply_to = format!("{}/{client_id}", topic::REPLIES);
    let run = async {
        // Connected?
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(a))) if a.code == rumqttc::ConnectReturnCode::Success => break,
                Ok(Event::Incoming(Packet::ConnAck(a))) => return Err(format!("refused the connection: {:?}", a.code)),
                Ok(_) => {}
                Err(e) => return Err(format!("unreachable at {}:{}: {e}", mqtt.host, mqtt.port)),
            }
        }
        Ok(())
    };
    let broker = match tokio::time::timeout(PROBE_LIMIT, run).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer from {}:{} within {PROBE_LIMIT:?}", mqtt.host, mqtt.port)),
    };
    if let Err(e) = &broker {
        return Probe { broker: Err(e.clone()), ingest: Err("not checked: the broker is down".into()) };
    }
    let ping = Ping { request_id: id, reply_to: reply_to.clone() };
    let _ = client.try_subscribe(&reply_to, QoS::AtLeastOnce);
    let round_trip = async {
        let mut sent = false;
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) if !sent => {
                    let body = serde_json::to_vec(&ping).unwrap_or_default();
                    if client.try_publish(PING, QoS::AtLeastOnce, false, body).is_err() {
                        return Err("cannot send the ping".to_string());
                    }
                    sent = true;
                }
                Ok(Event::Incoming(Packet::Publish(p))) if p.topic == reply_to => {
                    let v: serde_json::Value = serde_json::from_slice(&p.payload).unwrap_or_default();
                    if v["request_id"] == ping.request_id.as_str() {
                        return if v["ok"] == true {
                            Ok(())
                        } else {
                            Err(v["message"].as_str().unwrap_or("ingest cannot reach its database").to_string())
                        };
                    }
                }
                Ok(_) => {}
                Err(e) => return Err(format!("connection lost: {e}")),
            }
        }
    };
    let ingest = match tokio::time::timeout(PROBE_LIMIT, round_trip).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer to a ping within {PROBE_LIMIT:?}: is ingest running?")),
    };
    let _ = client.try_disconnect();
    let _ = tokio::time::timeout(Duration::from_millis(200), eventloop.poll()).await;
    Probe { broker, ingest }
}
