//! The help pages (`/help…`), open to everyone: getting started, devices (HTTP and MQTT, with examples
//! that use this server's address as the reader reached it), tablets, what the pages and exports show,
//! OEE's definitions, and administration. One template with a section per topic.

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::Response;
use serde::Serialize;

use crate::WebState;
use crate::access::{Access, Caller, Route};
use crate::page::Page;

/// Each topic: its path, its short name in the topics' list, and its heading.
const TOPICS: &[(&str, &str, &str)] = &[
    ("/help", "Getting started", "Help: getting started"),
    ("/help/devices", "Devices", "Devices: HTTP and MQTT"),
    ("/help/android", "Tablets", "Tablets"),
    ("/help/data", "Pages and exports", "Pages, boards and exports"),
    ("/help/reports", "OEE", "Reports and OEE definitions"),
    ("/help/admin", "Administration", "Administration"),
];

/// The help pages' routes, one per topic.
pub(crate) fn routes() -> Vec<Route> {
    vec![
        Route::get("/help", Access::Public, |s, c, h| topic(s, c, h, "/help")),
        Route::get("/help/devices", Access::Public, |s, c, h| topic(s, c, h, "/help/devices")),
        Route::get("/help/android", Access::Public, |s, c, h| topic(s, c, h, "/help/android")),
        Route::get("/help/data", Access::Public, |s, c, h| topic(s, c, h, "/help/data")),
        Route::get("/help/reports", Access::Public, |s, c, h| topic(s, c, h, "/help/reports")),
        Route::get("/help/admin", Access::Public, |s, c, h| topic(s, c, h, "/help/admin")),
    ]
}

/// One entry of the topics' list.
#[derive(Debug, Serialize)]
struct Topic {
    path: &'static str,
    label: &'static str,
    here: bool,
}

/// A help page's context.
#[derive(Debug, Serialize)]
struct Help {
    /// The topic's path, which picks its section of the template.
    topic: &'static str,
    heading: &'static str,
    topics: Vec<Topic>,
    /// This server as the reader reached it: `http://host:port`, the host alone, and the ports.
    address: String,
    host: String,
    mqtt_port: u16,
    discovery: String,
    version: &'static str,
}

/// The host (and port) the request came to, when it is a plain host name or address.
fn request_host(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.len() <= 255)
        .filter(|h| h.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c)))
}

/// `host` without its port (`[::1]:8080` → `[::1]`, `plant.example:8080` → `plant.example`).
fn without_port(host: &str) -> &str {
    match host.rfind(':') {
        Some(i) if !host[i..].contains(']') => &host[..i],
        _ => host,
    }
}

async fn topic(
    State(state): State<WebState>,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
    path: &'static str,
) -> Response {
    let caller = caller.map(|Extension(c)| c);
    let heading = TOPICS.iter().find(|t| t.0 == path).map_or("Help", |t| t.2);
    let fallback = format!("localhost:{}", state.config.http.listen.port());
    let host_port = request_host(&headers).unwrap_or(&fallback).to_string();
    let body = Help {
        topic: path,
        heading,
        topics: TOPICS.iter().map(|t| Topic { path: t.0, label: t.1, here: t.0 == path }).collect(),
        address: format!("http://{host_port}"),
        host: without_port(&host_port).to_string(),
        mqtt_port: state.config.broker.listen.port(),
        discovery: state.config.tablets.discovery_listen.clone(),
        version: env!("CARGO_PKG_VERSION"),
    };
    let page = Page::new(&state, caller.as_ref(), heading, "help", body).await;
    state.pages.render("help", &page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_examples_use_the_host_without_its_port_for_mqtt() {
        assert_eq!(without_port("plant.example:8080"), "plant.example");
        assert_eq!(without_port("plant.example"), "plant.example");
        assert_eq!(without_port("[::1]:8080"), "[::1]");
        assert_eq!(without_port("[::1]"), "[::1]");
    }

    #[test]
    fn only_plain_hosts_reach_the_examples() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "10.0.0.5:8080".parse().unwrap());
        assert_eq!(request_host(&h), Some("10.0.0.5:8080"));
        h.insert(header::HOST, "evil\"><x".parse().unwrap());
        assert_eq!(request_host(&h), None);
    }
}
