//! Setting up the plant on the admin pages and through the admin API: machines (every setting of the
//! reference's `/edit-machine`), machine groups and activity codes are created, edited and deactivated;
//! each wrong input is refused beside its field (400, or 409 for a name that is taken) and changes
//! nothing; the reference's addresses still lead there (C57); and what is saved is what tablets get.

mod common;

use common::{Browser, TestApp, api_client, spawn_app};
use oee_core::access::Role;
use oee_core::store::account::TokenScope;
use serde_json::{Value, json};

fn location(r: &reqwest::Response) -> String {
    r.headers().get("location").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default()
}

/// The field block (`<div class="field…">…</div>`) of the input, select or output named `name` (the
/// first one, for boxes that share a name).
fn field_block<'h>(html: &'h str, name: &str) -> &'h str {
    let at = html
        .find(&format!(r#"id="f-{name}""#))
        .or_else(|| html.find(&format!(r#"name="{name}""#)))
        .unwrap_or_else(|| panic!("no field {name} in {html}"));
    let start = html[..at].rfind(r#"<div class="field"#).unwrap_or_else(|| panic!("field {name} outside a block"));
    let end = at + html[at..].find("</div>").unwrap_or_else(|| panic!("field {name} is not closed"));
    &html[start..end]
}

/// The refusal shown beside field `name`, if any.
fn error_beside(html: &str, name: &str) -> Option<String> {
    let block = field_block(html, name);
    let tag = r#"<small class="error" role="alert">"#;
    let at = block.find(tag)? + tag.len();
    Some(block[at..at + block[at..].find("</small>")?].to_string())
}

/// Page text with Handlebars' escapes undone (store messages quote names in backquotes).
fn unescaped(html: &str) -> String {
    html.replace("&#x60;", "`")
        .replace("&#x3D;", "=")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
}

/// Posts a form and checks it was refused with `status` and a message beside `field` that contains
/// `says`; returns the page.
async fn refused_beside(
    b: &Browser,
    path: &str,
    form: &[(&str, &str)],
    status: u16,
    field: &str,
    says: &str,
) -> String {
    let r = b.post_form(path, form).await;
    assert_eq!(r.status(), status, "{path} {form:?}");
    let html = r.text().await.unwrap();
    let error = error_beside(&html, field).unwrap_or_else(|| panic!("no error beside {field}: {html}"));
    let error = unescaped(&error);
    assert!(error.contains(says), "beside {field}: {error}");
    html
}

/// Posts a form that must be saved: a 302 to `to`, and the flash on the next page says `flash`.
async fn saved(b: &Browser, path: &str, form: &[(&str, &str)], to: &str, flash: &str) {
    let r = b.post_form(path, form).await;
    let status = r.status().as_u16();
    let at = location(&r);
    assert_eq!((status, at.as_str()), (302, to), "{path} {form:?}: {}", r.text().await.unwrap());
    let next = unescaped(&b.get(to).await.text().await.unwrap());
    assert!(next.contains(flash), "flash `{flash}` after {path}: {next}");
}

async fn get_json(client: &reqwest::Client, t: &TestApp, path: &str) -> (u16, Value) {
    let r = client.get(format!("{}{path}", t.http)).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn send_json(t: &TestApp, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
    let r = t.api.request(method, format!("{}{path}", t.http)).json(&body).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn machine_count(t: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM machine").fetch_one(&t.pool).await.unwrap()
}

/// A machine form with every field the reference's has; `offered` are the ids of codes ticked as offered.
fn machine_form<'a>(name: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut form = vec![
        ("name", name),
        ("active", "on"),
        ("group", "1"),
        ("shift_pattern", "1"),
        ("workflow_type", "default"),
        ("job_start_input_type", "cycle_time_seconds"),
        ("autofill_input_amount", ""),
        ("job_start_activity", "1"),
        ("job_number_input_type", "number"),
        ("end_job_on_shift_end", "on"),
    ];
    for (k, v) in extra {
        form.retain(|(name, _)| name != k || *k == "offered");
        if !v.is_empty() || *k == "autofill_input_amount" {
            form.push((k, v));
        }
    }
    form
}

/// Removes `key` from a form (an unticked box is not sent).
fn without<'a>(mut form: Vec<(&'a str, &'a str)>, key: &str) -> Vec<(&'a str, &'a str)> {
    form.retain(|(k, _)| *k != key);
    form
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machines_are_created_edited_and_deactivated_on_their_pages() {
    let t = spawn_app().await;
    let (b, _) = Browser::signed_in_as(&t, "ann", Role::Admin).await;
    // Two codes beyond the seeded four: one for the tablet's list, one uptime code to start jobs in.
    for (short, state) in [("Jam", 2), ("Slow run", 1)] {
        let (status, _) = send_json(
            &t,
            reqwest::Method::POST,
            "/api/v1/codes",
            json!({"short_description": short, "machine_state": state, "graph_colour": "#808080"}),
        )
        .await;
        assert_eq!(status, 201);
    }

    let page = b.get("/admin/machines/new").await.text().await.unwrap();
    for name in [
        "name",
        "active",
        "group",
        "shift_pattern",
        "workflow_type",
        "job_start_input_type",
        "autofill_input_bool",
        "autofill_input_amount",
        "job_start_activity",
        "job_number_input_type",
        "end_job_on_shift_end",
        "offered",
    ] {
        assert!(page.contains(&format!(r#"name="{name}""#)), "the new machine form has {name}");
    }
    assert!(page.contains(r#"value="5" checked"#), "a new machine's tablet offers every code");
    let start_codes = field_block(&page, "job_start_activity");
    assert!(start_codes.contains("6 Slow run") && !start_codes.contains("Jam"), "uptime codes only: {start_codes}");

    let form = machine_form(
        "Press 1",
        &[
            ("workflow_type", "pausable"),
            ("job_start_input_type", "parts_per_minute"),
            ("autofill_input_bool", "on"),
            ("autofill_input_amount", "12.5"),
            ("job_start_activity", "6"),
            ("job_number_input_type", "text"),
            ("offered", "6"),
        ],
    );
    let form = without(form, "end_job_on_shift_end");
    saved(&b, "/admin/machines/new", &form, "/admin/machines", "Machine 1 `Press 1` created").await;
    let (status, m) = get_json(&t.api, &t, "/api/v1/machines/1").await;
    assert_eq!(status, 200);
    assert_eq!(
        m,
        json!({
            "id": 1, "name": "Press 1", "active": true, "group": 1, "shift_pattern": 1,
            "workflow_type": "pausable", "job_start_input_type": "parts_per_minute",
            "autofill_input_bool": true, "autofill_input_amount": 12.5, "job_start_activity": 6,
            "job_number_input_type": "text", "end_job_on_shift_end": false, "excluded_codes": [5],
            "topic_name": "press-1"
        })
    );
    let edit = b.get("/admin/machines/1").await.text().await.unwrap();
    assert!(edit.contains("press-1"), "the MQTT topic name is shown");
    assert!(!edit.contains(r#"name="topic_name""#), "and not offered for change");
    assert!(edit.contains(r#"value="5">"#) && edit.contains(r#"value="6" checked"#), "Jam is not offered, Slow run is");
    let list = b.get("/admin/machines").await.text().await.unwrap();
    assert!(list.contains("Press 1") && list.contains("press-1"), "{list}");

    // Refusals beside their fields; nothing is created or changed.
    let before = machine_count(&t).await;
    refused_beside(&b, "/admin/machines/new", &machine_form("Press 1", &[]), 409, "name", "already exists").await;
    refused_beside(&b, "/admin/machines/new", &machine_form(" ", &[]), 400, "name", "1 to 100 characters").await;
    let html = refused_beside(
        &b,
        "/admin/machines/new",
        &machine_form("Press 2", &[("job_start_activity", "2")]),
        400,
        "job_start_activity",
        "not an uptime code",
    )
    .await;
    assert!(html.contains(r#"value="Press 2""#), "what was typed stays in the form");
    refused_beside(
        &b,
        "/admin/machines/new",
        &machine_form("Press 2", &[("autofill_input_bool", "on"), ("autofill_input_amount", "")]),
        400,
        "autofill_input_amount",
        "Not a valid float value",
    )
    .await;
    refused_beside(
        &b,
        "/admin/machines/new",
        &machine_form("Press 2", &[("autofill_input_bool", "on"), ("autofill_input_amount", "-3")]),
        400,
        "autofill_input_amount",
        "0 or more",
    )
    .await;
    refused_beside(
        &b,
        "/admin/machines/new",
        &machine_form("Press 2", &[("group", "99")]),
        400,
        "group",
        "no machine group 99",
    )
    .await;
    refused_beside(
        &b,
        "/admin/machines/new",
        &machine_form("Press 2", &[("shift_pattern", "99")]),
        400,
        "shift_pattern",
        "no shift pattern 99",
    )
    .await;
    refused_beside(
        &b,
        "/admin/machines/new",
        &machine_form("Press 2", &[("workflow_type", "sometimes")]),
        400,
        "workflow_type",
        "not a workflow",
    )
    .await;
    // Slow run starts its jobs but is left off its tablet.
    refused_beside(
        &b,
        "/admin/machines/new",
        &machine_form("Press 2", &[("job_start_activity", "6"), ("offered", "5")]),
        400,
        "excluded_codes",
        "job start code",
    )
    .await;
    assert_eq!(machine_count(&t).await, before, "a refused form adds no machine");

    // Edit: every code offered, no group, deactivated.
    let form = without(machine_form("Press 1", &[("group", "0"), ("offered", "5"), ("offered", "6")]), "active");
    saved(&b, "/admin/machines/1", &form, "/admin/machines", "Machine `Press 1` saved (inactive)").await;
    let (_, m) = get_json(&t.api, &t, "/api/v1/machines/1").await;
    assert_eq!(
        (m["active"].clone(), m["group"].clone(), m["excluded_codes"].clone()),
        (json!(false), json!(null), json!([]))
    );
    assert_eq!(m["autofill_input_amount"], 0.0, "autofill is off again");
    let list = b.get("/admin/machines").await.text().await.unwrap();
    assert!(list.contains(r#"<tr class="muted">"#), "an inactive machine is greyed out");
    // An edit refused beside its field leaves the machine as it was.
    refused_beside(
        &b,
        "/admin/machines/1",
        &machine_form("Press 1", &[("job_start_input_type", "by eye")]),
        400,
        "job_start_input_type",
        "not a job start input type",
    )
    .await;
    assert_eq!(get_json(&t.api, &t, "/api/v1/machines/1").await.1, m);
    assert_eq!(b.get("/admin/machines/999999").await.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machines_are_created_and_changed_through_the_api() {
    let t = spawn_app().await;
    let post = |body: Value| send_json(&t, reqwest::Method::POST, "/api/v1/machines", body);
    let (status, lathe) = post(json!({"name": "Lathe"})).await;
    assert_eq!(status, 201, "{lathe}");
    // What the command line's `machine add` gives a machine.
    let drill_id = t.add_machine("Drill").await;
    let (_, drill) = get_json(&t.api, &t, &format!("/api/v1/machines/{drill_id}")).await;
    for key in [
        "active",
        "group",
        "shift_pattern",
        "workflow_type",
        "job_start_input_type",
        "autofill_input_bool",
        "autofill_input_amount",
        "job_start_activity",
        "job_number_input_type",
        "end_job_on_shift_end",
        "excluded_codes",
    ] {
        assert_eq!(lathe[key], drill[key], "a machine made through the API starts as one added on the command line");
    }
    assert_eq!(lathe["topic_name"], "lathe");

    let (status, e) = post(json!({"name": "Lathe"})).await;
    assert_eq!((status, e["field"].as_str()), (409, Some("name")), "{e}");
    let (status, e) = post(json!({"name": "Mill", "job_start_activity": 3})).await;
    assert_eq!((status, e["field"].as_str()), (400, Some("job_start_activity")), "{e}");
    let (status, e) = post(json!({"name": "Mill", "excluded_codes": [2]})).await;
    assert_eq!((status, e["field"].as_str()), (400, Some("excluded_codes")), "{e}");
    let (status, e) = post(json!({"workflow_type": "pausable"})).await;
    assert_eq!((status, e["field"].as_str()), (400, Some("name")), "{e}");
    let (status, e) = post(json!({"name": "Mill", "colour": "red"})).await;
    assert_eq!(status, 400, "unknown keys are refused: {e}");
    assert!(e["message"].as_str().unwrap().contains("colour"), "{e}");
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM machine").fetch_all(&t.pool).await.unwrap();
    assert!(!names.contains(&"Mill".to_string()), "refused requests add nothing: {names:?}");

    let id = lathe["id"].as_i64().unwrap();
    let path = format!("/api/v1/machines/{id}");
    let (status, m) = send_json(
        &t,
        reqwest::Method::PUT,
        &path,
        json!({"workflow_type": "running_total", "group": null, "autofill_input_bool": true, "autofill_input_amount": 30}),
    )
    .await;
    assert_eq!(status, 200, "{m}");
    assert_eq!(
        (&m["name"], &m["workflow_type"], &m["group"], &m["autofill_input_amount"], &m["shift_pattern"]),
        (&json!("Lathe"), &json!("running_total"), &json!(null), &json!(30.0), &json!(1)),
        "keys left out keep their values"
    );
    let (status, e) = send_json(&t, reqwest::Method::PUT, &path, json!({"name": "Drill"})).await;
    assert_eq!((status, e["field"].as_str()), (409, Some("name")), "{e}");
    let (status, e) = send_json(&t, reqwest::Method::PUT, &path, json!({"job_number_input_type": "roman"})).await;
    assert_eq!((status, e["field"].as_str()), (400, Some("job_number_input_type")), "{e}");
    let (status, _) = send_json(&t, reqwest::Method::PUT, &path, json!({"active": false})).await;
    assert_eq!(status, 200);
    let (status, _) = send_json(&t, reqwest::Method::PUT, "/api/v1/machines/999999", json!({"active": false})).await;
    assert_eq!(status, 404);

    let (status, list) = get_json(&t.api, &t, "/api/v1/machines").await;
    assert_eq!(status, 200);
    let lathe = list.as_array().unwrap().iter().find(|m| m["id"] == json!(id)).unwrap();
    assert_eq!((&lathe["active"], &lathe["group_name"]), (&json!(false), &json!(null)), "{lathe}");

    // A read token reads; it changes nothing.
    let reader = api_client(&t.pool, TokenScope::Read).await;
    assert_eq!(get_json(&reader, &t, &path).await.0, 200);
    let r = reader.post(format!("{}/api/v1/machines", t.http)).json(&json!({"name": "X"})).send().await.unwrap();
    assert_eq!(r.status(), 403);
    // The bridge's device commands under the same prefix still answer.
    let r = t
        .client
        .post(format!("{}/api/v1/machines/{drill_id}/state", t.http))
        .json(&json!({"activity_code_id": 2}))
        .send()
        .await
        .unwrap();
    assert_ne!(r.status(), 404, "device commands are still routed");
    assert_ne!(r.status(), 405, "device commands are still routed");
}

/// `GET /check-state` as the tablet `uuid` asks it.
async fn check_state(t: &TestApp, uuid: &str) -> Value {
    let r = t.client.get(format!("{}/check-state", t.http)).query(&[("device_uuid", uuid)]).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_is_saved_is_what_the_tablet_gets() {
    let t = spawn_app().await;
    let (b, _) = Browser::signed_in_as(&t, "ann", Role::Admin).await;
    saved(
        &b,
        "/admin/codes/new",
        &[
            ("short_description", "Tool change"),
            ("long_description", "Changing a worn tool"),
            ("machine_state", "2"),
            ("loss_category", "setup"),
            ("graph_colour", "#3366cc"),
            ("active", "on"),
        ],
        "/admin/codes",
        "Activity code 5 `Tool change` created",
    )
    .await;
    saved(
        &b,
        "/admin/codes/new",
        &[("short_description", "Hidden"), ("machine_state", "2"), ("graph_colour", "#000000"), ("active", "on")],
        "/admin/codes",
        "Activity code 6 `Hidden` created",
    )
    .await;
    let (status, m) = send_json(
        &t,
        reqwest::Method::POST,
        "/api/v1/machines",
        json!({"name": "Cell 1", "workflow_type": "pausable", "excluded_codes": [6]}),
    )
    .await;
    assert_eq!(status, 201, "{m}");
    let machine = m["id"].as_i64().unwrap() as i32;
    t.set_schedule(machine, true).await;

    let uuid = uuid::Uuid::new_v4().to_string();
    let check_state = || check_state(&t, &uuid);
    assert_eq!(check_state().await["machine"], "Cell 1", "the tablet paired with the only machine");
    let post = |path: &'static str, body: Value| {
        let r = t.client.post(format!("{}{path}", t.http)).json(&body);
        async move { r.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(post("/android-login", json!({"user_id": "1", "password": "digitme2", "device_uuid": uuid})).await, 200);
    assert_eq!(check_state().await["workflow_type"], "pausable", "the workflow set through the admin API");
    let body = json!({"device_uuid": uuid, "job_number": "7", "ideal_cycle_time": "10"});
    assert_eq!(post("/android-start-job", body).await, 200);
    let v = check_state().await;
    assert_eq!(v["workflow_type"], "pausable", "{v}");
    let codes: Vec<(i64, String)> = v["activity_codes"]
        .as_array()
        .unwrap_or_else(|| panic!("no activity codes: {v}"))
        .iter()
        .map(|c| (c["activity_code_id"].as_i64().unwrap(), c["description"].as_str().unwrap().to_string()))
        .collect();
    let ids: Vec<i64> = codes.iter().map(|c| c.0).collect();
    assert_eq!(ids, [1, 2, 3, 4, 5], "the new code is offered, the excluded one is not: {codes:?}");
    assert_eq!(codes[4].1, "Tool change");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_are_created_renamed_and_show_their_machines() {
    let t = spawn_app().await;
    let (b, _) = Browser::signed_in_as(&t, "ann", Role::Admin).await;
    let home = b.get("/admin-home").await.text().await.unwrap();
    assert!(home.contains(r#"href="/admin/groups""#) && home.contains("Group 1 (0 machines)"), "{home}");
    saved(&b, "/admin/groups/new", &[("name", "Line 2")], "/admin/groups", "Group 2 `Line 2` created").await;
    refused_beside(&b, "/admin/groups/new", &[("name", "Group 1")], 409, "name", "already exists").await;
    refused_beside(&b, "/admin/groups/new", &[("name", "")], 400, "name", "1 to 100 characters").await;
    refused_beside(&b, "/admin/groups/2", &[("name", "Group 1")], 409, "name", "already exists").await;
    let groups: i64 = sqlx::query_scalar("SELECT count(*) FROM machine_group").fetch_one(&t.pool).await.unwrap();
    assert_eq!(groups, 2);

    let press = t.add_machine("Press 1").await;
    let page = b.get("/admin/groups/1").await.text().await.unwrap();
    assert!(page.contains("Press 1"), "the group's machines are shown: {page}");
    saved(&b, "/admin/groups/1", &[("name", "Line 1")], "/admin/groups", "Group `Line 1` saved").await;
    let (status, g) = get_json(&t.api, &t, "/api/v1/groups/1").await;
    assert_eq!(status, 200);
    assert_eq!(g, json!({"id": 1, "name": "Line 1", "machines": [{"id": press, "name": "Press 1", "active": true}]}));

    let (status, g) = send_json(&t, reqwest::Method::POST, "/api/v1/groups", json!({"name": "Line 3"})).await;
    assert_eq!((status, &g["name"], &g["machines"]), (201, &json!("Line 3"), &json!([])), "{g}");
    let (status, e) = send_json(&t, reqwest::Method::POST, "/api/v1/groups", json!({"name": "Line 1"})).await;
    assert_eq!((status, e["field"].as_str()), (409, Some("name")), "{e}");
    let (status, e) = send_json(&t, reqwest::Method::POST, "/api/v1/groups", json!({"name": "L", "colour": 1})).await;
    assert_eq!(status, 400, "{e}");
    let path = format!("/api/v1/groups/{}", g["id"]);
    let (status, g) = send_json(&t, reqwest::Method::PUT, &path, json!({"name": "Line 4"})).await;
    assert_eq!((status, &g["name"]), (200, &json!("Line 4")));
    let (status, _) = send_json(&t, reqwest::Method::PUT, "/api/v1/groups/999999", json!({"name": "Nowhere"})).await;
    assert_eq!(status, 404);
    let (status, list) = get_json(&t.api, &t, "/api/v1/groups").await;
    assert_eq!(status, 200);
    assert_eq!(list[0], json!({"id": 1, "name": "Line 1", "machine_count": 1}));
    assert_eq!(list.as_array().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codes_are_created_edited_and_deactivated_and_codes_1_to_4_keep_their_state() {
    let t = spawn_app().await;
    let (b, _) = Browser::signed_in_as(&t, "ann", Role::Admin).await;
    let page = b.get("/admin/codes/new").await.text().await.unwrap();
    assert!(page.contains(r#"type="color" name="graph_colour""#), "a colour picker: {page}");
    for state in ["1 Uptime", "2 Unplanned downtime", "3 Planned downtime", "4 Overtime"] {
        assert!(page.contains(state), "{state}");
    }
    let jam = [
        ("short_description", "Jam"),
        ("long_description", "Material jammed"),
        ("machine_state", "2"),
        ("loss_category", ""),
        ("graph_colour", "#ff8000"),
        ("active", "on"),
    ];
    saved(&b, "/admin/codes/new", &jam, "/admin/codes", "Activity code 5 `Jam` created").await;
    let (status, code) = get_json(&t.api, &t, "/api/v1/codes/5").await;
    assert_eq!(status, 200);
    assert_eq!(
        code,
        json!({"id": 5, "short_description": "Jam", "long_description": "Material jammed", "machine_state": 2,
               "loss_category": "breakdown", "graph_colour": "#ff8000", "active": true})
    );

    let with = |changes: &[(&'static str, &'static str)]| {
        let mut form = jam.to_vec();
        for (k, v) in changes {
            form.retain(|(name, _)| name != k);
            form.push((k, v));
        }
        form
    };
    // C59, deliberately departed from: a colour that is not one is refused, not saved as white.
    refused_beside(
        &b,
        "/admin/codes/new",
        &with(&[("short_description", "Smoke"), ("graph_colour", "zzz")]),
        400,
        "graph_colour",
        "#RRGGBB",
    )
    .await;
    refused_beside(&b, "/admin/codes/new", &with(&[]), 409, "short_description", "already called `Jam`").await;
    refused_beside(
        &b,
        "/admin/codes/new",
        &with(&[("short_description", "Fast"), ("machine_state", "1"), ("loss_category", "breakdown")]),
        400,
        "loss_category",
        "cannot count as breakdown",
    )
    .await;
    refused_beside(
        &b,
        "/admin/codes/new",
        &with(&[("short_description", "Odd"), ("machine_state", "7")]),
        400,
        "machine_state",
        "1 (uptime)",
    )
    .await;
    assert_eq!(get_json(&t.api, &t, "/api/v1/codes").await.1.as_array().unwrap().len(), 5, "nothing was added");

    // Codes 1–4: the state is shown, not offered; a state sent anyway is refused beside it.
    let up = b.get("/admin/codes/1").await.text().await.unwrap();
    assert!(!up.contains(r#"<select id="f-machine_state""#), "code 1's state is not offered");
    assert!(field_block(&up, "machine_state").contains("1 Uptime"), "{up}");
    assert!(up.contains("its machine state may not"), "the note: {up}");
    let up_form = [("short_description", "Up"), ("machine_state", "2"), ("graph_colour", "#00ff00"), ("active", "on")];
    refused_beside(&b, "/admin/codes/1", &up_form, 400, "machine_state", "its machine state stays 1").await;
    refused_beside(
        &b,
        "/admin/codes/1",
        &[("short_description", "Up"), ("graph_colour", "#00ff00")],
        400,
        "active",
        "cannot be deactivated",
    )
    .await;
    let up_form = [("short_description", "Running"), ("graph_colour", "#00ff00"), ("active", "on")];
    saved(&b, "/admin/codes/1", &up_form, "/admin/codes", "Activity code 1 `Running` saved").await;
    let (_, up) = get_json(&t.api, &t, "/api/v1/codes/1").await;
    assert_eq!(
        (&up["machine_state"], &up["graph_colour"], &up["short_description"]),
        (&json!(1), &json!("#00ff00"), &json!("Running"))
    );

    // Deactivate: kept, greyed out.
    let jam_off: Vec<_> = with(&[]).into_iter().filter(|(k, _)| *k != "active").collect();
    saved(&b, "/admin/codes/5", &jam_off, "/admin/codes", "Activity code 5 `Jam` saved (inactive)").await;
    assert_eq!(get_json(&t.api, &t, "/api/v1/codes/5").await.1["active"], false);
    assert!(b.get("/admin/codes").await.text().await.unwrap().contains(r#"<tr class="muted">"#));

    // The API.
    let post = |body: Value| send_json(&t, reqwest::Method::POST, "/api/v1/codes", body);
    let (status, c) = post(
        json!({"short_description": "Setup", "machine_state": 3, "loss_category": "setup", "graph_colour": "4080FF"}),
    )
    .await;
    assert_eq!(
        (status, &c["id"], &c["graph_colour"], &c["active"]),
        (201, &json!(6), &json!("#4080FF"), &json!(true)),
        "{c}"
    );
    let (status, e) = post(json!({"short_description": "Grey"})).await;
    assert_eq!((status, e["field"].as_str()), (400, Some("graph_colour")), "{e}");
    let (status, e) = post(json!({"short_description": "Setup", "graph_colour": "#000000"})).await;
    assert_eq!((status, e["field"].as_str()), (409, Some("short_description")), "{e}");
    let (status, e) = post(json!({"short_description": "X", "graph_colour": "#000000", "state": 2})).await;
    assert_eq!(status, 400, "unknown keys are refused: {e}");
    let (status, e) = send_json(&t, reqwest::Method::PUT, "/api/v1/codes/2", json!({"machine_state": 1})).await;
    assert_eq!((status, e["field"].as_str()), (400, Some("machine_state")), "{e}");
    assert!(e["message"].as_str().unwrap().contains("stays 2"), "{e}");
    let (status, c) = send_json(&t, reqwest::Method::PUT, "/api/v1/codes/6", json!({"machine_state": 2})).await;
    assert_eq!(
        (status, &c["machine_state"], &c["loss_category"]),
        (200, &json!(2), &json!("breakdown")),
        "a new state without a category takes the state's usual one: {c}"
    );
    let (status, _) = send_json(&t, reqwest::Method::PUT, "/api/v1/codes/999999", json!({"active": true})).await;
    assert_eq!(status, 404);
    let reader = api_client(&t.pool, TokenScope::Read).await;
    assert_eq!(get_json(&reader, &t, "/api/v1/codes").await.0, 200);
    let r = reader.put(format!("{}/api/v1/codes/6", t.http)).json(&json!({"active": false})).send().await.unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_addresses_lead_to_the_pages_c57() {
    let t = spawn_app().await;
    let (b, _) = Browser::signed_in_as(&t, "ann", Role::Admin).await;
    for (path, to) in [
        ("/edit-machine?machine_id=3", "/admin/machines/3"),
        ("/edit-machine?new=true", "/admin/machines/new"),
        ("/edit-machine-group?machine_group_id=1", "/admin/groups/1"),
        ("/edit-machine-group?new=True", "/admin/groups/new"),
        ("/edit-activity-code?ac_id=2", "/admin/codes/2"),
        ("/edit-activity-code", "/admin/codes/new"),
    ] {
        let r = b.get(path).await;
        assert_eq!((r.status().as_u16(), location(&r)), (302, to.to_string()), "{path}");
    }
    for (path, says) in [
        ("/edit-machine", "No machine_id specified"),
        ("/edit-machine?machine_id=abc", "Error parsing machine_id : abc"),
        ("/edit-machine-group", "No machine_group_id specified"),
        ("/edit-machine-group?machine_group_id=x1", "Error parsing machine_group_id : x1"),
        ("/edit-activity-code?ac_id=x", "Error parsing ac_id : x from URL"),
    ] {
        let r = b.get(path).await;
        assert_eq!(r.status(), 400, "{path}");
        let page = r.text().await.unwrap();
        assert!(page.contains(says), "{path}: {page}");
    }
    let (viewer, _) = Browser::signed_in_as(&t, "vic", Role::Viewer).await;
    assert_eq!(viewer.get("/edit-machine?machine_id=1").await.status(), 403);
    assert_eq!(viewer.get("/admin/machines").await.status(), 403);
}
