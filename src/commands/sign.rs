//! `portcullis sign`: print the headers a provider would send for a body.

use super::{lookup_profile, parse_method, read_body, Usage};
use crate::cli::SignArgs;
use crate::clock::Clock;
use crate::verify::{Secret, Verifier};
use std::process::ExitCode;

pub fn run(args: SignArgs) -> anyhow::Result<ExitCode> {
    let SignArgs { provider, secret, id, timestamp, method, url, body_file, providers_dir } = args;
    let profile = lookup_profile(&provider, providers_dir.as_deref())?;
    if profile.algorithm.is_public_key() && profile.secret != crate::verify::mac::SecretEncoding::Ed25519 {
        return Err(Usage(format!(
            "provider '{provider}' signs with its private key ({}); --secret would be its public key, \
             which can only verify: portcullis cannot sign for this provider",
            profile.algorithm.name()
        ))
        .into());
    }
    let verifier =
        Verifier::new(profile, &[Secret::from(secret)], None).map_err(|e| Usage(format!("--secret: {e}")))?;
    let body = read_body(body_file.as_deref())?;
    let id = id.unwrap_or_else(|| format!("msg_{:016x}", rand::random::<u64>()));
    let ts = timestamp.unwrap_or_else(|| Clock::System.now());
    let lines = verifier.sign(&parse_method(&method)?, &url, &body, &id, ts).ok_or_else(|| {
        Usage(format!(
            "provider '{provider}' carries its signature inside the body, or the key given can only verify; it cannot be signed into headers"
        ))
    })?;
    for (name, value) in lines {
        crate::outln!("{name}: {value}")?;
    }
    Ok(ExitCode::SUCCESS)
}
