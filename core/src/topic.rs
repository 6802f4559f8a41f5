//! The MQTT topics of API v1. `{m}` is a machine's numeric id or its topic name (slug).

/// Root of every machine topic.
pub const MACHINES: &str = "oee/v1/machines";
/// Root of reply topics the bridge listens on.
pub const REPLIES: &str = "oee/v1/replies";

/// How a topic names its machine.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MachineRef {
    Id(i32),
    Slug(String),
}

impl std::fmt::Display for MachineRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MachineRef::Id(id) => write!(f, "{id}"),
            MachineRef::Slug(s) => write!(f, "`{s}`"),
        }
    }
}

/// What a command topic carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandKind {
    /// A change of activity (`…/state`).
    State,
    /// Readings to store (`…/telemetry`).
    Telemetry,
    /// Start a job (`…/job/start`).
    JobStart,
    /// End the running job (`…/job/end`).
    JobEnd,
    /// Parts made: increments or running totals (`…/production`).
    Production,
    /// Add a past activity or change one (`…/history/activity`).
    HistoryActivity,
    /// Add a past job or change one (`…/history/job`).
    HistoryJob,
    /// Add a production record or change one (`…/history/production`).
    HistoryProduction,
    /// An operator logs in or out on the machine's tablet (`…/session`).
    Session,
}

impl CommandKind {
    pub const ALL: [CommandKind; 9] = [
        CommandKind::State,
        CommandKind::Telemetry,
        CommandKind::JobStart,
        CommandKind::JobEnd,
        CommandKind::Production,
        CommandKind::HistoryActivity,
        CommandKind::HistoryJob,
        CommandKind::HistoryProduction,
        CommandKind::Session,
    ];

    /// The part of the topic after the machine, e.g. `job/start`.
    pub fn suffix(self) -> &'static str {
        match self {
            CommandKind::State => "state",
            CommandKind::Telemetry => "telemetry",
            CommandKind::JobStart => "job/start",
            CommandKind::JobEnd => "job/end",
            CommandKind::Production => "production",
            CommandKind::HistoryActivity => "history/activity",
            CommandKind::HistoryJob => "history/job",
            CommandKind::HistoryProduction => "history/production",
            CommandKind::Session => "session",
        }
    }

    /// Whether the command changes a machine's state (and so needs its row lock and its order kept).
    pub fn changes_state(self) -> bool {
        !matches!(self, CommandKind::Telemetry)
    }
}

/// The topic filter of one kind of command, for all machines.
pub fn command_filter(kind: CommandKind) -> String {
    format!("{MACHINES}/+/{}", kind.suffix())
}

/// The topic on which a machine's telemetry is published.
pub fn telemetry(machine: &str) -> String {
    format!("{MACHINES}/{machine}/telemetry")
}

/// The topic on which a machine's activity change is requested.
pub fn state(machine: &str) -> String {
    format!("{MACHINES}/{machine}/state")
}

/// The topic on which a machine's parts made are reported.
pub fn production(machine: &str) -> String {
    format!("{MACHINES}/{machine}/production")
}

/// The topic of any command for a machine.
pub fn command(machine: &str, kind: CommandKind) -> String {
    format!("{MACHINES}/{machine}/{}", kind.suffix())
}

/// The retained topic on which a machine's current status is published.
pub fn status(machine: &str) -> String {
    format!("{MACHINES}/{machine}/status")
}

/// Longest topic the server publishes to or lets a client name as a `reply_to`, in bytes.
pub const MAX_TOPIC_LEN: usize = 256;

/// Whether `topic` may be published to: MQTT 3.1.1's rules (non-empty, no wildcards, no NUL) and, beyond them,
/// printable ASCII of at most [`MAX_TOPIC_LEN`] bytes. Every topic this server uses is such a topic; the
/// limit keeps a client from steering the embedded broker into code that mishandles multi-byte characters.
pub fn valid_publish_topic(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= MAX_TOPIC_LEN
        && topic.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'+' && b != b'#')
}

/// Whether ingest may answer on `topic`: a publish topic under [`REPLIES`]. Verdicts go nowhere else, so
/// a `reply_to` cannot make the server publish a command, a status or anything outside its reply space.
pub fn valid_reply_topic(topic: &str) -> bool {
    valid_publish_topic(topic)
        && topic.strip_prefix(REPLIES).is_some_and(|rest| rest.len() > 1 && rest.starts_with('/'))
}

/// Whether `filter` may be subscribed to: MQTT 3.1.1's rules (non-empty; `#` only alone as the last level;
/// `+` only alone in a level; no NUL) and printable ASCII of at most [`MAX_TOPIC_LEN`] bytes.
pub fn valid_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.len() > MAX_TOPIC_LEN || !filter.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    let last = levels.len() - 1;
    levels.iter().enumerate().all(|(i, level)| match *level {
        "#" => i == last,
        "+" => true,
        l => !l.contains('+') && !l.contains('#'),
    })
}

/// The machine segment of a status topic (`oee/v1/machines/{m}/status`), or `None`.
pub fn parse_status(topic: &str) -> Option<&str> {
    let machine = topic.strip_prefix(MACHINES)?.strip_prefix('/')?.strip_suffix("/status")?;
    (!machine.is_empty() && !machine.contains('/')).then_some(machine)
}

/// The filter of every machine's status topic.
pub fn status_filter() -> String {
    format!("{MACHINES}/+/status")
}

/// Reads a command topic: which machine, which command. `None` for anything else.
pub fn parse_command(topic: &str) -> Option<(MachineRef, CommandKind)> {
    let rest = topic.strip_prefix(MACHINES)?.strip_prefix('/')?;
    let (machine, kind) = rest.split_once('/')?;
    let kind = CommandKind::ALL.into_iter().find(|k| k.suffix() == kind)?;
    Some((machine_ref(machine)?, kind))
}

/// A machine segment of a topic: digits are an id, anything else a slug.
pub fn machine_ref(segment: &str) -> Option<MachineRef> {
    if segment.is_empty() {
        return None;
    }
    if segment.bytes().all(|b| b.is_ascii_digit()) {
        segment.parse().ok().map(MachineRef::Id)
    } else {
        Some(MachineRef::Slug(segment.to_string()))
    }
}

/// A topic-safe name from a machine's name: lowercase ASCII letters and digits joined by `-`, never all
/// digits (those would read as an id).
pub fn slugify(name: &str) -> String {
    let mut out = String::new();
    for ch in name.chars() {
        if ch.is_ascii_alphanumeric() {
            out.push(ch.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    let out = out.trim_end_matches('-').to_string();
    if out.is_empty() || out.bytes().all(|b| b.is_ascii_digit()) { format!("m-{out}") } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_topics_name_machines_by_id_or_slug() {
        assert_eq!(parse_command("oee/v1/machines/12/state"), Some((MachineRef::Id(12), CommandKind::State)));
        assert_eq!(
            parse_command("oee/v1/machines/press-3/state"),
            Some((MachineRef::Slug("press-3".into()), CommandKind::State))
        );
        assert_eq!(parse_command("oee/v1/machines/3/telemetry"), Some((MachineRef::Id(3), CommandKind::Telemetry)));
        assert_eq!(parse_command("oee/v1/machines/3/job/start"), Some((MachineRef::Id(3), CommandKind::JobStart)));
        assert_eq!(
            parse_command("oee/v1/machines/m-3/job/end"),
            Some((MachineRef::Slug("m-3".into()), CommandKind::JobEnd))
        );
        assert_eq!(parse_command("oee/v1/machines/3/production"), Some((MachineRef::Id(3), CommandKind::Production)));
        assert_eq!(
            parse_command("oee/v1/machines/3/history/activity"),
            Some((MachineRef::Id(3), CommandKind::HistoryActivity))
        );
        assert_eq!(parse_command("oee/v1/machines/3/history/job"), Some((MachineRef::Id(3), CommandKind::HistoryJob)));
        assert_eq!(
            parse_command("oee/v1/machines/p/history/production"),
            Some((MachineRef::Slug("p".into()), CommandKind::HistoryProduction))
        );
        assert_eq!(parse_command("oee/v1/machines/3/job/pause"), None);
        assert_eq!(parse_command("oee/v1/machines/3/history"), None);
        for bad in ["oee/v1/machines//state", "oee/v1/machines/1/status", "oee/v1/machines/1", "x/1/state"] {
            assert_eq!(parse_command(bad), None, "{bad}");
        }
        // an id too large for the database is not a slug either
        assert_eq!(parse_command("oee/v1/machines/99999999999/state"), None);
    }

    #[test]
    fn every_kind_round_trips_through_its_topic_and_all_but_telemetry_change_state() {
        for kind in CommandKind::ALL {
            assert_eq!(parse_command(&command("7", kind)), Some((MachineRef::Id(7), kind)), "{kind:?}");
            assert_eq!(kind.changes_state(), kind != CommandKind::Telemetry, "{kind:?}");
        }
        assert_eq!(production("7"), "oee/v1/machines/7/production");
        assert_eq!(command_filter(CommandKind::HistoryJob), "oee/v1/machines/+/history/job");
    }

    #[test]
    fn slugs_are_topic_safe_and_never_look_like_ids() {
        assert_eq!(slugify("Machine 1"), "machine-1");
        assert_eq!(slugify("  CNC / Lathe #2 "), "cnc-lathe-2");
        assert_eq!(slugify("42"), "m-42");
        assert_eq!(slugify("ÄÖ"), "m-");
        assert_eq!(state("3"), "oee/v1/machines/3/state");
        assert_eq!(status("3"), "oee/v1/machines/3/status");
        assert_eq!(parse_status("oee/v1/machines/press-3/status"), Some("press-3"));
        assert_eq!(parse_status("oee/v1/machines/3/state"), None);
        assert_eq!(parse_status("oee/v1/machines//status"), None);
        assert_eq!(parse_status("oee/v1/machines/a/b/status"), None);
    }
    #[test]
    fn verdicts_are_answered_only_under_the_replies_root() {
        assert!(valid_reply_topic("oee/v1/replies/plc-1/42"));
        assert!(valid_reply_topic("oee/v1/replies/x"));
        for bad in [
            "oee/v1/replies",
            "oee/v1/replies/",
            "oee/v1/repliesx/1",
            "oee/v1/machines/5/state",
            "a/b",
            "oee/v1/replies/é",
        ] {
            assert!(!valid_reply_topic(bad), "{bad}");
        }
    }

    #[test]
    fn topics_and_filters_are_plain_ascii_within_mqtt_rules() {
        for ok in ["oee/v1/machines/1/state", "a", "/", "oee/v1/replies/bridge-1/x y"] {
            assert!(valid_publish_topic(ok), "{ok}");
        }
        let long = "a".repeat(MAX_TOPIC_LEN + 1);
        for bad in ["", "é", "a/é", "a/+", "#", "a\0b", "tab\t", long.as_str()] {
            assert!(!valid_publish_topic(bad), "{bad:?}");
        }
        for ok in ["#", "+", "a/#", "a/+/b", "+/+", "oee/v1/machines/+/status", "$share/g/a/+"] {
            assert!(valid_filter(ok), "{ok}");
        }
        for bad in ["", "é/#", "a/#/b", "a#", "a/b+", "+a", "a\0", long.as_str()] {
            assert!(!valid_filter(bad), "{bad:?}");
        }
    }
}
