//! `GET /api/routes`: what each route is and its secrets' rotation state, never a secret.

use super::{ok, unavailable};
use crate::config::{expiry, redact_url, Expiry};
use crate::gateway::Gateway;
use crate::response::Body;
use http::Response;
use serde_json::json;

/// `GET /api/routes`: what each route is, never its secrets.
pub(super) async fn list(gateway: &Gateway) -> Response<Body> {
    let mut routes: Vec<_> = gateway.routing().routes().collect();
    routes.sort_by(|a, b| a.name.cmp(&b.name));
    let mut last_matches = Vec::with_capacity(routes.len());
    for r in &routes {
        match gateway.events.log.last_matches(&r.name).await {
            Ok(m) => last_matches.push(m),
            Err(e) => return unavailable(e),
        }
    }
    let now = gateway.clock.now();
    let all: Vec<_> = routes
        .iter()
        .zip(last_matches)
        .map(|(r, last)| {
            let expiries = r.verifier.secret_expiries();
            let secrets: Vec<_> = expiries
                .iter()
                .enumerate()
                .map(|(index, exp)| {
                    let expires_at = exp.map(|s| {
                        humantime::format_rfc3339_seconds(
                            std::time::UNIX_EPOCH + std::time::Duration::from_secs(s),
                        )
                        .to_string()
                    });
                    let last_matched_ms = last.iter().find(|m| m.index == index).map(|m| m.time_ms);
                    // Rotation state, as the log warned at load: expired (no longer verifies) or
                    // within `EXPIRY_WARNING` of it.
                    let state = expiry(*exp, now);
                    json!({
                        "index": index,
                        "expires_at": expires_at,
                        "expires_soon": state == Expiry::Soon,
                        "expired": state == Expiry::Expired,
                        "last_matched_ms": last_matched_ms,
                    })
                })
                .collect();
            json!({
                "name": r.name,
                "path": r.path,
                "provider": r.provider(),
                // The plain route's upstream (as before destinations); null for any other.
                "upstream": r.direct().map(|h| redact_url(&h.upstream.url)),
                "destinations": r.destinations.iter().map(|d| d.to_json()).collect::<Vec<_>>(),
                "delivery": match r.queue { Some(_) => "queued", None => "sync" },
                "selector": r.selector.as_ref().map(|(h, v)| json!({ "header": h.as_str(), "value": v })),
                "methods": r.methods.iter().map(|m| m.as_str()).collect::<Vec<_>>(),
                "secrets_count": expiries.len(),
                "secrets": secrets,
            })
        })
        .collect();
    ok(&json!({ "routes": all }))
}
