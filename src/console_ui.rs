//! The operator's console: a static page and its script and style, embedded in the binary
//! (no CDN, works offline), served by the admin listener at `/` and `/console/*`.
//!
//! Vanilla JavaScript and CSS, no framework: the console is a handful of tables, a detail
//! view and one chart, which the DOM draws in a few hundred lines; a framework would weigh
//! more than the whole app and bring a build step. Everything it shows comes from the admin
//! API (`/api/*`), which authenticates each call; these files hold no data, so they are
//! served without a token (the sign-in form is one of them).
//!
//! Every answer carries a strict Content Security Policy (`default-src 'self'`, no inline
//! script or style, no framing), so a delivery's captured bytes shown in the page can never
//! run as script, and `Cache-Control: no-cache` with an `ETag`, so an upgraded binary's
//! console is picked up at once while unchanged files cost a 304.

use crate::response::{full, Body};
use http::header::{
    HeaderValue, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use http::{HeaderMap, Response, StatusCode};

/// One embedded file: its bytes, its content type and its entity tag.
struct Asset {
    body: &'static [u8],
    content_type: &'static str,
    etag: &'static str,
}

const INDEX: &[u8] = include_bytes!("../console/index.html");
const APP_JS: &[u8] = include_bytes!("../console/app.js");
const APP_CSS: &[u8] = include_bytes!("../console/app.css");
const ICON: &[u8] = include_bytes!("../console/icon.svg");

/// FNV-1a of the file, computed at compile time: the entity tag changes with the content.
const fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    h
}

/// The entity tag of `bytes` as a quoted hex string, built at compile time.
macro_rules! etag {
    ($bytes:expr) => {{
        const H: u64 = fnv($bytes);
        const HEX: [u8; 18] = {
            let digits = b"0123456789abcdef";
            let mut out = [b'"'; 18];
            let mut i = 0;
            while i < 16 {
                out[1 + i] = digits[((H >> (60 - 4 * i)) & 0xf) as usize];
                i += 1;
            }
            out
        };
        match std::str::from_utf8(&HEX) {
            Ok(s) => s,
            Err(_) => panic!("hex digits are UTF-8"),
        }
    }};
}

/// The policy every console answer carries: only this listener's own files, no inline
/// script or style, no plugins, no framing, forms and the base URL pinned.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
                   frame-ancestors 'none'";

/// The file at `path`, if it is one of the console's.
fn asset(path: &str) -> Option<Asset> {
    Some(match path {
        "/" | "/index.html" => {
            Asset { body: INDEX, content_type: "text/html; charset=utf-8", etag: etag!(INDEX) }
        }
        "/console/app.js" => {
            Asset { body: APP_JS, content_type: "text/javascript; charset=utf-8", etag: etag!(APP_JS) }
        }
        "/console/app.css" => {
            Asset { body: APP_CSS, content_type: "text/css; charset=utf-8", etag: etag!(APP_CSS) }
        }
        "/console/icon.svg" | "/favicon.ico" => {
            Asset { body: ICON, content_type: "image/svg+xml", etag: etag!(ICON) }
        }
        _ => return None,
    })
}

/// The answer to a `GET` or `HEAD` of a console file (`None` for any other path): the file,
/// or 304 when the browser's copy is current.
pub fn serve(path: &str, headers: &HeaderMap) -> Option<Response<Body>> {
    let a = asset(path)?;
    let fresh = headers.get(IF_NONE_MATCH).is_some_and(|v| v.as_bytes() == a.etag.as_bytes());
    let mut res = Response::new(full(if fresh { &[][..] } else { a.body }));
    if fresh {
        *res.status_mut() = StatusCode::NOT_MODIFIED;
    }
    let h = res.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(a.content_type));
    h.insert(ETAG, HeaderValue::from_static(a.etag));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    Some(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_file_has_its_type_a_policy_and_a_tag() {
        for (path, ty) in [
            ("/", "text/html; charset=utf-8"),
            ("/console/app.js", "text/javascript; charset=utf-8"),
            ("/console/app.css", "text/css; charset=utf-8"),
            ("/console/icon.svg", "image/svg+xml"),
        ] {
            let res = serve(path, &HeaderMap::new()).unwrap();
            assert_eq!(res.status(), StatusCode::OK, "{path}");
            assert_eq!(res.headers()[CONTENT_TYPE], ty, "{path}");
            let csp = res.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap();
            assert!(csp.starts_with("default-src 'self'"), "{csp}");
            assert!(!csp.contains("unsafe"), "{csp}");
            let tag = res.headers()[ETAG].to_str().unwrap();
            assert_eq!(tag.len(), 18, "{tag}");
        }
        assert!(serve("/console/../Cargo.toml", &HeaderMap::new()).is_none());
        assert!(serve("/api/deliveries", &HeaderMap::new()).is_none());
    }

    #[test]
    fn a_current_copy_is_not_sent_again() {
        let tag = serve("/console/app.js", &HeaderMap::new()).unwrap().headers()[ETAG].clone();
        let mut h = HeaderMap::new();
        h.insert(IF_NONE_MATCH, tag);
        assert_eq!(serve("/console/app.js", &h).unwrap().status(), StatusCode::NOT_MODIFIED);
    }

    #[test]
    fn the_page_loads_no_inline_script() {
        let html = std::str::from_utf8(INDEX).unwrap();
        assert!(!html.contains("<script>"), "inline script");
        assert!(!html.contains("style="), "inline style");
        assert!(!html.contains("http://") && !html.contains("https://"), "no outside URL");
    }
}
