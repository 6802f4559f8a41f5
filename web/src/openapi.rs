//! The API document: `GET /api/v1/openapi.json`, an OpenAPI 3.1 description of every v1 route of the server,
//! made from the handlers' `#[utoipa::path]` annotations and the types' `ToSchema` derives.
//!
//! The web side's part lists its handlers in [`WebApi`] (reports, jobs, this document) and in `admin::AdminApi`
//! (the admin API); the bridge hands its part in (device commands, tablets). Who may call each web route is
//! not written in the annotations but taken from [`crate::access::table`], the one place that decides it,
//! so the document cannot promise other access than the server enforces.
//!
//! A new v1 handler is documented by annotating it with `#[utoipa::path(…)]` and adding it to the `paths(…)`
//! of `WebApi` or `AdminApi`; `tests/openapi.rs` fails for a v1 route the document lacks.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};
use oee_core::access::Role;
use utoipa::OpenApi;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};

use crate::WebState;
use crate::access::{Access, SESSION_COOKIE};

pub(crate) use shapes::{OeeReport, ReportCut, ReportError, TelemetryAgg, TelemetryAnswer, TelemetryKeys};

/// The names of the web side's security schemes in the document.
const SESSION: &str = "session";
const CSRF: &str = "csrf";
const API_TOKEN: &str = "api_token";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "OEE server",
        version = env!("CARGO_PKG_VERSION"),
        description = "The v1 API of the OEE server: OEE reports, telemetry and jobs, administration (users, API \
                       tokens, andon board links, machines, groups, activity codes, shift patterns, tablets, plant \
                       settings), the device command API and the tablets' v1 routes.\n\n\
                       Web routes take a browser session (the `oee_session` cookie set by signing in at `/login`; \
                       writes also need the session's `X-CSRF-Token`) or an API token (`Authorization: Bearer \
                       <token>`, made by an administrator; scope `read` acts as a viewer, `admin` as an \
                       administrator). Each operation's `security` names the least role (session) and scope \
                       (token) it needs. Device commands take a device token. Errors of the admin API are \
                       `{\"message\", \"field\"?}`; `field` names the input that was refused.",
        license(name = "Apache-2.0")
    ),
    paths(
        crate::oee_api::oee,
        crate::tables::api,
        crate::telemetry_api::telemetry,
        crate::telemetry_api::keys,
        crate::jobs_api::list,
        crate::jobs_api::one,
        serve
    ),
    // The body of the access check's 401 and 403, which every guarded operation gets.
    components(schemas(crate::api::ErrorBody)),
    tags(
        (name = "reports", description = "OEE reports and telemetry readings"),
        (name = "jobs", description = "Jobs with their production"),
        (name = "users", description = "Administration: users"),
        (name = "tokens", description = "Administration: API tokens for scripts"),
        (name = "boards", description = "Administration: links that show an andon board on a wall screen without sign-in"),
        (name = "machines", description = "Administration: machines and their settings"),
        (name = "groups", description = "Administration: machine groups"),
        (name = "codes", description = "Administration: activity codes"),
        (name = "shifts", description = "Administration: shift patterns"),
        (name = "tablet admin", description = "Administration: tablets, their pairing and their operators' sessions"),
        (name = "settings", description = "Administration: plant settings"),
        (name = "commands", description = "Device commands: the HTTP way to the MQTT command topics"),
        (name = "tablets", description = "The tablets' v1 routes"),
        (name = "documentation", description = "This document"),
    )
)]
struct WebApi;

/// The whole document: the web side's part, the admin API and `bridge` (the bridge's part, when the bridge
/// runs in this server), with each web operation's security taken from the access table.
pub(crate) fn document(bridge: Option<utoipa::openapi::OpenApi>) -> utoipa::openapi::OpenApi {
    let mut doc = WebApi::openapi();
    doc.merge(crate::admin::AdminApi::openapi());
    if let Some(bridge) = bridge {
        doc.merge(bridge);
    }
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        SESSION,
        SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
            SESSION_COOKIE,
            "The session cookie a browser gets by signing in at /login. Writes made with it also need `csrf`.",
        ))),
    );
    components.add_security_scheme(
        CSRF,
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            "X-CSRF-Token",
            "The session's CSRF token (the `csrf_token` field of the server's forms): needed with `session` on \
             every write.",
        ))),
    );
    components.add_security_scheme(API_TOKEN, {
        let mut http = Http::new(HttpAuthScheme::Bearer);
        http.description = Some(
            "An API token made by an administrator (Administration → API tokens, or POST /api/v1/tokens), sent \
             as `Authorization: Bearer <token>`. Scope `read` acts as a viewer, `admin` as an administrator; \
             an operation's requirement names the least scope it needs."
                .to_string(),
        );
        SecurityScheme::Http(http)
    });
    for route in crate::access::table() {
        if let Some(op) = doc.paths.paths.get_mut(route.path).and_then(|item| operation(item, &route.method)) {
            secure(op, route.access, &route.method);
        }
    }
    doc
}

/// The operation of `method` in a path item.
fn operation<'i>(item: &'i mut PathItem, method: &Method) -> Option<&'i mut Operation> {
    match *method {
        Method::GET => item.get.as_mut(),
        Method::POST => item.post.as_mut(),
        Method::PUT => item.put.as_mut(),
        Method::DELETE => item.delete.as_mut(),
        Method::PATCH => item.patch.as_mut(),
        _ => None,
    }
}

/// Writes what a route takes into its operation: none for public routes; otherwise a session of at least
/// the route's role (with the CSRF token for writes) or a token of the least scope that acts with that role,
/// and the 401 and 403 the access check answers.
fn secure(op: &mut Operation, access: Access, method: &Method) {
    let Access::Role(role) = access else {
        op.security = Some(Vec::new());
        return;
    };
    let scope = if role <= Role::Viewer { "read" } else { "admin" };
    let mut session = SecurityRequirement::new(SESSION, [role.as_str()]);
    if !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        session = session.add(CSRF, Vec::<String>::new());
    }
    op.security = Some(vec![session, SecurityRequirement::new(API_TOKEN, [scope])]);
    let needs = format!("Needs a session of the {role} role or higher, or an API token of scope `{scope}`.");
    op.description = Some(match op.description.take() {
        Some(d) if !d.is_empty() => format!("{d}\n\n{needs}"),
        _ => needs,
    });
    let refusal = |text: &str| {
        ResponseBuilder::new()
            .description(text)
            .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build())
            .build()
    };
    let responses = &mut op.responses.responses;
    responses.entry("401".into()).or_insert_with(|| refusal("Not signed in, or an unknown or revoked token").into());
    responses.entry("403".into()).or_insert_with(|| {
        refusal("The caller's role or scope is too low, or a session write without its CSRF token").into()
    });
}

/// The document as served: built once when the router is.
pub(crate) fn document_bytes(bridge: Option<utoipa::openapi::OpenApi>) -> Bytes {
    match document(bridge).to_json() {
        Ok(json) => Bytes::from(json),
        Err(e) => {
            tracing::error!("the API document cannot be written: {e}");
            Bytes::from_static(b"{}")
        }
    }
}

/// `GET /api/v1/openapi.json`.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "documentation",
    operation_id = "openapi_document",
    summary = "This document",
    description = "The OpenAPI document of every v1 route of this server. Read it with any OpenAPI viewer, or \
                   list the routes with `curl -s http://HOST/api/v1/openapi.json | jq '.paths | keys'`.",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json"))
)]
pub(crate) async fn serve(State(state): State<WebState>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], state.api_doc.clone()).into_response()
}

/// The shapes of answers the handlers build as JSON values (`json!`), for the document. They are never
/// built; `tests/openapi.rs` checks real answers against them.
#[allow(dead_code)]
mod shapes {
    use std::collections::BTreeMap;

    use chrono::{DateTime, Utc};
    use oee_core::oee::{Figures, Losses, Sums};
    use utoipa::ToSchema;

    /// How a report is cut into buckets.
    #[derive(ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub(crate) enum ReportCut {
        /// No buckets: the whole window only.
        None,
        /// Plant-local hours.
        Hour,
        /// Each in-shift interval of each machine's shift pattern.
        Shift,
        /// Plant days.
        Day,
        /// Each job of each machine.
        Job,
    }

    /// `GET /api/v1/oee`'s answer.
    #[derive(ToSchema)]
    pub(crate) struct OeeReport {
        /// The machines of the report: the one asked for, or the group's.
        machines: Vec<i32>,
        /// The group asked for.
        group: Option<i32>,
        /// The plant's time zone, in which days, hours and shifts are cut.
        timezone: String,
        by: ReportCut,
        /// Start of the window.
        from: DateTime<Utc>,
        /// End of the window.
        to: DateTime<Utc>,
        /// Breakdowns shorter than this count as minor stops.
        minor_stop_threshold_s: f64,
        /// All the machines over the whole window.
        total: Report,
        /// Each machine over the whole window, for a group (empty for one machine).
        by_machine: Vec<MachineReport>,
        /// One per bucket, in time order (empty when `by` is none).
        buckets: Vec<BucketReport>,
        /// How many whole past days came from the daily cache and how many were computed.
        cache: CacheUse,
    }

    /// Figures, losses, durations and target quantity of one machine or several over one stretch.
    #[derive(ToSchema)]
    pub(crate) struct Report {
        figures: Figures,
        losses: Losses,
        durations: Durations,
        /// Parts the ideal cycle time allows in the planned time inside jobs with one.
        target_quantity: f64,
        /// Parts the ideal cycle time allows in the run time inside jobs with one.
        target_quantity_run: f64,
        good: f64,
        rejects: f64,
        /// The additive totals the figures come from.
        sums: Sums,
    }

    /// Time per activity code and per machine state, in milliseconds.
    #[derive(ToSchema)]
    pub(crate) struct Durations {
        /// Milliseconds per activity code id.
        by_code_ms: BTreeMap<String, i64>,
        by_state_ms: StateDurations,
    }

    /// Milliseconds per machine state.
    #[derive(ToSchema)]
    pub(crate) struct StateDurations {
        uptime: i64,
        unplanned_downtime: i64,
        planned_downtime: i64,
        overtime: i64,
    }

    /// One machine's report in a group's.
    #[derive(ToSchema)]
    pub(crate) struct MachineReport {
        machine: i32,
        #[serde(flatten)]
        report: Report,
    }

    /// One bucket: for one machine (`machine`) or all of them, with its job when cut by job.
    #[derive(ToSchema)]
    pub(crate) struct BucketReport {
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        /// The machine, when the bucket is one machine's (shift and job buckets).
        #[serde(skip_serializing_if = "Option::is_none")]
        machine: Option<i32>,
        /// The job, when cut by job.
        #[serde(skip_serializing_if = "Option::is_none")]
        job: Option<JobLabel>,
        #[serde(flatten)]
        report: Report,
    }

    /// The job of a bucket.
    #[derive(ToSchema)]
    pub(crate) struct JobLabel {
        id: i64,
        job_number: String,
        ideal_cycle_time_s: Option<f64>,
        start: DateTime<Utc>,
        /// Absent while the job runs.
        end: Option<DateTime<Utc>>,
    }

    /// The daily cache's part in a report.
    #[derive(ToSchema)]
    pub(crate) struct CacheUse {
        days_read: u32,
        days_computed: u32,
    }

    /// `GET /api/v1/telemetry`'s answer.
    #[derive(ToSchema)]
    pub(crate) struct TelemetryReport {
        machine: i32,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        /// The most readings given.
        limit: i64,
        /// Whether the window held more readings than `limit`.
        truncated: bool,
        /// Oldest first.
        readings: Vec<Reading>,
    }

    /// One telemetry message as it was stored.
    #[derive(ToSchema)]
    pub(crate) struct Reading {
        ts: DateTime<Utc>,
        /// The readings, by name.
        data: BTreeMap<String, f64>,
    }

    /// `GET /api/v1/telemetry`'s answer: the readings without `bucket`, one value per bucket with it.
    #[derive(ToSchema)]
    #[serde(untagged)]
    pub(crate) enum TelemetryAnswer {
        Readings(TelemetryReport),
        Series(TelemetrySeries),
    }

    /// How the readings of one bucket become one value.
    #[derive(ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub(crate) enum TelemetryAgg {
        /// The mean of the readings.
        Avg,
        Min,
        Max,
        /// The value of the latest reading.
        Last,
        /// How many readings there are.
        Count,
        Sum,
    }

    /// Where a bucketed answer was read from.
    #[derive(ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub(crate) enum TelemetrySource {
        /// Every reading (buckets that are not whole hours).
        Raw,
        /// The hourly rollups, completed with the readings of the hours not rolled up yet (buckets of whole
        /// hours).
        Rollup,
    }

    /// `GET /api/v1/telemetry`'s answer with `bucket`: one key of one machine, one value per bucket.
    #[derive(ToSchema)]
    pub(crate) struct TelemetrySeries {
        machine: i32,
        key: String,
        /// The start of the first bucket: `from` moved back to a bucket start.
        from: DateTime<Utc>,
        /// The end of the last bucket: `to` moved forward to a bucket start.
        to: DateTime<Utc>,
        /// The bucket as given, like `15m`.
        bucket: String,
        agg: TelemetryAgg,
        source: TelemetrySource,
        /// One point per bucket that has readings (a bucket without readings is left out), oldest first.
        points: Vec<TelemetryPoint>,
    }

    /// One bucket's value.
    #[derive(ToSchema)]
    pub(crate) struct TelemetryPoint {
        /// The bucket's start.
        t: DateTime<Utc>,
        /// The aggregate of the bucket's readings (a whole number for `count`).
        v: f64,
    }

    /// `GET /api/v1/telemetry/keys`'s answer.
    #[derive(ToSchema)]
    pub(crate) struct TelemetryKeys {
        machine: i32,
        /// By name.
        keys: Vec<TelemetryKey>,
    }

    /// One key a machine sends.
    #[derive(ToSchema)]
    pub(crate) struct TelemetryKey {
        key: String,
        /// The time of its first reading.
        first: DateTime<Utc>,
        /// The time of its last reading.
        last: DateTime<Utc>,
        /// How many readings it has.
        count: i64,
    }

    /// A refusal of the report API.
    #[derive(ToSchema)]
    pub(crate) struct ReportError {
        /// What was wrong and what to do.
        error: String,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::openapi::path::HttpMethod;
    use utoipa::openapi::{OpenApiBuilder, PathsBuilder};

    #[test]
    fn the_document_merges_the_bridge_part_and_serializes() {
        let bridge = OpenApiBuilder::new()
            .paths(PathsBuilder::new().path(
                "/api/v1/machines/{machine}/state",
                PathItem::new(HttpMethod::Post, utoipa::openapi::path::OperationBuilder::new().build()),
            ))
            .build();
        let json: serde_json::Value = serde_json::from_slice(&document_bytes(Some(bridge))).unwrap();
        assert!(json["openapi"].as_str().unwrap().starts_with("3."), "{}", json["openapi"]);
        assert_eq!(json["info"]["title"], "OEE server");
        assert_eq!(json["info"]["version"], env!("CARGO_PKG_VERSION"));
        for path in ["/api/v1/oee", "/api/v1/users", "/api/v1/openapi.json", "/api/v1/machines/{machine}/state"] {
            assert!(json["paths"][path].is_object(), "{path} is missing");
        }
        for scheme in [SESSION, CSRF, API_TOKEN] {
            assert!(json["components"]["securitySchemes"][scheme].is_object(), "{scheme} is missing");
        }
    }

    #[test]
    fn security_is_what_the_access_table_says() {
        let json = serde_json::to_value(document(None)).unwrap();
        let security = |path: &str, method: &str| json["paths"][path][method]["security"].clone();
        assert_eq!(security("/api/v1/openapi.json", "get"), serde_json::json!([]));
        assert_eq!(
            security("/api/v1/oee", "get"),
            serde_json::json!([{ "session": ["viewer"] }, { "api_token": ["read"] }])
        );
        assert_eq!(
            security("/api/v1/users", "post"),
            serde_json::json!([{ "session": ["admin"], "csrf": [] }, { "api_token": ["admin"] }])
        );
        assert!(json["paths"]["/api/v1/users"]["post"]["responses"]["403"].is_object());
    }

    #[test]
    fn operation_ids_are_unique() {
        let json = serde_json::to_value(document(None)).unwrap();
        let mut seen = std::collections::HashSet::new();
        for (path, item) in json["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path} has no id"));
                assert!(seen.insert(id.to_string()), "{method} {path}: operationId {id} twice");
            }
        }
    }
}
