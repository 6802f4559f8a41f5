//! What a request body must be before anything is published: declared as JSON (so that a web page cannot
//! send it cross-site as a "simple" form or text request), a JSON object, and free of NUL characters, which
//! no text column of the database takes.

use axum::http::{HeaderMap, header};
use serde_json::{Map, Value};

/// Why a request body is not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyFault {
    #[error("send the body as JSON with the header Content-Type: application/json")]
    NotJson,
    #[error("the body is not valid JSON: {0}")]
    Invalid(String),
    #[error("the body must be a JSON object")]
    NotObject,
    /// Where the NUL is: a field's path such as `note` or `items[2].name`.
    #[error("{0} contains a NUL character (\\u0000), which cannot be stored: remove it")]
    Nul(String),
}

impl BodyFault {
    /// A short machine-readable name of the fault.
    pub fn reason(&self) -> &'static str {
        match self {
            BodyFault::NotJson => "not_json",
            BodyFault::Invalid(_) | BodyFault::NotObject => "malformed",
            BodyFault::Nul(_) => "nul_character",
        }
    }
}

/// Whether the request says its body is JSON (`application/json` or `application/…+json`, any parameters).
pub(crate) fn is_json(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).and_then(|v| v.split(';').next()).is_some_and(
        |mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
        },
    )
}

/// The JSON object of a request body that is declared as JSON and carries no NUL in any key or string.
pub(crate) fn json_object(headers: &HeaderMap, body: &[u8]) -> Result<Map<String, Value>, BodyFault> {
    if !is_json(headers) {
        return Err(BodyFault::NotJson);
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| BodyFault::Invalid(e.to_string()))?;
    if let Some(path) = nul_in(&value, "") {
        return Err(BodyFault::Nul(if path.is_empty() { "the body".into() } else { format!("`{path}`") }));
    }
    match value {
        Value::Object(obj) => Ok(obj),
        _ => Err(BodyFault::NotObject),
    }
}

/// A text from elsewhere in the request (a query or path parameter), refused when it carries a NUL.
pub(crate) fn check_text(name: &str, text: &str) -> Result<(), BodyFault> {
    if text.contains('\0') { Err(BodyFault::Nul(format!("`{name}`"))) } else { Ok(()) }
}

/// The path of the first key or string in `value` that contains a NUL (`""` for `value` itself).
fn nul_in(value: &Value, path: &str) -> Option<String> {
    match value {
        Value::String(s) => s.contains('\0').then(|| path.to_string()),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, v)| nul_in(v, &format!("{path}[{i}]"))),
        Value::Object(obj) => obj.iter().find_map(|(k, v)| {
            let here = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
            if k.contains('\0') { Some(here.replace('\0', "\\u0000")) } else { nul_in(v, &here) }
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(content_type: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(ct) = content_type {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        }
        h
    }

    #[test]
    fn only_bodies_declared_as_json_are_read() {
        for ok in ["application/json", "application/json; charset=utf-8", "Application/JSON", "application/vnd.x+json"]
        {
            assert!(json_object(&headers(Some(ok)), b"{}").is_ok(), "{ok}");
        }
        for not in [None, Some("text/plain"), Some("application/x-www-form-urlencoded"), Some("multipart/form-data")] {
            assert_eq!(json_object(&headers(not), b"{}"), Err(BodyFault::NotJson), "{not:?}");
        }
    }

    #[test]
    fn a_nul_anywhere_is_found_with_its_path() {
        let json = headers(Some("application/json"));
        for (body, path) in [
            (r#"{"a": "x\u0000"}"#, "`a`"),
            (r#"{"a": {"b": ["ok", "\u0000"]}}"#, "`a.b[1]`"),
            (r#"{"k\u0000": 1}"#, "`k\\u0000`"),
            (r#""\u0000""#, "the body"),
        ] {
            assert_eq!(json_object(&json, body.as_bytes()), Err(BodyFault::Nul(path.into())), "{body}");
        }
        assert!(json_object(&json, br#"{"a": "\u0001 is fine", "b": [1, null]}"#).is_ok());
        assert_eq!(json_object(&json, b"[1]"), Err(BodyFault::NotObject));
        assert!(matches!(json_object(&json, b""), Err(BodyFault::Invalid(_))));
    }
}
