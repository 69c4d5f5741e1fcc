//! `portcullis verify`: check one request's signature offline; exit 0 when valid, 1 when
//! invalid (with `--explain`, the near misses), 2 on a usage error. The secrets come from a
//! route of the gateway's configuration (`--config --route`), from files (`--secret-file`), or
//! from `--secret`: the first two keep them out of the process list and the shell's history.

use super::{lookup_profile, parse_method, read_body, Usage};
use crate::cert_fetch::{self, Fetcher, TestTrust};
use crate::cli::VerifyArgs;
use crate::clock::Clock;
use crate::config::Config;
use crate::verify::certificate::{self, ExtraHosts, PinnedOnly, SigningCert};
use crate::verify::{Input, Secret, Verifier, VerifyError};
use http::{HeaderMap, HeaderName, HeaderValue};
use std::path::Path;
use std::process::ExitCode;

pub fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let VerifyArgs {
        provider,
        secrets,
        secret_files,
        config,
        route,
        headers,
        method,
        url,
        now,
        body_file,
        providers_dir,
        explain,
        certificates,
        test_ca,
        test_cert_hosts,
    } = args;
    let (verifier, url) = match (route, config) {
        (Some(route), Some(config)) => from_route(&config, &route, provider.as_deref(), url)?,
        _ => {
            let provider =
                provider.ok_or_else(|| Usage("--provider is needed (or --config and --route)".into()))?;
            let profile = lookup_profile(&provider, providers_dir.as_deref())?;
            let mut all: Vec<Secret> = secrets.into_iter().map(Secret::from).collect();
            for f in &secret_files {
                all.push(Secret::from(read_secret_file(f)?));
            }
            let verifier = Verifier::new(profile, &all, None).map_err(|e| Usage(format!("--secret: {e}")))?;
            (verifier, url)
        }
    };
    let headers = parse_headers(&headers)?;
    let method = parse_method(&method)?;
    let body = read_body(body_file.as_deref())?;
    let now = now.unwrap_or_else(|| Clock::System.now());
    let input = Input { method: &method, url: &url, headers: &headers, body: &body, now };
    let test = test_ca
        .map(|ca| TestTrust::from_file(&ca, test_cert_hosts).map_err(|e| Usage(format!("--test-ca: {e}"))))
        .transpose()?;
    let checked = match verifier.profile().certificate {
        Some(_) => by_certificate(&verifier, &input, &certificates, test.as_ref())?,
        None => verifier.verify(&input),
    };
    let result = checked.and_then(|v| verifier.event_id(&url, &headers, &body).map(|id| (v, id)));
    match result {
        Ok((v, id)) => {
            crate::outln!("valid: secret {} matched; event id {id}", v.secret_index)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            crate::errln!("invalid: {e}");
            if explain && e.is_mismatch() && verifier.profile().certificate.is_none() {
                for line in crate::verify::diagnose::diagnose(&verifier, &input) {
                    crate::errln!("  - {line}");
                }
            }
            Ok(ExitCode::from(1))
        }
    }
}

/// The verifier of the route of `config` whose path or name is `route`: its profile,
/// secrets and tolerance, as the gateway holds them. The URL defaults to its `public_url`.
fn from_route(
    config: &Path,
    route: &str,
    provider: Option<&str>,
    url: String,
) -> anyhow::Result<(Verifier, String)> {
    let config = Config::load(config).map_err(|e| Usage(e.to_string()))?;
    let by_name: Vec<_> = config.routes.iter().filter(|r| r.name == route).collect();
    let found =
        if by_name.is_empty() { config.routes.iter().filter(|r| r.path == route).collect() } else { by_name };
    let r = match found.as_slice() {
        [r] => r,
        [] => {
            let names: Vec<_> = config.routes.iter().map(|r| r.name.as_str()).collect();
            return Err(Usage(format!("--route: no route '{route}' (routes: {})", names.join(", "))).into());
        }
        many => {
            let names: Vec<_> = many.iter().map(|r| r.name.as_str()).collect();
            return Err(
                Usage(format!("--route: '{route}' has variants; name one: {}", names.join(", "))).into()
            );
        }
    };
    if let Some(p) = provider.filter(|p| *p != r.provider()) {
        return Err(Usage(format!("--provider {p}: route '{}' is a {} route", r.name, r.provider())).into());
    }
    let url = match (url.is_empty(), &r.public_url) {
        (true, Some(public)) => public.clone(),
        _ => url,
    };
    Ok((r.verifier.clone(), url))
}

/// One secret from a file (a trailing newline is not part of it).
fn read_secret_file(path: &Path) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| Usage(format!("--secret-file {}: {e}", path.display())))?;
    let v = text.trim_end_matches(['\n', '\r']).to_string();
    if v.is_empty() {
        return Err(Usage(format!("--secret-file {}: the file is empty", path.display())).into());
    }
    Ok(v)
}

/// A certificate-URL scheme: the certificate from `--certificate` or fetched, then checked.
fn by_certificate(
    verifier: &Verifier,
    input: &Input<'_>,
    given: &[String],
    test: Option<&TestTrust>,
) -> anyhow::Result<Result<crate::verify::Verified, VerifyError>> {
    let extra: &dyn ExtraHosts = match test {
        Some(t) => t,
        None => &PinnedOnly,
    };
    let pending = match certificate::prepare(verifier, input, extra) {
        Ok(p) => p,
        Err(e) => return Ok(Err(e)),
    };
    let mut pem = None;
    for g in given {
        let (url, file) =
            g.split_once('=').ok_or_else(|| Usage(format!("--certificate '{g}' is not URL=FILE")))?;
        if url == pending.url.url {
            pem = Some(std::fs::read(file).map_err(|e| Usage(format!("--certificate {file}: {e}")))?);
        }
    }
    let pem = match pem {
        Some(p) => p,
        None => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(Fetcher::global().get(&pending.url, test))?.to_vec()
        }
    };
    let rule = verifier.profile().certificate.as_ref().expect("a certificate profile");
    Ok(SigningCert::from_pem(&pem, rule, &cert_fetch::trust_anchors(test), input.now)
        .and_then(|cert| pending.finish(&cert)))
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
