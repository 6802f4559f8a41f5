//! `GET /operator`: the operator tablet page, the browser equivalent of the reference's Android app. A
//! static page (HTML, CSS, plain JS) built into the binary; everything it shows comes from the tablet API
//! (`/check-state`, `/android-*`, `/api/v1/tablets/*`) and the tablet websocket, so any browser on the
//! plant network can be a tablet with nothing loaded from elsewhere.
//!
//! Caching: every answer says `no-cache` and carries an ETag of its content, so a tablet revalidates each
//! file on each load (a cheap 304) and picks up a new version as soon as the server is upgraded.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::access::{Access, Route};

/// One file compiled into the binary, served with an ETag and `no-cache`.
pub(crate) struct Asset {
    body: &'static str,
    content_type: &'static str,
    /// FNV-1a of the body, computed at compile time: the ETag.
    hash: u64,
}

const PAGE: Asset = Asset::new(include_str!("../assets/operator/index.html"), "text/html; charset=utf-8");
const STYLE: Asset = Asset::new(include_str!("../assets/operator/operator.css"), "text/css; charset=utf-8");
const SCRIPT: Asset = Asset::new(include_str!("../assets/operator/operator.js"), "text/javascript; charset=utf-8");

/// The page may load only its own files and talk only to its own server (HTTP and websocket; `ws:`/`wss:`
/// because older browsers do not count a websocket to the same host as `'self'`). `form-action 'none'`
/// keeps a PIN out of a URL should the script ever fail to take over the forms.
const PAGE_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

impl Asset {
    pub(crate) const fn new(body: &'static str, content_type: &'static str) -> Asset {
        let bytes = body.as_bytes();
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut i = 0;
        while i < bytes.len() {
            hash ^= bytes[i] as u64;
            hash = hash.wrapping_mul(0x0100_0000_01b3);
            i += 1;
        }
        Asset { body, content_type, hash }
    }

    fn etag(&self) -> String {
        format!("\"{:016x}\"", self.hash)
    }

    /// Whether the browser's `If-None-Match` names this version (weak or strong, or `*`).
    fn unchanged_for(&self, headers: &HeaderMap) -> bool {
        let etag = self.etag();
        headers.get_all(header::IF_NONE_MATCH).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(
            |tag| {
                let tag = tag.trim();
                tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag
            },
        )
    }

    pub(crate) fn respond(&self, headers: &HeaderMap) -> Response {
        let etag = HeaderValue::from_str(&self.etag()).expect("a quoted hex string is a header value");
        let cache = (header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        if self.unchanged_for(headers) {
            return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag), cache]).into_response();
        }
        let mut response = (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(self.content_type)),
                (header::ETAG, etag),
                cache,
                (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
            ],
            self.body,
        )
            .into_response();
        if self.content_type.starts_with("text/html") {
            response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(PAGE_POLICY));
        }
        response
    }
}

/// The page and its two files, at the paths the page links to: open to any browser, as a tablet is (the
/// tablet API behind it decides what the page may do).
pub(crate) fn routes() -> Vec<Route> {
    vec![
        Route::get("/operator", Access::Public, |h: HeaderMap| async move { PAGE.respond(&h) }),
        Route::get("/operator/operator.css", Access::Public, |h: HeaderMap| async move { STYLE.respond(&h) }),
        Route::get("/operator/operator.js", Access::Public, |h: HeaderMap| async move { SCRIPT.respond(&h) }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(r: Response) -> String {
        let bytes = axum::body::to_bytes(r.into_body(), usize::MAX).await.unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn each_file_is_served_with_its_content_type_an_etag_and_no_cache() {
        for (asset, ctype) in [
            (&PAGE, "text/html; charset=utf-8"),
            (&STYLE, "text/css; charset=utf-8"),
            (&SCRIPT, "text/javascript; charset=utf-8"),
        ] {
            let r = asset.respond(&HeaderMap::new());
            assert_eq!(r.status(), StatusCode::OK);
            assert_eq!(r.headers()[header::CONTENT_TYPE], ctype);
            assert_eq!(r.headers()[header::CACHE_CONTROL], "no-cache");
            assert_eq!(r.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            assert_eq!(r.headers()[header::ETAG], asset.etag().as_str());
            assert_eq!(body(r).await, asset.body);
        }
        assert_ne!(PAGE.etag(), SCRIPT.etag());
    }

    #[tokio::test]
    async fn a_known_version_is_answered_304_without_a_body() {
        for sent in [SCRIPT.etag(), format!("W/{}", SCRIPT.etag()), format!("\"other\", {}", SCRIPT.etag())] {
            let mut h = HeaderMap::new();
            h.insert(header::IF_NONE_MATCH, HeaderValue::from_str(&sent).unwrap());
            let r = SCRIPT.respond(&h);
            assert_eq!(r.status(), StatusCode::NOT_MODIFIED, "{sent}");
            assert_eq!(r.headers()[header::CACHE_CONTROL], "no-cache");
            assert_eq!(body(r).await, "");
        }
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"0000000000000000\""));
        assert_eq!(SCRIPT.respond(&h).status(), StatusCode::OK, "an old version gets the new file");
    }

    #[test]
    fn the_page_loads_only_its_own_files() {
        assert!(PAGE.body.contains(r#"href="/operator/operator.css""#));
        assert!(PAGE.body.contains(r#"src="/operator/operator.js""#));
        for asset in [&PAGE, &STYLE, &SCRIPT] {
            for outside in ["http://", "https://", "@import", "url("] {
                assert!(!asset.body.contains(outside), "{} contains {outside}", asset.content_type);
            }
        }
        assert!(!SCRIPT.body.contains("randomUUID"), "not available on plain-http pages");
    }

    #[test]
    fn only_the_page_carries_the_content_policy() {
        let r = PAGE.respond(&HeaderMap::new());
        assert!(r.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap().contains("script-src 'self'"));
        assert!(SCRIPT.respond(&HeaderMap::new()).headers().get(header::CONTENT_SECURITY_POLICY).is_none());
    }
}
