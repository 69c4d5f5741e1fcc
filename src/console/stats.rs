//! `GET /api/stats?minutes=N`: outcomes per minute per route, for the console's chart.
//!
//! Counted from the event log: the events of the last `N` minutes (1 to 1440, default 60),
//! read newest first a page at a time. At most [`MAX_SCANNED`] events are read, so that a busy
//! gateway's chart costs a bounded amount of work; past it the answer says `"truncated": true`
//! and its oldest minutes are undercounted.
//!
//! `{"bucket_ms":60000,"from_ms":…,"to_ms":…,"truncated":false,
//!   "series":[{"route":"r","outcome":"forwarded","counts":[…N counts, oldest first]}]}`;
//! buckets are whole minutes of the wall clock, the last one the current minute.

use super::{bad_request, ok, params, unavailable, ApiRequest};
use crate::event_log::{now_ms, Filter};
use crate::gateway::Gateway;
use crate::response::Body;
use http::Response;
use serde_json::json;
use std::collections::BTreeMap;

const BUCKET_MS: u64 = 60_000;
const DEFAULT_MINUTES: u64 = 60;
const MAX_MINUTES: u64 = 1440;
/// Events read at most for one answer.
const MAX_SCANNED: usize = 100_000;

/// `GET /api/stats`.
pub(super) async fn outcomes(gateway: &Gateway, req: &ApiRequest<'_>) -> Response<Body> {
    let minutes = match minutes(params(req.query).get("minutes").map(String::as_str)) {
        Ok(m) => m,
        Err(e) => return bad_request(e),
    };
    let to_ms = (now_ms() / BUCKET_MS + 1) * BUCKET_MS;
    let from_ms = to_ms - minutes * BUCKET_MS;
    // route → outcome → counts; looked up by `&str` so that an event allocates nothing once
    // its series exists.
    let mut series: BTreeMap<String, BTreeMap<String, Vec<u64>>> = BTreeMap::new();
    let mut filter = Filter { since_ms: Some(from_ms), limit: Filter::MAX_LIMIT, ..Filter::default() };
    let (mut scanned, mut truncated) = (0usize, false);
    loop {
        let page = match gateway.events.log.list(&filter).await {
            Ok(p) => p,
            Err(e) => return unavailable(e),
        };
        for e in &page {
            if e.time_ms < from_ms || e.time_ms >= to_ms {
                continue;
            }
            let bucket = ((e.time_ms - from_ms) / BUCKET_MS) as usize;
            if !series.contains_key(&e.route) {
                series.insert(e.route.clone(), BTreeMap::new());
            }
            let by_outcome = series.get_mut(&e.route).expect("inserted above");
            if !by_outcome.contains_key(&*e.outcome) {
                by_outcome.insert(e.outcome.to_string(), vec![0; minutes as usize]);
            }
            if let Some(counts) = by_outcome.get_mut(&*e.outcome) {
                counts[bucket] += 1;
            }
        }
        scanned += page.len();
        let Some(last) = page.last().filter(|_| page.len() == filter.page()) else { break };
        if scanned >= MAX_SCANNED {
            truncated = true;
            break;
        }
        filter.before = Some(last.id.clone());
    }
    let series: Vec<_> = series
        .into_iter()
        .flat_map(|(route, by_outcome)| {
            by_outcome
                .into_iter()
                .map(move |(outcome, counts)| json!({ "route": route, "outcome": outcome, "counts": counts }))
        })
        .collect();
    ok(&json!({
        "bucket_ms": BUCKET_MS,
        "from_ms": from_ms,
        "to_ms": to_ms,
        "truncated": truncated,
        "series": series,
    }))
}

/// `minutes=`: 1 to 1440, 60 when absent.
fn minutes(value: Option<&str>) -> Result<u64, String> {
    match value.filter(|v| !v.is_empty()) {
        None => Ok(DEFAULT_MINUTES),
        Some(v) => match v.parse::<u64>() {
            Ok(m) if (1..=MAX_MINUTES).contains(&m) => Ok(m),
            _ => Err(format!("minutes: '{v}' is not a number from 1 to {MAX_MINUTES}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::minutes;

    #[test]
    fn minutes_are_bounded() {
        assert_eq!(minutes(None), Ok(60));
        assert_eq!(minutes(Some("")), Ok(60));
        assert_eq!(minutes(Some("1440")), Ok(1440));
        assert!(minutes(Some("0")).unwrap_err().starts_with("minutes:"));
        assert!(minutes(Some("1441")).is_err());
        assert!(minutes(Some("x")).is_err());
    }
}
