//! `portcullis verify`: check one request's signature offline; exit 0 when valid, 1 when
//! invalid (with `--explain`, the near misses), 2 on a usage error.

use super::{lookup_profile, parse_method, read_body, Usage};
use crate::cli::VerifyArgs;
use crate::clock::Clock;
use crate::verify::{Input, Secret, Verifier};
use http::{HeaderMap, HeaderName, HeaderValue};
use std::process::ExitCode;

pub fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let VerifyArgs { provider, secrets, headers, method, url, now, body_file, providers_dir, explain } = args;
    let profile = lookup_profile(&provider, providers_dir.as_deref())?;
    let secrets: Vec<Secret> = secrets.into_iter().map(Secret::from).collect();
    let verifier = Verifier::new(profile, &secrets, None).map_err(|e| Usage(format!("--secret: {e}")))?;
    let headers = parse_headers(&headers)?;
    let method = parse_method(&method)?;
    let body = read_body(body_file.as_deref())?;
    let now = now.unwrap_or_else(|| Clock::System.now());
    let input = Input { method: &method, url: &url, headers: &headers, body: &body, now };
    let result = verifier.verify(&input).and_then(|v| verifier.event_id(&headers, &body).map(|id| (v, id)));
    match result {
        Ok((v, id)) => {
            crate::outln!("valid: secret {} matched; event id {id}", v.secret_index)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            crate::errln!("invalid: {e}");
            if explain && e.is_mismatch() {
                for line in crate::verify::diagnose::diagnose(&verifier, &input) {
                    crate::errln!("  - {line}");
                }
            }
            Ok(ExitCode::from(1))
        }
    }
}

fn parse_headers(list: &[String]) -> anyhow::Result<HeaderMap> {
    let mut map = HeaderMap::new();
    for h in list {
        let (name, value) =
            h.split_once(':').ok_or_else(|| Usage(format!("--header '{h}' is not 'Name: value'")))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| Usage(format!("--header: '{}' is not a header name", name.trim())))?;
        let value = HeaderValue::from_str(value.trim())
            .map_err(|_| Usage(format!("--header {name}: the value is not a header value")))?;
        map.append(name, value);
    }
    Ok(map)
}
