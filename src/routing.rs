//! The route table a request is matched against: path → route (or its variants), each
//! paired with its metrics; and the client address behind trusted proxies.

use crate::config::{Config, Route};
use crate::metrics::{Metrics, RouteMetrics};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

/// Why no route takes a request; [`crate::response::Rejection`] turns it into an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("no route for this path")]
    NotFound,
    /// The path has variants and the selector header names none of them.
    #[error("no variant: {0}")]
    NoVariant(String),
}

/// The routing in force, swapped whole by a reload; shared by the gateway and the route layer.
pub type SharedRouting = arc_swap::ArcSwap<Routing>;

/// A route as the request path sees it: the validated route and its counters. The counters
/// are registered by name, so a reloaded route keeps its series. Derefs to the [`Route`].
#[derive(Debug)]
pub struct RouteEntry {
    pub route: Arc<Route>,
    pub metrics: Arc<RouteMetrics>,
}

impl RouteEntry {
    pub fn new(route: Arc<Route>, metrics: Arc<RouteMetrics>) -> Self {
        RouteEntry { route, metrics }
    }
}

impl std::ops::Deref for RouteEntry {
    type Target = Route;

    fn deref(&self) -> &Route {
        &self.route
    }
}

/// What a configuration reload may change: the routes (secrets, upstreams, profiles) and
/// the trusted proxies. Swapped whole, so a request sees one version or the other.
pub struct Routing {
    routes: HashMap<String, Vec<Arc<RouteEntry>>>,
    trusted_proxies: Vec<ipnet::IpNet>,
    /// The configuration it came from, to tell what a reload could not apply.
    pub config: Config,
}

impl Routing {
    /// The table of `config`'s routes, each with its counters from `metrics`.
    pub fn new(config: &Config, metrics: &Metrics) -> Self {
        let mut routes: HashMap<String, Vec<Arc<RouteEntry>>> = HashMap::new();
        for r in &config.routes {
            let entry = RouteEntry::new(r.clone(), metrics.route(&r.name));
            routes.entry(r.path.clone()).or_default().push(Arc::new(entry));
        }
        Routing { routes, trusted_proxies: config.trusted_proxies.clone(), config: config.clone() }
    }

    /// The route for an exact path, and for routes with variants, the variant the request's
    /// selector header names.
    pub fn route(&self, path: &str, headers: &http::HeaderMap) -> Result<Arc<RouteEntry>, RouteError> {
        Self::select(self.variants(path)?, headers)
    }

    /// The routes at an exact path: one, or one per variant. Every variant of a path shares
    /// the path's `allow_ips`, so the allowlist can be checked before a variant is chosen.
    pub fn variants(&self, path: &str) -> Result<&[Arc<RouteEntry>], RouteError> {
        self.routes.get(path).map(Vec::as_slice).ok_or(RouteError::NotFound)
    }

    /// The variant of `list` (from [`Routing::variants`]) the selector header names, or the
    /// one route of a path without variants.
    pub fn select(
        list: &[Arc<RouteEntry>],
        headers: &http::HeaderMap,
    ) -> Result<Arc<RouteEntry>, RouteError> {
        let first = &list[0];
        let Some((header, _)) = &first.selector else { return Ok(first.clone()) };
        let mut values = headers.get_all(header).iter();
        let value = values.next().and_then(|v| v.to_str().ok()).map(str::trim);
        if values.next().is_some() {
            return Err(RouteError::NoVariant(format!("{header} appears more than once")));
        }
        let Some(value) = value else {
            return Err(RouteError::NoVariant(format!("no {header} header")));
        };
        list.iter()
            .find(|r| r.selector.as_ref().is_some_and(|(_, v)| v.eq_ignore_ascii_case(value)))
            .cloned()
            .ok_or_else(|| RouteError::NoVariant(format!("{header} '{value}' names no variant")))
    }

    /// Every route (each variant of a route with variants).
    pub fn routes(&self) -> impl Iterator<Item = Arc<Route>> + '_ {
        self.routes.values().flatten().map(|e| e.route.clone())
    }

    /// The client's address: the peer, or where the peer is a trusted proxy, the last
    /// address of `X-Forwarded-For` that is not a trusted proxy. Every address is taken in its
    /// canonical form: on a dual-stack listener an IPv4 sender is `::ffff:a.b.c.d`, which no
    /// IPv4 network contains.
    pub fn client_ip(&self, peer: IpAddr, headers: &http::HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        let trusted = |ip: &IpAddr| self.trusted_proxies.iter().any(|n| n.contains(ip));
        if !trusted(&peer) {
            return peer;
        }
        let mut client = peer;
        let hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
        for hop in hops.iter().rev() {
            match hop.parse::<IpAddr>().map(|ip| ip.to_canonical()) {
                Ok(ip) if trusted(&ip) => client = ip,
                Ok(ip) => return ip,
                // An entry that is not an address cannot be believed; stop at the last good one.
                Err(_) => return client,
            }
        }
        client
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(listen: &str) -> Config {
        let yaml = format!(
            "listen: {listen}\nroutes:\n  - path: /p\n    provider: paylent\n    secrets: [s]\n    upstream: http://127.0.0.1:1/\n  - path: /v\n    provider: paylent\n    select_by: x-mode\n    variants:\n      live: {{secrets: [a], upstream: 'http://127.0.0.1:1/'}}\n      test: {{secrets: [b], upstream: 'http://127.0.0.1:2/'}}\n"
        );
        Config::from_yaml("t.yaml", &yaml, std::path::Path::new("."), &|_| None).unwrap()
    }

    #[test]
    fn routes_carry_their_metrics_across_reloads() {
        let metrics = Metrics::default();
        let before = Routing::new(&config("127.0.0.1:0"), &metrics);
        let after = Routing::new(&config("127.0.0.1:0"), &metrics);
        let none = http::HeaderMap::new();
        let (a, b) = (before.route("/p", &none).unwrap(), after.route("/p", &none).unwrap());
        assert!(!Arc::ptr_eq(&a.route, &b.route), "a reload builds new routes");
        assert!(Arc::ptr_eq(&a.metrics, &b.metrics), "and keeps their counters");
        assert!(Arc::ptr_eq(&a.metrics, &metrics.route("/p")));
    }

    #[test]
    fn a_variant_is_chosen_by_its_header() {
        let routing = Routing::new(&config("127.0.0.1:0"), &Metrics::default());
        let mut headers = http::HeaderMap::new();
        headers.insert("x-mode", http::HeaderValue::from_static("TEST"));
        let r = routing.route("/v", &headers).unwrap();
        assert_eq!(r.name, "/v[test]");
        assert!(Arc::ptr_eq(&r.metrics, &routing.route("/v", &headers).unwrap().metrics));
        assert!(matches!(routing.route("/v", &http::HeaderMap::new()), Err(RouteError::NoVariant(_))));
        assert!(matches!(routing.route("/nope", &headers), Err(RouteError::NotFound)));
        assert_eq!(routing.routes().count(), 3);
    }
}
