//! Retained status topics: after every committed change, and all of them again whenever ingest
//! (re)connects, because rumqttd keeps retained messages in memory only.

use oee_core::store::machine::machine_statuses;
use oee_core::topic;
use rumqttc::{AsyncClient, QoS};
use sqlx::PgPool;

/// Publishes the status of every machine.
pub(crate) async fn publish_all(pool: &PgPool, client: &AsyncClient) {
    publish(pool, client, None).await;
}

/// Publishes the status of the given machines (all when `None`) on their id topic and, when they have
/// one, their topic-name topic.
pub(crate) async fn publish(pool: &PgPool, client: &AsyncClient, ids: Option<&[i32]>) {
    let statuses = match machine_statuses(pool, ids).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot read machine status to publish: {e}");
            return;
        }
    };
    for s in statuses {
        let Ok(body) = serde_json::to_vec(&s) else { continue };
        let mut topics = vec![topic::status(&s.machine_id.to_string())];
        topics.extend(s.topic_name.as_deref().map(topic::status));
        for t in topics {
            if let Err(e) = client.publish(t, QoS::AtLeastOnce, true, body.clone()).await {
                tracing::warn!("cannot publish machine {} status: {e}", s.machine_id);
            }
        }
    }
}
