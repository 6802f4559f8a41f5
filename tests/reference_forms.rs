//! The reference's form endpoints of its pages (reference §5.4, contracts C50–C54) over real HTTP: a
//! signed-in supervisor with the session's CSRF token, forms sent as multipart/form-data (as the reference's
//! pages sent them) or URL-encoded, each applied by ingest and checked in the database.

mod common;

use chrono::{DateTime, TimeZone, Utc};
use common::*;
use oee_core::access::Role;
use oee_core::store::{account, user};

/// A person signed in through `/login`, with their session cookie and its CSRF token.
struct Session {
    user_id: i32,
    cookie: String,
    csrf: String,
}

/// How a form is sent.
#[derive(Clone, Copy)]
enum Sent {
    Multipart,
    UrlEncoded,
}

/// The `name=value` pairs of a response's `Set-Cookie` headers.
fn cookies_set(r: &reqwest::Response) -> Vec<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .map(str::to_string)
        .collect()
}

/// The value of the first hidden `csrf_token` input of a page.
fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf_token\" value=\"").expect("the page has a csrf_token input");
    let rest = &page[at + "name=\"csrf_token\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// Adds a user with `role` and signs them in as a browser does: the sign-in form's token, the session
/// cookie, then the session's own token from a page's form.
async fn sign_in(t: &TestApp, name: &str, role: Role) -> Session {
    let password = "a long enough password";
    let u = user::add_user(&t.pool, name, password, role, false).await.unwrap();
    let client = no_redirects();
    let r = client.get(format!("{}/login", t.http)).send().await.unwrap();
    let sign_in_cookies = cookies_set(&r).join("; ");
    let token = csrf_of(&r.text().await.unwrap());
    let r = client
        .post(format!("{}/login", t.http))
        .header("cookie", sign_in_cookies)
        .form(&[("username", name), ("password", password), ("csrf_token", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 302);
    let cookie = cookies_set(&r).into_iter().find(|c| c.starts_with("oee_session=")).expect("a session cookie");
    let page = client.get(format!("{}/account/password", t.http)).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let csrf = csrf_of(&page.text().await.unwrap());
    Session { user_id: u.id, cookie, csrf }
}

/// A multipart/form-data body of `fields`, as a browser's FormData makes it.
fn multipart(fields: &[(&str, &str)]) -> (String, Vec<u8>) {
    let boundary = "----oeeFormBoundary7MA4YWxkTrZu0gW";
    let mut body = String::new();
    for (name, value) in fields {
        body.push_str(&format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"));
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    (format!("multipart/form-data; boundary={boundary}"), body.into_bytes())
}

/// An answer: status, content type and body.
type Answer = (u16, String, String);

async fn answer(r: reqwest::RequestBuilder) -> Answer {
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    let ctype = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    (status, ctype, r.text().await.unwrap())
}

/// Sends `fields` to `path` with `method`, as `who` (none: anonymous), with the session's CSRF token in the
/// form when `with_csrf`.
async fn send_form(
    t: &TestApp,
    who: Option<&Session>,
    method: &str,
    path: &str,
    fields: &[(&str, &str)],
    sent: Sent,
    with_csrf: bool,
) -> Answer {
    let mut all: Vec<(&str, &str)> = fields.to_vec();
    if let (Some(s), true) = (who, with_csrf) {
        all.push(("csrf_token", &s.csrf));
    }
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut r = no_redirects().request(method, format!("{}{path}", t.http));
    if let Some(s) = who {
        r = r.header("cookie", &s.cookie);
    }
    r = match sent {
        Sent::Multipart => {
            let (ctype, body) = multipart(&all);
            r.header("content-type", ctype).body(body)
        }
        Sent::UrlEncoded => r.form(&all),
    };
    answer(r).await
}

/// A form as the reference's pages send it: multipart, with the session's token.
async fn form(t: &TestApp, s: &Session, method: &str, path: &str, fields: &[(&str, &str)]) -> Answer {
    send_form(t, Some(s), method, path, fields, Sent::Multipart, true).await
}

const EMPTY: (u16, &str, &str) = (200, "text/html; charset=utf-8", "");
const SUCCESS: (u16, &str, &str) = (200, "application/json", "{\"message\":\"Success\"}\n");

fn is(a: &Answer, want: (u16, &str, &str)) -> bool {
    (a.0, a.1.as_str(), a.2.as_str()) == want
}

/// A plain-text refusal: its status and body.
fn refusal(a: &Answer) -> (u16, &str) {
    assert_eq!(a.1, "text/plain; charset=utf-8", "{a:?}");
    (a.0, a.2.as_str())
}

async fn count(t: &TestApp, sql: &str, machine: i32) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string())).bind(machine).fetch_one(&t.pool).await.unwrap()
}

/// Every form endpoint, with a form that would be applied if it got through.
fn endpoints() -> Vec<(&'static str, &'static str)> {
    vec![
        ("POST", "/api/start-job"),
        ("POST", "/api/end-job"),
        ("POST", "/api/production"),
        ("POST", "/api/past-production"),
        ("PUT", "/api/production/1"),
        ("POST", "/api/new-activity"),
        ("PUT", "/api/activity/1"),
        ("POST", "/api/new-past-job"),
        ("POST", "/api/edit-past-job"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_forms_need_a_signed_in_supervisor_and_the_sessions_csrf_token() {
    let t = spawn_app().await;
    let m = t.add_machine("Press").await;
    let viewer = sign_in(&t, "vera", Role::Viewer).await;
    let supervisor = sign_in(&t, "sam", Role::Supervisor).await;
    let machine = m.to_string();
    let job = [("machine_id", machine.as_str()), ("job_number", "J1")];

    for (method, path) in endpoints() {
        let a = send_form(&t, None, method, path, &job, Sent::Multipart, false).await;
        assert_eq!(a.0, 401, "{method} {path} anonymous: {a:?}");
        let a = send_form(&t, Some(&viewer), method, path, &job, Sent::Multipart, true).await;
        assert_eq!(a.0, 403, "{method} {path} as a viewer: {a:?}");
        // C54, for every one of them: edit-past-job too, which the reference left without a check
        for sent in [Sent::Multipart, Sent::UrlEncoded] {
            let a = send_form(&t, Some(&supervisor), method, path, &job, sent, false).await;
            assert_eq!(refusal(&a), (400, "Form error"), "{method} {path} without the token");
        }
        let wrong = [("machine_id", machine.as_str()), ("csrf_token", "not-the-token")];
        let a = send_form(&t, Some(&supervisor), method, path, &wrong, Sent::Multipart, false).await;
        assert_eq!(refusal(&a), (400, "Form error"), "{method} {path} with a wrong token");
    }
    assert_eq!(count(&t, "SELECT count(*) FROM job WHERE machine_id = $1", m).await, 0, "nothing was started");

    // the token is taken from a multipart form, a URL-encoded form or the header
    let a = send_form(&t, Some(&supervisor), "POST", "/api/start-job", &job, Sent::UrlEncoded, true).await;
    assert!(is(&a, EMPTY), "{a:?}");
    let a = answer(
        no_redirects()
            .post(format!("{}/api/production", t.http))
            .header("cookie", &supervisor.cookie)
            .header("x-csrf-token", &supervisor.csrf)
            .form(&[("job_id", "999999")]),
    )
    .await;
    assert_eq!(refusal(&a).0, 400, "past the guard: {a:?}");
    assert!(a.2.starts_with("Form error: job 999999 does not exist"), "{a:?}");

    // a script's admin token needs no CSRF token; a read token may not write
    let now = Utc::now();
    let (_, admin) = account::create_token(&t.pool, "script", account::TokenScope::Admin, None, now).await.unwrap();
    let (_, read) = account::create_token(&t.pool, "reader", account::TokenScope::Read, None, now).await.unwrap();
    let by_token = |secret: String| {
        no_redirects()
            .post(format!("{}/api/end-job", t.http))
            .bearer_auth(secret)
            .form(&[("job_id", "999999"), ("quantity_good", "1")])
    };
    let a = answer(by_token(admin)).await;
    assert!(a.2.starts_with("Form error: job 999999 does not exist"), "{a:?}");
    assert_eq!(answer(by_token(read)).await.0, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_is_started_counted_and_ended_from_the_status_page() {
    let t = spawn_app().await;
    let m = t.add_machine("Lathe").await;
    t.set_schedule(m, true).await;
    let s = sign_in(&t, "sam", Role::Supervisor).await;
    let machine = m.to_string();

    // a form that is not valid is refused with what is wrong, and nothing happens (the reference: 200)
    let a = form(&t, &s, "POST", "/api/start-job", &[("machine_id", &machine)]).await;
    assert_eq!(refusal(&a), (400, "Form error: `job_number` is missing: fill it in"));
    let a = form(
        &t,
        &s,
        "POST",
        "/api/start-job",
        &[("machine_id", &machine), ("job_number", "J1"), ("ideal_cycle_time", "fast")],
    )
    .await;
    assert_eq!(refusal(&a).0, 400);
    assert!(a.2.starts_with("Form error: `ideal_cycle_time` must be a number of seconds"), "{a:?}");
    let a = form(&t, &s, "POST", "/api/start-job", &[("machine_id", "999999"), ("job_number", "J1")]).await;
    assert_eq!(refusal(&a).0, 400, "an unknown machine, as the reference answered");
    assert!(a.2.starts_with("Form error: machine 999999 does not exist"), "{a:?}");
    assert_eq!(count(&t, "SELECT count(*) FROM job WHERE machine_id = $1", m).await, 0);

    let a = form(
        &t,
        &s,
        "POST",
        "/api/start-job",
        &[("machine_id", &machine), ("job_number", "J-100"), ("ideal_cycle_time", "12.5")],
    )
    .await;
    assert!(is(&a, EMPTY), "{a:?}");
    let (job_id, number, ict, active): (i64, String, Option<f64>, bool) =
        sqlx::query_as("SELECT id, job_number, ideal_cycle_time_s, active FROM job WHERE machine_id = $1")
            .bind(m)
            .fetch_one(&t.pool)
            .await
            .unwrap();
    assert_eq!((number.as_str(), ict, active), ("J-100", Some(12.5), true));
    // the job's activity is the signed-in person's
    let (code, user): (i32, Option<i32>) =
        sqlx::query_as("SELECT activity_code_id, user_id FROM activity WHERE machine_id = $1 AND end_time IS NULL")
            .bind(m)
            .fetch_one(&t.pool)
            .await
            .unwrap();
    assert_eq!((code, user), (1, Some(s.user_id)));
    // one job at a time
    let a = form(&t, &s, "POST", "/api/start-job", &[("machine_id", &machine), ("job_number", "J-101")]).await;
    assert_eq!(refusal(&a).0, 409, "{a:?}");

    let job = job_id.to_string();
    let a = form(&t, &s, "POST", "/api/production", &[("job_id", &job), ("quantity_good", "-3")]).await;
    assert_eq!(refusal(&a).0, 400);
    assert!(a.2.starts_with("Form error: `quantity_good` must be a whole number of parts"), "{a:?}");
    let a = form(
        &t,
        &s,
        "POST",
        "/api/production",
        &[("job_id", &job), ("quantity_good", "30"), ("quantity_rejects", "2")],
    )
    .await;
    assert!(is(&a, EMPTY), "{a:?}");
    let records: Vec<(Option<i64>, i64, i64)> = sqlx::query_as(
        "SELECT job_id, quantity_good, quantity_rejects FROM production_quantity WHERE machine_id = $1 ORDER BY id",
    )
    .bind(m)
    .fetch_all(&t.pool)
    .await
    .unwrap();
    assert_eq!(records, vec![(Some(job_id), 30, 2)]);

    // a bad count does not end the job
    let a = form(&t, &s, "POST", "/api/end-job", &[("job_id", &job), ("quantity_good", "ten")]).await;
    assert_eq!(refusal(&a).0, 400, "{a:?}");
    let a = send_form(
        &t,
        Some(&s),
        "POST",
        "/api/end-job",
        &[("job_id", &job), ("quantity_good", "10")],
        Sent::UrlEncoded,
        true,
    )
    .await;
    assert!(is(&a, EMPTY), "{a:?}");
    let active: bool =
        sqlx::query_scalar("SELECT active FROM job WHERE id = $1").bind(job_id).fetch_one(&t.pool).await.unwrap();
    assert!(!active);
    let total: i64 =
        count(&t, "SELECT sum(quantity_good)::int8 FROM production_quantity WHERE machine_id = $1", m).await;
    assert_eq!(total, 40);
    assert_eq!(t.current_code(m).await, 2, "Down after the job, in shift");

    // an ended job takes no more parts and cannot end again
    for path in ["/api/production", "/api/end-job"] {
        let a = form(&t, &s, "POST", path, &[("job_id", &job), ("quantity_good", "1")]).await;
        assert_eq!(refusal(&a).0, 409, "{path}: {a:?}");
        assert!(a.2.contains(&format!("job {job_id} is not running")), "{a:?}");
    }
}

/// 2024-01-10 at `h`:`m` in Berlin (UTC+1 in January).
fn berlin(h: u32, m: u32) -> DateTime<Utc> {
    chrono_tz::Europe::Berlin.with_ymd_and_hms(2024, 1, 10, h, m, 0).unwrap().with_timezone(&Utc)
}

/// The form fields of a span on 2024-01-10.
fn span<'a>(from: &'a str, to: &'a str) -> [(&'static str, &'a str); 4] {
    [("start_date", "2024-01-10"), ("start_time", from), ("end_date", "2024-01-10"), ("end_time", to)]
}

fn with<'a>(fields: &[(&'static str, &'a str)], more: &[(&'static str, &'a str)]) -> Vec<(&'static str, &'a str)> {
    fields.iter().chain(more).copied().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_machine_pages_forms_add_and_change_the_past_in_the_plants_time() {
    let db = seeded_db().await;
    let mut config = test_config(&db);
    config.plant.timezone = "Europe/Berlin".into();
    let t = spawn_app_with(config, db, oee_server::Services::ALL).await;
    let m = t.add_machine("Mill").await;
    let s = sign_in(&t, "sam", Role::Supervisor).await;
    let machine = m.to_string();
    let mid = [("machine_id", machine.as_str())];

    // a past job, 08:00 to 10:00 local, with its parts
    let job_form = with(
        &mid,
        &[("job_number", "P-1"), ("ideal_cycle_time", "30"), ("quantity_good", "100"), ("quantity_rejects", "4")],
    );
    let a = form(&t, &s, "POST", "/api/new-past-job", &with(&job_form, &span("08:00", "10:00"))).await;
    assert!(is(&a, EMPTY), "{a:?}");
    let (job_id, start, end, active): (i64, DateTime<Utc>, Option<DateTime<Utc>>, bool) =
        sqlx::query_as("SELECT id, start_time, end_time, active FROM job WHERE machine_id = $1")
            .bind(m)
            .fetch_one(&t.pool)
            .await
            .unwrap();
    assert_eq!((start, end, active), (berlin(8, 0), Some(berlin(10, 0)), false));
    let job = job_id.to_string();
    // C50
    let a = form(&t, &s, "POST", "/api/new-past-job", &with(&job_form, &span("09:00", "11:00"))).await;
    assert_eq!(refusal(&a), (400, "Cannot have two jobs on a machine at once"));
    let a = form(&t, &s, "POST", "/api/new-past-job", &with(&[("job_number", "P-2")], &span("12:00", "13:00"))).await;
    assert_eq!(refusal(&a), (400, "Error in form: `machine_id` is missing: fill it in"));
    let a = form(&t, &s, "POST", "/api/new-past-job", &with(&job_form, &span("13:00", "12:00"))).await;
    assert_eq!(refusal(&a), (400, "End time before start time"));
    assert_eq!(count(&t, "SELECT count(*) FROM job WHERE machine_id = $1", m).await, 1);

    // C51: up outside the job; C53: up within it, the signed-in person's
    let up = with(&mid, &[("activity_code", "1")]);
    let a = form(&t, &s, "POST", "/api/new-activity", &with(&up, &span("10:30", "11:00"))).await;
    assert_eq!(refusal(&a), (400, "Cannot set to uptime when no job is active"));
    let a = form(&t, &s, "POST", "/api/new-activity", &with(&up, &span("08:30", "09:30"))).await;
    assert!(is(&a, SUCCESS), "{a:?}");
    let (activity_id, user): (i64, Option<i32>) =
        sqlx::query_as("SELECT id, user_id FROM activity WHERE machine_id = $1 AND start_time = $2")
            .bind(m)
            .bind(berlin(8, 30))
            .fetch_one(&t.pool)
            .await
            .unwrap();
    assert_eq!(user, Some(s.user_id));
    let a =
        form(&t, &s, "POST", "/api/new-activity", &with(&up, &[("start_date", "10.01.2024"), ("start_time", "08:30")]))
            .await;
    assert_eq!(refusal(&a).0, 400);
    assert!(a.2.starts_with("Form error: the date must be YYYY-MM-DD"), "{a:?}");
    let a = form(
        &t,
        &s,
        "POST",
        "/api/new-activity",
        &with(&with(&mid, &[("activity_code", "999")]), &span("11:00", "11:30")),
    )
    .await;
    assert_eq!(refusal(&a).0, 400, "an unknown code is a wrong form: {a:?}");

    // C52, then a change of code; blank fields keep, a time given to the stored minute keeps its seconds
    let path = format!("/api/activity/{activity_id}");
    let a = form(&t, &s, "PUT", &path, &with(&[("activity_code", "1")], &span("08:30", "08:00"))).await;
    assert_eq!(refusal(&a), (400, "End time before start time"));
    sqlx::query("UPDATE activity SET start_time = start_time + interval '25 seconds' WHERE id = $1")
        .bind(activity_id)
        .execute(&t.pool)
        .await
        .unwrap();
    let a = form(&t, &s, "PUT", &path, &with(&[("activity_code", "2")], &span("08:30", "09:45"))).await;
    assert!(is(&a, SUCCESS), "{a:?}");
    let stored: (i32, DateTime<Utc>, Option<DateTime<Utc>>) =
        sqlx::query_as("SELECT activity_code_id, start_time, end_time FROM activity WHERE id = $1")
            .bind(activity_id)
            .fetch_one(&t.pool)
            .await
            .unwrap();
    assert_eq!(stored, (2, berlin(8, 30) + chrono::Duration::seconds(25), Some(berlin(9, 45))));
    let a = form(&t, &s, "PUT", "/api/activity/999999", &[("activity_code", "2")]).await;
    assert_eq!(refusal(&a).0, 404, "{a:?}");
    let a = form(&t, &s, "PUT", "/api/activity/abc", &[("activity_code", "2")]).await;
    assert_eq!(refusal(&a).0, 404, "{a:?}");

    // the job's end is saved (the reference never saved it) and its one record follows it
    let edit = [("job_id", job.as_str()), ("job_number", "P-1b"), ("quantity_good", "90")];
    let a = form(&t, &s, "POST", "/api/edit-past-job", &with(&edit, &span("08:00", "10:30"))).await;
    assert!(is(&a, SUCCESS), "{a:?}");
    let edited: (String, Option<DateTime<Utc>>) = sqlx::query_as("SELECT job_number, end_time FROM job WHERE id = $1")
        .bind(job_id)
        .fetch_one(&t.pool)
        .await
        .unwrap();
    assert_eq!(edited, ("P-1b".to_string(), Some(berlin(10, 30))));
    let record: (i64, DateTime<Utc>, i64, i64) = sqlx::query_as(
        "SELECT id, end_time, quantity_good, quantity_rejects FROM production_quantity WHERE job_id = $1",
    )
    .bind(job_id)
    .fetch_one(&t.pool)
    .await
    .unwrap();
    assert_eq!((record.1, record.2, record.3), (berlin(10, 30), 90, 4));
    let a = form(&t, &s, "POST", "/api/edit-past-job", &[("job_id", "999999"), ("job_number", "X")]).await;
    assert_eq!(refusal(&a).0, 400, "an unknown job, as the reference answered: {a:?}");

    // past production for the job, then a change of its counts
    let parts = [("job", job.as_str()), ("quantity_good", "7"), ("quantity_rejects", "1")];
    let a = form(&t, &s, "POST", "/api/past-production", &with(&parts, &span("10:30", "10:45"))).await;
    assert!(is(&a, EMPTY), "{a:?}");
    let a = form(&t, &s, "POST", "/api/past-production", &with(&parts, &[("start_date", "2024-01-10")])).await;
    assert_eq!(refusal(&a), (400, "Form error: `start_time` is missing: give the time with the date"));
    let added: (i64, DateTime<Utc>, i64) = sqlx::query_as(
        "SELECT id, start_time, quantity_good FROM production_quantity WHERE job_id = $1 ORDER BY id DESC LIMIT 1",
    )
    .bind(job_id)
    .fetch_one(&t.pool)
    .await
    .unwrap();
    assert_eq!((added.1, added.2), (berlin(10, 30), 7));
    let a = form(&t, &s, "PUT", &format!("/api/production/{}", added.0), &[("quantity_good", "8")]).await;
    assert!(is(&a, EMPTY), "{a:?}");
    let good: i64 = sqlx::query_scalar("SELECT quantity_good FROM production_quantity WHERE id = $1")
        .bind(added.0)
        .fetch_one(&t.pool)
        .await
        .unwrap();
    assert_eq!(good, 8);
    let a = form(&t, &s, "PUT", &format!("/api/production/{}", added.0), &[("quantity_rejects", "x")]).await;
    assert_eq!(refusal(&a).0, 400, "{a:?}");
    let a = form(&t, &s, "PUT", "/api/production/999999", &[("quantity_good", "1")]).await;
    assert_eq!(refusal(&a).0, 404, "{a:?}");

    // with two records, the job's counts are changed record by record
    let a = form(&t, &s, "POST", "/api/edit-past-job", &[("job_id", job.as_str()), ("quantity_good", "1")]).await;
    assert_eq!(
        refusal(&a),
        (
            400,
            "Cannot edit job quantity because there are multiple production records for this job. Edit in the \
             production table"
        )
    );
}
