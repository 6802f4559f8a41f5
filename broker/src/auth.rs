//! Who a connecting MQTT client is: the server itself, a device with its own credentials, or an anonymous
//! client where an administrator allowed those.

use std::future::Future;
use std::pin::Pin;

use oee_core::access::{Principal, SERVER_USER};
use oee_core::password;
use sqlx::PgPool;

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

/// Decides who a connecting client is.
pub trait Access: Send + Sync + 'static {
    fn authenticate<'a>(
        &'a self,
        client_id: &'a str,
        login: Option<(&'a str, &'a str)>,
    ) -> Pin<Box<dyn Future<Output = Result<Principal, Refusal>> + Send + 'a>>;
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
}
