//! The `telemetry:` block: where the gateway's trace spans are exported (OTLP over HTTP),
//! under which service name, and which share of new traces is kept.

use super::env::expand_env;
use super::raw::RawTelemetry;

/// The service name spans carry when `service_name` is not given.
pub const DEFAULT_SERVICE_NAME: &str = "portcullis";

/// Validated `telemetry:` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryConfig {
    /// The collector's OTLP/HTTP base URL (`http://127.0.0.1:4318`); spans go to
    /// `{endpoint}/v1/traces`.
    pub otlp_endpoint: http::Uri,
    pub service_name: String,
    /// The share of traces started here that are kept, 0 to 1; a sender's sampling decision
    /// in `traceparent` is followed as it is.
    pub sample_ratio: f64,
}

impl TelemetryConfig {
    /// Where spans are posted.
    pub fn traces_url(&self) -> String {
        format!("{}/v1/traces", self.otlp_endpoint.to_string().trim_end_matches('/'))
    }
}

/// Validates the `telemetry:` block.
pub(super) fn validate(
    raw: RawTelemetry,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<TelemetryConfig, String> {
    let e = expand_env(&raw.otlp_endpoint, env).map_err(|e| format!("telemetry.otlp_endpoint: {e}"))?;
    let uri: http::Uri = e
        .parse()
        .map_err(|_| format!("telemetry.otlp_endpoint: '{e}' is not a URL such as http://127.0.0.1:4318"))?;
    match uri.scheme_str() {
        Some("http") => {}
        // The exporter's client is plain hyper: no TLS stack of its own. A collector is a
        // sidecar or a node agent, reached over loopback or the pod network.
        Some("https") => {
            return Err(format!(
            "telemetry.otlp_endpoint: '{e}': https is not supported; export to a local collector over http"
        ))
        }
        _ => return Err(format!("telemetry.otlp_endpoint: '{e}' needs a scheme: write http://{e}")),
    }
    if uri.authority().is_none() {
        return Err(format!("telemetry.otlp_endpoint: '{e}' has no host"));
    }
    let service_name = match raw.service_name {
        Some(s) if s.trim().is_empty() => return Err("telemetry.service_name: is empty".into()),
        Some(s) => s,
        None => DEFAULT_SERVICE_NAME.to_string(),
    };
    let sample_ratio = raw.sample_ratio.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&sample_ratio) {
        return Err(format!("telemetry.sample_ratio: {sample_ratio} is not between 0 and 1"));
    }
    Ok(TelemetryConfig { otlp_endpoint: uri, service_name, sample_ratio })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(endpoint: &str) -> RawTelemetry {
        RawTelemetry { otlp_endpoint: endpoint.into(), service_name: None, sample_ratio: None }
    }

    #[test]
    fn defaults_and_refusals() {
        let env = |_: &str| None;
        let t = validate(raw("http://127.0.0.1:4318/"), &env).unwrap();
        assert_eq!(t.traces_url(), "http://127.0.0.1:4318/v1/traces");
        assert_eq!(t.service_name, "portcullis");
        assert_eq!(t.sample_ratio, 1.0);
        assert!(validate(raw("127.0.0.1:4318"), &env).unwrap_err().contains("write http://"));
        assert!(validate(raw("https://collector:4318"), &env).unwrap_err().contains("https"));
        let r = RawTelemetry { sample_ratio: Some(1.5), ..raw("http://c:4318") };
        assert!(validate(r, &env).unwrap_err().contains("sample_ratio"));
    }
}
