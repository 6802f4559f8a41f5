//! `GET /api/v1/openapi.json`: an OpenAPI 3 document that lists every v1 route the server has (web and
//! bridge), no route it lacks, and schemas that real answers match.

mod common;

use std::collections::{BTreeSet, HashSet};

use axum::http::Method;
use common::*;
use serde_json::{Value, json};

const DOCUMENT: &str = "/api/v1/openapi.json";

/// The methods an OpenAPI path item may hold.
const METHODS: [&str; 8] = ["get", "put", "post", "delete", "patch", "head", "options", "trace"];

async fn document(t: &TestApp) -> Value {
    let r = t.client.get(format!("{}{DOCUMENT}", t.http)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "the document is public");
    let ctype = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert!(ctype.starts_with("application/json"), "{ctype}");
    r.json().await.expect("the document is JSON")
}

/// Every route of the server (method in lower case, path in axum's syntax) whose path starts with `/api/v1/`.
fn v1_routes() -> Vec<(String, &'static str)> {
    let web = oee_web::route_table().into_iter().map(|(m, p, _)| (m, p));
    web.chain(oee_bridge::route_table())
        .filter(|(_, p)| p.starts_with("/api/v1/"))
        .map(|(m, p): (Method, &str)| (m.as_str().to_ascii_lowercase(), p))
        .collect()
}

/// Whether the document path `documented` is served by the route `route`: the same text, or, for a route
/// ending in a catch-all (`{*command}`), any path below the route's fixed part.
fn serves(route: &str, documented: &str) -> bool {
    match route.split_once("{*") {
        None => route == documented,
        Some((prefix, _)) => documented.len() > prefix.len() && documented.starts_with(prefix),
    }
}

/// The (method, path) pairs of the document.
fn documented(doc: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            if item.get(method).is_some() {
                out.push((method.to_string(), path.clone()));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_is_openapi_3_with_info_paths_and_the_security_schemes() {
    let t = spawn_app().await;
    let doc = document(&t).await;
    let version = doc["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3."), "openapi: {version:?}");
    assert_eq!(doc["info"]["title"], "OEE server");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(doc["paths"].as_object().is_some_and(|p| !p.is_empty()), "no paths");
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["session"]["in"], "cookie");
    assert_eq!(schemes["csrf"]["name"], "X-CSRF-Token");
    assert_eq!(schemes["api_token"]["scheme"], "bearer");
    assert_eq!(schemes["device_token"]["scheme"], "bearer");
    assert_eq!(doc["paths"]["/api/v1/machines/{machine}/state"]["post"]["security"], json!([{ "device_token": [] }]));
    assert_eq!(
        doc["paths"]["/api/v1/users/{id}"]["put"]["security"],
        json!([{ "session": ["admin"], "csrf": [] }, { "api_token": ["admin"] }])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_v1_route_is_in_the_document() {
    let t = spawn_app().await;
    let doc = document(&t).await;
    let documented = documented(&doc);
    let routes = v1_routes();
    assert!(routes.iter().any(|(_, p)| p.starts_with("/api/v1/machines/")), "the bridge's routes are listed");
    let missing: BTreeSet<String> = routes
        .iter()
        .filter(|(_, path)| *path != DOCUMENT)
        .filter(|(method, path)| !documented.iter().any(|(m, p)| m == method && serves(path, p)))
        .map(|(method, path)| format!("{} {path}", method.to_uppercase()))
        .collect();
    assert!(
        missing.is_empty(),
        "v1 routes missing from {DOCUMENT} (annotate the handler with #[utoipa::path] and add it to WebApi or \
         AdminApi in web, or to the bridge's document): {missing:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_path_is_a_route() {
    let t = spawn_app().await;
    let doc = document(&t).await;
    let routes = v1_routes();
    let stale: BTreeSet<String> = documented(&doc)
        .into_iter()
        .filter(|(method, path)| !routes.iter().any(|(m, r)| m == method && serves(r, path)))
        .map(|(method, path)| format!("{} {path}", method.to_uppercase()))
        .collect();
    assert!(stale.is_empty(), "documented but not routed: {stale:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridge_part_is_merged_whole_and_operations_are_named_once() {
    let t = spawn_app().await;
    let doc = document(&t).await;
    let bridge = serde_json::to_value(oee_bridge::openapi()).unwrap();
    for (name, schema) in bridge["components"]["schemas"].as_object().unwrap() {
        // A web schema of the same name would silently take the bridge's place.
        assert_eq!(&doc["components"]["schemas"][name], schema, "schema {name} differs from the bridge's");
    }
    for (path, item) in bridge["paths"].as_object().unwrap() {
        assert_eq!(&doc["paths"][path], item, "{path}");
    }
    let mut ids = HashSet::new();
    for (method, path) in documented(&doc) {
        let id = doc["paths"][&path][&method]["operationId"].as_str().unwrap_or_default().to_string();
        assert!(!id.is_empty() && ids.insert(id.clone()), "{method} {path}: operationId {id:?} missing or twice");
    }
}

/// An API token of scope admin, made directly in the database.
async fn admin_token(t: &TestApp) -> String {
    let scope = oee_core::store::account::TokenScope::Admin;
    oee_core::store::account::create_token(&t.pool, "openapi test", scope, None, chrono::Utc::now()).await.unwrap().1
}

/// The operation of the document that serves `method` `path` (a concrete path, e.g. `/api/v1/users/3`).
fn operation<'d>(doc: &'d Value, method: &str, path: &str) -> &'d Value {
    let concrete: Vec<&str> = path.split('/').collect();
    let (_, item) = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(template, item)| {
            let parts: Vec<&str> = template.split('/').collect();
            item.get(method).is_some()
                && parts.len() == concrete.len()
                && parts.iter().zip(&concrete).all(|(p, c)| p == c || (p.starts_with('{') && p.ends_with('}')))
        })
        .unwrap_or_else(|| panic!("no operation for {method} {path}"));
    &item[method]
}

/// The schema the document gives for the answer `status` of an operation.
fn response_schema(op: &Value, status: u16) -> &Value {
    let schema = &op["responses"][status.to_string()]["content"]["application/json"]["schema"];
    assert!(!schema.is_null(), "no JSON schema for {status} in {op}");
    schema
}

fn resolve<'d>(doc: &'d Value, schema: &'d Value) -> &'d Value {
    match schema["$ref"].as_str().and_then(|r| r.strip_prefix("#/components/schemas/")) {
        Some(name) => resolve(doc, &doc["components"]["schemas"][name]),
        None => schema,
    }
}

/// The properties an object schema names, through `allOf` and references.
fn properties(doc: &Value, schema: &Value, out: &mut Vec<(String, Value)>, required: &mut Vec<String>) {
    let schema = resolve(doc, schema);
    if let Some(props) = schema["properties"].as_object() {
        out.extend(props.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    if let Some(req) = schema["required"].as_array() {
        required.extend(req.iter().filter_map(|r| r.as_str().map(String::from)));
    }
    for part in schema["allOf"].as_array().into_iter().flatten() {
        properties(doc, part, out, required);
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Checks `value` against `schema`: types, enums, required properties, and no property the schema does not
/// name (so an answer that grew a field the document lacks is caught). Pushes what does not match.
fn check(doc: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    let schema = resolve(doc, schema);
    if let Some(alternatives) = schema["oneOf"].as_array().or(schema["anyOf"].as_array()) {
        let fits = alternatives.iter().any(|alt| {
            let mut e = Vec::new();
            check(doc, alt, value, at, &mut e);
            e.is_empty()
        });
        if !fits {
            errors.push(format!("{at}: {value} matches none of {alternatives:?}"));
        }
        return;
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ if schema["allOf"].is_array() => vec!["object"],
        _ => vec![],
    };
    let actual = json_type(value);
    if !types.is_empty() && !types.iter().any(|t| *t == actual || (*t == "number" && actual == "integer")) {
        errors.push(format!("{at}: {actual} {value} where the document says {types:?}"));
        return;
    }
    if let Some(values) = schema["enum"].as_array()
        && !values.contains(value)
    {
        errors.push(format!("{at}: {value} is not one of {values:?}"));
    }
    match value {
        Value::Object(obj) => {
            let (mut props, mut required) = (Vec::new(), Vec::new());
            properties(doc, schema, &mut props, &mut required);
            for name in required {
                if !obj.contains_key(&name) {
                    errors.push(format!("{at}: required `{name}` is missing"));
                }
            }
            for (key, v) in obj {
                match props.iter().find(|(k, _)| k == key) {
                    Some((_, s)) => check(doc, s, v, &format!("{at}.{key}"), errors),
                    None => match &schema["additionalProperties"] {
                        Value::Object(_) => {
                            check(doc, &schema["additionalProperties"], v, &format!("{at}.{key}"), errors)
                        }
                        Value::Bool(true) => {}
                        _ => errors.push(format!("{at}: `{key}` is not in the document")),
                    },
                }
            }
        }
        Value::Array(items) if schema["items"].is_object() => {
            for (i, item) in items.iter().enumerate() {
                check(doc, &schema["items"], item, &format!("{at}[{i}]"), errors);
            }
        }
        _ => {}
    }
}

/// Calls `method` `path` (with the admin token and `body`, if any), expects `status`, and checks the answer
/// against the document's schema for it.
async fn conforms(
    t: &TestApp,
    doc: &Value,
    token: Option<&str>,
    method: Method,
    path: &str,
    body: Option<Value>,
    status: u16,
) -> Value {
    let mut req = t.client.request(method.clone(), format!("{}{path}", t.http));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let r = req.send().await.unwrap();
    let got = r.status().as_u16();
    let text = r.text().await.unwrap();
    assert_eq!(got, status, "{method} {path}: {text}");
    let value: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: not JSON: {e}: {text}"));
    let op = operation(doc, &method.as_str().to_ascii_lowercase(), path.split('?').next().unwrap_or(path));
    let mut errors = Vec::new();
    check(doc, response_schema(op, status), &value, "body", &mut errors);
    assert!(errors.is_empty(), "{method} {path} ({status}) does not match the document:\n{}", errors.join("\n"));
    value
}

async fn sql(t: &TestApp, q: &str) {
    sqlx::query(sqlx::AssertSqlSafe(q.to_string())).execute(&t.pool).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_match_the_documented_schemas() {
    let t = spawn_app().await;
    let doc = document(&t).await;
    let token = admin_token(&t).await;
    let tk = Some(token.as_str());
    let m = t.add_machine("Press 1").await;
    sql(
        &t,
        &format!(
            "WITH j AS (INSERT INTO job (machine_id, job_number, ideal_cycle_time_s, start_time, end_time, active) \
             VALUES ({m}, 'J1', 30, '2024-01-10 08:00Z', '2024-01-10 12:00Z', false) RETURNING id) \
             INSERT INTO production_quantity (machine_id, job_id, start_time, end_time, quantity_good, quantity_rejects) \
             SELECT {m}, id, '2024-01-10 08:00Z', '2024-01-10 12:00Z', 90, 10 FROM j"
        ),
    )
    .await;
    sql(
        &t,
        &format!(
            "INSERT INTO activity (machine_id, activity_code_id, start_time, end_time) VALUES \
             ({m}, 1, '2024-01-10 08:00Z', '2024-01-10 10:00Z'), ({m}, 2, '2024-01-10 10:00Z', '2024-01-10 12:00Z')"
        ),
    )
    .await;
    sql(
        &t,
        &format!("INSERT INTO telemetry (machine_id, key, ts, value) VALUES ({m}, 'temp', '2024-01-10 08:05Z', 71.5)"),
    )
    .await;
    let group: i32 =
        sqlx::query_scalar("SELECT group_id FROM machine WHERE id = $1").bind(m).fetch_one(&t.pool).await.unwrap();
    let window = "from=2024-01-10&to=2024-01-11";

    // Reports.
    for query in [format!("machine={m}&{window}&by=job"), format!("group={group}&{window}&by=hour")] {
        let report = conforms(&t, &doc, tk, Method::GET, &format!("/api/v1/oee?{query}"), None, 200).await;
        assert!(report["buckets"].as_array().is_some_and(|b| !b.is_empty()), "{query}: buckets to check");
    }
    let readings =
        conforms(&t, &doc, tk, Method::GET, &format!("/api/v1/telemetry?machine={m}&{window}"), None, 200).await;
    assert_eq!(readings["readings"].as_array().map(Vec::len), Some(1));
    conforms(&t, &doc, tk, Method::GET, "/api/v1/oee", None, 400).await;
    conforms(&t, &doc, tk, Method::GET, "/api/v1/telemetry?machine=99999", None, 404).await;
    conforms(&t, &doc, None, Method::GET, "/api/v1/oee", None, 401).await;

    // Administration.
    let user = json!({ "username": "openapi", "role": "viewer", "password": "long enough" });
    let created = conforms(&t, &doc, tk, Method::POST, "/api/v1/users", Some(user.clone()), 201).await;
    let id = created["id"].as_i64().unwrap();
    conforms(&t, &doc, tk, Method::POST, "/api/v1/users", Some(user), 409).await;
    conforms(&t, &doc, tk, Method::GET, "/api/v1/users", None, 200).await;
    conforms(&t, &doc, tk, Method::GET, &format!("/api/v1/users/{id}"), None, 200).await;
    let update = json!({ "username": "openapi", "role": "supervisor", "active": true });
    conforms(&t, &doc, tk, Method::PUT, &format!("/api/v1/users/{id}"), Some(update), 200).await;
    conforms(&t, &doc, tk, Method::PUT, &format!("/api/v1/users/{id}/password"), Some(json!({ "password": "x" })), 400)
        .await;
    conforms(&t, &doc, tk, Method::GET, "/api/v1/users/99999", None, 404).await;
    conforms(&t, &doc, tk, Method::POST, "/api/v1/tokens", Some(json!({ "name": "script", "scope": "read" })), 201)
        .await;
    conforms(&t, &doc, tk, Method::GET, "/api/v1/tokens", None, 200).await;
    conforms(&t, &doc, tk, Method::DELETE, "/api/v1/tokens/99999", None, 404).await;

    // Jobs.
    let jobs = conforms(&t, &doc, tk, Method::GET, &format!("/api/v1/jobs?machine={m}&{window}"), None, 200).await;
    let job = jobs[0]["id"].as_i64().expect("the job made above is listed");
    let detail = conforms(&t, &doc, tk, Method::GET, &format!("/api/v1/jobs/{job}"), None, 200).await;
    assert_eq!(detail["production"].as_array().map(Vec::len), Some(1), "{detail}");
    conforms(&t, &doc, tk, Method::GET, "/api/v1/jobs?limit=0", None, 400).await;
    conforms(&t, &doc, tk, Method::GET, "/api/v1/jobs/99999", None, 404).await;

    // Machines, groups and activity codes.
    let machines = conforms(&t, &doc, tk, Method::GET, "/api/v1/machines", None, 200).await;
    assert!(machines.as_array().is_some_and(|l| !l.is_empty()), "{machines}");
    conforms(&t, &doc, tk, Method::GET, &format!("/api/v1/machines/{m}"), None, 200).await;
    let press2 = json!({ "name": "Press 2", "group": null, "workflow_type": "pausable" });
    conforms(&t, &doc, tk, Method::POST, "/api/v1/machines", Some(press2), 201).await;
    conforms(&t, &doc, tk, Method::PUT, &format!("/api/v1/machines/{m}"), Some(json!({ "name": "Press 2" })), 409)
        .await;
    conforms(&t, &doc, tk, Method::GET, "/api/v1/machines/99999", None, 404).await;
    conforms(&t, &doc, tk, Method::GET, "/api/v1/groups", None, 200).await;
    let made = conforms(&t, &doc, tk, Method::POST, "/api/v1/groups", Some(json!({ "name": "Hall B" })), 201).await;
    assert_eq!(made["machines"], json!([]));
    let members = conforms(&t, &doc, tk, Method::GET, &format!("/api/v1/groups/{group}"), None, 200).await;
    assert!(members["machines"].as_array().is_some_and(|l| !l.is_empty()), "machines to check: {members}");
    conforms(&t, &doc, tk, Method::PUT, "/api/v1/groups/99999", Some(json!({ "name": "x" })), 404).await;
    conforms(&t, &doc, tk, Method::GET, "/api/v1/codes", None, 200).await;
    conforms(&t, &doc, tk, Method::GET, "/api/v1/codes/2", None, 200).await;
    let code = json!({ "short_description": "Tool change", "graph_colour": "#FF8000", "machine_state": 3 });
    conforms(&t, &doc, tk, Method::POST, "/api/v1/codes", Some(code), 201).await;
    conforms(&t, &doc, tk, Method::PUT, "/api/v1/codes/2", Some(json!({ "graph_colour": "orange" })), 400).await;

    // Shift patterns, with a night shift so that the preview has a split interval.
    let week = json!({ "days": [
        [{ "start": "06:00", "end": "14:00" }, { "start": "22:00", "end": "06:00", "overnight": true }],
        [], [], [], [], [], []
    ] });
    let pattern = json!({ "name": "Two shifts", "week": week });
    let made = conforms(&t, &doc, tk, Method::POST, "/api/v1/shifts", Some(pattern), 201).await;
    let shift = made["id"].as_i64().unwrap();
    conforms(&t, &doc, tk, Method::GET, "/api/v1/shifts", None, 200).await;
    conforms(&t, &doc, tk, Method::GET, &format!("/api/v1/shifts/{shift}"), None, 200).await;
    let preview = conforms(&t, &doc, tk, Method::GET, &format!("/api/v1/shifts/{shift}/preview"), None, 200).await;
    assert_eq!(preview["days"][1]["intervals"][0]["from_previous_day"], true, "{preview}");
    let bad_week = json!({ "week": { "days": [[{ "start": "14:00", "end": "06:00" }], [], [], [], [], [], []] } });
    conforms(&t, &doc, tk, Method::PUT, &format!("/api/v1/shifts/{shift}"), Some(bad_week), 400).await;
    conforms(&t, &doc, tk, Method::GET, "/api/v1/shifts/99999/preview", None, 404).await;

    // Tablets and plant settings.
    let r = t.client.get(format!("{}/check-state", t.http)).query(&[("device_uuid", "openapi-tablet")]).send().await;
    assert_eq!(r.unwrap().status().as_u16(), 200, "the tablet registers");
    let tablets = conforms(&t, &doc, tk, Method::GET, "/api/v1/admin/tablets", None, 200).await;
    let tablet = tablets[0]["id"].as_i64().expect("the tablet is listed");
    let paired = json!({ "machine_id": m });
    conforms(&t, &doc, tk, Method::PUT, &format!("/api/v1/admin/tablets/{tablet}/machine"), Some(paired), 200).await;
    conforms(&t, &doc, tk, Method::GET, &format!("/api/v1/admin/tablets/{tablet}"), None, 200).await;
    conforms(&t, &doc, tk, Method::PUT, &format!("/api/v1/admin/tablets/{tablet}"), Some(json!({ "name": "" })), 400)
        .await;
    conforms(&t, &doc, tk, Method::POST, &format!("/api/v1/admin/tablets/{tablet}/logout"), None, 409).await;
    conforms(&t, &doc, tk, Method::GET, "/api/v1/admin/tablets/pairing-window", None, 200).await;
    let open = conforms(
        &t,
        &doc,
        tk,
        Method::PUT,
        "/api/v1/admin/tablets/pairing-window",
        Some(json!({ "minutes": 10 })),
        200,
    )
    .await;
    assert_eq!(open["open"], true);
    conforms(&t, &doc, tk, Method::GET, "/api/v1/settings", None, 200).await;
    let set =
        conforms(&t, &doc, tk, Method::PUT, "/api/v1/settings", Some(json!({ "minor_stop_threshold_s": 90 })), 200)
            .await;
    assert_eq!(set["minor_stop_threshold_source"], "setting");
    conforms(&t, &doc, tk, Method::PUT, "/api/v1/settings", Some(json!({ "minor_stop_threshold_s": -1 })), 400).await;

    // Device commands (the test server takes commands without a device token) and the tablets' list.
    let applied = conforms(
        &t,
        &doc,
        None,
        Method::POST,
        &format!("/api/v1/machines/{m}/telemetry"),
        Some(json!({ "temp": 70 })),
        200,
    )
    .await;
    assert_eq!(applied["ok"], true);
    conforms(
        &t,
        &doc,
        None,
        Method::POST,
        &format!("/api/v1/machines/{m}/state"),
        Some(json!({ "activity_code_id": 99999 })),
        404,
    )
    .await;
    conforms(
        &t,
        &doc,
        None,
        Method::POST,
        &format!("/api/v1/machines/{m}/job/end"),
        Some(json!({ "good": "many" })),
        400,
    )
    .await;
    conforms(&t, &doc, None, Method::GET, "/api/v1/tablets/machines", None, 200).await;
}
