//! Who a connecting MQTT client is: the server itself, a device with its own credentials, or an anonymous
//! client where an administrator allowed those.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use oee_core::access::{Principal, SERVER_USER};
use oee_core::password;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::mpsc;

use crate::devices::{Change, Follower};

/// Why a CONNECT is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Unknown user, wrong password or a revoked device.
    BadCredentials,
    /// No credentials where they are required.
    NotAuthorized,
    /// The credentials cannot be checked now (the database is unreachable).
    Unavailable,
}

/// The rights of devices read now, or why they cannot be read: see [`Access::standing`].
pub type Standing<'a> = Pin<Box<dyn Future<Output = Result<HashMap<String, Vec<String>>, String>> + Send + 'a>>;

/// Decides who a connecting client is.
pub trait Access: Send + Sync + 'static {
    fn authenticate<'a>(
        &'a self,
        client_id: &'a str,
        login: Option<(&'a str, &'a str)>,
    ) -> Pin<Box<dyn Future<Output = Result<Principal, Refusal>> + Send + 'a>>;

    /// The rights of the devices `names` now: each active one with its machines' topic segments; a name
    /// missing from the answer was revoked. `Err` says why they cannot be read now.
    fn standing<'a>(&'a self, names: &'a [String]) -> Standing<'a>;

    /// A task that sends each announced change of a device to `changes` until it is closed; `None` when
    /// changes are not announced (the broker then relies on its periodic re-check alone).
    fn follow_changes(&self, changes: mpsc::Sender<Change>) -> Option<Follower> {
        let _ = changes;
        None
    }
}

/// Credentials from the database: the server's secret (user [`SERVER_USER`]) and each device's MQTT
/// password, stored as digests; anonymous clients only with `allow_anonymous`.
pub struct DbAccess {
    pub pool: PgPool,
    pub server_secret: String,
    pub allow_anonymous: bool,
}

impl Access for DbAccess {
    fn authenticate<'a>(
        &'a self,
        _client_id: &'a str,
        login: Option<(&'a str, &'a str)>,
    ) -> Pin<Box<dyn Future<Output = Result<Principal, Refusal>> + Send + 'a>> {
        Box::pin(async move {
            let Some((user, pass)) = login else {
                return if self.allow_anonymous { Ok(Principal::Anonymous) } else { Err(Refusal::NotAuthorized) };
            };
            if user == SERVER_USER {
                return if password::digest_matches(pass, &password::digest(&self.server_secret)) {
                    Ok(Principal::Server)
                } else {
                    Err(Refusal::BadCredentials)
                };
            }
            match oee_core::store::device::mqtt_login(&self.pool, user).await {
                Ok(Some(d)) if d.active && password::digest_matches(pass, &d.mqtt_password_digest) => {
                    Ok(Principal::Device { name: d.name, machines: d.machines })
                }
                Ok(_) => Err(Refusal::BadCredentials),
                Err(e) => {
                    tracing::warn!("cannot check MQTT credentials of `{user}`: {e}");
                    Err(Refusal::Unavailable)
                }
            }
        })
    }

    fn standing<'a>(&'a self, names: &'a [String]) -> Standing<'a> {
        Box::pin(async move {
            let rows = oee_core::store::device::standing(&self.pool, names).await.map_err(|e| e.to_string())?;
            Ok(rows.into_iter().collect())
        })
    }

    fn follow_changes(&self, changes: mpsc::Sender<Change>) -> Option<Follower> {
        Some(Box::pin(follow(self.pool.clone(), changes)))
    }
}

/// Listens on [`oee_core::store::device::CHANGED`] and passes every announcement on; after the listening
/// connection was lost (announcements made meanwhile are gone) it says [`Change::Missed`].
async fn follow(pool: PgPool, changes: mpsc::Sender<Change>) {
    let mut wait = Duration::from_millis(500);
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(sqlx::Error::PoolClosed) => return,
            Err(e) => {
                tracing::debug!("cannot listen for device changes yet: {e}");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        if let Err(e) = listener.listen(oee_core::store::device::CHANGED).await {
            tracing::debug!("cannot listen for device changes yet: {e}");
            tokio::time::sleep(wait).await;
            continue;
        }
        wait = Duration::from_millis(500);
        // Whatever was announced before this connection listened is looked at again.
        if changes.send(Change::Missed).await.is_err() {
            return;
        }
        loop {
            let change = match listener.try_recv().await {
                Ok(Some(n)) => Change::Device(n.payload().to_string()),
                // The connection was lost and made again: announcements in between are gone.
                Ok(None) => Change::Missed,
                Err(sqlx::Error::PoolClosed) => return,
                Err(e) => {
                    tracing::debug!("listening for device changes: {e}");
                    break;
                }
            };
            if changes.send(change).await.is_err() {
                return;
            }
        }
    }
}
