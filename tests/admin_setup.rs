//! The administration of the plant's setup: shift patterns (the week editor and `/api/v1/shifts`), tablets
//! (name, machine, pairing window, last seen, a supervisor's forced logout; `/api/v1/admin/tablets`) and
//! plant settings (the run-time minor-stop threshold that `/api/v1/oee` uses; `/api/v1/settings`).

mod common;

use common::{Browser, TestApp, eventually, seeded_db, spawn_app, spawn_app_with, test_config};
use oee_core::access::Role;
use oee_server::Services;
use serde_json::{Value, json};

fn location(r: &reqwest::Response) -> String {
    r.headers().get("location").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default()
}

async fn api(t: &TestApp, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut r = t.api.request(method, format!("{}{path}", t.http));
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn get(t: &TestApp, path: &str) -> (u16, Value) {
    api(t, reqwest::Method::GET, path, None).await
}

/// What the page shows beside the input named `from`: the text from it up to the next input named `to`,
/// or up to the end of its form when `to` is `FORM_END`.
fn beside<'h>(html: &'h str, from: &str, to: &str) -> &'h str {
    let start = html.find(&format!(r#"name="{from}""#)).unwrap_or_else(|| panic!("no input {from}: {html}"));
    let rest = &html[start..];
    let marker = if to == FORM_END { to.to_string() } else { format!(r#"name="{to}""#) };
    let end = rest.find(&marker).unwrap_or_else(|| panic!("no {marker} after {from}"));
    &rest[..end]
}

const FORM_END: &str = "</form>";

/// Creates a pattern through the form; returns its id.
async fn new_pattern(admin: &Browser, name: &str) -> i32 {
    assert_eq!(admin.get("/admin/shifts/new").await.status(), 200);
    let r = admin.post_form("/admin/shifts/new", &[("name", name)]).await;
    assert_eq!(r.status(), 302, "{name} created");
    let to = location(&r);
    to.strip_prefix("/admin/shifts/").and_then(|id| id.parse().ok()).unwrap_or_else(|| panic!("sent to {to}"))
}

fn shift(start: &str, end: &str, overnight: bool) -> Value {
    json!({"start": start, "end": end, "overnight": overnight})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pattern_made_in_the_week_editor_is_read_back_through_the_api_and_its_preview() {
    let t = spawn_app().await;
    let (admin, _) = Browser::signed_in_as(&t, "ann", Role::Admin).await;
    let id = new_pattern(&admin, "Two shifts and a Friday night").await;
    let editor = admin.get(&format!("/admin/shifts/{id}")).await.text().await.unwrap();
    assert!(editor.contains(r#"name="mon.2.start""#) && editor.contains(r#"name="sun.off""#), "{editor}");
    assert!(editor.contains("past days keep the hours"), "the page says what saving does to reports");

    // Weekdays: 06–14 and 14–22 in rows 1 and 2 (row 0 left empty), Friday also 22:00 to Saturday 06:00.
    let mut form: Vec<(String, String)> = vec![("name".into(), "Two shifts and a Friday night".into())];
    for day in ["mon", "tue", "wed", "thu", "fri"] {
        for (k, v) in [("1.start", "06:00"), ("1.end", "14:00"), ("2.start", "14:00"), ("2.end", "22:00")] {
            form.push((format!("{day}.{k}"), v.into()));
        }
    }
    form.extend(
        [("fri.0.start", "22:00"), ("fri.0.end", "06:00"), ("fri.0.overnight", "on")]
            .map(|(k, v)| (k.into(), v.into())),
    );
    // Saturday's rows are typed but its "No shifts" box wins.
    form.extend(
        [("sat.off", "on"), ("sat.0.start", "08:00"), ("sat.0.end", "12:00")].map(|(k, v)| (k.into(), v.into())),
    );
    let fields: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let r = admin.post_form(&format!("/admin/shifts/{id}"), &fields).await;
    assert_eq!((r.status().as_u16(), location(&r)), (302, format!("/admin/shifts/{id}")));
    let page = admin.get(&format!("/admin/shifts/{id}")).await.text().await.unwrap();
    assert!(page.contains("saved: Mon–Thu 06:00–14:00, 14:00–22:00; Fri"), "the flash says what was saved: {page}");

    let (status, p) = get(&t, &format!("/api/v1/shifts/{id}")).await;
    assert_eq!(status, 200, "{p}");
    let two = json!([shift("06:00", "14:00", false), shift("14:00", "22:00", false)]);
    for d in 0..4 {
        assert_eq!(p["week"]["days"][d], two, "day {d}: {p}");
    }
    assert_eq!(
        p["week"]["days"][4],
        json!([shift("06:00", "14:00", false), shift("14:00", "22:00", false), shift("22:00", "06:00", true)])
    );
    assert_eq!(p["week"]["days"][5], json!([]));
    assert_eq!(p["week"]["days"][6], json!([]));
    assert_eq!(p["minutes_a_week"], 5 * 16 * 60 + 8 * 60);
    assert_eq!(p["machines"], json!([]));

    let (status, preview) = get(&t, &format!("/api/v1/shifts/{id}/preview")).await;
    assert_eq!(status, 200);
    let friday = &preview["days"][4]["intervals"];
    assert_eq!(friday[2]["start"], "22:00");
    assert_eq!(friday[2]["end"], "24:00");
    assert_eq!(friday[2]["into_next_day"], true);
    let saturday = &preview["days"][5]["intervals"];
    assert_eq!(saturday.as_array().map(Vec::len), Some(1), "{saturday}");
    assert_eq!((saturday[0]["start"].as_str(), saturday[0]["end"].as_str()), (Some("00:00"), Some("06:00")));
    assert_eq!(saturday[0]["from_previous_day"], true);
    let editor = admin.get(&format!("/admin/shifts/{id}")).await.text().await.unwrap();
    assert!(editor.contains(r#"<rect x="1320" y="0" width="120""#), "Friday's night shift is drawn to midnight");
    assert!(editor.contains("00:00–06:00 (from Friday)"), "and on Saturday morning");

    // The list shows it with its hours and, once a machine follows it, the machine.
    let m = t.add_machine("Press 1").await;
    oee_core::store::schedule::set_machine_shift(&t.pool, "Press 1", &id.to_string()).await.unwrap();
    let list = admin.get("/admin/shifts").await.text().await.unwrap();
    assert!(list.contains("Mon–Thu 06:00–14:00, 14:00–22:00"), "{list}");
    assert!(list.contains("Press 1") && list.contains("88 h a week"), "{list}");

    // Saving applies at once: a week in shift around the clock puts the machine in shift, whatever the hour.
    let all_day: Vec<Value> = (0..7).map(|_| json!([shift("00:00", "24:00", false)])).collect();
    let (status, body) =
        api(&t, reqwest::Method::PUT, &format!("/api/v1/shifts/{id}"), Some(json!({"week": {"days": all_day}}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["summary"], "every day 00:00–24:00");
    eventually("the machine is in shift", || async {
        let state: i16 = sqlx::query_scalar("SELECT schedule_state FROM machine WHERE id = $1")
            .bind(m)
            .fetch_one(&t.pool)
            .await
            .unwrap();
        state == 1
    })
    .await;

    // The API renames and makes patterns too; a name is unique.
    let (status, body) =
        api(&t, reqwest::Method::PUT, &format!("/api/v1/shifts/{id}"), Some(json!({"name": "Around the clock"}))).await;
    assert_eq!((status, body["name"].as_str()), (200, Some("Around the clock")));
    let (status, body) =
        api(&t, reqwest::Method::POST, "/api/v1/shifts", Some(json!({"name": "Around the clock"}))).await;
    assert_eq!((status, body["field"].as_str()), (409, Some("name")), "{body}");
    let days: Vec<Value> =
        (0..7).map(|d| if d < 5 { json!([shift("07:00", "15:30", false)]) } else { json!([]) }).collect();
    let (status, body) =
        api(&t, reqwest::Method::POST, "/api/v1/shifts", Some(json!({"name": "Days", "week": {"days": days}}))).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["summary"], "Mon–Fri 07:00–15:30; Sat, Sun no shifts");
    let (_, all) = get(&t, "/api/v1/shifts").await;
    assert!(all.as_array().is_some_and(|a| a.iter().any(|s| s["name"] == "Days")), "{all}");

    // The reference's page address leads to ours.
    let r = admin.get(&format!("/edit-shift?shift_id={id}")).await;
    assert_eq!((r.status().as_u16(), location(&r)), (302, format!("/admin/shifts/{id}")));
    let r = admin.get("/edit-shift?new=True").await;
    assert_eq!((r.status().as_u16(), location(&r)), (302, "/admin/shifts/new".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_week_shows_each_refusal_beside_its_input_with_400_and_saves_nothing() {
    let t = spawn_app().await;
    let (admin, _) = Browser::signed_in_as(&t, "ann", Role::Admin).await;
    let id = new_pattern(&admin, "Refused").await;
    let path = format!("/admin/shifts/{id}");

    // An end before the start, without "overnight".
    let r = admin.post_form(&path, &[("name", "Refused"), ("tue.0.start", "14:00"), ("tue.0.end", "06:00")]).await;
    assert_eq!(r.status(), 400);
    let html = r.text().await.unwrap();
    let tue0 = beside(&html, "tue.0.end", "tue.0.overnight");
    assert!(tue0.contains(r#"value="06:00""#), "the typed value is kept");
    let tue0 = beside(&html, "tue.0.end", "tue.1.start");
    assert!(tue0.contains("before it starts") && tue0.contains("overnight"), "{tue0}");
    assert!(!beside(&html, "mon.0.start", "tue.0.start").contains("class=\"error\""), "only beside Tuesday");

    // Overlapping shifts, typed in rows 1 and 2 (row 0 empty): the refusal is beside row 2's start.
    let fields = [
        ("name", "Refused"),
        ("wed.1.start", "06:00"),
        ("wed.1.end", "14:00"),
        ("wed.2.start", "13:00"),
        ("wed.2.end", "22:00"),
    ];
    let r = admin.post_form(&path, &fields).await;
    assert_eq!(r.status(), 400);
    let html = r.text().await.unwrap();
    let wed2 = beside(&html, "wed.2.start", "thu.0.start");
    assert!(wed2.contains("may not overlap") && wed2.contains("wed 06:00"), "{wed2}");
    assert!(!beside(&html, "wed.1.start", "wed.2.start").contains("may not overlap"));

    // A time that is not one.
    let r = admin.post_form(&path, &[("name", "Refused"), ("sun.0.start", "6am"), ("sun.0.end", "14:00")]).await;
    assert_eq!(r.status(), 400);
    assert!(beside(&r.text().await.unwrap(), "sun.0.start", "sun.0.end").contains("HH:MM"));

    // A name already taken, beside the name.
    new_pattern(&admin, "Taken").await;
    let r = admin.post_form(&path, &[("name", "Taken"), ("mon.0.start", "06:00"), ("mon.0.end", "14:00")]).await;
    assert_eq!(r.status(), 409);
    assert!(beside(&r.text().await.unwrap(), "name", "mon.off").contains("already exists"));

    let (_, p) = get(&t, &format!("/api/v1/shifts/{id}")).await;
    assert_eq!(p["name"], "Refused");
    assert_eq!(p["week"]["days"], json!([[], [], [], [], [], [], []]), "nothing was saved");

    // The API names the input the same way.
    let mut days = vec![json!([]); 7];
    days[0] = json!([shift("06:00", "14:00", false), shift("13:00", "22:00", false)]);
    let (status, body) =
        api(&t, reqwest::Method::PUT, &format!("/api/v1/shifts/{id}"), Some(json!({"week": {"days": days}}))).await;
    assert_eq!((status, body["field"].as_str()), (400, Some("mon.1.start")), "{body}");
    let mut days = vec![json!([]); 7];
    days[5] = json!((0..7).map(|h| shift(&format!("0{h}:00"), &format!("0{h}:30"), false)).collect::<Vec<_>>());
    let (status, body) =
        api(&t, reqwest::Method::PUT, &format!("/api/v1/shifts/{id}"), Some(json!({"week": {"days": days}}))).await;
    assert_eq!((status, body["field"].as_str()), (400, Some("sat")), "{body}");
    let (status, _) = api(&t, reqwest::Method::PUT, &format!("/api/v1/shifts/{id}"), Some(json!({}))).await;
    assert_eq!(status, 400, "a body that changes nothing is refused");
    let (status, _) = get(&t, "/api/v1/shifts/999999").await;
    assert_eq!(status, 404);
    assert_eq!(admin.get("/admin/shifts/999999").await.status(), 404);
}

/// A tablet asking for its state (registering itself when new); returns its id.
async fn check_state(t: &TestApp, uuid: &str) -> i32 {
    let r = t.client.get(format!("{}/check-state", t.http)).query(&[("device_uuid", uuid)]).send().await.unwrap();
    assert_eq!(r.status(), 200, "{uuid}: {}", r.text().await.unwrap());
    sqlx::query_scalar("SELECT id FROM input_device WHERE uuid = $1").bind(uuid).fetch_one(&t.pool).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tablets_are_renamed_and_paired_one_per_machine_in_the_references_words() {
    let t = spawn_app().await;
    let (admin, _) = Browser::signed_in_as(&t, "ann", Role::Admin).await;
    // Registered before there are machines, so auto-pairing leaves both unpaired.
    let first = check_state(&t, "tablet-uuid-1").await;
    let second = check_state(&t, "tablet-uuid-2").await;
    let m1 = t.add_machine("Press 1").await;
    let m2 = t.add_machine("Press 2").await;

    let list = admin.get("/admin/tablets").await.text().await.unwrap();
    assert!(list.contains("tablet-uuid-1") && list.contains(&format!("Tablet {second}")), "{list}");
    let (_, one) = get(&t, &format!("/api/v1/admin/tablets/{first}")).await;
    let seen = one["last_seen_at"].as_str().map(str::to_string);
    assert!(seen.is_some(), "its /check-state was recorded: {one}");
    check_state(&t, "tablet-uuid-1").await;
    let (_, again) = get(&t, &format!("/api/v1/admin/tablets/{first}")).await;
    assert_eq!(again["last_seen_at"].as_str().map(str::to_string), seen, "not written again within a minute");

    let path = format!("/admin/tablets/{first}");
    assert!(admin.get(&path).await.text().await.unwrap().contains("tablet-uuid-1"));
    let r = admin.post_form(&path, &[("name", "Press 1 tablet"), ("machine_id", &m1.to_string())]).await;
    assert_eq!((r.status().as_u16(), location(&r)), (302, "/admin/tablets".into()));
    let (_, one) = get(&t, &format!("/api/v1/admin/tablets/{first}")).await;
    assert_eq!((one["name"].as_str(), one["machine_id"].as_i64()), (Some("Press 1 tablet"), Some(i64::from(m1))));

    // A second tablet for the same machine: refused beside the machine, in the reference's words.
    let second_path = format!("/admin/tablets/{second}");
    let r =
        admin.post_form(&second_path, &[("name", &format!("Tablet {second}")), ("machine_id", &m1.to_string())]).await;
    assert_eq!(r.status(), 409);
    let html = r.text().await.unwrap();
    assert!(beside(&html, "machine_id", FORM_END).contains("Machine already assigned to another device"), "{html}");
    let (status, body) = api(
        &t,
        reqwest::Method::PUT,
        &format!("/api/v1/admin/tablets/{second}/machine"),
        Some(json!({"machine_id": m1})),
    )
    .await;
    assert_eq!(status, 409);
    assert!(body["message"].as_str().is_some_and(|m| m.contains("Machine already assigned to another device")));

    // Unpaired through the API, the machine is free for the other tablet.
    let unpair = json!({"machine_id": null});
    let (status, body) =
        api(&t, reqwest::Method::PUT, &format!("/api/v1/admin/tablets/{first}/machine"), Some(unpair)).await;
    assert_eq!((status, body["machine_id"].clone()), (200, Value::Null));
    let r = admin.post_form(&second_path, &[("name", "Spare"), ("machine_id", &m1.to_string())]).await;
    assert_eq!(r.status(), 302);
    let r = admin.post_form(&path, &[("name", "Press 1 tablet"), ("machine_id", &m2.to_string())]).await;
    assert_eq!(r.status(), 302);
    let (_, all) = get(&t, "/api/v1/admin/tablets").await;
    let pairs: Vec<(Value, Value)> =
        all.as_array().unwrap().iter().map(|t| (t["name"].clone(), t["machine_name"].clone())).collect();
    assert_eq!(pairs, vec![(json!("Press 1 tablet"), json!("Press 2")), (json!("Spare"), json!("Press 1"))]);

    // Names: unique, and not a number kept for new tablets.
    let rename = |id: i32, name: &str| {
        let t = &t;
        let body = json!({ "name": name });
        async move { api(t, reqwest::Method::PUT, &format!("/api/v1/admin/tablets/{id}"), Some(body)).await }
    };
    let (status, body) = rename(second, "Press 1 tablet").await;
    assert_eq!((status, body["field"].as_str()), (409, Some("name")), "{body}");
    let (status, body) = rename(second, "Tablet 999").await;
    assert_eq!((status, body["field"].as_str()), (400, Some("name")), "{body}");
    let (status, body) = rename(second, "Line 1").await;
    assert_eq!((status, body["name"].as_str()), (200, Some("Line 1")));
    let r = admin.post_form(&second_path, &[("name", " "), ("machine_id", &m1.to_string())]).await;
    assert_eq!(r.status(), 400);
    assert!(beside(&r.text().await.unwrap(), "name", "machine_id").contains("1 to 100 characters"));
    assert_eq!(get(&t, "/api/v1/admin/tablets/999999").await.0, 404);

    let r = admin.get(&format!("/input-device?id={first}")).await;
    assert_eq!((r.status().as_u16(), location(&r)), (302, path.clone()));
}

/// The tablet `uuid`'s `/check-state` answer as JSON.
async fn tablet_state(t: &TestApp, uuid: &str) -> Value {
    let r = t.client.get(format!("{}/check-state", t.http)).query(&[("device_uuid", uuid)]).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// The operator `user_id` logs in on the tablet `uuid` with the keypad, as the app does.
async fn tablet_login(t: &TestApp, uuid: &str, user_id: i32) {
    let body = json!({ "user_id": user_id.to_string(), "password": "2468", "device_uuid": uuid });
    let r = t.client.post(format!("{}/android-login", t.http)).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_ne!(tablet_state(t, uuid).await["state"], "no_user", "logged in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_logs_a_tablets_operator_out_from_the_page_and_the_api() {
    let t = spawn_app().await;
    let m = t.add_machine("Press 1").await;
    let uuid = "tablet-uuid-logout";
    let tablet = check_state(&t, uuid).await;
    let pair = json!({ "machine_id": m });
    let (status, _) =
        api(&t, reqwest::Method::PUT, &format!("/api/v1/admin/tablets/{tablet}/machine"), Some(pair)).await;
    assert_eq!(status, 200);
    let operator = oee_core::store::user::add_user(&t.pool, "olga", "2468", Role::Operator, false).await.unwrap();
    let (supervisor, _) = Browser::signed_in_as(&t, "sam", Role::Supervisor).await;
    let (viewer, _) = Browser::signed_in_as(&t, "vic", Role::Viewer).await;
    let (admin, _) = Browser::signed_in_as(&t, "ann", Role::Admin).await;
    let logout_page = format!("/admin/tablets/{tablet}/logout");
    let logout_api = format!("/api/v1/admin/tablets/{tablet}/logout");

    // The page: the supervisor sees the list with a button beside the operator, but not the administrators'
    // parts.
    tablet_login(&t, uuid, operator.id).await;
    let list = supervisor.get("/admin/tablets").await;
    assert_eq!(list.status(), 200);
    let list = list.text().await.unwrap();
    assert!(list.contains(&format!(r#"action="{logout_page}""#)) && list.contains("olga"), "{list}");
    assert!(!list.contains("pairing-window") && !list.contains(&format!(r#"href="/admin/tablets/{tablet}""#)));
    assert_eq!(supervisor.get(&format!("/admin/tablets/{tablet}")).await.status(), 403, "editing is an admin's");
    let edit = admin.get(&format!("/admin/tablets/{tablet}")).await.text().await.unwrap();
    assert!(edit.contains(&format!(r#"action="{logout_page}""#)) && edit.contains("Log olga out"), "{edit}");

    assert_eq!(viewer.post_form(&logout_page, &[]).await.status(), 403);
    assert_eq!(viewer.get("/admin/tablets").await.status(), 403);
    assert_ne!(tablet_state(&t, uuid).await["state"], "no_user", "the viewer logged nobody out");
    let r = supervisor.post_form(&logout_page, &[]).await;
    assert_eq!((r.status().as_u16(), location(&r)), (302, "/admin/tablets".into()));
    let list = supervisor.get("/admin/tablets").await.text().await.unwrap();
    assert!(list.contains("olga was logged out of tablet"), "the flash says so: {list}");
    assert!(!list.contains(&format!(r#"action="{logout_page}""#)), "no button for nobody: {list}");
    assert_eq!(tablet_state(&t, uuid).await["state"], "no_user");
    let (_, one) = get(&t, &format!("/api/v1/admin/tablets/{tablet}")).await;
    assert_eq!(one["user_id"], Value::Null);

    // Nobody left to log out.
    let r = supervisor.post_form(&logout_page, &[]).await;
    assert_eq!(r.status(), 409);
    let html = r.text().await.unwrap();
    assert!(html.contains("nobody is logged in on tablet"), "{html}");
    assert_eq!(supervisor.post_form("/admin/tablets/999999/logout", &[]).await.status(), 404);

    // The API, with the supervisor's session and its CSRF token.
    tablet_login(&t, uuid, operator.id).await;
    let csrf = supervisor.csrf().await;
    let call = |b: &Browser, csrf: &str| {
        b.client.post(format!("{}{logout_api}", t.http)).header("x-csrf-token", csrf.to_string()).send()
    };
    let viewer_csrf = viewer.csrf().await;
    assert_eq!(call(&viewer, &viewer_csrf).await.unwrap().status(), 403);
    let r = call(&supervisor, &csrf).await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!((body["id"].as_i64(), body["user_id"].clone()), (Some(i64::from(tablet)), Value::Null), "{body}");
    assert_eq!(tablet_state(&t, uuid).await["state"], "no_user");
    let r = call(&supervisor, &csrf).await.unwrap();
    assert_eq!(r.status(), 409);
    let body: Value = r.json().await.unwrap();
    assert!(body["message"].as_str().is_some_and(|m| m.contains("nobody is logged in")), "{body}");
    let active: i64 =
        sqlx::query_scalar("SELECT count(*) FROM user_session WHERE active").fetch_one(&t.pool).await.unwrap();
    assert_eq!(active, 0, "every session was closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pairing_window_opened_on_the_page_lets_new_tablets_register_until_it_is_closed() {
    let db = seeded_db().await;
    let mut config = test_config(&db);
    config.tablets.open_registration = false;
    config.tablets.auto_pair = false;
    let t = spawn_app_with(config, db, Services::ALL).await;
    let (admin, _) = Browser::signed_in_as(&t, "ann", Role::Admin).await;
    let asks = |uuid: &'static str| {
        let t = &t;
        async move {
            t.client
                .get(format!("{}/check-state", t.http))
                .query(&[("device_uuid", uuid)])
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(asks("new-1").await, 403, "closed: a new tablet is refused");
    let (_, w) = get(&t, "/api/v1/admin/tablets/pairing-window").await;
    assert_eq!((w["open"].as_bool(), w["auto_pair"].as_bool()), (Some(false), Some(false)), "{w}");
    let list = admin.get("/admin/tablets").await.text().await.unwrap();
    assert!(list.contains("auto_pair = false") && list.contains("closed"), "{list}");

    let r = admin.post_form("/admin/tablets/pairing-window/open", &[("minutes", "0")]).await;
    assert_eq!(r.status(), 400);
    assert!(beside(&r.text().await.unwrap(), "minutes", FORM_END).contains("1 to 1440"));
    let r = admin.post_form("/admin/tablets/pairing-window/open", &[("minutes", "30")]).await;
    assert_eq!((r.status().as_u16(), location(&r)), (302, "/admin/tablets".into()));
    let (_, w) = get(&t, "/api/v1/admin/tablets/pairing-window").await;
    assert_eq!(w["open"], true);
    let until: chrono::DateTime<chrono::Utc> = w["open_until"].as_str().unwrap().parse().unwrap();
    let left = until - chrono::Utc::now();
    assert!(left > chrono::Duration::minutes(28) && left <= chrono::Duration::minutes(30), "{left}");
    assert_eq!(asks("new-1").await, 200, "open: it registers");
    let (_, w) = get(&t, "/api/v1/admin/tablets/pairing-window").await;
    assert_eq!(w["registered"], 1);
    assert!(admin.get("/admin/tablets").await.text().await.unwrap().contains("Close the pairing window"));

    let r = admin.post_form("/admin/tablets/pairing-window/close", &[]).await;
    assert_eq!(r.status(), 302);
    assert_eq!(get(&t, "/api/v1/admin/tablets/pairing-window").await.1["open"], false);
    assert_eq!(asks("new-2").await, 403, "closed again");

    let (status, w) =
        api(&t, reqwest::Method::PUT, "/api/v1/admin/tablets/pairing-window", Some(json!({"minutes": 5}))).await;
    assert_eq!((status, w["open"].as_bool()), (200, Some(true)));
    assert_eq!(asks("new-2").await, 200);
    let (status, body) =
        api(&t, reqwest::Method::PUT, "/api/v1/admin/tablets/pairing-window", Some(json!({"minutes": 5000}))).await;
    assert_eq!((status, body["field"].as_str()), (400, Some("minutes")));
    let (status, _) = api(&t, reqwest::Method::DELETE, "/api/v1/admin/tablets/pairing-window", None).await;
    assert_eq!(status, 204);
    assert_eq!(asks("new-3").await, 403);
}

async fn sql(t: &TestApp, q: &str) {
    sqlx::query(sqlx::AssertSqlSafe(q.to_string())).execute(&t.pool).await.unwrap();
}

fn close(v: &Value, want: f64) -> bool {
    v.as_f64().is_some_and(|x| (x - want).abs() < 1e-9)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_minor_stop_threshold_set_on_the_settings_page_is_what_reports_use() {
    let t = spawn_app().await;
    let (admin, _) = Browser::signed_in_as(&t, "ann", Role::Admin).await;
    // A past day: Up 08–10, Down 10–11 (a breakdown of an hour), Up 11–12.
    let m = t.add_machine("Press").await;
    sql(
        &t,
        &format!(
            "INSERT INTO activity (machine_id, activity_code_id, start_time, end_time) VALUES \
             ({m}, 1, '2024-01-10 08:00Z', '2024-01-10 10:00Z'), ({m}, 2, '2024-01-10 10:00Z', '2024-01-10 11:00Z'), \
             ({m}, 1, '2024-01-10 11:00Z', '2024-01-10 12:00Z')"
        ),
    )
    .await;
    let report = || async {
        let (status, body) = get(&t, &format!("/api/v1/oee?machine={m}&from=2024-01-10&to=2024-01-11")).await;
        assert_eq!(status, 200, "{body}");
        body
    };
    let cached = || async { oee_core::store::cache::cached_day_count(&t.pool, m).await.unwrap() };
    let body = report().await;
    assert_eq!(body["minor_stop_threshold_s"], 0.0);
    assert!(close(&body["total"]["figures"]["availability"], 0.75), "{body}");
    assert_eq!(cached().await, 1, "the past day is cached");

    let page = admin.get("/admin/settings").await.text().await.unwrap();
    for fact in ["[plant] timezone", "UTC", "restart", "[broker] allow_anonymous", "[bridge] open_device_api"] {
        assert!(page.contains(fact), "{fact}: {page}");
    }
    for fact in ["[tablets] open_registration", "[tablets] auto_pair", "[http] public_url", "session_idle_minutes"] {
        assert!(page.contains(fact), "{fact}");
    }
    let r = admin.post_form("/admin/settings", &[("minor_stop_threshold_s", "soon")]).await;
    assert_eq!(r.status(), 400);
    assert!(beside(&r.text().await.unwrap(), "minor_stop_threshold_s", FORM_END).contains("whole number"));
    let r = admin.post_form("/admin/settings", &[("minor_stop_threshold_s", "90000")]).await;
    assert_eq!(r.status(), 400);
    assert_eq!(cached().await, 1, "a refused value changes nothing");

    let r = admin.post_form("/admin/settings", &[("minor_stop_threshold_s", "7200")]).await;
    assert_eq!((r.status().as_u16(), location(&r)), (302, "/admin/settings".into()));
    assert_eq!(cached().await, 0, "the days computed with the old threshold are forgotten");
    let body = report().await;
    assert_eq!(body["minor_stop_threshold_s"], 7200.0);
    assert!(close(&body["total"]["figures"]["availability"], 1.0), "the hour down is a minor stop now: {body}");
    assert_eq!(body["total"]["losses"]["minor_stop_ms"], 3_600_000.0);
    assert_eq!(body["cache"]["days_computed"], 1);
    assert_eq!(report().await["cache"]["days_read"], 1, "and cached again with the new threshold");

    let (_, s) = get(&t, "/api/v1/settings").await;
    assert_eq!(
        (s["minor_stop_threshold_s"].as_u64(), s["minor_stop_threshold_source"].as_str()),
        (Some(7200), Some("setting"))
    );
    assert_eq!(s["minor_stop_threshold_updated_by"], "ann");
    assert_eq!(s["config"]["plant.timezone"], "UTC");
    assert_eq!(s["config"]["tablets.open_registration"], true);
    assert!(admin.get("/admin-home").await.text().await.unwrap().contains("Minor stops under 7200 s"));

    let (status, body) =
        api(&t, reqwest::Method::PUT, "/api/v1/settings", Some(json!({"minor_stop_threshold_s": 86401}))).await;
    assert_eq!((status, body["field"].as_str()), (400, Some("minor_stop_threshold_s")));
    let (status, body) =
        api(&t, reqwest::Method::PUT, "/api/v1/settings", Some(json!({"timezone": "Europe/Paris"}))).await;
    assert_eq!(status, 400, "the time zone is not set here: {body}");
    let (status, s) =
        api(&t, reqwest::Method::PUT, "/api/v1/settings", Some(json!({"minor_stop_threshold_s": null}))).await;
    assert_eq!(
        (status, s["minor_stop_threshold_source"].as_str(), s["minor_stop_threshold_s"].as_u64()),
        (200, Some("config"), Some(0))
    );
    assert!(close(&report().await["total"]["figures"]["availability"], 0.75), "back to the config file's 0");
}
