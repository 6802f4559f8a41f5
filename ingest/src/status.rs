//! Retained status topics: after every committed change, and all of them again whenever ingest
//! (re)connects, because rumqttd keeps retained messages in memory only.
//!
//! One publisher task per ingest process reads the current status from the database and publishes it.
//! Requests that arrive while it is busy, or within 100 ms of its last round, are merged, so under a
//! burst a machine's status is published at most ten times a second, with its latest state, instead of
//! once per change (every change is in the database).

use std::collections::BTreeSet;

use tokio::sync::mpsc;

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
}

/// Starts the publisher task; it ends when every sender is gone.
pub(crate) fn start(
    pool: PgPool,
    client: AsyncClient,
) -> (mpsc::UnboundedSender<Request>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Request>();
    let task = tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut all = false;
            let mut ids = BTreeSet::new();
            let mut take = |r: Request| match r {
                Request::All => all = true,
                Request::Machines(m) => ids.extend(m),
            };
            take(first);
            while let Ok(r) = rx.try_recv() {
                take(r);
            }
            if all {
                publish(&pool, &client, None).await;
            } else {
                let ids: Vec<i32> = ids.into_iter().collect();
                publish(&pool, &client, Some(&ids)).await;
            }
            // At most one round per interval: a burst of changes costs one status per machine per round,
            // and the CPU stays with ingest.
            tokio::time::sleep(ROUND_INTERVAL).await;
        }
    });
    (tx, task)
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
