//! `GET /api/stats?minutes=N`: outcomes per minute per route, for the console's chart.

use super::{not_built, ApiRequest};
use crate::gateway::Gateway;
use crate::response::Body;
use http::Response;

pub(super) async fn outcomes(_gateway: &Gateway, _req: &ApiRequest<'_>) -> Response<Body> {
    not_built()
}
