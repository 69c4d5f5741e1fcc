//! A tiny client of a running gateway's admin API (`/api/*` on the admin listener), for the
//! `queue` and `deliveries` commands.
//!
//! The bearer token comes from `--token-file PATH` (its first line) or the environment
//! (`PORTCULLIS_ADMIN_TOKEN`), never from a flag's value: a flag shows in the process list and
//! the shell's history. Errors say what to do: a refused token, a listener that is not there,
//! a store that is down.

use super::Usage;
use anyhow::Context;
use http::{Method, StatusCode};
use std::path::Path;

/// The environment variable holding the admin token.
pub const TOKEN_ENV: &str = "PORTCULLIS_ADMIN_TOKEN";

/// Calls to one admin listener, one at a time, on a runtime of its own.
pub struct AdminClient {
    base: String,
    token: Option<String>,
    runtime: tokio::runtime::Runtime,
}

impl AdminClient {
    /// A client of the admin listener at `admin` (`http://host:port`), with the token of
    /// `token_file`, or else of [`TOKEN_ENV`], if any.
    pub fn new(admin: &str, token_file: Option<&Path>) -> anyhow::Result<Self> {
        let base = admin.trim_end_matches('/').to_string();
        if base.parse::<http::Uri>().ok().and_then(|u| u.scheme().cloned()).is_none() {
            return Err(Usage(format!("--admin: '{admin}' is not a URL (http://host:port)")).into());
        }
        let token = match token_file {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| Usage(format!("--token-file {}: {e}", p.display())))?;
                let token = text.lines().next().unwrap_or("").trim().to_string();
                if token.is_empty() {
                    return Err(Usage(format!("--token-file {}: the file is empty", p.display())).into());
                }
                Some(token)
            }
            None => std::env::var(TOKEN_ENV).ok().filter(|t| !t.is_empty()),
        };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        Ok(AdminClient { base, token, runtime })
    }

    /// `GET path` (with its query); the answer's JSON.
    pub fn get(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        self.call(Method::GET, path, None)
    }

    /// `method path`, with `body` as JSON when given; the answer's JSON. An answer that is not
    /// 2xx is an error carrying the API's reason.
    pub fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> anyhow::Result<serde_json::Value> {
        let url = format!("{}{path}", self.base);
        let uri: http::Uri = url.parse().map_err(|_| Usage(format!("'{url}' is not a URL")))?;
        let (status, retry_after, bytes) = self.runtime.block_on(async {
            use http_body_util::{BodyExt, Full};
            let client: hyper_util::client::legacy::Client<_, Full<bytes::Bytes>> =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build_http();
            let mut req = http::Request::builder().method(method).uri(uri);
            if let Some(token) = &self.token {
                req = req.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
            }
            let payload = match body {
                Some(b) => {
                    req = req.header(http::header::CONTENT_TYPE, "application/json");
                    bytes::Bytes::from(serde_json::to_vec(b)?)
                }
                None => bytes::Bytes::new(),
            };
            let res = client.request(req.body(Full::new(payload))?).await.map_err(|e| {
                let refused = std::error::Error::source(&e)
                    .and_then(|s| s.downcast_ref::<std::io::Error>())
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
                    || format!("{e:?}").contains("ConnectionRefused");
                if refused {
                    anyhow::anyhow!(
                        "cannot reach the admin listener at {}: connection refused (is the gateway \
                         running, with admin.listen there? see --admin)",
                        self.base
                    )
                } else {
                    anyhow::Error::new(e).context(format!("reaching the admin listener at {}", self.base))
                }
            })?;
            let status = res.status();
            let retry_after =
                res.headers().get(http::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_owned);
            let bytes = res.into_body().collect().await.context("reading the admin API's answer")?.to_bytes();
            anyhow::Ok((status, retry_after, bytes))
        })?;
        let json = serde_json::from_slice::<serde_json::Value>(&bytes).ok();
        if status.is_success() {
            return json
                .with_context(|| format!("the admin API answered {status} with something that is not JSON"));
        }
        let reason = json
            .as_ref()
            .and_then(|v| v["error"].as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).trim().to_string());
        Err(match status {
            StatusCode::UNAUTHORIZED => anyhow::anyhow!(
                "the admin listener wants a valid token (401): put one of admin.token in {TOKEN_ENV} \
                 or in a file named by --token-file"
            ),
            StatusCode::FORBIDDEN => anyhow::anyhow!("the admin listener refused the call (403): {reason}"),
            StatusCode::SERVICE_UNAVAILABLE => anyhow::anyhow!(
                "{reason} (503): the gateway's store did not answer; try again{}",
                retry_after.map(|s| format!(" in {s} s")).unwrap_or_default()
            ),
            _ => anyhow::anyhow!("{reason} ({status})"),
        })
    }
}

/// A query string (`?a=1&b=2`, or empty) of the pairs whose value is set.
pub fn query<'a>(pairs: impl IntoIterator<Item = (&'a str, Option<&'a str>)>) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    let mut any = false;
    for (k, v) in pairs {
        if let Some(v) = v {
            s.append_pair(k, v);
            any = true;
        }
    }
    if any {
        format!("?{}", s.finish())
    } else {
        String::new()
    }
}

/// A path segment, percent-encoded (an id is the caller's text).
pub fn segment(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>().replace('+', "%20")
}

/// Prints `rows` under `header`, each column as wide as its widest cell (the last one not
/// padded).
pub fn print_table(header: &[&str], rows: &[Vec<String>]) -> anyhow::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            if i + 1 == widths.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.trim_end().to_string()
    };
    crate::outln!("{}", line(&mut header.iter().copied()))?;
    for row in rows {
        crate::outln!("{}", line(&mut row.iter().map(String::as_str)))?;
    }
    Ok(())
}

/// A JSON value as a table cell: strings bare, `null` as `-`.
pub fn cell(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "-".into(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Unix milliseconds as an RFC 3339 time (UTC, seconds).
pub fn time(ms: &serde_json::Value) -> String {
    match ms.as_u64() {
        Some(ms) => {
            humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
                .to_string()
        }
        None => "-".into(),
    }
}

/// Prints a JSON object as readable `key: value` lines: scalars on their line, arrays and
/// objects indented below their key.
pub fn print_detail(v: &serde_json::Value) -> anyhow::Result<()> {
    let Some(map) = v.as_object() else {
        crate::outln!("{}", serde_json::to_string_pretty(v)?)?;
        return Ok(());
    };
    let width = map.keys().map(|k| k.len()).max().unwrap_or(0);
    for (k, v) in map {
        match v {
            serde_json::Value::Object(_) | serde_json::Value::Array(_) => {
                crate::outln!("{k}:")?;
                for l in serde_json::to_string_pretty(v)?.lines() {
                    crate::outln!("  {l}")?;
                }
            }
            _ => crate::outln!("{k:<width$}  {}", cell(v))?,
        }
    }
    Ok(())
}

/// Prints the API's JSON, pretty.
pub fn print_json(v: &serde_json::Value) -> anyhow::Result<()> {
    crate::outln!("{}", serde_json::to_string_pretty(v)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_keep_only_set_pairs_and_encode_them() {
        assert_eq!(query([("a", None)]), "");
        assert_eq!(query([("route", Some("/a b")), ("x", None), ("n", Some("1"))]), "?route=%2Fa+b&n=1");
        assert_eq!(segment("0-1"), "0-1");
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
    }
}
