//! `portcullis health --admin URL`: exit 0 when the gateway's `/healthz` answers 200 within
//! the timeout, 1 otherwise with the reason on one line. The container's `HEALTHCHECK` runs it,
//! so the image needs no curl.

use super::Usage;
use std::process::ExitCode;
use std::time::Duration;

pub fn run(admin: &str, timeout: Duration) -> anyhow::Result<ExitCode> {
    let url = format!("{}/healthz", admin.trim_end_matches('/'));
    let uri: http::Uri = url.parse().map_err(|_| Usage(format!("--admin: '{admin}' is not a URL")))?;
    if uri.scheme() != Some(&http::uri::Scheme::HTTP) || uri.authority().is_none() {
        return Err(Usage(format!("--admin: '{admin}' is not an http://host:port URL")).into());
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let verdict = rt.block_on(async { tokio::time::timeout(timeout, healthz(uri)).await });
    match verdict {
        Ok(Ok(status)) if status == http::StatusCode::OK => {
            crate::outln!("healthy: {url} answered 200")?;
            Ok(ExitCode::SUCCESS)
        }
        Ok(Ok(status)) => {
            crate::errln!("unhealthy: {url} answered {status}");
            Ok(ExitCode::from(1))
        }
        Ok(Err(e)) => {
            crate::errln!("unhealthy: {url}: {e}");
            Ok(ExitCode::from(1))
        }
        Err(_) => {
            crate::errln!("unhealthy: {url} did not answer within {}", humantime::format_duration(timeout));
            Ok(ExitCode::from(1))
        }
    }
}

/// The status `GET uri` answers; the error, flattened to one line, when there is none.
async fn healthz(uri: http::Uri) -> Result<http::StatusCode, String> {
    use http_body_util::Empty;
    let client: hyper_util::client::legacy::Client<_, Empty<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let req = http::Request::get(uri).body(Empty::new()).map_err(|e| e.to_string())?;
    let res = client.request(req).await.map_err(|e| {
        let mut reason = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            reason = format!("{reason}: {s}");
            source = s.source();
        }
        reason
    })?;
    Ok(res.status())
}
