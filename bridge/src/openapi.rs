//! The bridge's part of the API document (`GET /api/v1/openapi.json`, served by the web side): the v1
//! command API and the tablets' v1 routes, with the device token they take.
//!
//! The command API is one route (`/api/v1/machines/{machine}/{*command}`), but each command has its own
//! body: the document lists one path per command a client may send over HTTP, made from the route's
//! annotation and [`CommandKind::ALL`], so a new kind of command is documented as soon as it exists.

use oee_core::payload::{
    HistoryActivityCommand, HistoryJobCommand, HistoryProductionCommand, JobEndCommand, JobStartCommand,
    ProductionCommand, StateCommand, TelemetryCommand,
};
use oee_core::topic::CommandKind;
use oee_core::verdict::Verdict;
use utoipa::openapi::path::HttpMethod;
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, Required};
use utoipa::{OpenApi, ToSchema};

use crate::error::ErrorBody;

/// The name of the device token's security scheme in the document.
pub(crate) const DEVICE_TOKEN: &str = "device_token";

#[derive(OpenApi)]
#[openapi(paths(crate::tablet::machines, crate::tablet::pair), components(schemas(Verdict, ErrorBody, Refused)))]
struct BridgeApi;

/// What a refused command gets: ingest's verdict, or the bridge's own refusal when the command never reached
/// ingest (no or wrong token, a body that is not a JSON object, a path that names no machine or command, no
/// verdict in time).
#[derive(ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // Describes answers; never built.
pub(crate) enum Refused {
    Verdict(Verdict),
    Bridge(ErrorBody),
}

/// The body of `POST /api/v1/tablets/pair`, read field by field by the handler.
#[derive(ToSchema)]
#[allow(dead_code)] // Describes a request; never built.
pub(crate) struct PairRequest {
    /// The tablet's uuid, as it registered with `GET /check-state`.
    device_uuid: String,
    /// The machine to pair it with (a number, or a numeric string).
    machine_id: i32,
}

/// The bridge's part of the API document, to be merged into the web side's.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = BridgeApi::openapi();
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        DEVICE_TOKEN,
        SecurityScheme::Http({
            let mut http = Http::new(HttpAuthScheme::Bearer);
            http.description = Some(
                "A device's token, made by `oee-server device add`, sent as `Authorization: Bearer <token>`. A \
                 device may command only its own machines. Where an administrator turned on \
                 `bridge.open_device_api` (for devices made for the reference system), commands without a token \
                 are taken too."
                    .to_string(),
            );
            http
        }),
    );
    let template = <crate::command::__path_machine_command as utoipa::Path>::operation();
    for kind in CommandKind::ALL {
        let Some((schema, summary)) = command_body(kind, components) else { continue };
        let mut op = template.clone();
        op.summary = Some(summary.to_string());
        op.operation_id = Some(format!("command_{}", kind.suffix().replace('/', "_")));
        op.request_body = Some(
            RequestBodyBuilder::new()
                .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name(schema))).build())
                .required(Some(Required::True))
                .build()
                .into(),
        );
        doc.paths.add_path_operation(command_path(kind), vec![HttpMethod::Post], op);
    }
    doc
}

/// The document's path of one command.
pub(crate) fn command_path(kind: CommandKind) -> String {
    format!("/api/v1/machines/{{machine}}/{}", kind.suffix())
}

/// The body schema's name and a summary of a command clients may send over HTTP (its schema added to
/// `components`); `None` for the commands only the server sends.
fn command_body(kind: CommandKind, components: &mut utoipa::openapi::Components) -> Option<(String, &'static str)> {
    fn add<T: ToSchema>(components: &mut utoipa::openapi::Components) -> String {
        let mut schemas = vec![(T::name().to_string(), T::schema())];
        T::schemas(&mut schemas);
        for (name, schema) in schemas {
            components.schemas.entry(name).or_insert(schema);
        }
        T::name().to_string()
    }
    Some(match kind {
        CommandKind::State => (add::<StateCommand>(components), "Change the machine's activity"),
        CommandKind::Telemetry => (add::<TelemetryCommand>(components), "Store telemetry readings"),
        CommandKind::JobStart => (add::<JobStartCommand>(components), "Start a job"),
        CommandKind::JobEnd => (add::<JobEndCommand>(components), "End the running job with its counts"),
        CommandKind::Production => (add::<ProductionCommand>(components), "Report parts made"),
        CommandKind::HistoryActivity => {
            (add::<HistoryActivityCommand>(components), "Add a past activity, or change one")
        }
        CommandKind::HistoryJob => (add::<HistoryJobCommand>(components), "Add a past job, or change one"),
        CommandKind::HistoryProduction => {
            (add::<HistoryProductionCommand>(components), "Add a production record, or change one")
        }
        // Only the tablet API sends these, sealed by the server; over HTTP they are refused (403).
        CommandKind::Session => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_a_client_may_send_is_documented_with_its_body() {
        let doc = openapi();
        let schemas = &doc.components.as_ref().expect("components").schemas;
        for kind in CommandKind::ALL {
            let item = doc.paths.paths.get(&command_path(kind));
            if kind == CommandKind::Session {
                assert!(item.is_none(), "session commands are not for HTTP clients");
                continue;
            }
            let op =
                item.and_then(|i| i.post.as_ref()).unwrap_or_else(|| panic!("{} is not documented", kind.suffix()));
            let body = serde_json::to_value(op.request_body.as_ref().expect("a body")).unwrap();
            let name = body["content"]["application/json"]["schema"]["$ref"].as_str().unwrap().rsplit('/').next();
            assert!(schemas.contains_key(name.unwrap()), "{} has no schema for its body", kind.suffix());
            assert!(op.security.as_ref().is_some_and(|s| !s.is_empty()), "{} takes a device token", kind.suffix());
        }
    }

    #[test]
    fn documented_paths_are_routes_of_the_bridge() {
        let routes = crate::route_table();
        for (path, _) in openapi().paths.paths {
            let routed = routes.iter().any(|(_, p)| {
                *p == path || p.strip_suffix("{*command}").is_some_and(|prefix| path.starts_with(prefix))
            });
            assert!(routed, "{path} is documented but not routed");
        }
    }
}
