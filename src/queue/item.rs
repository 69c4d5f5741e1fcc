//! One queued delivery and its byte encoding (versioned, length-prefixed), the same in Redis
//! and in the embedded file.

use super::now_ms;
use crate::config::Route;
use crate::forward::Outgoing;
use http::{HeaderMap, HeaderName, HeaderValue, Method};

/// One queued delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub route: String,
    pub method: String,
    pub query: Option<String>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    /// The idempotency id, sent as `Portcullis-Idempotency-Key` on every attempt.
    pub id: Vec<u8>,
    pub attempts: u32,
    pub first_seen_ms: u64,
    pub last_error: String,
    /// The stream id the delivery was first given (stable across retries), for replay.
    pub origin: String,
    /// The ordering value (`queue.order_by`), when the route orders deliveries.
    pub order: Option<String>,
    /// When the delivery was moved to the dead-letter list, unix ms. Encoded after every
    /// older field, and only when set, so that items queued by an older version still decode
    /// (as `None`) and an older version still reads the items this one writes.
    pub dead_at_ms: Option<u64>,
    /// The destinations (by name) that accepted the delivery on an earlier attempt: a retry
    /// skips them. A trailing field like `dead_at_ms`, written only when not empty.
    pub done: Vec<String>,
}

fn put(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

/// An optional string: a presence byte, then the string when present.
fn put_opt(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => {
            out.push(1);
            put(out, s.as_bytes());
        }
        None => out.push(0),
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn string(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?.to_vec()).ok()
    }
    /// What `put_opt` wrote.
    fn opt_string(&mut self) -> Option<Option<String>> {
        Some(match self.take(1)?[0] {
            1 => Some(self.string()?),
            _ => None,
        })
    }
}

impl Item {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + 512);
        out.push(1); // format version
        put(&mut out, self.route.as_bytes());
        put(&mut out, self.method.as_bytes());
        put_opt(&mut out, self.query.as_deref());
        out.extend_from_slice(&(self.headers.len() as u32).to_le_bytes());
        for (k, v) in &self.headers {
            put(&mut out, k.as_bytes());
            put(&mut out, v);
        }
        put(&mut out, &self.body);
        put(&mut out, &self.id);
        out.extend_from_slice(&self.attempts.to_le_bytes());
        out.extend_from_slice(&self.first_seen_ms.to_le_bytes());
        put(&mut out, self.last_error.as_bytes());
        put(&mut out, self.origin.as_bytes());
        put_opt(&mut out, self.order.as_deref());
        // Trailing fields, each after a tag byte; a reader stops at a tag it does not know
        // (an older version reads `dead_at_ms` and ignores `done`).
        if let Some(at) = self.dead_at_ms {
            out.push(1); // dead_at_ms
            out.extend_from_slice(&at.to_le_bytes());
        }
        if !self.done.is_empty() {
            out.push(2); // done
            out.extend_from_slice(&(self.done.len() as u32).to_le_bytes());
            for d in &self.done {
                put(&mut out, d.as_bytes());
            }
        }
        out
    }

    pub fn decode(b: &[u8]) -> Option<Item> {
        let mut r = Reader(b);
        if r.take(1)? != [1] {
            return None;
        }
        let route = r.string()?;
        let method = r.string()?;
        let query = r.opt_string()?;
        let n = r.u32()? as usize;
        let mut headers = Vec::with_capacity(n.min(256));
        for _ in 0..n {
            headers.push((r.string()?, r.bytes()?.to_vec()));
        }
        let body = r.bytes()?.to_vec();
        let id = r.bytes()?.to_vec();
        let attempts = r.u32()?;
        let first_seen_ms = r.u64()?;
        let last_error = r.string()?;
        let origin = r.string()?;
        let order = r.opt_string()?;
        // Trailing fields a newer version may have added; absent in older items.
        let (mut dead_at_ms, mut done) = (None, Vec::new());
        loop {
            match r.take(1) {
                Some([1]) => dead_at_ms = Some(r.u64()?),
                Some([2]) => {
                    let n = r.u32()? as usize;
                    done = Vec::with_capacity(n.min(64));
                    for _ in 0..n {
                        done.push(r.string()?);
                    }
                }
                _ => break,
            }
        }
        Some(Item {
            route,
            method,
            query,
            headers,
            body,
            id,
            attempts,
            first_seen_ms,
            last_error,
            origin,
            order,
            dead_at_ms,
            done,
        })
    }

    pub(crate) fn from_outgoing(route: &Route, o: &Outgoing) -> Item {
        Item {
            route: route.name.clone(),
            method: o.method.as_str().to_string(),
            query: o.query.clone(),
            headers: o.headers.iter().map(|(k, v)| (k.as_str().to_string(), v.as_bytes().to_vec())).collect(),
            body: o.body.to_vec(),
            id: o.id.as_bytes().to_vec(),
            attempts: 0,
            first_seen_ms: now_ms(),
            last_error: String::new(),
            origin: String::new(),
            order: route
                .queue
                .as_ref()
                .and_then(|q| q.order_by.as_ref())
                .and_then(|p| p.lookup(&o.body).ok().flatten())
                .map(|v| v.into_owned()),
            dead_at_ms: None,
            done: Vec::new(),
        }
    }

    /// The request id the delivery arrived with (its `X-Request-Id` header), if any.
    pub fn request_id(&self) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("x-request-id"))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
            .map(str::to_owned)
    }

    pub fn to_outgoing(&self) -> Option<Outgoing> {
        let mut headers = HeaderMap::with_capacity(self.headers.len());
        for (k, v) in &self.headers {
            headers.append(HeaderName::from_bytes(k.as_bytes()).ok()?, HeaderValue::from_bytes(v).ok()?);
        }
        Some(Outgoing {
            method: Method::from_bytes(self.method.as_bytes()).ok()?,
            query: self.query.clone(),
            headers,
            body: self.body.clone().into(),
            id: HeaderValue::from_bytes(&self.id).ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_round_trip() {
        let item = Item {
            route: "/p".into(),
            method: "POST".into(),
            query: Some("a=1".into()),
            headers: vec![("x-a".into(), b"1".to_vec()), ("x-b".into(), vec![0xff, b'z'])],
            body: vec![0, 1, 2, 255],
            id: b"evt_1".to_vec(),
            attempts: 3,
            first_seen_ms: 42,
            last_error: "upstream answered 500".into(),
            origin: "1-0".into(),
            order: Some("obj_1".into()),
            dead_at_ms: None,
            done: Vec::new(),
        };
        assert_eq!(Item::decode(&item.encode()), Some(item.clone()));
        let dead = Item { dead_at_ms: Some(7), ..item.clone() };
        assert_eq!(Item::decode(&dead.encode()), Some(dead.clone()));
        // An item written before `dead_at_ms` existed is the same bytes as one without it.
        assert_eq!(dead.encode()[..item.encode().len()], item.encode()[..]);
        let done = Item { done: vec!["billing".into(), "bus".into()], ..dead.clone() };
        assert_eq!(Item::decode(&done.encode()), Some(done.clone()));
        let undead = Item { dead_at_ms: None, ..done.clone() };
        assert_eq!(Item::decode(&undead.encode()), Some(undead));
        // What an older version writes still decodes, with nothing done.
        assert_eq!(done.encode()[..dead.encode().len()], dead.encode()[..]);
        assert_eq!(Item::decode(&item.encode()[..10]), None);
        assert_eq!(Item::decode(b""), None);
    }
}
