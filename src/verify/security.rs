//! What a profile's scheme protects against, derived from the profile itself (never written
//! by hand, so it cannot drift from what is verified): whether the body's integrity is
//! checked, how long a captured request could be replayed, and whether the idempotency key
//! comes from signed data. `portcullis providers` prints it and the docs quote it.

use super::certificate::CertScheme;
use super::profile::{Canonical, IdSource, Profile, TimestampSource};
use super::template::Segment;
use serde::Serialize;

/// How much of the request the signature binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Integrity {
    /// Every byte of the body (and whatever else the template names).
    Body,
    /// Named fields are signed (each item of an Adyen batch, Mailgun's timestamp and token,
    /// SNS's message fields), not the body's bytes as a whole.
    Fields,
    /// Only a checksum of the body is signed (PayPal's CRC32): a body with the same checksum
    /// is easy to make, so the body is not really protected.
    Checksum,
    /// Only the sender is authenticated (a shared token or password): the body, the time and
    /// the id are not protected at all.
    None,
}

/// The security properties of one profile.
#[derive(Debug, Clone, Serialize)]
pub struct Security {
    pub integrity: Integrity,
    /// Seconds a captured request stays acceptable, when a signed timestamp is checked;
    /// `None` when nothing but the idempotency key stops a replay.
    pub replay_window_secs: Option<u64>,
    /// Whether a signed one-time value is remembered (a nonce).
    pub nonce: bool,
    /// Whether the idempotency key comes from data the signature covers.
    pub id_signed: bool,
    /// Plain sentences for people, worst first.
    pub notes: Vec<String>,
}

impl Security {
    pub fn of(p: &Profile) -> Security {
        let payload = &p.payload;
        let integrity = match (&p.certificate, p.canonical) {
            (Some(c), _) if c.scheme == CertScheme::Paypal => Integrity::Checksum,
            (Some(_), _) => Integrity::Fields,
            _ if p.algorithm.is_shared_secret() => Integrity::None,
            (None, Some(Canonical::Adyen)) => Integrity::Fields,
            // Mandrill signs the decoded form fields, not the bytes that carry them.
            (None, Some(Canonical::Mandrill)) => Integrity::Fields,
            (None, Some(_)) => Integrity::Body,
            _ if payload.uses(&Segment::Body) => Integrity::Body,
            _ => Integrity::Fields,
        };
        // A JWT's payload is `{body}`, bound through its body-hash claim; its time is `iat`,
        // held to the default tolerance when the profile requires it.
        let replay_window_secs =
            p.timestamp.as_ref().filter(|t| t.check).map(|t| t.tolerance.as_secs()).or(p
                .jwt
                .as_ref()
                .filter(|j| j.require_iat)
                .map(|_| super::profile::DEFAULT_TOLERANCE.as_secs()));
        let id_signed = match &p.id {
            // A certificate scheme's id (PayPal's transmission id, SNS's MessageId) is signed.
            IdSource::Header(_) => payload.uses(&Segment::Id) || p.certificate.is_some(),
            IdSource::Json(_) => integrity != Integrity::None && integrity != Integrity::Checksum,
            // Where decoded form fields are signed, the id is the digest of the signed string.
            IdSource::BodySha256 => integrity == Integrity::Body || signs_form_fields(p),
        };
        let mut notes = Vec::new();
        match integrity {
            Integrity::None => notes.push(
                "No integrity: a shared token authenticates the sender, but the body is not signed, \
                 so anyone who sees one request can send any body."
                    .to_string(),
            ),
            Integrity::Checksum => notes.push(
                "Weak integrity: only the body's CRC32 is signed, and a different body with the same \
                 CRC32 is easy to make; anyone who sees one request can send another body under its \
                 signature until the timestamp ages out."
                    .to_string(),
            ),
            Integrity::Fields if p.canonical == Some(Canonical::Mandrill) => notes.push(
                "Every form field is signed after decoding, not the body's bytes: any re-encoding of a \
                 body (percent-escapes, `+`, separators) carries the same signature, so the event id is \
                 the digest of the signed fields and a re-encoded body is a duplicate. Only url-encoded \
                 forms are accepted."
                    .to_string(),
            ),
            Integrity::Fields if p.canonical != Some(Canonical::Adyen) && p.certificate.is_none() => notes
                .push(
                    "Only named fields are signed (not the body as a whole): whatever else the body holds \
                 is not protected."
                        .to_string(),
                ),
            _ => {}
        }
        match (replay_window_secs, (p.replay.is_some() || p.replay_form.is_some())) {
            (Some(w), _) => notes.push(format!(
                "Replay window: a captured request is refused {w} s after it was signed; within it, \
                 the idempotency key stops a second delivery."
            )),
            (None, true) => notes.push(
                "No signed timestamp is checked, but a signed one-time token is remembered: a replay \
                 is refused for as long as the store keeps it."
                    .to_string(),
            ),
            (None, false) => {
                let unsigned_ts = p.timestamp.as_ref().is_some_and(|t| !t.check);
                notes.push(format!(
                    "No replay window{}: a captured request can be replayed later, and only the \
                     idempotency key (kept for the route's ttl) stops it.",
                    if unsigned_ts {
                        " (the timestamp sent is not signed, so it is not checked)"
                    } else {
                        ""
                    }
                ))
            }
        }
        if !id_signed {
            notes.push(match &p.id {
                IdSource::Header(h) => format!(
                    "The event id comes from the unsigned header {}: a captured body sent again under \
                     a new id is not recognised as a duplicate.",
                    h[0]
                ),
                _ => "The event id is not covered by any signature.".to_string(),
            });
        }
        if p.jwt.as_ref().is_some_and(|j| !j.require_iat) {
            notes.push("The token's iat/exp are checked only when it carries them.".into());
        }
        if matches!(p.timestamp.as_ref().map(|t| &t.source), Some(TimestampSource::Json(_)))
            && replay_window_secs.is_none()
        {
            notes
                .push("The body's timestamp is an event time repeated by retries; it is not checked.".into());
        }
        if p.form_files {
            notes.push(
                "Multipart file parts (attachments) are accepted and forwarded, but no signature covers \
                 them."
                    .to_string(),
            );
        }
        Security {
            integrity,
            replay_window_secs,
            nonce: (p.replay.is_some() || p.replay_form.is_some()),
            id_signed,
            notes,
        }
    }

    /// One short cell for the providers table.
    pub fn summary(&self) -> String {
        let integrity = match self.integrity {
            Integrity::Body => "body",
            Integrity::Fields => "fields",
            Integrity::Checksum => "CRC32 only",
            Integrity::None => "NONE",
        };
        let replay = match (self.replay_window_secs, self.nonce) {
            (Some(w), _) => format!("±{w}s"),
            (None, true) => "nonce".into(),
            (None, false) => "none".into(),
        };
        format!("{integrity}, replay {replay}, id {}", if self.id_signed { "signed" } else { "unsigned" })
    }
}

/// Whether the profile's signature covers decoded form fields (so its fallback id is the
/// digest of the signed string: see `Verifier::signed_form_id`).
fn signs_form_fields(p: &Profile) -> bool {
    let rebuildable = p
        .payload
        .segments()
        .iter()
        .all(|s| matches!(s, Segment::Literal(_) | Segment::Form(_) | Segment::Url | Segment::Body));
    p.canonical == Some(Canonical::Mandrill)
        || (p.canonical.is_none() && p.payload.uses_form() && rebuildable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::profile::ProfileSet;

    fn of(name: &str) -> Security {
        Security::of(ProfileSet::builtin().get(name).unwrap())
    }

    #[test]
    fn properties_follow_from_the_scheme() {
        let stripe = of("stripe");
        assert_eq!(stripe.integrity, Integrity::Body);
        assert_eq!(stripe.replay_window_secs, Some(300));
        assert!(stripe.id_signed);
        let paymento = of("paymento");
        assert_eq!(paymento.replay_window_secs, None);
        assert!(paymento.notes.iter().any(|n| n.contains("not signed")), "{:?}", paymento.notes);
        let twilio = of("twilio");
        assert!(!twilio.id_signed);
        assert!(twilio.summary().contains("id unsigned"));
        let sw = of("standard-webhooks");
        assert!(sw.id_signed, "the id header is in the signed payload");
        assert_eq!(of("adyen").integrity, Integrity::Fields);
        let mailgun = of("mailgun");
        assert!(mailgun.nonce);
        assert_eq!(mailgun.integrity, Integrity::Fields, "Mailgun signs its timestamp and token only");
        let gitlab = of("gitlab");
        assert_eq!(
            (gitlab.integrity, gitlab.replay_window_secs, gitlab.id_signed),
            (Integrity::None, None, false)
        );
        assert!(gitlab.summary().starts_with("NONE"));
        let paypal = of("paypal");
        assert_eq!(paypal.integrity, Integrity::Checksum);
        assert!(paypal.id_signed, "the transmission id is in the signed string");
        let sns = of("amazon-sns");
        assert_eq!((sns.integrity, sns.id_signed), (Integrity::Fields, true));
        assert_eq!(of("discord").integrity, Integrity::Body);
        assert_eq!(of("vonage").replay_window_secs, Some(300));
        assert_eq!(of("netlify").replay_window_secs, None);
        assert_eq!(of("netlify").integrity, Integrity::Body);
        assert!(of("wise").notes.iter().any(|n| n.contains("No replay window")));
    }

    #[test]
    fn form_signed_schemes_sign_fields_and_their_id() {
        let mandrill = of("mandrill");
        assert_eq!((mandrill.integrity, mandrill.id_signed), (Integrity::Fields, true));
        assert!(mandrill.notes.iter().any(|n| n.contains("re-encoding")), "{:?}", mandrill.notes);
        assert!(of("braintree").id_signed, "the id is the digest of bt_payload");
        let routes = of("mailgun-routes");
        assert!(routes.id_signed, "the id is the digest of the signed timestamp and token");
        assert!(routes.notes.iter().any(|n| n.contains("attachments")), "{:?}", routes.notes);
        assert!(!of("twilio").id_signed, "Twilio's id header is not signed");
    }
}
