//! A bounded, deterministic fuzz pass over everything a client can send the server: the payload of every MQTT
//! command topic (anonymously, and as the server for tablet sessions, sealed or not) and the body, content
//! type, query string and path segments of every HTTP route. Whatever arrives, the server answers 2xx or 4xx
//! and never 5xx, nothing in it panics, every refused command is kept exactly once, and afterwards every
//! service is still up and ingest still applies valid commands, each exactly once.
//!
//! Inputs come from a seeded generator. Each case is drawn from (seed, target, case number) alone, so a
//! failure names the case to replay; `OEE_FUZZ_SEED=<n>` runs another seed and `OEE_FUZZ_CASES=<n>` another
//! number of cases per target.

mod common;

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use common::*;
use oee_core::access::{self, Principal};
use oee_core::payload::SessionCommand;
use oee_core::topic::{self, CommandKind};
use oee_core::verdict::Verdict;
use reqwest::Method;
use rumqttc::QoS;
use serde_json::{Map, Value, json};

/// The seed when `OEE_FUZZ_SEED` gives none: fixed, so that every run tries the same inputs.
const DEFAULT_SEED: u64 = 0x0EE0_F022_5EED;
/// Cases per target when `OEE_FUZZ_CASES` gives no number.
const DEFAULT_CASES: usize = 300;
/// Where the commands that must be answered ask for their verdicts.
const TRACKED: &str = "oee/v1/replies/test/fuzz";
/// Where commands whose `reply_to` may or may not be usable ask for theirs: never a 5xx, however many.
const LOOSE: &str = "oee/v1/replies/test/fuzz-loose";
/// Outside the server's topics: says when the verdict topics are subscribed.
const READY: &str = "fuzz-test/ready";

fn seed() -> u64 {
    std::env::var("OEE_FUZZ_SEED").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(DEFAULT_SEED)
}

fn cases() -> usize {
    std::env::var("OEE_FUZZ_CASES").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(DEFAULT_CASES)
}

// ---------------------------------------------------------------------------------------------------------
// The generator

/// SplitMix64: small, fast, and the same numbers on every machine.
struct Rng(u64);

impl Rng {
    /// The generator of one case: independent of every other case, so any one can be replayed alone.
    fn for_case(seed: u64, target: usize, case: usize) -> Rng {
        let mix = |x: u64| Rng(x).next();
        Rng(mix(mix(mix(seed) ^ target as u64) ^ case as u64))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// True in `percent` out of 100 draws.
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())].clone()
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }

    /// Random bytes, fewer than `max`.
    fn bytes_up_to(&mut self, max: usize) -> Vec<u8> {
        let len = self.below(max);
        self.bytes(len)
    }
}

/// Text that has broken parsers before: number look-alikes, NaN spellings, NUL and other control
/// characters, multi-byte and right-to-left text, MQTT wildcards, injection attempts.
const TEXTS: &[&str] = &[
    "",
    " ",
    "x",
    "NaN",
    "nan",
    "Infinity",
    "-Infinity",
    "inf",
    "1e999",
    "-1e999",
    "-1",
    "0",
    "1",
    "12",
    "12.0",
    " 7 ",
    "2.5",
    "-0",
    "0x10",
    "1_000",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "2147483648",
    "99999999999999999999",
    "null",
    "true",
    "login",
    "logout",
    "[]",
    "{}",
    "%00",
    "%ff%fe",
    "\u{0}",
    "a\u{0}b",
    "é",
    "日本語",
    "🏭",
    "\u{202e}rtl",
    "e\u{301}",
    "\t\r\n",
    "\u{7f}\u{1b}[2J",
    "\u{fffd}",
    "\u{feff}",
    "'; DROP TABLE machine; --",
    "../../etc/passwd",
    "<script>alert(1)</script>",
    "oee/v1/machines/+/state",
    "#",
    "$SYS/broker",
    "12:30",
    "25:61",
    "00:00",
    "23:59",
];

/// Dates and times at the edges of what parsers and PostgreSQL take, and plausible ones around now.
fn timestamp(rng: &mut Rng) -> String {
    let now = Utc::now();
    let micros = |t: chrono::DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Micros, true);
    match rng.below(22) {
        0 => "0000-01-01T00:00:00Z".into(),
        1 => "0001-01-01T00:00:00Z".into(),
        2 => "9999-12-31T23:59:59.999999999Z".into(),
        3 => "1970-01-01T00:00:00Z".into(),
        4 => "2026-02-30T00:00:00Z".into(),
        5 => "2026-01-01T23:59:60Z".into(),
        6 => "2026-01-05T09:00:00+23:59".into(),
        7 => "2026-01-05T09:00:00-23:59".into(),
        8 => "2026-01-05 09:00:00".into(),
        9 => "2026-01-05".into(),
        10 => "+262143-01-01T00:00:00Z".into(),
        11 => "1969-12-31T23:59:59.999999999999Z".into(),
        12 => "4714-11-24T00:00:00-23:59".into(),
        13 => format!("{}T00:00:00Z", rng.pick(&["-0001-01-01", "10000-01-01", "99999-12-31"])),
        14 => micros(now + chrono::Duration::seconds(1 + rng.below(86_400 * 10) as i64)),
        15 => micros(now + chrono::Duration::seconds(rng.below(300) as i64)),
        _ => micros(now - chrono::Duration::seconds(rng.below(86_400 * 3) as i64)),
    }
}

/// A date for the report endpoints: plausible, at the edges of the calendar, or not a date.
fn date(rng: &mut Rng) -> String {
    let today = Utc::now().date_naive();
    match rng.below(12) {
        0 => "0000-01-01".into(),
        1 => "9999-12-31".into(),
        2 => "+262142-12-31".into(),
        3 => "262143-01-01".into(),
        4 => "-262144-01-01".into(),
        5 => "2026-02-30".into(),
        6 => "2026-1-5".into(),
        7 => (today + chrono::Duration::days(1 + rng.below(1000) as i64)).to_string(),
        _ => (today - chrono::Duration::days(rng.below(40) as i64)).to_string(),
    }
}

/// Any string: tricky, printable, random Unicode, a time, or long.
fn text(rng: &mut Rng) -> String {
    match rng.below(8) {
        0..=2 => rng.pick(TEXTS).to_string(),
        3 => timestamp(rng),
        4 => (0..rng.below(40)).map(|_| (0x20 + rng.below(0x5f)) as u8 as char).collect(),
        5 => (0..rng.below(20))
            .map(|_| {
                let ranges = [(0u32, 0x20u32), (0x80, 0x800), (0x800, 0xd800), (0xe000, 0x10000), (0x10000, 0x110000)];
                let (lo, hi) = rng.pick(&ranges);
                char::from_u32(lo + rng.below((hi - lo) as usize) as u32).unwrap_or('?')
            })
            .collect(),
        6 => rng.pick(TEXTS).repeat(1 + rng.below(300)),
        _ => rng.pick(&["x", "é", "🏭", "\u{0}", "9"]).repeat(1000 + rng.below(60_000)),
    }
}

/// A number at the edges of what JSON, i64, i32, f64 and PostgreSQL's columns hold, or an ordinary one.
fn number(rng: &mut Rng) -> Value {
    match rng.below(16) {
        0 => json!(i64::MAX),
        1 => json!(i64::MIN),
        2 => json!(u64::MAX),
        3 => json!(i32::MAX as i64 + 1),
        4 => json!(i32::MIN),
        5 => json!(9.0e15),
        6 => json!(1.0e308),
        7 => json!(-1.0e308),
        8 => json!(5e-324),
        9 => json!(-0.0),
        10 => json!(0.5),
        11 => json!(2.0),
        12 => json!(rng.next() as i64),
        _ => json!(rng.below(14) as i64 - 3),
    }
}

/// Any JSON value, nesting at most `depth` levels.
fn value(rng: &mut Rng, depth: usize) -> Value {
    let kinds = if depth == 0 { 4 } else { 7 };
    match rng.below(kinds) {
        0 => Value::Null,
        1 => Value::Bool(rng.chance(50)),
        2 => number(rng),
        3 => Value::String(text(rng)),
        4 => Value::Array((0..rng.below(4)).map(|_| value(rng, depth - 1)).collect()),
        5 => Value::Object((0..rng.below(4)).map(|_| (key(rng), value(rng, depth - 1))).collect()),
        // Nested arrays, deep but within what JSON parsers take (serde_json stops at 128 levels).
        _ => (0..rng.below(100)).fold(value(rng, 0), |v, _| json!([v])),
    }
}

/// A field name no command knows (a few that are near misses of known ones).
fn key(rng: &mut Rng) -> String {
    match rng.below(4) {
        0 => rng
            .pick(&[
                "Machine_State",
                "activity_code",
                "user",
                "timestamp ",
                "goods",
                "jobNumber",
                "id",
                "",
                "__proto__",
            ])
            .to_string(),
        _ => {
            let k = text(rng);
            let k: String = k.chars().take(200).collect();
            if ["request_id", "reply_to", "fuzz_case"].contains(&k.as_str()) { format!("{k}_") } else { k }
        }
    }
}

/// A value for a field a command or request knows: one that may well be accepted, so that the cases reach
/// past parsing into the state machine, the history editor and the database; when `wild`, also edge cases
/// and sometimes anything at all.
fn field(rng: &mut Rng, name: &str, ids: &Ids, wild: bool) -> Value {
    if wild && rng.chance(30) {
        return value(rng, 3);
    }
    if !wild {
        let now = Utc::now();
        match name {
            "timestamp" | "start_time" | "end_time" | "issued_at" | "received_at" => {
                let ago = chrono::Duration::seconds(rng.below(86_400 * 3) as i64);
                return json!((now - ago).to_rfc3339_opts(SecondsFormat::Micros, true));
            }
            "job_note" | "notes" | "downtime_reason" => return json!(format!("note {}", rng.below(100))),
            "job_number" => return json!(format!("J{}", rng.below(100))),
            "good" | "rejects" | "good_total" | "rejects_total" | "quantity_good" => {
                return json!(rng.below(20) as i64);
            }
            _ => {}
        }
    }
    let small = |rng: &mut Rng, n: usize| json!(rng.below(n) as i64);
    match name {
        "machine_state" => rng.pick(&[json!(0), json!(1), json!(2), json!("1"), json!(1.0)]),
        "activity_code_id" => rng.pick(&[json!(1), json!(2), json!(3), json!(4), json!(5), json!("2"), json!(0)]),
        "user_id" => rng.pick(&[json!(1), json!(ids.user), json!(0), json!(99_999), json!("1")]),
        "machine_id" => rng.pick(&[json!(ids.machine), json!(ids.machine.to_string()), json!(0), json!(99_999)]),
        "timestamp" | "start_time" | "end_time" | "issued_at" | "received_at" => json!(timestamp(rng)),
        "job_note" | "notes" | "downtime_reason" => json!(text(rng)),
        "job_number" => {
            let options = [json!(format!("J{}", rng.below(100))), json!(rng.below(1000)), json!(text(rng))];
            rng.pick(&options)
        }
        "ideal_cycle_time_s" | "ideal_cycle_time" | "planned_time" | "planned_quantity" => {
            let options = [json!(12.5), json!(0), json!("30"), json!(-1), number(rng)];
            rng.pick(&options)
        }
        "good" | "rejects" | "good_total" | "rejects_total" | "quantity_good" => {
            let options = [small(rng, 20), json!("7"), json!("2.0"), json!(-1), number(rng)];
            if rng.chance(80) { options[0].clone() } else { rng.pick(&options[1..]) }
        }
        "activity_id" | "job_id" | "record_id" => {
            if rng.chance(80) {
                json!(1 + rng.below(40) as i64)
            } else {
                number(rng)
            }
        }
        "input_device_id" => rng.pick(&[json!(ids.tablet), json!(1), json!(2), json!(99_999)]),
        "action" => rng.pick(&[json!("login"), json!("logout"), json!("LOGIN"), json!(1)]),
        "seal" => json!(hex(rng, 64)),
        "device_uuid" => {
            let options = [json!(ids.uuid), json!(text(rng)), json!("0"), json!(42)];
            if rng.chance(70) { options[0].clone() } else { rng.pick(&options[1..]) }
        }
        "password" => rng.pick(&[json!("digitme2"), json!("0000"), json!(""), json!(1234)]),
        _ => value(rng, 2),
    }
}

fn hex(rng: &mut Rng, len: usize) -> String {
    (0..len).map(|_| char::from_digit(rng.below(16) as u32, 16).unwrap_or('0')).collect()
}

/// Ids of rows the cases aim at.
struct Ids {
    machine: i32,
    user: i32,
    tablet: i32,
    uuid: String,
}

/// Fields a command topic (and the HTTP command API) reads.
fn command_fields(kind: CommandKind) -> &'static [&'static str] {
    match kind {
        CommandKind::State => &["machine_state", "activity_code_id", "user_id", "timestamp", "job_note", "received_at"],
        CommandKind::Telemetry => &["timestamp", "received_at"],
        CommandKind::JobStart => &["job_number", "ideal_cycle_time_s", "user_id", "timestamp"],
        CommandKind::JobEnd => &["good", "rejects", "user_id", "timestamp"],
        CommandKind::Production => &["good", "rejects", "good_total", "rejects_total", "timestamp"],
        CommandKind::HistoryActivity => &["activity_id", "activity_code_id", "start_time", "end_time", "user_id"],
        CommandKind::HistoryJob => {
            &["job_id", "job_number", "ideal_cycle_time_s", "start_time", "end_time", "good", "rejects"]
        }
        CommandKind::HistoryProduction => &["record_id", "job_id", "start_time", "end_time", "good", "rejects"],
        CommandKind::Session => &["action", "input_device_id", "user_id", "issued_at", "seal"],
    }
}

/// An object of known fields, each present or not (see [`field`] for `wild`), and, when `wild`, a few
/// unknown ones.
fn object(rng: &mut Rng, fields: &[&str], ids: &Ids, wild: bool) -> Map<String, Value> {
    let mut obj = Map::new();
    for name in fields {
        if rng.chance(60) {
            obj.insert(name.to_string(), field(rng, name, ids, wild));
        }
    }
    if wild {
        for _ in 0..rng.below(3) {
            obj.insert(key(rng), value(rng, 3));
        }
    }
    obj
}

/// A payload that is not a JSON object a command could be read from (nor its reply topic salvaged).
fn unreadable(rng: &mut Rng) -> Vec<u8> {
    let wrapped = |inner: &[u8]| {
        let mut b = format!("{{\"reply_to\":\"{TRACKED}\",\"request_id\":\"unreadable\",\"x\":").into_bytes();
        b.extend_from_slice(inner);
        b.push(b'}');
        b
    };
    match rng.below(8) {
        0 => Vec::new(),
        1 => rng.bytes_up_to(300),
        // Invalid UTF-8 inside a string.
        2 => wrapped(&[b'"', 0xff, 0xfe, b'"']),
        3 => wrapped(&[b'"', 0xc3, b'"']),
        // Deeper than any JSON parser here goes.
        4 => wrapped(
            &format!("{}1{}", "[".repeat(129 + rng.below(5000)), "]".repeat(129 + rng.below(5000))).into_bytes(),
        ),
        5 => wrapped(b"NaN"),
        6 => serde_json::to_vec(&rng.pick(&[json!([1, 2]), json!(17), json!("state"), json!(null)])).unwrap(),
        _ => {
            let mut b = serde_json::to_vec(&json!({"reply_to": TRACKED, "request_id": "truncated"})).unwrap();
            b.truncate(rng.below(b.len()));
            b
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Panics

thread_local! {
    /// Set on the test's own thread, whose assertion failures are not the server's panics.
    static TEST_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// Panics anywhere in the process but the tests' own threads: the server's.
static SERVER_PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Starts recording the server's panics (once per process) and marks this thread as the test's.
fn watch_panics() {
    // `RUST_LOG=warn` shows what the server logged while replaying a case.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    static HOOK: std::sync::Once = std::sync::Once::new();
    TEST_THREAD.with(|t| t.set(true));
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !TEST_THREAD.with(Cell::get) {
                let thread = std::thread::current().name().unwrap_or("unnamed").to_string();
                SERVER_PANICS.lock().unwrap_or_else(|p| p.into_inner()).push(format!("{thread}: {info}"));
            }
            previous(info);
        }));
    });
}

fn assert_no_server_panics() {
    let panics = SERVER_PANICS.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert!(panics.is_empty(), "the server panicked {} times: {panics:#?}", panics.len());
}

/// At most `max` characters of `text`, for failure messages.
fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(max).collect::<String>())
    }
}

// ---------------------------------------------------------------------------------------------------------
// MQTT

/// Who publishes a case.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Publisher {
    Anonymous,
    Server,
}

/// One published case and what it must come to.
struct Case {
    what: String,
    kind: CommandKind,
    /// Whether ingest must answer it on [`TRACKED`].
    answered: bool,
    /// Whether it may be answered there: it must be, or its size is near the broker's limit.
    may_answer: bool,
    /// The telemetry marker it carries, if it is a telemetry case.
    telemetry_tag: Option<u64>,
}

/// The machine segment of a case's topic: the machine's id or topic name mostly, else junk.
fn machine_segment(rng: &mut Rng, id: i32, slug: &str) -> String {
    match rng.below(10) {
        0..=4 => id.to_string(),
        5 | 6 => slug.to_string(),
        7 => rng
            .pick(&[
                "0",
                "-1",
                "99999",
                "2147483648",
                "99999999999",
                "01",
                "Fuzz-Press",
                "fuzz press",
                "ünï",
                "+",
                "#",
                "",
                "a\u{0}b",
                "%2F",
                " ",
                "$SYS",
                "\u{7f}",
            ])
            .to_string(),
        8 => (0..1 + rng.below(20)).map(|_| (0x20 + rng.below(0x5f)) as u8 as char).filter(|c| *c != '/').collect(),
        _ => "a".repeat(200 + rng.below(100)),
    }
}

/// The largest payload the fuzz pass expects the broker to pass on (it takes 256 KiB packets by default).
const MAX_PAYLOAD: usize = 200 * 1024;

/// A client for publishing only; `login` is a user name and password.
async fn publisher(t: &TestApp, id: &str, login: Option<(&str, &str)>) -> rumqttc::AsyncClient {
    mqtt_client_as(t.mqtt_port, id, login).await.0
}

/// Whether ingest is subscribed to `topic` (`oee/v1/machines/+/{command}`).
fn ingest_hears(topic_name: &str) -> bool {
    let Some(rest) = topic_name.strip_prefix(topic::MACHINES).and_then(|r| r.strip_prefix('/')) else { return false };
    rest.split_once('/').is_some_and(|(machine, command)| {
        !machine.contains('/') && CommandKind::ALL.iter().any(|k| k.suffix() == command)
    })
}

/// Every command topic, with random payloads, through the embedded broker into ingest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzzed_mqtt_commands_are_all_answered_below_500_and_ingest_keeps_applying_exactly_once() {
    watch_panics();
    let (seed, n) = (seed(), cases());
    println!("fuzz seed {seed} ({n} cases per target): replay with OEE_FUZZ_SEED={seed}");
    let t = spawn_app().await;
    let m = t.add_machine("Fuzz Press").await;
    let slug = "fuzz-press";
    let tablet = register_tablet(&t, "fuzz-mqtt-tablet").await;
    let ids = Ids { machine: m, user: 1, tablet, uuid: "fuzz-mqtt-tablet".into() };
    let secret = oee_core::store::device::server_secret(&t.pool).await.unwrap();
    let seal = oee_core::access::ServerSeal::new(&secret);

    let (listener, mut rx) = t.mqtt_client("fuzz-verdicts").await;
    // The broker takes subscriptions in order: once the last one carries a message, the others are in place.
    for filter in [TRACKED, LOOSE, READY] {
        listener.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    }
    listener.publish(READY, QoS::AtLeastOnce, false, "{}").await.unwrap();
    let _ = next_on(&mut rx, READY).await;
    let device = publisher(&t, "fuzz-device", None).await;
    let server = publisher(&t, "fuzz-server", Some((access::SERVER_USER, &secret))).await;
    // Payloads larger than the broker takes end their connection: they go on one of their own.
    let oversize = publisher(&t, "fuzz-oversize", None).await;
    let mut oversized = 0usize;

    let mut cases: HashMap<String, Case> = HashMap::new();
    let mut telemetry_tag = 0u64;
    // Case by case across the commands, so that jobs start and end, and history meets live changes.
    for i in 0..n {
        for (target, kind) in CommandKind::ALL.into_iter().enumerate() {
            let mut rng = Rng::for_case(seed, target, i);
            // A tame case names the machine and sends plausible fields only: it is often applied.
            let wild = rng.chance(60);
            let segment =
                if wild { machine_segment(&mut rng, m, slug) } else { rng.pick(&[m.to_string(), slug.into()]) };
            let topic_name = topic::command(&segment, kind);
            let publisher =
                if kind == CommandKind::Session || rng.chance(10) { Publisher::Server } else { Publisher::Anonymous };
            let request_id = format!("fz-{target}-{i}");
            let mut tag = None;
            let (payload, answered) = match rng.below(20) {
                0..=2 => (unreadable(&mut rng), false),
                3 => {
                    // A reply topic or request id that may not be usable: answered on LOOSE or not at all.
                    let mut obj = object(&mut rng, command_fields(kind), &ids, wild);
                    let reply = rng.pick(&[
                        json!(LOOSE),
                        json!("oee/v1/replies"),
                        json!("oee/v1/replies/"),
                        json!("oee/v1/machines/1/state"),
                        json!(format!("{LOOSE}/+")),
                        json!(format!("{LOOSE}/é")),
                        json!(format!("{LOOSE}/{}", "x".repeat(300))),
                        json!(7),
                        json!(null),
                    ]);
                    obj.insert("reply_to".into(), reply);
                    let id = rng.pick(&[json!("lz"), json!(5), json!("l".repeat(300)), json!(null), json!("")]);
                    obj.insert("request_id".into(), id);
                    (serde_json::to_vec(&obj).unwrap(), false)
                }
                _ => {
                    let mut obj = object(&mut rng, command_fields(kind), &ids, wild);
                    if kind == CommandKind::Telemetry {
                        for i in 0..rng.below(4) {
                            let name = if wild { key(&mut rng) } else { format!("reading_{i}") };
                            obj.insert(name, number(&mut rng));
                        }
                        if wild && rng.chance(5) {
                            for k in 0..300 {
                                obj.insert(format!("r{k}"), json!(k));
                            }
                        }
                        telemetry_tag += 1;
                        tag = Some(telemetry_tag);
                        obj.insert("fuzz_case".into(), json!(telemetry_tag));
                    }
                    obj.insert("request_id".into(), json!(request_id));
                    obj.insert("reply_to".into(), json!(TRACKED));
                    let mut payload = serde_json::to_vec(&obj).unwrap();
                    // Half the server's session commands carry a valid seal, so they reach the session logic.
                    if kind == CommandKind::Session
                        && rng.chance(50)
                        && let Ok(mut c) = SessionCommand::parse(&payload)
                    {
                        c.seal(&topic_name, &seal, Utc::now());
                        payload = serde_json::to_vec(&c).unwrap();
                    }
                    (payload, true)
                }
            };
            let principal = match publisher {
                Publisher::Anonymous => Principal::Anonymous,
                Publisher::Server => Principal::Server,
            };
            let fits = payload.len() <= MAX_PAYLOAD;
            oversized += usize::from(!fits);
            let client = match publisher {
                _ if !fits => &oversize,
                Publisher::Server => &server,
                Publisher::Anonymous => &device,
            };
            let what = format!(
                "seed {seed} target {target} case {i}: {publisher:?} on {topic_name:?}: {}",
                clip(&String::from_utf8_lossy(&payload), 300)
            );
            // rumqttc refuses topics with wildcards itself; the broker drops what a client may not publish.
            let sent = client.publish(topic_name.clone(), QoS::AtLeastOnce, false, payload).await.is_ok();
            let reaches_ingest = sent && access::may_publish(&principal, &topic_name) && ingest_hears(&topic_name);
            let may_answer = answered && reaches_ingest;
            let answered = may_answer && fits;
            cases.insert(
                request_id,
                Case { what, kind, answered, may_answer, telemetry_tag: tag.filter(|_| may_answer) },
            );
        }
    }

    // Every answered case gets exactly one verdict, 2xx or 4xx, whose `ok` says whether it is 200.
    let expected: HashSet<&String> = cases.iter().filter(|(_, c)| c.answered).map(|(id, _)| id).collect();
    let mut verdicts: HashMap<String, Verdict> = HashMap::new();
    let mut loose = 0usize;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !expected.iter().all(|id| verdicts.contains_key(*id)) {
        let Ok(Some(p)) = tokio::time::timeout_at(deadline, rx.recv()).await else {
            let missing: Vec<&str> =
                expected.iter().filter(|id| !verdicts.contains_key(**id)).map(|id| cases[*id].what.as_str()).collect();
            panic!(
                "{} commands got no verdict within 60 s, e.g. {:#?}",
                missing.len(),
                &missing[..missing.len().min(5)]
            );
        };
        if p.topic == READY {
            continue;
        }
        let v: Verdict = serde_json::from_slice(&p.payload)
            .unwrap_or_else(|e| panic!("unreadable verdict on {}: {e}: {:?}", p.topic, p.payload));
        assert!((200..500).contains(&v.status), "verdict {v:?} on {}", p.topic);
        assert_eq!(v.ok, v.status == 200, "{v:?}");
        if p.topic == LOOSE {
            loose += 1;
            continue;
        }
        let id = v.request_id.clone().unwrap_or_default();
        let case = cases.get(&id).unwrap_or_else(|| panic!("a verdict for no command sent: {v:?}"));
        assert!(case.may_answer, "a verdict for a command that cannot be answered: {v:?} for {}", case.what);
        if let Some(first) = verdicts.insert(id, v.clone()) {
            panic!("two verdicts for one command: {first:?} and {v:?} for {}", case.what);
        }
    }
    let applied = verdicts.values().filter(|v| v.ok).count();
    println!(
        "{} commands published ({oversized} larger than the broker takes), {} answered ({applied} applied), \
         {loose} loose verdicts",
        cases.len(),
        verdicts.len()
    );
    for kind in CommandKind::ALL {
        let of_kind = verdicts.iter().filter(|(id, _)| cases[*id].kind == kind);
        let ok = of_kind.clone().filter(|(_, v)| v.ok).count();
        println!("  {:<20} {} answered, {ok} applied", kind.suffix(), of_kind.count());
    }

    // Each refusal is kept once, with its payload; nothing applied is kept as refused.
    let kept: Vec<Vec<u8>> = sqlx::query_scalar("SELECT payload FROM raw_event").fetch_all(&t.pool).await.unwrap();
    let mut kept_ids: HashMap<String, usize> = HashMap::new();
    for payload in kept {
        if let Ok(Value::Object(o)) = serde_json::from_slice::<Value>(&payload)
            && let Some(Value::String(id)) = o.get("request_id")
            && verdicts.contains_key(id)
        {
            *kept_ids.entry(id.clone()).or_default() += 1;
        }
    }
    for (id, v) in &verdicts {
        let want = usize::from(!v.ok);
        let got = kept_ids.get(id).copied().unwrap_or(0);
        assert_eq!(got, want, "{got} raw events for {v:?} of {}", cases[id].what);
    }

    // Each applied reading is stored once; no refused one is.
    let stored: Vec<f64> =
        sqlx::query_scalar("SELECT value FROM telemetry WHERE key = 'fuzz_case'").fetch_all(&t.pool).await.unwrap();
    let mut stored_tags: HashMap<u64, usize> = HashMap::new();
    for tag in stored {
        *stored_tags.entry(tag as u64).or_default() += 1;
    }
    for (id, case) in &cases {
        if let Some(tag) = case.telemetry_tag {
            let want = usize::from(verdicts.get(id).is_some_and(|v| v.ok));
            assert_eq!(stored_tags.remove(&tag).unwrap_or(0), want, "telemetry stored for {}", case.what);
        }
    }
    assert!(stored_tags.is_empty(), "readings stored that no verdict applied: {stored_tags:?}");

    assert_still_serving(&t, m).await;
    // Nothing was answered twice meanwhile.
    while let Ok(p) = rx.try_recv() {
        assert_ne!(p.topic, TRACKED, "a second verdict: {:?}", String::from_utf8_lossy(&p.payload));
    }
    assert_no_server_panics();
}

// ---------------------------------------------------------------------------------------------------------
// HTTP

/// What an error answer of a route must look like.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Errors {
    /// JSON with an `error` or `message` saying what was wrong.
    Json,
    /// The tablet API's reference answers: JSON `{"success": false, …}` or a fixed text.
    Tablet,
    /// The reference's OEE endpoints: a plain message.
    Text,
    /// Answers of the framework (websocket upgrades): any 4xx.
    Any,
}

/// A route of the server and how its requests are made up.
#[derive(Debug, Clone, Copy)]
struct Route {
    method: &'static str,
    /// `{m}` is a machine segment, `{cmd}` a command, `{id}` a tablet id.
    path: &'static str,
    /// Fields of its body, or `None` for a route without one.
    body: Option<&'static [&'static str]>,
    /// Query keys it reads.
    query: &'static [&'static str],
    errors: Errors,
}

const fn route(
    method: &'static str,
    path: &'static str,
    body: Option<&'static [&'static str]>,
    query: &'static [&'static str],
    errors: Errors,
) -> Route {
    Route { method, path, body, query, errors }
}

const START_JOB: &[&str] =
    &["device_uuid", "job_number", "ideal_cycle_time", "planned_time", "planned_quantity", "start_time"];

/// Every HTTP route.
const ROUTES: &[Route] = &[
    route(
        "POST",
        "/api/machine-state-change",
        Some(&["machine_id", "machine_state", "activity_code_id", "user_id", "timestamp"]),
        &[],
        Errors::Json,
    ),
    route("GET", "/api/activity-codes", None, &[], Errors::Json),
    route("POST", "/api/v1/machines/{m}/{cmd}", Some(&[]), &[], Errors::Json),
    route("GET", "/check-state", None, &["device_uuid"], Errors::Tablet),
    route("POST", "/android-login", Some(&["device_uuid", "user_id", "password"]), &[], Errors::Tablet),
    route("POST", "/android-logout", Some(&["device_uuid"]), &[], Errors::Tablet),
    route("POST", "/android-start-job", Some(START_JOB), &[], Errors::Tablet),
    route("POST", "/android-update", Some(&["device_uuid", "activity_code_id"]), &[], Errors::Tablet),
    route("POST", "/android-end-job", Some(&["device_uuid", "quantity_good", "rejects"]), &[], Errors::Tablet),
    route("POST", "/pausable-pause-job", Some(&["device_uuid"]), &[], Errors::Tablet),
    route("POST", "/pausable-resume-job", Some(&["device_uuid", "downtime_reason", "notes"]), &[], Errors::Tablet),
    route("POST", "/pausable-android-update", Some(&["device_uuid", "activity_code_id"]), &[], Errors::Tablet),
    route("POST", "/android-update-quantity", Some(&["device_uuid", "quantity_good", "rejects"]), &[], Errors::Tablet),
    route("POST", "/end_all_sessions", Some(&[]), &[], Errors::Tablet),
    route("POST", "/api/force-logout/{id}", Some(&[]), &[], Errors::Tablet),
    route("GET", "/api/v1/tablets/machines", None, &[], Errors::Tablet),
    route("POST", "/api/v1/tablets/pair", Some(&["device_uuid", "machine_id"]), &[], Errors::Tablet),
    route("GET", "/api/oee", None, &["machine_id", "date"], Errors::Text),
    route("GET", "/api/activity-durations", None, &["machine_id", "date"], Errors::Text),
    route("GET", "/api/v1/oee", None, &["machine", "group", "from", "to", "by"], Errors::Json),
    route("GET", "/api/v1/telemetry", None, &["machine", "from", "to", "limit"], Errors::Json),
    route("GET", "/health", None, &[], Errors::Json),
    route("GET", "/operator", None, &[], Errors::Json),
    route("GET", "/operator/operator.js", None, &[], Errors::Json),
    route("GET", "/", None, &[], Errors::Json),
    route("GET", "/api/input-device-updates", None, &[], Errors::Any),
    route("GET", "/api/activity-updates", None, &[], Errors::Any),
];

/// `text`'s bytes percent-encoded, all but unreserved ASCII, so that it stays one path segment or one value.
fn encode(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'~' => (*b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Text short enough for a URL (which HTTP clients cap at 64 KiB).
fn short_text(rng: &mut Rng) -> String {
    text(rng).chars().take(1000).collect()
}

/// A path segment: plausible mostly, else junk, long, or bytes that are not UTF-8.
fn segment(rng: &mut Rng, plausible: &[String]) -> String {
    let raw: Vec<u8> = match rng.below(10) {
        0..=5 => return rng.pick(plausible),
        6 => short_text(rng).into_bytes(),
        7 => {
            let len = 1 + rng.below(20);
            rng.bytes(len)
        }
        8 => "9".repeat(1 + rng.below(30)).into_bytes(),
        _ => "a".repeat(100 + rng.below(4000)).into_bytes(),
    };
    let s = encode(&raw);
    // Empty segments and dot segments change the path itself, which is not what is tried here.
    if s.is_empty() || s.chars().all(|c| c == '.') { "x".into() } else { s }
}

/// The value of a query parameter.
fn query_value(rng: &mut Rng, key: &str, ids: &Ids) -> String {
    if rng.chance(25) {
        return encode(short_text(rng).as_bytes());
    }
    let v = match key {
        "machine_id" | "machine" => rng.pick(&[ids.machine.to_string(), "0".into(), "99999".into(), " 1".into()]),
        "group" => rng.pick(&["1", "2", "-1", "2147483648"]).to_string(),
        "date" => date(rng),
        "from" | "to" => {
            if rng.chance(50) {
                date(rng)
            } else {
                timestamp(rng)
            }
        }
        "by" => rng.pick(&["hour", "shift", "day", "job", "none", "", "week", "HOUR"]).to_string(),
        "limit" => rng.pick(&["1", "0", "-1", "1000", "999999999999", "x"]).to_string(),
        "device_uuid" => {
            if rng.chance(60) {
                ids.uuid.clone()
            } else {
                short_text(rng)
            }
        }
        _ => short_text(rng),
    };
    encode(v.as_bytes())
}

/// A query string: the route's keys (some repeated, some left out) and junk ones.
fn query(rng: &mut Rng, keys: &[&str], ids: &Ids) -> String {
    let mut pairs = Vec::new();
    for k in keys {
        if rng.chance(70) {
            pairs.push(format!("{k}={}", query_value(rng, k, ids)));
        }
        if rng.chance(5) {
            pairs.push(format!("{k}={}", query_value(rng, k, ids)));
        }
    }
    if keys.is_empty() || rng.chance(15) {
        for _ in 0..rng.below(3) {
            let k = encode(key(rng).chars().take(100).collect::<String>().as_bytes());
            pairs.push(if rng.chance(20) { k } else { format!("{k}={}", encode(short_text(rng).as_bytes())) });
        }
    }
    if rng.chance(3) {
        pairs.push(rng.pick(&["%", "%zz", "&&&", "==", "%ff=%fe", "+=+"]).to_string());
    }
    pairs.join("&")
}

/// One request of the fuzz pass.
struct Request {
    method: Method,
    url: String,
    content_type: Option<Vec<u8>>,
    body: Vec<u8>,
}

impl Request {
    fn describe(&self) -> String {
        format!(
            "{} {} content-type {:?} body {}",
            self.method,
            clip(&self.url, 300),
            self.content_type.as_deref().map(String::from_utf8_lossy),
            clip(&String::from_utf8_lossy(&self.body), 300)
        )
    }
}

/// The content type of a body: JSON mostly, else what clients get wrong.
fn content_type(rng: &mut Rng) -> Option<Vec<u8>> {
    if rng.chance(75) {
        return Some(b"application/json".to_vec());
    }
    let ct: &[u8] = rng.pick(&[
        b"".as_slice(),
        b"text/plain",
        b"application/x-www-form-urlencoded",
        b"multipart/form-data; boundary=x",
        b"application/vnd.oee+json",
        b"APPLICATION/JSON; charset=utf-8",
        b"application/json; charset=latin1",
        b"application/jsonx",
        b"json",
        b"application/json\xff",
        b";;;",
    ]);
    if ct.is_empty() { None } else { Some(ct.to_vec()) }
}

/// A body for a route with `fields`; `kind` picks a command's fields for the command API.
fn body(rng: &mut Rng, fields: &[&str], ids: &Ids, max_body: usize) -> Vec<u8> {
    match rng.below(20) {
        0 => Vec::new(),
        1 => rng.bytes_up_to(500),
        2 => unreadable(rng),
        3 => serde_json::to_vec(&value(rng, 4)).unwrap(),
        // Just over the limit on bodies: refused before anything is published.
        4 if rng.chance(20) => {
            let mut b = b"{\"pad\":\"".to_vec();
            b.resize(max_body + 1 + rng.below(1000), b'x');
            b.extend_from_slice(b"\"}");
            b
        }
        _ => {
            let wild = rng.chance(60);
            serde_json::to_vec(&object(rng, fields, ids, wild)).unwrap()
        }
    }
}

/// The request of one case on `route`.
fn request(rng: &mut Rng, base: &str, route: &Route, ids: &Ids, max_body: usize) -> Request {
    let mut path = route.path.to_string();
    let mut fields: Vec<&str> = route.body.unwrap_or_default().to_vec();
    if path.contains("{m}") {
        let plausible = [ids.machine.to_string(), "fuzz-press".to_string(), "99999".to_string()];
        path = path.replace("{m}", &segment(rng, &plausible));
    }
    if path.contains("{cmd}") {
        let kind = rng.pick(&CommandKind::ALL);
        let cmd = match rng.below(10) {
            0 => {
                let junk = rng.pick(&["job", "job/pause", "status", "STATE", "state/", "history", "a/b/c", "%FF"]);
                junk.to_string()
            }
            1 => segment(rng, &[kind.suffix().to_string()]),
            _ => kind.suffix().to_string(),
        };
        fields = command_fields(kind).to_vec();
        fields.push("request_id");
        path = path.replace("{cmd}", &cmd);
    }
    if path.contains("{id}") {
        let plausible = [ids.tablet.to_string(), "1".to_string(), "99999".to_string()];
        path = path.replace("{id}", &segment(rng, &plausible));
    }
    let mut url = format!("{base}{path}");
    if !route.query.is_empty() || rng.chance(20) {
        let q = query(rng, route.query, ids);
        if !q.is_empty() || rng.chance(10) {
            url = format!("{url}?{q}");
        }
    }
    let method = Method::from_bytes(route.method.as_bytes()).unwrap();
    let (content_type, body) = match route.body {
        Some(_) => (content_type(rng), body(rng, &fields, ids, max_body)),
        // A body where none is read, now and then.
        None if rng.chance(10) => (content_type(rng), rng.bytes_up_to(200)),
        None => (None, Vec::new()),
    };
    Request { method, url, content_type, body }
}

/// Why an answer breaks the rules, if it does.
fn judge(route: &Route, status: u16, content_type: &str, body: &str) -> Option<String> {
    if status >= 500 {
        return Some(format!("a {status}"));
    }
    if status < 400 {
        return None;
    }
    let json: Option<Map<String, Value>> = serde_json::from_str(body).ok();
    let says = |key: &str| {
        json.as_ref().and_then(|o| o.get(key)).and_then(Value::as_str).is_some_and(|s| !s.trim().is_empty())
    };
    let html = content_type.starts_with("text/html") && !body.trim().is_empty();
    let ok = match route.errors {
        // The reference's fixed body for an up-state code with no job (contract C37) is its one exception.
        Errors::Json => {
            (says("error") || says("message"))
                || (route.path == "/api/machine-state-change"
                    && status == 409
                    && body == oee_core::verdict::UPTIME_WITHOUT_JOB_409_BODY)
        }
        // The limits every route shares (413, 408) answer as the device API does.
        Errors::Tablet => {
            json.as_ref().is_some_and(|o| o.get("success") == Some(&Value::Bool(false))) || html || says("error")
        }
        Errors::Text => !body.trim().is_empty(),
        Errors::Any => true,
    };
    (!ok).then(|| format!("a {status} without a message saying what was wrong ({content_type})"))
}

/// Every HTTP route, with random bodies, content types, query strings and path segments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzzed_http_requests_are_answered_below_500_with_messages_and_every_service_stays_up() {
    watch_panics();
    let (seed, n) = (seed(), cases());
    println!("fuzz seed {seed} ({n} cases per target): replay with OEE_FUZZ_SEED={seed}");
    let db = seeded_db().await;
    let config = test_config(&db);
    let max_body = config.http_body_limit();
    let t = spawn_app_with(config, db, oee_server::Services::ALL).await;
    let m = t.add_machine("Fuzz Press").await;
    // The operator the cases never name, who logs the tablet in again whenever the cases logged it out.
    let operator =
        oee_core::store::user::add_user(&t.pool, "fuzz-operator", "2468", oee_core::access::Role::Operator, false)
            .await
            .unwrap()
            .id;
    let uuid = "fuzz-http-tablet";
    let tablet = register_tablet(&t, uuid).await;
    let ids = Ids { machine: m, user: 1, tablet, uuid: uuid.into() };
    let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
    // The web's read APIs refuse anonymous callers: their cases carry an API token to reach the handlers.
    let (_, token) = oee_core::store::account::create_token(
        &t.pool,
        "fuzz",
        oee_core::store::account::TokenScope::Read,
        None,
        chrono::Utc::now(),
    )
    .await
    .unwrap();

    // What broke the rules, by route and kind: how often, and the first case.
    let mut failures: std::collections::BTreeMap<String, (usize, String)> = Default::default();
    let mut fail = |route: &Route, why: String, what: String| {
        let entry = failures.entry(format!("{} {}: {why}", route.method, route.path)).or_insert((0, what));
        entry.0 += 1;
    };
    let mut statuses: HashMap<u16, usize> = HashMap::new();
    for (target, route) in ROUTES.iter().enumerate() {
        for i in 0..n {
            if route.errors == Errors::Tablet && i % 25 == 0 {
                log_in(&t, uuid, operator).await;
            }
            let mut rng = Rng::for_case(seed, 100 + target, i);
            let r = request(&mut rng, &t.http, route, &ids, max_body);
            let what = format!("seed {seed} target {} case {i}: {}", 100 + target, r.describe());
            let mut builder = client.request(r.method.clone(), &r.url).body(r.body.clone());
            if route.errors != Errors::Tablet && route.path.starts_with("/api/") {
                builder = builder.bearer_auth(&token);
            }
            if let Some(ct) = &r.content_type {
                match reqwest::header::HeaderValue::from_bytes(ct) {
                    Ok(v) => builder = builder.header(reqwest::header::CONTENT_TYPE, v),
                    Err(_) => continue,
                }
            }
            let answer = match builder.send().await {
                Ok(a) => a,
                Err(e) => {
                    let kind = if e.is_builder() { "not sent: the request cannot be built" } else { "no answer" };
                    fail(route, format!("{kind} (did the server panic?)"), format!("{e} to {what}"));
                    continue;
                }
            };
            let status = answer.status().as_u16();
            *statuses.entry(status).or_default() += 1;
            let ctype = answer
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).to_string())
                .unwrap_or_default();
            let text = answer.text().await.unwrap_or_default();
            if let Some(why) = judge(route, status, &ctype, &text) {
                fail(route, why, format!("{} to {what}", clip(&text, 300)));
            }
        }
    }
    let mut by_status: Vec<_> = statuses.into_iter().collect();
    by_status.sort();
    println!("answers by status: {by_status:?}");
    assert!(failures.is_empty(), "answers that broke the rules (how many, the first): {failures:#?}");

    assert_still_serving(&t, m).await;
    assert_no_server_panics();
}

// ---------------------------------------------------------------------------------------------------------
// Set-up and the checks after the fuzzing

/// Registers a tablet (paired with the first machine without one); its id.
async fn register_tablet(t: &TestApp, uuid: &str) -> i32 {
    let r = t.client.get(format!("{}/check-state?device_uuid={uuid}", t.http)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    oee_core::store::tablet::tablet_by_uuid(&t.pool, uuid).await.unwrap().expect("registered").id
}

/// Logs `user` in on the tablet unless someone is logged in on it.
async fn log_in(t: &TestApp, uuid: &str, user: i32) {
    let state = oee_core::store::tablet::tablet_by_uuid(&t.pool, uuid).await.unwrap().expect("registered");
    if state.user_id.is_some() || state.machine_id.is_none() {
        return;
    }
    let r = t
        .client
        .post(format!("{}/android-login", t.http))
        .json(&json!({"device_uuid": uuid, "user_id": user.to_string(), "password": "2468"}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    assert!(status < 500, "logging the tablet in again: {status} {}", r.text().await.unwrap_or_default());
}

/// After the fuzzing: healthy, the broker never restarted, a valid state change applied over HTTP and over
/// MQTT, and a job's counts exactly what was sent, a redelivered count included once.
async fn assert_still_serving(t: &TestApp, m: i32) {
    let r = t.client.get(format!("{}/health", t.http)).send().await.unwrap();
    let status = r.status().as_u16();
    let health: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["status"], "ok", "{health}");
    let restarts = t.app.broker().unwrap().health.restarts.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(restarts, 0, "the broker's core restarted");

    let before = t.activities(m).await.0.len();
    let (status, _, body) = t.post_state(json!({"machine_id": m, "activity_code_id": 2})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(t.current_code(m).await, 2);
    assert_eq!(t.activities(m).await.0.len(), before + 1);

    let (client, mut rx) = t.mqtt_client("fuzz-after").await;
    client.subscribe(REPLY, QoS::AtLeastOnce).await.unwrap();
    let state = topic::state(&m.to_string());
    let v = command(&client, &mut rx, state, json!({"activity_code_id": 3, "request_id": "after-state"})).await;
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(json!(t.current_code(m).await), v["activity_code_id"], "{v}");
    assert_eq!(t.activities(m).await.0.len(), before + 2);

    // Whatever job the fuzzing left running ends; a new one counts exactly what is sent.
    let end = topic::command(&m.to_string(), CommandKind::JobEnd);
    let v = command(&client, &mut rx, end.clone(), json!({"request_id": "after-end-left"})).await;
    assert!(v["status"] == 200 || v["reason"] == "no_active_job", "{v}");
    let start = topic::command(&m.to_string(), CommandKind::JobStart);
    let v = command(&client, &mut rx, start, json!({"job_number": "AFTER", "request_id": "after-start"})).await;
    assert_eq!(v["status"], 200, "{v}");
    let job: i64 =
        sqlx::query_scalar("SELECT active_job_id FROM machine WHERE id = $1").bind(m).fetch_one(&t.pool).await.unwrap();
    let production = topic::production(&m.to_string());
    const N: i64 = 20;
    for i in 0..N {
        let body = json!({"good": 1, "rejects": 0, "request_id": format!("after-count-{i}")});
        let v = command(&client, &mut rx, production.clone(), body.clone()).await;
        assert_eq!(v["status"], 200, "{v}");
        // Sent again, as a device does that missed the answer: applied once.
        if i % 4 == 0 {
            let again = command(&client, &mut rx, production.clone(), body).await;
            assert_eq!(again, v);
        }
    }
    let (records, good, rejects): (i64, Option<i64>, Option<i64>) = sqlx::query_as(
        "SELECT count(*), sum(quantity_good)::int8, sum(quantity_rejects)::int8 FROM production_quantity \
         WHERE job_id = $1",
    )
    .bind(job)
    .fetch_one(&t.pool)
    .await
    .unwrap();
    assert_eq!((records, good, rejects), (N, Some(N), Some(0)));
}
