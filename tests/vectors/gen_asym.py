#!/usr/bin/env python3
"""Generates tests/vectors/catalog-asym.json: vectors for the public-key and JWT profiles
(sendgrid, discord, telnyx, wise, netlify, vonage) and sanity, each verdict given by an oracle outside
portcullis. Keys are fixed below (test keys, never used anywhere else); ECDSA uses
deterministic signing (RFC 6979), so the output is the same on every run.

Oracles (versions pinned in tests/vectors/requirements-asym.txt):
- sendgrid: PyPI `sendgrid` 6.12.5, `sendgrid.helpers.eventwebhook.EventWebhook.verify_signature`
  (the SDK checks no time: stale/future vectors add the profile's 300 s window, see discord).
  Keys/signatures made with `cryptography` 50.0.2.
- discord: PyPI `PyNaCl` 1.6.2 `VerifyKey.verify`, as Discord's Python sample does
  (https://discord.com/developers/docs/interactions/overview#setting-up-an-endpoint-validating-security-request-headers).
  Discord's sample checks no time; the stale/future vectors are invalid by the profile's
  documented 300 s window on the signed timestamp, and the oracle confirms their signature.
- telnyx: PyPI `telnyx` 4.189.0, `telnyx.lib.webhook_verification.verify_webhook_signature`
  (signature and its own 300 s window, with the clock fixed to the vector's `now`).
- wise: PyPI `cryptography` 50.0.2, RSA PKCS#1 v1.5 SHA-256 verification as in Wise's sample
  (https://docs.wise.com/api-docs/guides/webhooks/event-handling#verify-the-signature).
- netlify: PyPI `PyJWT` 2.15.1, `jwt.decode(token, secret, algorithms=["HS256"], issuer="netlify")`
  then the `sha256` claim compared with the body's SHA-256, as Netlify's docs show
  (https://docs.netlify.com/site-deploys/notifications/#payload-signature).
- vonage: PyPI `vonage-jwt` 1.1.5 `vonage_jwt.verify_jwt.verify_signature`, then `payload_hash`
  compared with the body's SHA-256 and `iat` with the clock (300 s), as Vonage's docs say
  (https://developer.vonage.com/en/getting-started/concepts/webhooks#validating-signed-webhooks).
- sanity: npm `@sanity/webhook` 4.0.4 (tests/vectors/npm-asym, `npm ci` there first):
  `encodeSignatureHeader` signs and `isValidSignature` judges, through
  tests/vectors/npm-asym/sanity-oracle.js. The helper checks no time; stale/future vectors add
  the profile's 300 s window, as for discord.

usage: /work/venv/bin/python tests/vectors/gen_asym.py > tests/vectors/catalog-asym.json
"""
import base64, datetime, hashlib, json, os, subprocess, sys, warnings
from unittest import mock

import jwt as pyjwt
import nacl.exceptions
import nacl.signing
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from sendgrid.helpers.eventwebhook import EventWebhook
from telnyx.lib import webhook_verification as telnyx_wv
from vonage_jwt.verify_jwt import verify_signature as vonage_verify

NOW = 1796025600
URL = "https://hooks.example.com/webhooks/x"
TOL = 300
out = []


def b64(b):
    return base64.b64encode(b).decode()


def vec(name, provider, secrets, headers, body, now, oracle_ok, want):
    """`oracle_ok` is the outside verdict; `want` what this generator meant to build. They
    must agree, or the vector (or the oracle's use) is wrong."""
    verdict = "valid" if oracle_ok else "invalid"
    if verdict != want:
        sys.exit(f"{provider}/{name}: the oracle says {verdict}, the generator meant {want}")
    out.append({"name": f"{provider}: {name}", "provider": provider, "secrets": secrets, "method": "POST",
                "url": URL, "headers": headers, "body_b64": b64(body), "now": now, "expect": verdict})


warnings.simplefilter("ignore")  # PyJWT's advice on short test secrets


def pyjwt_clock(now):
    """PyJWT reads the wall clock for exp/nbf/iat; the vectors have their own `now`."""
    class Fixed(datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime.datetime.fromtimestamp(now, tz)
    return mock.patch("jwt.api_jwt.datetime", Fixed)


def in_window(ts, now):
    return abs(now - int(ts)) <= TOL


# ---------------------------------------------------------------------------------------------
# SendGrid: ECDSA P-256, base64 DER signature of timestamp + body.

def sendgrid():
    keys = [ec.derive_private_key(n, ec.SECP256R1()) for n in (0x5E9D, 0xBAD)]
    spki = [b64(k.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)) for k in keys]
    good, other = keys[0], keys[1]
    body = b'[{"email":"a@example.com","timestamp":1796025590,"event":"delivered","sg_event_id":"sg-1","sg_message_id":"m1"},{"email":"b@example.com","timestamp":1796025591,"event":"open","sg_event_id":"sg-2","sg_message_id":"m2"}]\r\n'

    def sign(key, ts, b):
        return b64(key.sign(ts.encode() + b, ec.ECDSA(hashes.SHA256(), deterministic_signing=True)))

    def oracle(pub, sig, ts, b, now, window=True):
        try:
            ok = EventWebhook(pub).verify_signature(b.decode("utf-8"), sig, ts)
        except Exception:
            ok = False
        return ok and (not window or in_window(ts, now))

    def case(name, sig, ts, b=body, secrets=(spki[0],), now=NOW, want="invalid"):
        headers = []
        if sig is not None:
            headers.append(["X-Twilio-Email-Event-Webhook-Signature", sig])
        headers.append(["X-Twilio-Email-Event-Webhook-Timestamp", ts])
        ok = any(oracle(p, sig or "", ts, b, now) for p in secrets)
        vec(name, "sendgrid", list(secrets), headers, b, now, ok, want)

    ts = str(NOW - 10)
    sig = sign(good, ts, body)
    case("valid", sig, ts, want="valid")
    case("valid, second key (rotation)", sig, ts, secrets=(spki[1], spki[0]), want="valid")
    case("valid, 299 s old", sign(good, str(NOW - 299), body), str(NOW - 299), want="valid")
    case("wrong key", sign(other, ts, body), ts)
    case("tampered body", sig, ts, b=body.replace(b"delivered", b"bounce"))
    case("timestamp changed", sig, str(NOW - 11))
    case("missing signature", None, ts)
    case("empty signature", "", ts)
    raw = base64.b64decode(sig)
    case("truncated signature", b64(raw[:-4]), ts)
    case("stale timestamp", sign(good, str(NOW - 301), body), str(NOW - 301))
    case("future timestamp", sign(good, str(NOW + 301), body), str(NOW + 301))


# ---------------------------------------------------------------------------------------------
# Discord and Telnyx: Ed25519.

def discord():
    sk = nacl.signing.SigningKey(bytes(range(32)))
    other = nacl.signing.SigningKey(bytes(range(32, 64)))
    pub = sk.verify_key.encode().hex()
    body = b'{"id":"1100000000000000001","application_id":"1100000000000000000","type":1,"token":"tok","version":1}'

    def sign(k, ts, b):
        return k.sign(ts.encode() + b).signature.hex()

    def oracle(sig, ts, b, now):
        # Discord's Python sample, then the profile's window on the signed timestamp.
        try:
            nacl.signing.VerifyKey(bytes.fromhex(pub)).verify(f"{ts}".encode() + b, bytes.fromhex(sig))
        except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
            return False
        return in_window(ts, now)

    def case(name, sig, ts, b=body, now=NOW, secrets=(pub,), want="invalid"):
        headers = ([["X-Signature-Ed25519", sig]] if sig is not None else []) + [["X-Signature-Timestamp", ts]]
        vec(name, "discord", list(secrets), headers, b, now, oracle(sig or "", ts, b, now), want)

    ts = str(NOW - 5)
    sig = sign(sk, ts, body)
    case("valid", sig, ts, want="valid")
    case("valid, upper-case hex signature", sig.upper(), ts, want="valid")
    case("valid, key among several", sig, ts, secrets=(other.verify_key.encode().hex(), pub), want="valid")
    case("wrong key", sign(other, ts, body), ts)
    case("tampered body", sig, ts, b=body.replace(b'"type":1', b'"type":2'))
    case("missing signature", None, ts)
    case("empty signature", "", ts)
    case("truncated signature", sig[:-2], ts)
    case("stale timestamp", sign(sk, str(NOW - 301), body), str(NOW - 301))
    case("future timestamp", sign(sk, str(NOW + 301), body), str(NOW + 301))


def telnyx():
    sk = nacl.signing.SigningKey(hashlib.sha256(b"telnyx test key").digest())
    other = nacl.signing.SigningKey(hashlib.sha256(b"another key").digest())
    pub = b64(sk.verify_key.encode())
    body = b'{"data":{"event_type":"message.received","id":"b301ed3f-1490-491f-995f-6e64e69674d4","occurred_at":"2026-12-01T00:00:00.000+00:00","payload":{"text":"hi"},"record_type":"event"},"meta":{"attempt":1,"delivered_to":"https://hooks.example.com/webhooks/x"}}'

    def sign(k, ts, b):
        return b64(k.sign(ts.encode() + b"|" + b).signature)

    def oracle(headers, b, now, key):
        with mock.patch.object(telnyx_wv.time, "time", return_value=float(now)):
            try:
                telnyx_wv.verify_webhook_signature(b, dict(headers), key)
                return True
            except telnyx_wv.WebhookVerificationError:
                return False

    def case(name, sig, ts, b=body, now=NOW, secrets=(pub,), want="invalid"):
        headers = ([["telnyx-signature-ed25519", sig]] if sig is not None else []) + [["telnyx-timestamp", ts]]
        ok = any(oracle(headers, b, now, k) for k in secrets)
        vec(name, "telnyx", list(secrets), headers, b, now, ok, want)

    ts = str(NOW - 3)
    sig = sign(sk, ts, body)
    case("valid", sig, ts, want="valid")
    case("valid, key among several", sig, ts, secrets=(b64(other.verify_key.encode()), pub), want="valid")
    case("valid, 300 s in the future", sign(sk, str(NOW + 300), body), str(NOW + 300), want="valid")
    case("wrong key", sign(other, ts, body), ts)
    case("tampered body", sig, ts, b=body.replace(b'"hi"', b'"ho"'))
    case("signed without the '|'", b64(sk.sign(ts.encode() + body).signature), ts)
    case("missing signature", None, ts)
    case("empty signature", "", ts)
    case("truncated signature", b64(base64.b64decode(sig)[:-1]), ts)
    case("stale timestamp", sign(sk, str(NOW - 301), body), str(NOW - 301))
    case("future timestamp", sign(sk, str(NOW + 301), body), str(NOW + 301))


# ---------------------------------------------------------------------------------------------
# Wise: RSA PKCS#1 v1.5 SHA-256 over the body.

WISE_TEST_KEY = b"""-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQDR8tR1TaMX4lG2
4J3cy4Klm5I37S5NkyExkFS2hI6mzxHcUUivQylD8KnqF44EOzbN7YOfz5AaoJFt
0E3ZF9JZ26311IuFhWiKS4cjHAaWQVYFDtQuzbQJzUuRboVbJ65C4tps6PHxlolN
D6sdDbv0GqjUND3rke1cVPGdFKZHuI6ZWr7LcICK/2k/Ww3N79PsVnqTJjV1iicV
e0Kacr9IglIPBrSME2D1D6VrWE/JrHO6zax+RoaM0Vb5wmQilXmNHSiolrscEwve
0r8uXvyezpC3826ItNkkerCo79rfnv4pnEds5cYr82OKGnxpA0o/9uL0P9eJAa9u
HOGbOtsvAgMBAAECggEAZNxoZgxMwHIpOJazMDoSwzW4aqbG2lzHExUYJXEMSSXs
mi/wn8Y/olSRhJUZVH4QB6FF3TYtsCUYiK2MYLGZjDLF4XZhKt2bCelb/CmAHpo3
1Yk4tV18U0MtvSnf5hlrldV/AthsN1hPENboqTYKaCyQlBWe87dw1S03v/OGKKip
KsC68MxZSMQAYMOzay9uiws3qoIWzH15cRJ829CaQLzbQQFSmOVPNqyVqyTFfmA8
1LcmaHKkOVJs8aC0NLiG+PmNXCk7BjgMG+Z6b5/qGoomPVowUk9mLAN/qvzqrTzN
ugJYUbGmnU70k0m8Y3oHVP2yl7qSPnPAkQU7WfwbhQKBgQD9ydt0aW/Q08ig1dFZ
/xCTCtcmVTrD+WnWhtcHflzy1X7VoJdLuJN0e4MbsYol2KTv8VZL6I5R4+iGSnEU
Ee9Olp6M/wnQePLhtpXAIr5BuFda0GvVGDSiZXJDDE7bnpYbvWMEghdYJkW1X8lv
AB51332jnfTPLhYje43TQ7eywwKBgQDTxy0OZ4Vxwr3M/vfvzKdObFcHu0Xk2cff
36F6p6uK2IDxcxf30N6+COl+IRC06kVHtzRLr/ppLZoRiHdxwaJkurxV9SwEoeOf
bT7HPdu00ZM6SG5ofa3rE29q9hPBqBEPemIZxSG2g6nV16/f3tSV37HhCNYECp5X
wre9jf+XJQKBgA8RVAE2XVglqsy5xSM1vJMuWpXBC6sk/L6q5MtiGjykplIipbju
LXsF9kPHp68VjL1eM8Rv+zsrb9vBQbNyWSXuVV2Dqt6Av9Lc10lABtG6Ex2mMDDH
riBSK5WFfo0Vfk4JUX6sBpzKMOtS04/OjwBqk3gKYcWHM/NJW6NGavqnAoGBAJr0
5PniM1ke5iPl9+Kle1G9ohyNIcImu8IKbqxBnRoV+psw3Lu+QA0KllZsuT23IQQt
f/1VgUOOU2o60TMSPNG5dO7sWs306omPtNyyXV077584uliIhUY5TVAVSDVt1TXf
FYLHpDhYtF8813pWIHSdXhlLjtUcM+oBFtKC4R5lAoGBAJxhQpc7jRimtDU5l6M2
tK1yiBP6TY5CP6jZbkO1PPP0ueF1yKnZxgz9l23bSLOMGEkjVim2MwKtFtm9tA3E
/mAbSjFAUTwMz8NbcN2fe74tY8KblV8Qzrw+pygaWji2uS3Q+fuCqhnQ8gUBd8cb
ZltI949kweJ6H0fXTs7BAVtG
-----END PRIVATE KEY-----
"""


def wise():
    sk = serialization.load_pem_private_key(WISE_TEST_KEY, None)
    pem = sk.public_key().public_bytes(serialization.Encoding.PEM,
                                      serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    pkcs1 = sk.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1).decode()
    one_line = pem.strip().replace("\n", "\\n")
    body = b'{"data":{"resource":{"id":111,"profile_id":222,"account_id":333,"type":"transfer"},"current_state":"processing","previous_state":"incoming_payment_waiting","occurred_at":"2026-12-01T00:00:00Z"},"subscription_id":"01234567-89ab-cdef-0123-456789abcdef","event_type":"transfers#state-change","schema_version":"2.0.0","sent_at":"2026-12-01T00:00:00Z"}'

    def sign(b):
        return b64(sk.sign(b, padding.PKCS1v15(), hashes.SHA256()))

    def oracle(sig, b):
        # Wise's sample: the public key from its PEM, PKCS#1 v1.5 with SHA-256 over the body.
        try:
            pk = serialization.load_pem_public_key(pem.encode())
            pk.verify(base64.b64decode(sig, validate=True), b, padding.PKCS1v15(), hashes.SHA256())
            return True
        except (InvalidSignature, ValueError):
            return False

    def case(name, sig, b=body, secrets=(pem,), want="invalid"):
        headers = [["X-Signature-SHA256", sig]] if sig is not None else []
        vec(name, "wise", list(secrets), headers, b, NOW, oracle(sig or "", b), want)

    sig = sign(body)
    case("valid", sig, want="valid")
    case("valid, PEM written on one line with \\n", sig, secrets=(one_line,), want="valid")
    case("valid, PKCS#1 PEM (BEGIN RSA PUBLIC KEY)", sig, secrets=(pkcs1,), want="valid")
    case("valid, an old event time (no timestamp is signed)", sig, want="valid")
    case("signature of another body", sign(body + b" "))
    case("tampered body", sig, b=body.replace(b"processing", b"outgoing_payment_sent"))
    case("missing signature", None)
    case("empty signature", "")
    raw = base64.b64decode(sig)
    case("truncated signature", b64(raw[:-1]))
    case("one bit flipped", b64(raw[:-1] + bytes([raw[-1] ^ 1])))


# ---------------------------------------------------------------------------------------------
# Netlify and Vonage: HS256 JWTs binding the body by its SHA-256.

def sha256_hex(b):
    return hashlib.sha256(b).hexdigest()


def netlify():
    secret = "netlify-jws-secret"
    body = b'{"id":"5ebc34bf4fea0b01f02efa3a","site_id":"fa4dd95a-994e-4f89-8a7a-2d9e9fc36a32","build_id":"5ebc34bf4fea0b01f02efa38","state":"ready","name":"example","branch":"main","context":"production"}'

    def token(claims, key=secret, alg="HS256"):
        return pyjwt.encode(claims, key, algorithm=alg)

    def oracle(tok, b, key):
        try:
            with pyjwt_clock(NOW):
                claims = pyjwt.decode(tok, key, algorithms=["HS256"], issuer="netlify")
        except pyjwt.PyJWTError:
            return False
        return claims.get("sha256") == sha256_hex(b)

    def case(name, tok, b=body, secrets=(secret,), want="invalid"):
        headers = [["X-Webhook-Signature", tok]] if tok is not None else []
        ok = any(oracle(tok or "", b, k) for k in secrets)
        vec(name, "netlify", list(secrets), headers, b, NOW, ok, want)

    good = token({"iss": "netlify", "sha256": sha256_hex(body)})
    case("valid", good, want="valid")
    case("valid, rotated secret", good, secrets=("new-secret", secret), want="valid")
    case("valid, with exp ahead", token({"iss": "netlify", "sha256": sha256_hex(body), "exp": NOW + 600}),
         want="valid")
    case("wrong secret", token({"iss": "netlify", "sha256": sha256_hex(body)}, key="wrong"))
    case("tampered body", good, b=body.replace(b"ready", b"error"))
    case("other issuer", token({"iss": "someone", "sha256": sha256_hex(body)}))
    case("expired", token({"iss": "netlify", "sha256": sha256_hex(body), "exp": NOW - 3600}))
    case("HS512 token", token({"iss": "netlify", "sha256": sha256_hex(body)}, alg="HS512"))
    unsigned = pyjwt.encode({"iss": "netlify", "sha256": sha256_hex(body)}, None, algorithm="none")
    case("alg none", unsigned)
    case("missing signature", None)
    case("empty signature", "")
    case("truncated token", good[:-4])


def vonage():
    secret = "vonage-signature-secret-0123456789"
    body = b'{"message_uuid":"aaaaaaaa-bbbb-cccc-dddd-0123456789ab","to":"447700900000","from":"447700900001","timestamp":"2026-12-01T00:00:00Z","status":"delivered","channel":"sms"}'

    def token(iat, b=body, key=secret, extra=None):
        claims = {"iat": iat, "jti": "c5ba8f24-1a14-4c10-bfdf-3fbe8ce511b5", "iss": "Vonage",
                  "payload_hash": sha256_hex(b), "api_key": "a1b2c3d4", "application_id": "app-1"}
        claims.update(extra or {})
        return pyjwt.encode(claims, key, algorithm="HS256")

    def oracle(tok, b, key, now):
        try:
            with pyjwt_clock(now):
                if not vonage_verify(tok, key):
                    return False
        except Exception:
            return False
        claims = pyjwt.decode(tok, options={"verify_signature": False})
        return claims.get("payload_hash") == sha256_hex(b) and "iat" in claims and in_window(claims["iat"], now)

    def case(name, tok, b=body, secrets=(secret,), now=NOW, want="invalid"):
        headers = [["Authorization", f"Bearer {tok}"]] if tok is not None else []
        ok = tok is not None and any(oracle(tok, b, k, now) for k in secrets)
        vec(name, "vonage", list(secrets), headers, b, now, ok, want)

    good = token(NOW - 2)
    case("valid", good, want="valid")
    case("valid, rotated secret", good, secrets=("other-secret-0123456789", secret), want="valid")
    case("wrong secret", token(NOW - 2, key="wrong-secret-0123456789"))
    case("tampered body", good, b=body.replace(b"delivered", b"rejected"))
    case("payload_hash of another body", token(NOW - 2, b=b"{}"))
    case("stale iat", token(NOW - 301))
    case("future iat", token(NOW + 301))
    case("missing token", None)
    case("truncated token", good[:-5])
    # A bare token without "Bearer ": Vonage's docs send "Authorization: Bearer <token>", and
    # the profile requires the scheme (no oracle parses the header).
    out.append({"name": "vonage: token without Bearer", "provider": "vonage", "secrets": [secret],
                "method": "POST", "url": URL, "headers": [["Authorization", good]], "body_b64": b64(body),
                "now": NOW, "expect": "invalid"})


# ---------------------------------------------------------------------------------------------
# Sanity: HMAC-SHA256, base64url, t=<ms>,v1=<sig>.

NPM_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "npm-asym")


def sanity_node(req):
    r = subprocess.run(["node", "sanity-oracle.js"], cwd=NPM_DIR, input=json.dumps(req), capture_output=True,
                       text=True, check=True)
    return json.loads(r.stdout)


def sanity():
    secret = "sanity-webhook-secret"
    body = b'{"_id":"movie_123","_type":"movie","title":"Alien","_rev":"r1"}'

    def sign(ts_ms, b=body, key=secret):
        return sanity_node({"op": "sign", "body": b.decode(), "timestamp": ts_ms, "secret": key})["header"]

    def oracle(header, b, now, key):
        if not sanity_node({"op": "verify", "body": b.decode(), "header": header, "secret": key})["valid"]:
            return False
        return in_window(int(header.split(",")[0][2:]) // 1000, now)

    def case(name, header, b=body, secrets=(secret,), want="invalid"):
        headers = ([["sanity-webhook-signature", header]] if header is not None else [])
        headers.append(["idempotency-key", "idem-movie_123-r1"])
        ok = header is not None and any(oracle(header, b, NOW, k) for k in secrets)
        vec(name, "sanity", list(secrets), headers, b, NOW, ok, want)

    ts = (NOW - 4) * 1000 + 250
    good = sign(ts)
    case("valid", good, want="valid")
    case("valid, rotated secret", good, secrets=("older-secret", secret), want="valid")
    case("valid, 300 s old", sign((NOW - 300) * 1000), want="valid")
    case("wrong secret", sign(ts, key="wrong"))
    case("tampered body", good, b=body.replace(b"Alien", b"Aliens"))
    case("missing signature", None)
    case("empty signature", "")
    case("truncated signature", good[:-3])
    case("standard base64 alphabet", good.replace("-", "+").replace("_", "/") if ("-" in good or "_" in good)
         else good[:-1] + "+")
    case("stale timestamp", sign((NOW - 301) * 1000))
    case("future timestamp", sign((NOW + 302) * 1000))


sendgrid()
discord()
telnyx()
wise()
netlify()
vonage()
sanity()
json.dump(out, sys.stdout, indent=1)
sys.stdout.write("\n")
