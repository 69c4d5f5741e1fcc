//! Dead letters of `delivery: queued` routes, and the queue's stats.

use super::{not_built, ApiRequest};
use crate::gateway::Gateway;
use crate::response::Body;
use http::Response;

pub(super) async fn list(_gateway: &Gateway, _req: &ApiRequest<'_>) -> Response<Body> {
    not_built()
}

pub(super) async fn show(_gateway: &Gateway, _id: &str, _req: &ApiRequest<'_>) -> Response<Body> {
    not_built()
}

pub(super) async fn replay(_gateway: &Gateway, _id: &str, _req: &ApiRequest<'_>) -> Response<Body> {
    not_built()
}

pub(super) async fn purge(_gateway: &Gateway, _id: &str, _req: &ApiRequest<'_>) -> Response<Body> {
    not_built()
}

pub(super) async fn replay_all(_gateway: &Gateway, _req: &ApiRequest<'_>) -> Response<Body> {
    not_built()
}

pub(super) async fn purge_all(_gateway: &Gateway, _req: &ApiRequest<'_>) -> Response<Body> {
    not_built()
}

pub(super) async fn stats(_gateway: &Gateway, _req: &ApiRequest<'_>) -> Response<Body> {
    not_built()
}
