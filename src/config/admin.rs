//! The admin listener's settings: its address and the bearer tokens its `/api` needs. A
//! listener reachable from other hosts without a token is refused.

use super::env::{expand_env, is_optional};
use super::raw::{RawAdmin, RawTokens};
use std::net::SocketAddr;

/// The bearer tokens the admin API accepts; several during a rotation. Its `Debug` never
/// shows a token.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AdminTokens(Vec<String>);

impl std::fmt::Debug for AdminTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AdminTokens({} redacted)", self.0.len())
    }
}

impl AdminTokens {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The tokens in configuration order (the console derives its session values from them).
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// True when `given` is one of the tokens, compared in constant time (every token is
    /// compared, so the time says nothing of which one nearly matched).
    pub fn accepts(&self, given: &[u8]) -> bool {
        self.index_of(given).is_some()
    }

    /// Which token `given` is (its index in the configuration), compared in constant time
    /// against every token.
    pub fn index_of(&self, given: &[u8]) -> Option<usize> {
        use subtle::ConstantTimeEq;
        let mut found = None;
        for (i, t) in self.0.iter().enumerate() {
            if bool::from(t.as_bytes().ct_eq(given)) {
                found = Some(i);
            }
        }
        found
    }
}

/// The validated `admin:` block: where, and the tokens.
pub(super) fn validate(
    raw: RawAdmin,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(SocketAddr, AdminTokens), String> {
    let l = expand_env(&raw.listen, env).map_err(|e| format!("admin.listen: {e}"))?;
    let addr = l.parse::<SocketAddr>().map_err(|_| format!("admin.listen: '{l}' is not an address"))?;
    let given = match raw.token {
        None => Vec::new(),
        Some(RawTokens::One(t)) => vec![t],
        Some(RawTokens::Many(ts)) => ts,
    };
    let mut tokens = Vec::with_capacity(given.len());
    for (i, t) in given.iter().enumerate() {
        let v = expand_env(t, env).map_err(|e| format!("admin.token[{i}]: {e}"))?;
        if v.is_empty() {
            if is_optional(t) {
                continue;
            }
            return Err(format!("admin.token[{i}]: is empty"));
        }
        if v.len() < 16 {
            return Err(format!("admin.token[{i}]: too short: use at least 16 characters"));
        }
        tokens.push(v);
    }
    if tokens.is_empty() && !addr.ip().is_loopback() {
        return Err(format!(
            "admin.listen: {addr} is reachable from other hosts, so admin.token is needed: the admin API \
             shows deliveries and replays dead letters (set admin.token, or listen on 127.0.0.1)"
        ));
    }
    Ok((addr, AdminTokens(tokens)))
}
