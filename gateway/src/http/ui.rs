//! The cluster dashboard: `GET /ui` (the page), `/ui/app.js`, `/ui/app.css`, and `GET /`,
//! which redirects to it.
//!
//! The files live in `gateway/ui/` and are compiled into the binary: no network, no build
//! step. The page reads the documented JSON endpoints (`/api/cluster`, `/api/cluster/models`,
//! the prediction and lifecycle endpoints) and renders data as text only. Every answer here
//! carries a Content-Security-Policy that allows this origin's script and style only (no
//! inline script), and `X-Content-Type-Options: nosniff`.

use axum::Router;
use axum::http::HeaderValue;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::state::AppState;

/// The page.
pub const INDEX_HTML: &str = include_str!("../../ui/index.html");
/// Its script.
pub const APP_JS: &str = include_str!("../../ui/app.js");
/// Its style sheet.
pub const APP_CSS: &str = include_str!("../../ui/app.css");

/// What the page may load and do: this origin only, no inline script or style, no framing.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; form-action 'none'; base-uri 'none'; \
    frame-ancestors 'none'";

/// The dashboard's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(root))
        .route("/ui", get(page))
        .route("/ui/app.js", get(script))
        .route("/ui/app.css", get(style))
}

/// `GET /`: a temporary redirect to the dashboard.
pub async fn root() -> Redirect {
    Redirect::temporary("/ui")
}

/// `GET /ui`: the dashboard page.
pub async fn page() -> Response {
    asset(INDEX_HTML, "text/html; charset=utf-8")
}

/// `GET /ui/app.js`.
pub async fn script() -> Response {
    asset(APP_JS, "text/javascript; charset=utf-8")
}

/// `GET /ui/app.css`.
pub async fn style() -> Response {
    asset(APP_CSS, "text/css; charset=utf-8")
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let headers = [
        (CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)),
        (X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        (X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
        // The files change with the binary: revalidate, so an upgrade shows at once.
        (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ];
    (headers, body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_stays_small_and_loads_no_inline_script() {
        let total = INDEX_HTML.len() + APP_JS.len() + APP_CSS.len();
        assert!(total < 300 * 1024, "the page is {total} bytes");
        let lower = INDEX_HTML.to_ascii_lowercase();
        assert!(lower.contains(r#"<script src="/ui/app.js""#));
        assert_eq!(
            lower.matches("<script").count(),
            1,
            "one external script only"
        );
        let handler = lower.split(" on").skip(1).any(|rest| {
            let name: String = rest.chars().take_while(char::is_ascii_lowercase).collect();
            !name.is_empty() && rest[name.len()..].starts_with('=')
        });
        assert!(!handler, "no inline event handlers");
        assert!(!lower.contains("style="), "no inline style");
        assert!(!lower.contains("http://") && !lower.contains("https://"));
        assert!(!APP_JS.contains("innerHTML"), "data is rendered as text");
    }
}
