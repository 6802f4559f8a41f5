//! Who may publish and subscribe to what on the MQTT broker, decided in one place for every topic.
//!
//! Pure: a [`Principal`] and a topic or filter in, a yes or no out. The embedded broker's guard asks these
//! functions for every PUBLISH and SUBSCRIBE; the ACL written for an external Mosquitto says the same.
//!
//! - The server itself (ingest, bridge, scheduler) may do anything.
//! - A device may publish the commands of its own machines (never `session`, which only the server sends
//!   after checking a tablet's pairing), read its own machines' status, read the verdicts sent to its own
//!   reply prefix `oee/v1/replies/{device name}/…`, and use any topic outside `oee/` and `$…` freely.
//! - An anonymous client, only when an administrator allowed anonymous MQTT, may publish any machine's
//!   device commands and anything outside `oee/`, and subscribe to anything; like a device, it may never
//!   write a status, a verdict or a session command.

use crate::topic::{self, CommandKind};

/// The MQTT user name of the server's own clients; their password is the server's secret, kept in the
/// database.
pub const SERVER_USER: &str = "oee-server";

/// Root of every topic this server gives a meaning to.
const OURS: &str = "oee";

/// What a person may do, from least to most. Operators log in on tablets only; the browser is for viewers
/// (status, reports, exports), supervisors (also jobs, production, history edits, tablet logouts) and
/// administrators (also every setting, user and token).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Operator,
    Viewer,
    Supervisor,
    Admin,
}

impl Role {
    /// Every role, from least to most.
    pub const ALL: [Role; 4] = [Role::Operator, Role::Viewer, Role::Supervisor, Role::Admin];

    /// The role's name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Viewer => "viewer",
            Role::Supervisor => "supervisor",
            Role::Admin => "admin",
        }
    }

    /// Whether people with this role may sign in to the browser.
    pub fn signs_in_to_web(self) -> bool {
        self >= Role::Viewer
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("`{s}` is not a role: choose operator, viewer, supervisor or admin"))
    }
}

impl TryFrom<String> for Role {
    type Error = String;

    fn try_from(s: String) -> Result<Role, String> {
        s.parse()
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who is connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// One of the server's own clients, authenticated with the server's secret.
    Server,
    /// A device with its own credentials: its name and the topic segments (ids and topic names) of the
    /// machines it reports for.
    Device { name: String, machines: Vec<String> },
    /// A client without credentials, let in because `broker.allow_anonymous` is on.
    Anonymous,
}

/// Whether `who` may publish to `topic`. Topics that break MQTT's rules or are not printable ASCII are
/// refused to everybody.
pub fn may_publish(who: &Principal, topic_name: &str) -> bool {
    if !topic::valid_publish_topic(topic_name) {
        return false;
    }
    match who {
        Principal::Server => true,
        Principal::Anonymous => !is_ours(topic_name) || device_command(topic_name).is_some(),
        Principal::Device { machines, .. } => {
            if topic_name.starts_with('$') {
                return false;
            }
            if !is_ours(topic_name) {
                return true;
            }
            device_command(topic_name).is_some_and(|machine| machines.iter().any(|m| m == machine))
        }
    }
}

/// Whether `who` may subscribe to `filter`.
pub fn may_subscribe(who: &Principal, filter: &str) -> bool {
    if !topic::valid_filter(filter) {
        return false;
    }
    match who {
        Principal::Server => true,
        // Shared subscriptions are how ingest workers split the commands: nobody else may join them.
        Principal::Anonymous => !filter.starts_with("$share/"),
        Principal::Device { name, machines } => {
            let first = filter.split('/').next().unwrap_or_default();
            if first.starts_with('$') || first == "+" || first == "#" {
                return false;
            }
            if first != OURS {
                return true;
            }
            let own_status = machines.iter().any(|m| filter == topic::status(m));
            let replies = format!("{}/{name}/", topic::REPLIES);
            own_status || filter.strip_prefix(&replies).is_some_and(|rest| !rest.is_empty())
        }
    }
}

/// The prefix under which `device` may ask for verdicts (its `reply_to` topics).
pub fn reply_prefix(device: &str) -> String {
    format!("{}/{device}/", topic::REPLIES)
}

/// Whether a topic lies under `oee/`, whose meaning this server owns.
fn is_ours(topic_name: &str) -> bool {
    topic_name == OURS || topic_name.starts_with("oee/")
}

/// The machine segment of a device command topic (every command but `session`), or `None`.
fn device_command(topic_name: &str) -> Option<&str> {
    let (_, kind) = topic::parse_command(topic_name)?;
    if kind == CommandKind::Session {
        return None;
    }
    let rest = topic_name.strip_prefix(topic::MACHINES)?.strip_prefix('/')?;
    rest.split_once('/').map(|(machine, _)| machine)
}

/// Whether a device name can stand in a topic level: printable ASCII without `/`, `+`, `#`, 1–64 bytes.
pub fn valid_device_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Seals what only the server may send (tablet session commands) with the server's secret, so that ingest
/// can tell them from a forgery even on an external broker that lets anyone publish anywhere: an
/// HMAC-SHA256 of the command's fields, in hex.
pub struct ServerSeal {
    key: [u8; 64],
}

impl ServerSeal {
    /// A seal keyed with the server's secret.
    pub fn new(secret: &str) -> ServerSeal {
        use sha2::Digest;
        let mut key = [0u8; 64];
        if secret.len() > 64 {
            key[..32].copy_from_slice(&sha2::Sha256::digest(secret.as_bytes()));
        } else {
            key[..secret.len()].copy_from_slice(secret.as_bytes());
        }
        ServerSeal { key }
    }

    /// The seal of `text`.
    pub fn sign(&self, text: &str) -> String {
        use sha2::Digest;
        let pad = |byte: u8| self.key.map(|k| k ^ byte);
        let inner = sha2::Sha256::new().chain_update(pad(0x36)).chain_update(text.as_bytes()).finalize();
        let outer = sha2::Sha256::new().chain_update(pad(0x5c)).chain_update(inner).finalize();
        outer.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Whether `seal` is the seal of `text`, compared in constant time.
    pub fn verify(&self, text: &str, seal: &str) -> bool {
        crate::password::same_in_constant_time(&self.sign(text), seal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> Principal {
        Principal::Device { name: "plc-1".into(), machines: vec!["4".into(), "press-4".into()] }
    }

    #[test]
    fn who_may_publish_where() {
        use Principal::*;
        // (topic, server, anonymous, device)
        let table = [
            ("oee/v1/machines/4/state", true, true, true),
            ("oee/v1/machines/press-4/production", true, true, true),
            ("oee/v1/machines/4/history/activity", true, true, true),
            ("oee/v1/machines/5/state", true, true, false),
            ("oee/v1/machines/4/session", true, false, false),
            ("oee/v1/machines/4/status", true, false, false),
            ("oee/v1/replies/bridge/1", true, false, false),
            ("oee/v1/replies/plc-1/1", true, false, false),
            ("oee/anything", true, false, false),
            ("oee", true, false, false),
            ("plant/line1/temp", true, true, true),
            ("$SYS/x", true, true, false),
            ("é", false, false, false),
            ("a/+", false, false, false),
            ("", false, false, false),
        ];
        for (t, server, anonymous, dev) in table {
            assert_eq!(may_publish(&Server, t), server, "server {t}");
            assert_eq!(may_publish(&Anonymous, t), anonymous, "anonymous {t}");
            assert_eq!(may_publish(&device(), t), dev, "device {t}");
        }
    }

    #[test]
    fn who_may_subscribe_to_what() {
        use Principal::*;
        // (filter, server, anonymous, device)
        let table = [
            ("#", true, true, false),
            ("+/v1/machines/4/status", true, true, false),
            ("oee/v1/machines/+/status", true, true, false),
            ("oee/v1/machines/4/status", true, true, true),
            ("oee/v1/machines/press-4/status", true, true, true),
            ("oee/v1/machines/5/status", true, true, false),
            ("oee/v1/machines/4/state", true, true, false),
            ("oee/v1/replies/plc-1/#", true, true, true),
            ("oee/v1/replies/plc-1/abc", true, true, true),
            ("oee/v1/replies/plc-1/", true, true, false),
            ("oee/v1/replies/plc-2/#", true, true, false),
            ("oee/v1/replies/#", true, true, false),
            ("plant/#", true, true, true),
            ("$share/g/oee/v1/machines/+/state", true, false, false),
            ("é/#", false, false, false),
            ("a/#/b", false, false, false),
        ];
        for (f, server, anonymous, dev) in table {
            assert_eq!(may_subscribe(&Server, f), server, "server {f}");
            assert_eq!(may_subscribe(&Anonymous, f), anonymous, "anonymous {f}");
            assert_eq!(may_subscribe(&device(), f), dev, "device {f}");
        }
        assert_eq!(reply_prefix("plc-1"), "oee/v1/replies/plc-1/");
    }

    #[test]
    fn a_seal_is_an_hmac_that_only_the_secret_makes() {
        // RFC 4231, test case 2.
        let seal = ServerSeal::new("Jefe");
        assert_eq!(
            seal.sign("what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(seal.verify("what do ya want for nothing?", &seal.sign("what do ya want for nothing?")));
        assert!(!seal.verify("what do ya want for nothing!", &seal.sign("what do ya want for nothing?")));
        assert!(!ServerSeal::new("other").verify("x", &seal.sign("x")));
        assert!(!seal.verify("x", ""));
    }

    #[test]
    fn device_names_fit_in_one_topic_level() {
        for ok in ["plc-1", "Line_2.a", "x"] {
            assert!(valid_device_name(ok), "{ok}");
        }
        for bad in ["", "a/b", "a+", "#", "é", "a b", &"x".repeat(65)] {
            assert!(!valid_device_name(bad), "{bad}");
        }
    }
}
