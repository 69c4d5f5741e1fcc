//! `POST /api/deliveries/{id}/replay`: sends a captured delivery that verified when it
//! arrived to its route's upstream again.

use super::{not_built, ApiRequest};
use crate::gateway::Gateway;
use crate::response::Body;
use http::Response;

pub(super) async fn replay(_gateway: &Gateway, _id: &str, _req: &ApiRequest<'_>) -> Response<Body> {
    not_built()
}
