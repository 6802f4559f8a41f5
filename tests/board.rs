//! The andon board (`/dashboard?group=…` signed in, `/board/{secret}` through a link an administrator makes
//! and revokes, on the admin pages or through `/api/v1/board-links`), the reference's group timeline behind
//! sign-in (contract C55), and the help pages, open to everyone (C56).

mod common;

use std::time::Duration;

use common::*;
use oee_core::access::Role;
use rumqttc::QoS;
use serde_json::json;

fn anonymous() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

fn location(r: &reqwest::Response) -> String {
    r.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}

async fn page(b: &Browser, path: &str) -> (u16, String) {
    let r = b.get(path).await;
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The tile of machine `m` on a board, from its opening tag to its end.
fn tile(html: &str, m: i32) -> String {
    let at = html.find(&format!(r#"id="machine-{m}""#)).unwrap_or_else(|| panic!("no tile of machine {m}: {html}"));
    let start = html[..at].rfind("<article").expect("the tile's opening tag");
    let end = at + html[at..].find("</article>").expect("the tile's end");
    html[start..end].to_string()
}

/// A new group holding `machines`.
async fn group_of(t: &TestApp, name: &str, machines: &[i32]) -> i32 {
    let g = oee_core::store::group::create_group(&t.pool, name).await.unwrap();
    sqlx::query("UPDATE machine SET group_id = $1 WHERE id = ANY($2)")
        .bind(g)
        .bind(machines)
        .execute(&t.pool)
        .await
        .unwrap();
    g
}

/// Reads the event stream until an event whose data satisfies `wanted` (see `next_status_event`); also
/// records the machines of every status event read on the way.
async fn next_event(
    r: &mut reqwest::Response,
    buffer: &mut String,
    seen: &mut Vec<i64>,
    wanted: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    next_status_event(r, buffer, |v| {
        seen.push(v["machine_id"].as_i64().unwrap_or(-1));
        wanted(v)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timeline_needs_sign_in_and_refuses_as_the_reference_did() {
    let t = spawn_app().await;
    let press = t.add_machine("Press").await;
    let g = group_of(&t, "Hall 2", &[press]).await;

    let r = anonymous().get(format!("{}/dashboard", t.http)).send().await.unwrap();
    assert_eq!((r.status().as_u16(), location(&r)), (302, "/login?next=%2Fdashboard".to_string()));
    let r = anonymous().get(format!("{}/create-dashboard", t.http)).send().await.unwrap();
    assert_eq!(r.status(), 302, "the timeline's form needs sign-in too");

    let (viewer, _) = Browser::signed_in_as(&t, "vera", Role::Viewer).await;
    let (status, html) = page(&viewer, "/dashboard").await;
    assert_eq!(status, 400);
    assert!(html.contains("No machine_group provided in url"), "{html}");
    let (status, html) = page(&viewer, "/dashboard?machine_group=99").await;
    assert_eq!(status, 400);
    assert!(html.contains("Could not find that machine group"), "{html}");
    let (status, html) = page(&viewer, "/dashboard?machine_group=Nowhere").await;
    assert_eq!(status, 400, "a name that is no group is refused, not a 500");
    assert!(html.contains("Could not find that machine group"), "{html}");
    let (status, html) = page(&viewer, &format!("/dashboard?machine_group={g}&start=9am&end=17:00")).await;
    assert_eq!(status, 400);
    assert!(html.contains("HH:MM"), "{html}");

    for group in [g.to_string(), "Hall%202".to_string()] {
        let (status, html) = page(&viewer, &format!("/dashboard?machine_group={group}&start=00:00&end=00:00")).await;
        assert_eq!(status, 200, "{html}");
        assert!(html.contains("Hall 2: 00:00 to 00:00") && html.contains("<h2>Press</h2>"), "{html}");
        // Drawn as the graphs draw a timeline: a row per machine (what a row shows is tested there and on
        // the machine report).
        assert!(html.contains("<svg class=\"chart timeline-chart\""), "{html}");
        assert!(html.contains("text-anchor=\"end\">Press</text>"), "the machine's row: {html}");
    }
    let (status, html) = page(&viewer, "/create-dashboard").await;
    assert_eq!(status, 200);
    assert!(html.contains(&format!(r#"href="/dashboard?group={g}""#)) && html.contains(r#"name="machine_group""#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_help_pages_are_open_to_everyone_with_examples_for_this_server() {
    let t = spawn_app().await;
    let pages = [
        ("/help", "Help: getting started"),
        ("/help/admin", "Administration"),
        ("/help/data", "Pages, boards and exports"),
        ("/help/android", "Tablets"),
        ("/help/devices", "Devices: HTTP and MQTT"),
        ("/help/reports", "Reports and OEE definitions"),
    ];
    for (path, heading) in pages {
        let r = anonymous().get(format!("{}{path}", t.http)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let html = r.text().await.unwrap();
        assert!(html.contains(&format!("<h1>{heading}</h1>")), "{path}: {html}");
        assert!(html.contains(&format!("version {}", env!("CARGO_PKG_VERSION"))), "{path} shows the version");
    }
    let html = anonymous().get(format!("{}/help/devices", t.http)).send().await.unwrap().text().await.unwrap();
    let address = t.http.trim_end_matches('/');
    assert!(html.contains(&format!("curl -X POST {address}/api/machine-state-change")), "{html}");
    assert!(html.contains("mosquitto_pub -h 127.0.0.1 -p "), "{html}");
    let html = anonymous().get(format!("{}/help/reports", t.http)).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("Availability") && html.contains("Performance") && html.contains("Quality"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_board_link_shows_its_group_signed_out_follows_mqtt_and_stops_when_revoked() {
    let t = spawn_app().await;
    let press = t.add_machine("Press <1>").await;
    let lathe = t.add_machine("Lathe").await;
    let other = t.add_machine("Saw").await;
    for m in [press, lathe, other] {
        t.set_schedule(m, true).await;
    }
    let g = group_of(&t, "Hall 2", &[press, lathe]).await;

    let (admin, _) = Browser::signed_in_as(&t, "ann", Role::Admin).await;
    let r = admin.post_form("/admin/boards/new", &[("name", ""), ("group", &g.to_string())]).await;
    assert_eq!(r.status(), 400, "a link needs a name");
    let r = admin.post_form("/admin/boards/new", &[("name", "Hall 2 screen"), ("group", &g.to_string())]).await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    let at = html.find("/board/").unwrap_or_else(|| panic!("the link is shown: {html}")) + "/board/".len();
    let secret: String = html[at..].chars().take_while(char::is_ascii_alphanumeric).collect();
    assert!(secret.len() >= 32, "{secret}");
    assert!(html.contains(&format!("{}/board/{secret}", t.http.trim_end_matches('/'))), "the full link: {html}");
    let stored: String = sqlx::query_scalar("SELECT digest FROM board_link").fetch_one(&t.pool).await.unwrap();
    assert!(!stored.contains(&secret), "only the digest is kept");
    let (_, list) = page(&admin, "/admin/boards").await;
    assert!(list.contains("Hall 2 screen") && list.contains("Hall 2") && !list.contains(&secret), "{list}");

    // signed out, the link shows the group's machines in large tiles with their codes
    let board = format!("{}/board/{secret}", t.http);
    let r = anonymous().get(&board).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("<h1>Hall 2</h1>"), "{html}");
    for m in [press, lathe] {
        let code = t.current_code(m).await;
        let tile = tile(&html, m);
        assert!(tile.contains(&format!("code-{code}")), "{tile}");
        for part in ["Job", "Operator", "OEE today", "No job", "class=\"lasted\""] {
            assert!(tile.contains(part), "{part}: {tile}");
        }
    }
    assert!(tile(&html, press).contains("Press &lt;1&gt;"), "names are escaped");
    assert!(!html.contains(&format!(r#"id="machine-{other}""#)), "a machine of another group is not shown");
    assert!(!html.contains("<script>") && html.contains(r#"<script src="/static/board.js""#));
    assert!(html.contains(&format!(r#"data-events="/board/{secret}/events""#)));
    let css = anonymous().get(format!("{board}/codes.css")).send().await.unwrap();
    assert_eq!(css.status(), 200);
    assert!(css.text().await.unwrap().contains(".code-2 {"));

    // its stream delivers a change sent over MQTT, and nothing of machines the board does not show
    let mut r = anonymous().get(format!("{board}/events")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let (mut buffer, mut seen) = (String::new(), Vec::new());
    let first = next_event(&mut r, &mut buffer, &mut seen, |v| v["machine_id"] == press).await;
    let target = if first["code_id"] == 3 { 2 } else { 3 };
    let (client, mut rx) = t.mqtt_client("plc").await;
    client.subscribe(REPLY, QoS::AtLeastOnce).await.unwrap();
    for m in [other, press] {
        let v =
            command(&client, &mut rx, format!("oee/v1/machines/{m}/state"), json!({"activity_code_id": target})).await;
        assert_eq!(v["status"], 200, "{v}");
    }
    let changed =
        next_event(&mut r, &mut buffer, &mut seen, |v| v["machine_id"] == press && v["code_id"] == target).await;
    assert_eq!(changed["no_signal"], false);
    assert!(!seen.contains(&i64::from(other)), "the stream shows only the board's machines: {seen:?}");

    // revoked, the link shows nothing any more
    let id: i32 = sqlx::query_scalar("SELECT id FROM board_link").fetch_one(&t.pool).await.unwrap();
    let revoked = admin.post_form(&format!("/admin/boards/{id}/revoke"), &[]).await;
    assert_eq!((revoked.status().as_u16(), location(&revoked)), (302, "/admin/boards".to_string()));
    // the open stream tells the screen to reload, then ends
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let chunk = tokio::time::timeout_at(deadline, r.chunk())
            .await
            .expect("a revoked link's stream ends within 30 s")
            .expect("the stream is readable");
        match chunk {
            Some(c) => buffer.push_str(&String::from_utf8_lossy(&c)),
            None => break,
        }
    }
    assert!(buffer.contains("event: reload"), "the last event asks for a reload: {buffer}");
    for path in [board.clone(), format!("{board}/events"), format!("{board}/codes.css")] {
        let r = anonymous().get(&path).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    let html = anonymous().get(&board).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("unknown or was revoked"), "{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_in_people_see_the_board_and_only_administrators_make_links() {
    let t = spawn_app().await;
    let press = t.add_machine("Press").await;
    let r = anonymous().get(format!("{}/dashboard?group=all", t.http)).send().await.unwrap();
    assert_eq!(r.status(), 302, "the board needs sign-in or a link");
    let r = anonymous().get(format!("{}/board/not-a-link", t.http)).send().await.unwrap();
    assert_eq!(r.status(), 404, "an unknown link");

    let (viewer, _) = Browser::signed_in_as(&t, "vera", Role::Viewer).await;
    let (status, html) = page(&viewer, "/dashboard?group=all").await;
    assert_eq!(status, 200);
    assert!(html.contains("<h1>All machines</h1>") && tile(&html, press).contains("Press"), "{html}");
    assert!(html.contains(r#"data-events="/status/events""#));
    assert_eq!(page(&viewer, "/dashboard?group=999999").await.0, 404);
    let (status, html) = page(&viewer, "/dashboard?group=x").await;
    assert_eq!(status, 400);
    assert!(html.contains("machine group"), "{html}");
    assert_eq!(viewer.get("/admin/boards").await.status(), 403);
    let r = viewer.post_form("/admin/boards/new", &[("name", "Mine"), ("group", "")]).await;
    assert_eq!(r.status(), 403);
    let js = anonymous().get(format!("{}/static/board.js", t.http)).send().await.unwrap();
    assert_eq!(js.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn administrators_make_list_and_revoke_board_links_through_the_json_api() {
    let t = spawn_app().await;
    let press = t.add_machine("Press").await;
    let g = group_of(&t, "Hall 2", &[press]).await;
    let api = format!("{}/api/v1/board-links", t.http);

    // An admin token makes a link: its secret and full address come back this once.
    let r = t.api.get(&api).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap(), json!([]));
    let r = t.api.post(&api).json(&json!({ "name": "Hall 2 screen", "group": g })).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let made: serde_json::Value = r.json().await.unwrap();
    let secret = made["secret"].as_str().expect("the secret").to_string();
    assert!(secret.len() >= 32, "{made}");
    assert_eq!(made["url"], format!("{}/board/{secret}", t.http), "{made}");
    assert_eq!((made["name"].as_str(), made["group_id"].as_i64()), (Some("Hall 2 screen"), Some(i64::from(g))));
    assert_eq!((made["group_name"].as_str(), &made["revoked_at"]), (Some("Hall 2"), &json!(null)));
    let id = made["id"].as_i64().unwrap();
    let r = anonymous().get(made["url"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(r.status(), 200, "the address shows the board signed out");
    assert!(r.text().await.unwrap().contains("<h1>Hall 2</h1>"));

    // A link to every machine; the list shows both, newest first, never a secret.
    let r = t.api.post(&api).json(&json!({ "name": "Canteen" })).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let all: serde_json::Value = r.json().await.unwrap();
    assert_eq!(all["group_id"], json!(null));
    let r = t.api.get(&api).send().await.unwrap();
    let text = r.text().await.unwrap();
    assert!(!text.contains(&secret) && !text.contains("secret") && !text.contains("digest"), "{text}");
    let list: serde_json::Value = serde_json::from_str(&text).unwrap();
    let names: Vec<&str> = list.as_array().unwrap().iter().filter_map(|l| l["name"].as_str()).collect();
    assert_eq!(names, ["Canteen", "Hall 2 screen"]);

    // Refusals say what was wrong, and name the input when one was.
    for (body, status, field, says) in [
        (json!({ "name": "" }), 400, Some("name"), "1 to 100 characters"),
        (json!({ "name": "x".repeat(101) }), 400, Some("name"), "1 to 100 characters"),
        (json!({ "name": "Gate", "group": 999_999 }), 400, Some("group"), "does not exist"),
        (json!({ "name": "Gate", "group_id": g }), 400, None, "unknown field `group_id`"),
        (json!({ "group": g }), 400, None, "missing field `name`"),
    ] {
        let r = t.api.post(&api).json(&body).send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{body}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert!(v["message"].as_str().is_some_and(|m| m.contains(says)), "{body}: {v}");
        assert_eq!(v["field"].as_str(), field, "{body}: {v}");
    }
    let r = t.api.post(&api).body("name=Gate").send().await.unwrap();
    assert_eq!(r.status(), 400, "a body that is not JSON");
    assert!(r.json::<serde_json::Value>().await.unwrap()["message"].as_str().unwrap().contains("JSON"));

    // Revoked, the board stops working and the list says when.
    let r = t.api.delete(format!("{api}/{id}")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let r = anonymous().get(format!("{}/board/{secret}", t.http)).send().await.unwrap();
    assert_eq!(r.status(), 404, "a revoked link shows no board");
    let r = anonymous().get(format!("{}/board/{secret}/events", t.http)).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let list: serde_json::Value = t.api.get(&api).send().await.unwrap().json().await.unwrap();
    let revoked = list.as_array().unwrap().iter().find(|l| l["id"] == id).expect("still listed");
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
    assert_eq!(t.api.delete(format!("{api}/{id}")).send().await.unwrap().status(), 204, "revoking again is no error");
    let r = t.api.delete(format!("{api}/999999")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.json::<serde_json::Value>().await.unwrap()["message"].as_str().unwrap().contains("no board link 999999"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_board_links_api_takes_an_admin_session_with_its_csrf_token_or_an_admin_token() {
    let t = spawn_app().await;
    let api = format!("{}/api/v1/board-links", t.http);
    let body = json!({ "name": "Gate" });

    let r = anonymous().get(&api).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let read = api_client(&t.pool, oee_core::store::account::TokenScope::Read).await;
    assert_eq!(read.get(&api).send().await.unwrap().status(), 403, "a read token");
    assert_eq!(read.post(&api).json(&body).send().await.unwrap().status(), 403);
    let (viewer, _) = Browser::signed_in_as(&t, "vera", Role::Viewer).await;
    assert_eq!(viewer.client.get(&api).send().await.unwrap().status(), 403, "a viewer");

    let (admin, _) = Browser::signed_in_as(&t, "ann", Role::Admin).await;
    assert_eq!(admin.client.get(&api).send().await.unwrap().status(), 200);
    let r = admin.client.post(&api).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 403, "a session write without its CSRF token");
    assert!(r.json::<serde_json::Value>().await.unwrap()["message"].as_str().unwrap().contains("security token"));
    let csrf = admin.csrf().await;
    let r = admin.client.post(&api).header("X-CSRF-Token", &csrf).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let made: serde_json::Value = r.json().await.unwrap();
    assert_eq!(made["created_by"], "ann", "{made}");
    let id = made["id"].as_i64().unwrap();
    let r = admin.client.delete(format!("{api}/{id}")).send().await.unwrap();
    assert_eq!(r.status(), 403, "a session revoke needs the token too");
    let r = admin.client.delete(format!("{api}/{id}")).header("X-CSRF-Token", &csrf).send().await.unwrap();
    assert_eq!(r.status(), 204);

    // The routes are in the API document, for administrators only.
    let doc: serde_json::Value =
        t.client.get(format!("{}/api/v1/openapi.json", t.http)).send().await.unwrap().json().await.unwrap();
    for (path, method) in
        [("/api/v1/board-links", "get"), ("/api/v1/board-links", "post"), ("/api/v1/board-links/{id}", "delete")]
    {
        let op = &doc["paths"][path][method];
        assert_eq!(op["tags"], json!(["boards"]), "{method} {path}");
        let security = op["security"].to_string();
        assert!(security.contains("\"admin\"") && !security.contains("viewer"), "{method} {path}: {security}");
    }
    let created = &doc["paths"]["/api/v1/board-links"]["post"]["responses"]["201"];
    assert!(created.to_string().contains("CreatedBoardLink"), "{created}");
    let mut documented = Vec::new();
    properties(&doc, &doc["components"]["schemas"]["CreatedBoardLink"], &mut documented);
    for key in made.as_object().unwrap().keys() {
        assert!(documented.contains(key), "`{key}` of the answer is documented: {documented:?}");
    }
}

/// The property names of a schema of the API document, through references and `allOf`.
fn properties(doc: &serde_json::Value, schema: &serde_json::Value, out: &mut Vec<String>) {
    if let Some(name) = schema["$ref"].as_str().and_then(|r| r.strip_prefix("#/components/schemas/")) {
        return properties(doc, &doc["components"]["schemas"][name], out);
    }
    out.extend(schema["properties"].as_object().into_iter().flat_map(|p| p.keys().cloned()));
    for part in schema["allOf"].as_array().into_iter().flatten() {
        properties(doc, part, out);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiles_oee_links_to_its_breakdown_on_the_signed_in_board_only() {
    let t = spawn_app().await;
    let press = t.add_machine("Press").await;
    let g = group_of(&t, "Hall 2", &[press]).await;

    // Signed in, the OEE of a tile leads to the breakdown of that machine's day, which opens.
    let (viewer, _) = Browser::signed_in_as(&t, "vera", Role::Viewer).await;
    for board in [format!("/dashboard?group={g}"), "/dashboard?group=all".to_string()] {
        let (status, html) = page(&viewer, &board).await;
        assert_eq!(status, 200);
        let tile = tile(&html, press).replace("&#x3D;", "=").replace("&amp;", "&");
        let at = tile.find("<a class=\"explain-link\" href=\"").unwrap_or_else(|| panic!("a link: {tile}"));
        let href: String = tile[at..].split('"').nth(3).unwrap().to_string();
        assert!(href.starts_with(&format!("/explain?machine={press}&from=")), "{href}");
        assert!(tile[at..].contains("</a></dd>"), "the link is the OEE figure: {tile}");
        let (status, breakdown) = page(&viewer, &href).await;
        assert_eq!(status, 200, "{breakdown}");
        assert!(breakdown.contains("Press"), "{breakdown}");
        // The breakdown needs sign-in: which is why a screen without it gets no link.
        let r = anonymous().get(format!("{}{href}", t.http)).send().await.unwrap();
        assert_eq!(r.status(), 302);
    }

    // Through a link, signed out, the figure is plain text and nothing leads to the breakdown.
    let (_, secret) =
        oee_core::store::board::create_board_link(&t.pool, "Hall 2 screen", Some(g), None, chrono::Utc::now())
            .await
            .unwrap();
    let r = anonymous().get(format!("{}/board/{secret}", t.http)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    let tile = tile(&html, press);
    assert!(tile.contains("<dd class=\"oee\">") && tile.contains("OEE today"), "{tile}");
    assert!(!html.contains("explain"), "no link to the breakdown, nor its address: {html}");
}
