//! The Android "Machine Monitor" app against the server over real HTTP: a small client that sends what the
//! app sends (every data-entry value as a JSON string, `activity_code_id` as a number,
//! `Content-Type: application/json`) replays the app's calls for the three workflows, and the answers are
//! held to the reference's contracts C9–C33 and C60 byte for byte where it fixes the bodies (key order and
//! the `", "` / `": "` separators included), and to the documented departures from it.

mod common;

use chrono::{DateTime, Duration, NaiveTime, Utc};
use common::*;
use serde_json::json;

const SUCCESS: &str = r#"{"success": true}"#;
const NO_MACHINE: &str = "No assigned machine. Pair via the admin interface then press back to refresh.";
/// The keys of `/check-state` during a job, in the reference's order (C23).
const ACTIVE_JOB_KEYS: [&str; 9] = [
    "machine_id",
    "workflow_type",
    "state",
    "job_number",
    "current_activity_code_id",
    "current_machine_state",
    "activity_codes",
    "colour",
    "requested_data_on_end",
];
const REQUESTED_DATA_ON_END: &str = concat!(
    r#"{"quantity_good": {"title": "Good Qty", "type": "number", "autofill": ""}, "#,
    r#""rejects": {"title": "Rejects Qty", "type": "number", "autofill": ""}}"#
);

// ---------------------------------------------------------------------------------------------------------
// The tablet

/// One tablet running the app: its server address, the UUID it made on first run, and its HTTP client.
struct Tablet {
    http: String,
    uuid: String,
    client: reqwest::Client,
}

/// An answer as the tablet receives it.
#[derive(Debug)]
struct Reply {
    status: u16,
    content_type: String,
    body: String,
}

impl Tablet {
    /// A tablet with a UUID of its own, talking to `t`.
    fn new(t: &TestApp) -> Tablet {
        Tablet { http: t.http.clone(), uuid: uuid::Uuid::new_v4().to_string(), client: t.client.clone() }
    }

    /// A tablet with a given UUID (one the server has never seen, for instance).
    fn with_uuid(t: &TestApp, uuid: &str) -> Tablet {
        Tablet { http: t.http.clone(), uuid: uuid.into(), client: t.client.clone() }
    }

    /// `GET /check-state?device_uuid=…`: what the app asks at start-up and after every screen closes.
    async fn check_state(&self) -> Reply {
        let r = self.client.get(format!("{}/check-state", self.http)).query(&[("device_uuid", &self.uuid)]);
        Reply::of(r.send().await.unwrap()).await
    }

    /// A JSON POST as the app's Volley requests make it.
    async fn post(&self, path: &str, body: serde_json::Value) -> Reply {
        let r = self
            .client
            .post(format!("{}{path}", self.http))
            .header("content-type", "application/json")
            .body(serde_json::to_string(&body).unwrap());
        Reply::of(r.send().await.unwrap()).await
    }

    /// The login keypad: user id and password typed as digits, sent as strings.
    async fn login(&self, user_id: &str, password: &str) -> Reply {
        self.post("/android-login", json!({"user_id": user_id, "password": password, "device_uuid": self.uuid})).await
    }

    /// Menu "Log out".
    async fn logout(&self) -> Reply {
        self.post("/android-logout", json!({"device_uuid": self.uuid})).await
    }

    /// The job start screen: one string per `requested_data` field, plus the UUID.
    async fn start_job(&self, fields: &[(&str, &str)]) -> Reply {
        self.post("/android-start-job", self.with_fields(fields)).await
    }

    /// A touch on the activity spinner (default and running-total workflows, and pausable while running).
    async fn update(&self, activity_code_id: i32) -> Reply {
        self.post("/android-update", json!({"device_uuid": self.uuid, "activity_code_id": activity_code_id})).await
    }

    /// "End Job" with the `requested_data_on_end` fields.
    async fn end_job(&self, quantity_good: &str, rejects: &str) -> Reply {
        self.post("/android-end-job", self.with_fields(&[("quantity_good", quantity_good), ("rejects", rejects)])).await
    }

    /// Pausable: the "Pause" button.
    async fn pause(&self) -> Reply {
        self.post("/pausable-pause-job", json!({"device_uuid": self.uuid})).await
    }

    /// Pausable: the spinner on the paused screen.
    async fn pausable_update(&self, activity_code_id: i32) -> Reply {
        self.post("/pausable-android-update", json!({"device_uuid": self.uuid, "activity_code_id": activity_code_id}))
            .await
    }

    /// Pausable: "Resume Job" with the selected code's description and the notes box.
    async fn resume(&self, downtime_reason: &str, notes: &str) -> Reply {
        self.post("/pausable-resume-job", self.with_fields(&[("downtime_reason", downtime_reason), ("notes", notes)]))
            .await
    }

    /// Running total: "Update Total".
    async fn update_quantity(&self, quantity_good: &str, rejects: &str) -> Reply {
        self.post(
            "/android-update-quantity",
            self.with_fields(&[("quantity_good", quantity_good), ("rejects", rejects)]),
        )
        .await
    }

    fn with_fields(&self, fields: &[(&str, &str)]) -> serde_json::Value {
        let mut body = serde_json::Map::new();
        body.insert("device_uuid".into(), json!(self.uuid));
        for (k, v) in fields {
            body.insert((*k).into(), json!(v));
        }
        serde_json::Value::Object(body)
    }
}

impl Reply {
    async fn of(r: reqwest::Response) -> Reply {
        let status = r.status().as_u16();
        let content_type = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        Reply { status, content_type, body: r.text().await.unwrap() }
    }

    /// A JSON answer with exactly this status and body.
    #[track_caller]
    fn assert_json(&self, status: u16, body: &str) {
        assert_eq!((self.status, self.body.as_str()), (status, body), "{self:?}");
        self.assert_json_type();
    }

    #[track_caller]
    fn assert_json_type(&self) {
        assert!(self.content_type.starts_with("application/json"), "a JSON answer: {self:?}");
    }

    /// An HTML answer (the reference's Flask error pages) with this status, containing `text`.
    #[track_caller]
    fn assert_html(&self, status: u16, text: &str) {
        assert_eq!(self.status, status, "{self:?}");
        assert!(self.content_type.starts_with("text/html"), "an HTML answer: {self:?}");
        assert!(self.body.contains(text), "{text:?} in {self:?}");
    }

    /// A 4xx answer in the app's shape: a JSON object with `"success": false` and a reason.
    #[track_caller]
    fn assert_refused(&self) {
        assert!((400..500).contains(&self.status), "a 4xx: {self:?}");
        self.assert_json_type();
        let v = self.value();
        assert_eq!(v["success"], false, "{self:?}");
        assert!(v["reason"].as_str().is_some_and(|r| !r.is_empty()), "a reason: {self:?}");
    }

    /// The body as JSON (keys sorted: for values only).
    #[track_caller]
    fn value(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    /// The body with its keys in order, after checking it is written as the reference writes it.
    #[track_caller]
    fn ordered(&self) -> Ordered {
        Ordered::reference_body(&self.body)
    }
}

/// `POST /end_all_sessions` (the web UI's, not a tablet's; an empty JSON object).
async fn end_all_sessions(t: &TestApp) -> Reply {
    Reply::of(t.client.post(format!("{}/end_all_sessions", t.http)).json(&json!({})).send().await.unwrap()).await
}

// ---------------------------------------------------------------------------------------------------------
// JSON as written: key order and separators

/// A JSON value as the server wrote it: object keys in their order, numbers and strings as written (string
/// escapes kept).
#[derive(Debug, Clone, PartialEq)]
enum Ordered {
    Null,
    Bool(bool),
    Number(String),
    Str(String),
    Array(Vec<Ordered>),
    Object(Vec<(String, Ordered)>),
}

impl Ordered {
    /// Parses `raw` and checks it is the reference's form: no whitespace except `", "` between items and
    /// `": "` after keys (Python's `json.dumps`), nothing after the value.
    #[track_caller]
    fn reference_body(raw: &str) -> Ordered {
        let mut p = OrderedParser { s: raw.as_bytes(), i: 0 };
        let v = p.value();
        p.space();
        assert_eq!(p.i, raw.len(), "text after the JSON value in {raw:?}");
        assert_eq!(v.to_python(), raw, "not in the reference's form (separators \", \" and \": \")");
        v
    }

    /// The object's keys in order.
    #[track_caller]
    fn keys(&self) -> Vec<&str> {
        match self {
            Ordered::Object(kv) => kv.iter().map(|(k, _)| k.as_str()).collect(),
            other => panic!("not an object: {other:?}"),
        }
    }

    #[track_caller]
    fn get(&self, key: &str) -> &Ordered {
        match self {
            Ordered::Object(kv) => {
                kv.iter().find(|(k, _)| k == key).map(|(_, v)| v).unwrap_or_else(|| panic!("no {key:?} in {self:?}"))
            }
            other => panic!("not an object: {other:?}"),
        }
    }

    #[track_caller]
    fn items(&self) -> &[Ordered] {
        match self {
            Ordered::Array(items) => items,
            other => panic!("not an array: {other:?}"),
        }
    }

    /// Python's `json.dumps` form.
    fn to_python(&self) -> String {
        match self {
            Ordered::Null => "null".into(),
            Ordered::Bool(b) => b.to_string(),
            Ordered::Number(n) => n.clone(),
            Ordered::Str(s) => format!("\"{s}\""),
            Ordered::Array(items) => {
                format!("[{}]", items.iter().map(Ordered::to_python).collect::<Vec<_>>().join(", "))
            }
            Ordered::Object(kv) => format!(
                "{{{}}}",
                kv.iter().map(|(k, v)| format!("\"{k}\": {}", v.to_python())).collect::<Vec<_>>().join(", ")
            ),
        }
    }
}

struct OrderedParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl OrderedParser<'_> {
    fn space(&mut self) {
        while matches!(self.s.get(self.i), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.i += 1;
        }
    }

    #[track_caller]
    fn next(&mut self) -> u8 {
        let c = *self.s.get(self.i).unwrap_or_else(|| panic!("JSON ends early: {}", self.text()));
        self.i += 1;
        c
    }

    #[track_caller]
    fn expect(&mut self, want: u8) {
        self.space();
        let at = self.i;
        let got = self.next();
        assert_eq!(got as char, want as char, "at byte {at} of {}", self.text());
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(self.s).into_owned()
    }

    #[track_caller]
    fn value(&mut self) -> Ordered {
        self.space();
        match self.s.get(self.i).copied() {
            Some(b'{') => {
                self.i += 1;
                let mut kv = Vec::new();
                self.space();
                if self.s.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ordered::Object(kv);
                }
                loop {
                    self.space();
                    let k = self.string();
                    self.expect(b':');
                    let v = self.value();
                    kv.push((k, v));
                    self.space();
                    match self.next() {
                        b',' => {}
                        b'}' => return Ordered::Object(kv),
                        c => panic!("{:?} at byte {} of {}", c as char, self.i - 1, self.text()),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                self.space();
                if self.s.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ordered::Array(items);
                }
                loop {
                    items.push(self.value());
                    self.space();
                    match self.next() {
                        b',' => {}
                        b']' => return Ordered::Array(items),
                        c => panic!("{:?} at byte {} of {}", c as char, self.i - 1, self.text()),
                    }
                }
            }
            Some(b'"') => Ordered::Str(self.string()),
            _ => {
                let start = self.i;
                while matches!(self.s.get(self.i), Some(c) if c.is_ascii_alphanumeric() || b"+-.".contains(c)) {
                    self.i += 1;
                }
                let word = std::str::from_utf8(&self.s[start..self.i]).unwrap();
                match word {
                    "null" => Ordered::Null,
                    "true" => Ordered::Bool(true),
                    "false" => Ordered::Bool(false),
                    n if n.parse::<f64>().is_ok() => Ordered::Number(n.into()),
                    _ => panic!("not a JSON value at byte {start} of {}", self.text()),
                }
            }
        }
    }

    /// A string's raw text between its quotes.
    #[track_caller]
    fn string(&mut self) -> String {
        self.expect(b'"');
        let start = self.i;
        loop {
            match self.next() {
                b'\\' => self.i += 1,
                b'"' => break,
                _ => {}
            }
        }
        String::from_utf8(self.s[start..self.i - 1].to_vec()).unwrap()
    }
}

// ---------------------------------------------------------------------------------------------------------
// Machines, tablets and what the database holds

/// A machine's tablet settings (the admin form's fields), set before the tablet first asks.
struct Setup {
    workflow: &'static str,
    input: &'static str,
    job_number: &'static str,
    autofill: f64,
    in_shift: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Setup { workflow: "default", input: "cycle_time_seconds", job_number: "number", autofill: 0.0, in_shift: true }
    }
}

/// "Machine A" set up as `setup` says, and a new tablet that has asked `/check-state` once (so it is
/// registered and paired) but nobody has logged in on.
async fn paired_tablet(t: &TestApp, setup: Setup) -> (i32, Tablet) {
    let m = t.add_machine("Machine A").await;
    sqlx::query(
        "UPDATE machine SET workflow_type = $2, job_start_input_type = $3, job_number_input_type = $4, \
         autofill_job_start_amount = $5 WHERE id = $1",
    )
    .bind(m)
    .bind(setup.workflow)
    .bind(setup.input)
    .bind(setup.job_number)
    .bind(setup.autofill)
    .execute(&t.pool)
    .await
    .unwrap();
    t.set_schedule(m, setup.in_shift).await;
    let tablet = Tablet::new(t);
    let r = tablet.check_state().await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.value()["machine"], "Machine A", "{r:?}");
    (m, tablet)
}

/// As [`paired_tablet`], with the admin logged in.
async fn ready_tablet(t: &TestApp, setup: Setup) -> (i32, Tablet) {
    let (m, tablet) = paired_tablet(t, setup).await;
    tablet.login("1", "digitme2").await.assert_json(200, SUCCESS);
    (m, tablet)
}

/// A job row.
#[derive(Debug, sqlx::FromRow)]
struct Job {
    id: i64,
    number: String,
    ideal_cycle_time_s: Option<f64>,
    start: DateTime<Utc>,
    end: Option<DateTime<Utc>>,
    active: bool,
    notes: String,
}

/// The machine's newest job.
async fn latest_job(t: &TestApp, machine: i32) -> Option<Job> {
    sqlx::query_as(
        "SELECT id, job_number AS number, ideal_cycle_time_s, start_time AS start, end_time AS \"end\", active, notes \
         FROM job WHERE machine_id = $1 ORDER BY id DESC LIMIT 1",
    )
    .bind(machine)
    .fetch_optional(&t.pool)
    .await
    .unwrap()
}

/// The job's production records: start, end, good, rejects.
async fn production(t: &TestApp, job: i64) -> Vec<(DateTime<Utc>, DateTime<Utc>, i64, i64)> {
    sqlx::query_as(
        "SELECT start_time, end_time, quantity_good, quantity_rejects FROM production_quantity \
         WHERE job_id = $1 ORDER BY end_time, id",
    )
    .bind(job)
    .fetch_all(&t.pool)
    .await
    .unwrap()
}

/// The machine's newest activity segment: code, user, whether it is open.
async fn newest_activity(t: &TestApp, machine: i32) -> (i32, Option<i32>, bool) {
    sqlx::query_as(
        "SELECT activity_code_id, user_id, end_time IS NULL FROM activity WHERE machine_id = $1 \
         ORDER BY id DESC LIMIT 1",
    )
    .bind(machine)
    .fetch_one(&t.pool)
    .await
    .unwrap()
}

/// The tablet's row: id, name, machine, open session.
async fn device(t: &TestApp, tablet: &Tablet) -> (i32, String, Option<i32>, Option<i32>) {
    sqlx::query_as("SELECT id, name, machine_id, active_user_session_id FROM input_device WHERE uuid = $1")
        .bind(&tablet.uuid)
        .fetch_one(&t.pool)
        .await
        .unwrap()
}

/// Sessions still marked active.
async fn active_sessions(t: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM user_session WHERE active OR time_logout IS NULL")
        .fetch_one(&t.pool)
        .await
        .unwrap()
}

/// Asserts `at` lies in [before, after], give or take a second (the server's clock is read in between).
#[track_caller]
fn assert_between(at: DateTime<Utc>, before: DateTime<Utc>, after: DateTime<Utc>) {
    let slack = Duration::seconds(1);
    assert!(before - slack <= at && at <= after + slack, "{at} not within {before} .. {after}");
}

/// The `/check-state` body of a tablet nobody is logged in on (C9, C10, C28, C60).
fn no_user_body(machine: &str, device_name: &str) -> String {
    format!(
        r#"{{"workflow_type": "default", "state": "no_user", "machine": "{machine}", "device_name": "{device_name}"}}"#
    )
}

/// Checks a `/check-state` answer during a job in the reference's shape (C23) and returns it as values.
#[track_caller]
fn assert_active_job_shape(r: &Reply) -> serde_json::Value {
    assert_eq!(r.status, 200, "{r:?}");
    r.assert_json_type();
    let o = r.ordered();
    assert_eq!(o.keys(), ACTIVE_JOB_KEYS, "{r:?}");
    assert_eq!(o.get("requested_data_on_end").to_python(), REQUESTED_DATA_ON_END);
    for code in o.get("activity_codes").items() {
        assert_eq!(code.keys(), ["activity_code_id", "colour", "description"], "{r:?}");
    }
    let v = r.value();
    let codes: Vec<(i64, &str, &str)> = v["activity_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (c["activity_code_id"].as_i64().unwrap(), c["colour"].as_str().unwrap(), c["description"].as_str().unwrap())
        })
        .collect();
    assert_eq!(
        codes,
        [(1, "#00ff80", "Up"), (2, "#b22222", "Down"), (3, "#C6C6C6", "Closed"), (4, "#00ff80", "Overtime")],
        "the four seeded codes"
    );
    v
}

/// The expected colour of a seeded code.
fn colour(code: i64) -> &'static str {
    match code {
        1 | 4 => "#00ff80",
        2 => "#b22222",
        3 => "#C6C6C6",
        _ => unreachable!(),
    }
}

/// Checks the active-job values a tablet shows: state, job number, code (with its state and colour).
#[track_caller]
fn assert_running(v: &serde_json::Value, machine: i32, workflow: &str, state: &str, job: &str, code: i64) {
    assert_eq!(v["machine_id"], json!(machine), "{v}");
    assert_eq!(v["workflow_type"], workflow, "{v}");
    assert_eq!(v["state"], state, "{v}");
    assert_eq!(v["job_number"], job, "{v}");
    assert_eq!(v["current_activity_code_id"], json!(code), "{v}");
    // each seeded code's machine state is its id
    assert_eq!(v["current_machine_state"], json!(code), "{v}");
    assert_eq!(v["colour"], colour(code), "{v}");
}

/// `at` as the plant's `HH:MM` (the test config's plant time zone is UTC).
fn plant_minutes(at: DateTime<Utc>) -> String {
    at.format("%H:%M").to_string()
}

// ---------------------------------------------------------------------------------------------------------
// Registration and login (C9–C16)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_tablet_is_registered_as_tablet_1_and_paired_to_the_free_machine() {
    let t = spawn_app().await;
    let m = t.add_machine("Machine A").await;
    let first = Tablet::new(&t);
    // C9
    first.check_state().await.assert_json(200, &no_user_body("Machine A", "Tablet 1"));
    let (_, name, machine, session) = device(&t, &first).await;
    assert_eq!((name.as_str(), machine, session), ("Tablet 1", Some(m), None));
    // asking again changes nothing
    first.check_state().await.assert_json(200, &no_user_body("Machine A", "Tablet 1"));
    let devices: i64 = sqlx::query_scalar("SELECT count(*) FROM input_device").fetch_one(&t.pool).await.unwrap();
    assert_eq!(devices, 1);
    // C10: every machine has its tablet
    let other = Tablet::new(&t);
    other.check_state().await.assert_json(200, &no_user_body(NO_MACHINE, "Tablet 2"));
    let (_, name, machine, _) = device(&t, &other).await;
    assert_eq!((name.as_str(), machine), ("Tablet 2", None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_refusals_carry_the_reference_bodies_and_change_nothing() {
    let t = spawn_app().await;
    let (m, paired) = paired_tablet(&t, Setup::default()).await;
    let unpaired = Tablet::new(&t);
    unpaired.check_state().await.assert_json(200, &no_user_body(NO_MACHINE, "Tablet 2"));
    let code_before = t.current_code(m).await;
    let segments_before = t.activities(m).await.0.len();

    // C11
    Tablet::with_uuid(&t, "nope")
        .login("1", "x")
        .await
        .assert_html(400, "Device not registered to server, try restarting");
    // C12
    paired
        .post("/android-login", json!({"device_uuid": paired.uuid, "password": "x"}))
        .await
        .assert_json(400, r#"{"success": false, "reason": "No user_id supplied"}"#);
    paired
        .post("/android-login", json!({"device_uuid": paired.uuid, "user_id": "1"}))
        .await
        .assert_json(400, r#"{"success": false, "reason": "No password supplied"}"#);
    // C13
    paired.login("99", "x").await.assert_json(401, r#"{"success": false, "reason": "User 99 does not exist"}"#);
    // C14
    paired.login("1", "x").await.assert_json(400, r#"{"success": false, "reason": "Wrong password"}"#);
    // C15
    unpaired.login("1", "digitme2").await.assert_json(400, r#"{"success": false, "reason": "No assigned machine"}"#);

    assert_eq!(device(&t, &paired).await.3, None, "no session opened");
    assert_eq!(device(&t, &unpaired).await.3, None, "no session opened");
    assert_eq!(active_sessions(&t).await, 0);
    assert_eq!(t.current_code(m).await, code_before);
    assert_eq!(t.activities(m).await.0.len(), segments_before, "refused logins store nothing");
    paired.check_state().await.assert_json(200, &no_user_body("Machine A", "Tablet 1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_in_shift_puts_an_idle_machine_down_and_asks_for_the_job_start_fields() {
    let t = spawn_app().await;
    let (m, tablet) = paired_tablet(&t, Setup { job_number: "text", ..Setup::default() }).await;
    // C16
    tablet.login("1", "digitme2").await.assert_json(200, SUCCESS);
    assert_eq!(t.current_code(m).await, 2);
    assert_eq!(newest_activity(&t, m).await, (2, Some(1), true), "a Down segment recording the user");
    let (device_id, _, _, session) = device(&t, &tablet).await;
    let session = session.expect("the tablet has an open session");
    let (user, device_of_session, active): (i32, Option<i32>, bool) =
        sqlx::query_as("SELECT user_id, input_device_id, active FROM user_session WHERE id = $1")
            .bind(session)
            .fetch_one(&t.pool)
            .await
            .unwrap();
    assert_eq!((user, device_of_session, active), (1, Some(device_id), true));
    // C17
    tablet.check_state().await.assert_json(
        200,
        concat!(
            r#"{"workflow_type": "default", "state": "no_job", "machine_name": "Machine A", "user_name": "admin", "#,
            r#""requested_data": {"job_number": {"title": "Job Number", "type": "text", "autofill": ""}, "#,
            r#""ideal_cycle_time": {"type": "number", "autofill": "", "title": "Ideal cycle time (sec)"}}}"#
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_per_minute_is_autofilled_and_converted_to_seconds_per_part() {
    let t = spawn_app().await;
    let (m, tablet) = ready_tablet(&t, Setup { input: "parts_per_minute", autofill: 30.0, ..Setup::default() }).await;
    // C18
    tablet.check_state().await.assert_json(
        200,
        concat!(
            r#"{"workflow_type": "default", "state": "no_job", "machine_name": "Machine A", "user_name": "admin", "#,
            r#""requested_data": {"job_number": {"title": "Job Number", "type": "number", "autofill": ""}, "#,
            r#""ideal_cycle_time": {"type": "number", "autofill": 30.0, "title": "Parts per minute"}}}"#
        ),
    );
    tablet.start_job(&[("job_number", "4711"), ("ideal_cycle_time", "30")]).await.assert_json(200, SUCCESS);
    let job = latest_job(&t, m).await.expect("a job");
    assert_eq!((job.number.as_str(), job.ideal_cycle_time_s, job.active), ("4711", Some(2.0), true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_cycle_times_only_the_job_number_is_asked_for() {
    let t = spawn_app().await;
    let (m, tablet) = ready_tablet(&t, Setup { input: "no_cycle_time", ..Setup::default() }).await;
    // C19
    tablet.check_state().await.assert_json(
        200,
        concat!(
            r#"{"workflow_type": "default", "state": "no_job", "machine_name": "Machine A", "user_name": "admin", "#,
            r#""requested_data": {"job_number": {"title": "Job Number", "type": "number", "autofill": ""}}}"#
        ),
    );
    tablet.start_job(&[("job_number", "12")]).await.assert_json(200, SUCCESS);
    let job = latest_job(&t, m).await.expect("a job");
    assert_eq!((job.number.as_str(), job.ideal_cycle_time_s), ("12", None));
}

// ---------------------------------------------------------------------------------------------------------
// Default workflow (C20–C28)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_start_that_is_not_json_is_400_and_one_without_a_session_is_401() {
    let t = spawn_app().await;
    let (m, tablet) = paired_tablet(&t, Setup::default()).await;
    // C21
    let r = tablet.start_job(&[("job_number", "J1"), ("ideal_cycle_time", "5")]).await;
    assert_eq!(r.status, 401, "{r:?}");
    tablet.login("1", "digitme2").await.assert_json(200, SUCCESS);
    // C20
    let r = t
        .client
        .post(format!("{}/android-start-job", t.http))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("device_uuid={}&job_number=J1&ideal_cycle_time=5", tablet.uuid))
        .send()
        .await
        .unwrap();
    let r = Reply::of(r).await;
    assert_eq!(r.status, 400, "{r:?}");
    assert!(latest_job(&t, m).await.is_none(), "no job was started");
    assert_eq!(t.current_code(m).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_workflow_runs_a_job_from_start_to_end_in_shift() {
    let t = spawn_app().await;
    let (m, tablet) = ready_tablet(&t, Setup::default()).await;

    // C22
    let before = Utc::now();
    tablet.start_job(&[("job_number", "J100"), ("ideal_cycle_time", "12.5")]).await.assert_json(200, SUCCESS);
    let after = Utc::now();
    let job = latest_job(&t, m).await.expect("a job");
    assert_eq!((job.number.as_str(), job.ideal_cycle_time_s, job.active), ("J100", Some(12.5), true));
    assert_between(job.start, before, after);
    assert_eq!(t.current_code(m).await, 1);
    assert_eq!(newest_activity(&t, m).await, (1, Some(1), true));

    // C23
    let v = assert_active_job_shape(&tablet.check_state().await);
    assert_running(&v, m, "default", "active_job", "J100", 1);

    // C24
    tablet.post("/android-update", json!({"device_uuid": tablet.uuid})).await.assert_json(200, r#"{"success": false}"#);
    assert_eq!(t.current_code(m).await, 1);
    // the spinner: Down, then Up again, each a new segment recording the user
    let (codes, _) = t.activities(m).await;
    tablet.update(2).await.assert_json(200, SUCCESS);
    assert_eq!(t.current_code(m).await, 2);
    assert_eq!(newest_activity(&t, m).await, (2, Some(1), true));
    let v = assert_active_job_shape(&tablet.check_state().await);
    assert_running(&v, m, "default", "active_job", "J100", 2);
    tablet.update(1).await.assert_json(200, SUCCESS);
    assert_eq!(t.current_code(m).await, 1);
    assert_eq!(t.activities(m).await, ([codes, vec![2, 1]].concat(), 1));

    // C25
    tablet
        .post("/android-end-job", json!({"device_uuid": tablet.uuid, "quantity_good": "5"}))
        .await
        .assert_json(200, r#"{"success": false, "reason": "Server error parsing data"}"#);
    assert!(latest_job(&t, m).await.unwrap().active, "the job still runs");

    // C26
    let before = Utc::now();
    tablet.end_job("100", "3").await.assert_json(200, SUCCESS);
    let after = Utc::now();
    let ended = latest_job(&t, m).await.unwrap();
    assert_eq!((ended.id, ended.active), (job.id, false));
    let end = ended.end.expect("the job has an end");
    assert_between(end, before, after);
    let records = production(&t, job.id).await;
    assert_eq!(records.len(), 1, "{records:?}");
    let (start, record_end, good, rejects) = records[0];
    assert_eq!((start, good, rejects), (job.start, 100, 3), "from the job's start");
    assert_between(record_end, before, after);
    assert_eq!(t.current_code(m).await, 2);
    let active_job: Option<i64> =
        sqlx::query_scalar("SELECT active_job_id FROM machine WHERE id = $1").bind(m).fetch_one(&t.pool).await.unwrap();
    assert_eq!(active_job, None);
    let r = tablet.check_state().await;
    assert_eq!((r.status, r.value()["state"].as_str()), (200, Some("no_job")), "{r:?}");

    // C27
    tablet.end_job("100", "3").await.assert_html(400, "No active job");
    assert_eq!(production(&t, job.id).await.len(), 1);

    // C28
    tablet.logout().await.assert_json(200, SUCCESS);
    tablet.logout().await.assert_json(200, r#"{"success": false, "reason": "User is logged out"}"#);
    assert_eq!(device(&t, &tablet).await.3, None);
    assert_eq!(active_sessions(&t).await, 0);
    assert_eq!(t.current_code(m).await, 2, "no job, in shift: Down");
    tablet.check_state().await.assert_json(200, &no_user_body("Machine A", "Tablet 1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_shift_a_job_runs_in_overtime_and_ends_closed() {
    let t = spawn_app().await;
    let (m, tablet) = ready_tablet(&t, Setup { in_shift: false, ..Setup::default() }).await;
    tablet.start_job(&[("job_number", "J7"), ("ideal_cycle_time", "4")]).await.assert_json(200, SUCCESS);
    // C22 out of shift
    assert_eq!(t.current_code(m).await, 4);
    let v = assert_active_job_shape(&tablet.check_state().await);
    assert_running(&v, m, "default", "active_job", "J7", 4);
    // an Up from the spinner is Overtime too
    tablet.update(1).await.assert_json(200, SUCCESS);
    assert_eq!(t.current_code(m).await, 4);
    // C26 out of shift
    tablet.end_job("8", "0").await.assert_json(200, SUCCESS);
    assert_eq!(t.current_code(m).await, 3);
    assert!(!latest_job(&t, m).await.unwrap().active);
}

// ---------------------------------------------------------------------------------------------------------
// Pausable workflow (C29–C31)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pausable_workflow_pauses_changes_the_reason_in_place_and_resumes_with_notes() {
    let t = spawn_app().await;
    let (m, tablet) = ready_tablet(&t, Setup { workflow: "pausable", ..Setup::default() }).await;
    let r = tablet.check_state().await;
    assert_eq!((r.status, r.value()["workflow_type"].as_str()), (200, Some("pausable")), "{r:?}");
    tablet.start_job(&[("job_number", "P1"), ("ideal_cycle_time", "10")]).await.assert_json(200, SUCCESS);
    let v = assert_active_job_shape(&tablet.check_state().await);
    assert_running(&v, m, "pausable", "active_job", "P1", 1);

    // C29
    tablet.pause().await.assert_json(200, SUCCESS);
    assert_eq!(t.current_code(m).await, 2);
    let v = assert_active_job_shape(&tablet.check_state().await);
    assert_running(&v, m, "pausable", "paused", "P1", 2);

    // the paused screen's spinner changes the open segment's code, it does not start a new one
    let (codes, open) = t.activities(m).await;
    tablet.pausable_update(3).await.assert_json(200, SUCCESS);
    assert_eq!(t.current_code(m).await, 3);
    let mut in_place = codes.clone();
    *in_place.last_mut().unwrap() = 3;
    assert_eq!(t.activities(m).await, (in_place, open));
    let v = assert_active_job_shape(&tablet.check_state().await);
    assert_running(&v, m, "pausable", "paused", "P1", 3);

    // C30
    tablet
        .post("/pausable-resume-job", json!({"device_uuid": tablet.uuid, "notes": "waiting for material"}))
        .await
        .assert_json(200, r#"{"success": false}"#);
    assert_eq!(t.current_code(m).await, 3);

    // C31
    let before = plant_minutes(Utc::now());
    tablet.resume("Closed", "waiting for material").await.assert_json(200, SUCCESS);
    let after = plant_minutes(Utc::now());
    assert_eq!(t.current_code(m).await, 1);
    let notes = latest_job(&t, m).await.unwrap().notes;
    assert!(
        [&before, &after].iter().any(|hhmm| notes.ends_with(&format!("{hhmm} - Closed - waiting for material \n"))),
        "notes {notes:?} at {before} or {after}"
    );
    let v = assert_active_job_shape(&tablet.check_state().await);
    assert_running(&v, m, "pausable", "active_job", "P1", 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pausable_resume_out_of_shift_is_overtime() {
    let t = spawn_app().await;
    let (m, tablet) = ready_tablet(&t, Setup { workflow: "pausable", in_shift: false, ..Setup::default() }).await;
    tablet.start_job(&[("job_number", "P2"), ("ideal_cycle_time", "10")]).await.assert_json(200, SUCCESS);
    tablet.pause().await.assert_json(200, SUCCESS);
    let v = assert_active_job_shape(&tablet.check_state().await);
    assert_running(&v, m, "pausable", "paused", "P2", 2);
    // an empty notes box adds nothing to the job's notes
    tablet.resume("Down", "").await.assert_json(200, SUCCESS);
    assert_eq!(t.current_code(m).await, 4);
    assert_eq!(latest_job(&t, m).await.unwrap().notes, "");
}

// ---------------------------------------------------------------------------------------------------------
// Running-total workflow (C32–C33)

/// The `last_update` of an `/android-update-quantity` answer, after checking the rest of it byte for byte.
#[track_caller]
fn quantity_answer(r: &Reply, produced: i64, rejects: i64) -> f64 {
    assert_eq!(r.status, 200, "{r:?}");
    r.assert_json_type();
    let o = r.ordered();
    assert_eq!(o.keys(), ["success", "quantity_produced", "quantity_rejects", "last_update"], "{r:?}");
    let head = format!(r#"{{"success": true, "quantity_produced": {produced}, "quantity_rejects": {rejects}, "#);
    assert!(r.body.starts_with(&head), "{r:?}");
    match o.get("last_update") {
        Ordered::Number(n) if n.contains('.') => n.parse().unwrap(),
        other => panic!("last_update is not a float: {other:?}"),
    }
}

/// A `last_update` of `/check-state` (the app reads it as a string and parses it: a number or a string).
#[track_caller]
fn seconds(v: &serde_json::Value) -> f64 {
    match v {
        serde_json::Value::Number(n) => n.as_f64().unwrap(),
        serde_json::Value::String(s) => s.parse().unwrap_or_else(|_| panic!("last_update {s:?}")),
        other => panic!("last_update {other}"),
    }
}

fn unix(at: DateTime<Utc>) -> f64 {
    at.timestamp_micros() as f64 / 1e6
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_total_adds_up_quantities_and_tells_when_the_next_update_is_due() {
    let t = spawn_app().await;
    let (m, tablet) = ready_tablet(&t, Setup { workflow: "running_total", ..Setup::default() }).await;
    tablet.start_job(&[("job_number", "R1"), ("ideal_cycle_time", "6")]).await.assert_json(200, SUCCESS);
    let job = latest_job(&t, m).await.expect("a job");

    // C33 before any update: the job's start
    let r = tablet.check_state().await;
    let v = running_total_state(&r);
    assert_running(&v, m, "running_total", "active_job", "R1", 1);
    assert_eq!(v["current_quantity"], 0);
    assert!((seconds(&v["last_update"]) - unix(job.start)).abs() < 0.01, "{v} vs {}", job.start);

    // C32
    let before = unix(Utc::now());
    let first = quantity_answer(&tablet.update_quantity("50", "2").await, 50, 2);
    let after = unix(Utc::now());
    assert!(before - 1.0 <= first && first <= after + 1.0, "{first} not within {before} .. {after}");
    let second = quantity_answer(&tablet.update_quantity("10", "0").await, 60, 2);
    assert!(second >= first, "{second} before {first}");
    let records: Vec<(i64, i64)> = production(&t, job.id).await.iter().map(|r| (r.2, r.3)).collect();
    assert_eq!(records, [(50, 2), (10, 0)]);
    let records = production(&t, job.id).await;
    assert_eq!(records[0].0, job.start, "the first count runs from the job's start");
    assert_eq!(records[1].0, records[0].1, "each count runs from the previous one");

    // C33
    let v = running_total_state(&tablet.check_state().await);
    assert_eq!(v["current_quantity"], 60);
    assert!((seconds(&v["last_update"]) - second).abs() < 0.01, "{v} vs {second}");
    assert!(latest_job(&t, m).await.unwrap().active, "the job still runs");
}

/// A running-total `/check-state` during a job: the reference's keys in order, then its three additions.
#[track_caller]
fn running_total_state(r: &Reply) -> serde_json::Value {
    assert_eq!(r.status, 200, "{r:?}");
    r.assert_json_type();
    let o = r.ordered();
    let keys = o.keys();
    let known: Vec<&str> = keys.iter().copied().filter(|k| ACTIVE_JOB_KEYS.contains(k)).collect();
    assert_eq!(known, ACTIVE_JOB_KEYS, "{r:?}");
    let mut extra: Vec<&str> = keys.iter().copied().filter(|k| !ACTIVE_JOB_KEYS.contains(k)).collect();
    extra.sort();
    assert_eq!(extra, ["current_quantity", "last_update", "update_frequency"], "{r:?}");
    assert_eq!(o.get("requested_data_on_end").to_python(), REQUESTED_DATA_ON_END);
    assert_eq!(o.get("update_frequency"), &Ordered::Number("3600".into()), "{r:?}");
    r.value()
}

// ---------------------------------------------------------------------------------------------------------
// Sessions (C60 and the departures from the reference)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_all_sessions_logs_every_tablet_out() {
    let t = spawn_app().await;
    let (a, first) = ready_tablet(&t, Setup::default()).await;
    let b = t.add_machine("Machine B").await;
    t.set_schedule(b, true).await;
    let second = Tablet::new(&t);
    second.check_state().await.assert_json(200, &no_user_body("Machine B", "Tablet 2"));
    second.login("1", "digitme2").await.assert_json(200, SUCCESS);
    first.start_job(&[("job_number", "J1"), ("ideal_cycle_time", "3")]).await.assert_json(200, SUCCESS);
    assert_eq!(active_sessions(&t).await, 2);

    // C60
    end_all_sessions(&t).await.assert_json(200, SUCCESS);
    // departure (reference K9): the tablets really are logged out
    first.check_state().await.assert_json(200, &no_user_body("Machine A", "Tablet 1"));
    second.check_state().await.assert_json(200, &no_user_body("Machine B", "Tablet 2"));
    assert_eq!(active_sessions(&t).await, 0);
    assert_eq!(device(&t, &first).await.3, None);
    assert_eq!(device(&t, &second).await.3, None);
    first.logout().await.assert_json(200, r#"{"success": false, "reason": "User is logged out"}"#);
    assert!(latest_job(&t, a).await.unwrap().active, "the job keeps running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_out_and_in_during_a_job_keeps_the_machine_code() {
    let t = spawn_app().await;
    let (m, tablet) = ready_tablet(&t, Setup::default()).await;
    tablet.start_job(&[("job_number", "J5"), ("ideal_cycle_time", "2")]).await.assert_json(200, SUCCESS);
    assert_eq!(t.current_code(m).await, 1);

    // departure: logout with a running job keeps the code
    tablet.logout().await.assert_json(200, SUCCESS);
    assert_eq!(t.current_code(m).await, 1);
    tablet.check_state().await.assert_json(200, &no_user_body("Machine A", "Tablet 1"));
    assert!(latest_job(&t, m).await.unwrap().active, "the job keeps running");

    // departure: login with a running job keeps the code, in a new segment recording the user
    let (codes, _) = t.activities(m).await;
    tablet.login("1", "digitme2").await.assert_json(200, SUCCESS);
    assert_eq!(t.current_code(m).await, 1);
    assert_eq!(t.activities(m).await, ([codes, vec![1]].concat(), 1));
    assert_eq!(newest_activity(&t, m).await, (1, Some(1), true));
    let v = assert_active_job_shape(&tablet.check_state().await);
    assert_running(&v, m, "default", "active_job", "J5", 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_job_login_and_logout_are_down_in_shift_and_closed_out_of_shift() {
    let t = spawn_app().await;
    let (m, tablet) = ready_tablet(&t, Setup { in_shift: false, ..Setup::default() }).await;
    assert_eq!(t.current_code(m).await, 3, "login out of shift");
    assert_eq!(newest_activity(&t, m).await.1, Some(1));
    tablet.logout().await.assert_json(200, SUCCESS);
    assert_eq!(t.current_code(m).await, 3, "logout out of shift");
    t.set_schedule(m, true).await;
    tablet.login("1", "digitme2").await.assert_json(200, SUCCESS);
    assert_eq!(t.current_code(m).await, 2, "login in shift");
    tablet.logout().await.assert_json(200, SUCCESS);
    assert_eq!(t.current_code(m).await, 2, "logout in shift");
}

// ---------------------------------------------------------------------------------------------------------
// Other departures: 4xx instead of 500

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_tablet_is_refused_with_a_4xx() {
    let t = spawn_app().await;
    let m = t.add_machine("Machine A").await;
    let stranger = Tablet::new(&t);
    stranger.logout().await.assert_refused();
    stranger.start_job(&[("job_number", "J1"), ("ideal_cycle_time", "5")]).await.assert_refused();
    stranger.update(2).await.assert_refused();
    stranger.end_job("1", "0").await.assert_refused();
    assert!(latest_job(&t, m).await.is_none());
    assert_eq!(t.activities(m).await.0.len(), 1, "nothing was stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_state_without_a_device_uuid_is_400() {
    let t = spawn_app().await;
    t.add_machine("Machine A").await;
    let r = Reply::of(t.client.get(format!("{}/check-state", t.http)).send().await.unwrap()).await;
    assert_eq!(r.status, 400, "{r:?}");
    r.assert_json_type();
    let devices: i64 = sqlx::query_scalar("SELECT count(*) FROM input_device").fetch_one(&t.pool).await.unwrap();
    assert_eq!(devices, 0, "nothing registered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planned_quantity_in_planned_minutes_sent_as_strings_gives_seconds_per_part() {
    let t = spawn_app().await;
    let (m, tablet) = ready_tablet(&t, Setup { input: "planned_qty_minutes", ..Setup::default() }).await;
    let r = tablet.check_state().await;
    assert_eq!(r.status, 200, "{r:?}");
    let o = r.ordered();
    let requested = o.get("requested_data");
    assert_eq!(requested.keys(), ["job_number", "planned_quantity", "planned_time"], "{r:?}");
    let v = r.value();
    assert_eq!(v["requested_data"]["planned_quantity"]["title"], "Planned quantity");
    assert_eq!(v["requested_data"]["planned_time"]["title"], "Planned time (min)");
    // reference K6: a 500 there
    tablet
        .start_job(&[("job_number", "J9"), ("planned_quantity", "600"), ("planned_time", "30")])
        .await
        .assert_json(200, SUCCESS);
    assert_eq!(latest_job(&t, m).await.unwrap().ideal_cycle_time_s, Some(3.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_time_earlier_today_sets_the_job_start() {
    let db = seeded_db().await;
    let mut config = test_config(&db);
    config.tablets.delayed_start = true;
    let t = spawn_app_with(config, db, oee_server::Services::ALL).await;
    // The operator logs in now and says the job began half an hour ago, as the app's time field allows.
    let (m, tablet) = ready_tablet(&t, Setup::default()).await;
    let now = Utc::now();
    let today = now.date_naive();
    let earlier = now - Duration::minutes(30);
    let at = if earlier.date_naive() == today { earlier.time() } else { NaiveTime::MIN };
    let hhmm = at.format("%H:%M").to_string();
    let expected = today.and_time(NaiveTime::parse_from_str(&hhmm, "%H:%M").unwrap()).and_utc();
    // Before the login's activity it would cut the machine's timeline: refused, saying what to do.
    let r = tablet.start_job(&[("job_number", "J3"), ("ideal_cycle_time", "5"), ("start_time", &hhmm)]).await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body.contains("before the machine's current activity began"), "{}", r.body);
    assert!(latest_job(&t, m).await.is_none());
    // As if the operator had logged in before the job began.
    let login = expected - Duration::minutes(10);
    t.backdate_current_activity(m, login).await;
    tablet
        .start_job(&[("job_number", "J3"), ("ideal_cycle_time", "5"), ("start_time", &hhmm)])
        .await
        .assert_json(200, SUCCESS);
    let job = latest_job(&t, m).await.expect("a job");
    assert_eq!(job.start, expected);
    let v = assert_active_job_shape(&tablet.check_state().await);
    assert_running(&v, m, "default", "active_job", "J3", 1);
}

// ---------------------------------------------------------------------------------------------------------
// The key-order reader itself

#[test]
fn the_key_order_reader_accepts_only_the_reference_form() {
    let o = Ordered::reference_body(r#"{"b": 1, "a": [true, null, "x\"y"], "c": {"d": 2.0, "e": ""}}"#);
    assert_eq!(o.keys(), ["b", "a", "c"]);
    assert_eq!(o.get("c").keys(), ["d", "e"]);
    assert_eq!(o.get("c").get("d"), &Ordered::Number("2.0".into()));
    assert_eq!(o.get("a").items().len(), 3);
    for not_reference in [r#"{"a":1}"#, r#"{"a": 1,"b": 2}"#, r#"{"a": 1} "#, "[1,2]", "{\"a\": 1}\n"] {
        let r = std::panic::catch_unwind(|| Ordered::reference_body(not_reference));
        assert!(r.is_err(), "{not_reference:?} was accepted");
    }
}
