#!/usr/bin/env python3
"""Generates tests/vectors/catalog-cert.json: vectors for the certificate-URL profiles
(`paypal`, `amazon-sns`).

The real signing certificates are PayPal's and Amazon's, whose keys nobody outside holds, so
the vectors are signed with a test RSA key under a test CA (`cert-fixtures/`, made once by
this script and committed; the JSON is the artifact) following each provider's documented
recipe, and every verdict an outside library can give is asserted with that library:

- paypal: recipe https://developer.paypal.com/api/rest/webhooks/rest/ ("Self-verification
  method": transmission id|transmission time|webhook id|CRC32 of the body, decimal;
  RSA-SHA256, base64). Oracle: PyPI paypalrestsdk 1.13.3, `WebhookEvent.verify` (its own
  signed string with CRC32, chain, common-name, expiry and signature checks), with its
  certificate download and CA store pointed at the fixtures; pyOpenSSL 26 no longer has the
  `crypto.verify` it calls, which is supplied as pyOpenSSL defined it, with `cryptography`.
  Signed with `cryptography` 50.0.2.
- amazon-sns: recipe https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html
  (fields per message type, SignatureVersion 1 = SHA1withRSA, 2 = SHA256withRSA; the
  certificate host sns.<region>.amazonaws.com). Oracle: npm sns-validator 0.3.5
  (tests/vectors/npm-cert/, its certificate download answered from the fixtures), which
  checks the host pattern and the signature, not the chain.

Verdicts no library gives (a stale or future PayPal transmission time, a topic other than
the route's, an expired or untrusted certificate for sns-validator) follow the docs' rules
named on each vector ("why").

Each vector carries `certificates` ({url: PEM}, served instead of fetching) and `test_ca`
(the test CA, trusted as `portcullis verify --test-ca` does): tests/cli.rs passes them.

usage: /work/venv/bin/python tests/vectors/gen_cert.py > tests/vectors/catalog-cert.json
(needs tests/vectors/requirements-cert.txt, and `npm ci` in tests/vectors/npm-cert/)
"""
import base64, binascii, datetime, json, os, subprocess, sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "cert-fixtures")
NPM = os.path.join(HERE, "npm-cert")
NOW = 1796025600  # 2026-11-30T08:00:00Z
URL = "https://hooks.example.com/webhooks/x"


def iso(ts):
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------------------------
# Fixtures: made once, then read back, so that the JSON stays the same run after run.

def fixture(name, make):
    path = os.path.join(FIX, name)
    if not os.path.exists(path):
        os.makedirs(FIX, exist_ok=True)
        with open(path, "wb") as f:
            f.write(make())
    with open(path, "rb") as f:
        return f.read()


def key_pem(k):
    return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def load_key(pem):
    return serialization.load_pem_private_key(pem, None)


def ca(name):
    key = load_key(fixture(f"{name}.key.pem", lambda: key_pem(ec.generate_private_key(ec.SECP256R1()))))

    def make():
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"portcullis {name}")])
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                .public_key(key.public_key()).serial_number(1000 + len(name))
                .not_valid_before(datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc))
                .not_valid_after(datetime.datetime(2040, 1, 1, tzinfo=datetime.timezone.utc))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
                .sign(key, hashes.SHA256()))
        return cert.public_bytes(serialization.Encoding.PEM)

    return key, fixture(f"{name}.pem", make)


SIGNER = load_key(fixture("signer.key.pem", lambda: key_pem(rsa.generate_private_key(65537, 2048))))


def leaf(file, issuer, cn, start, end, serial):
    ca_key, ca_pem = issuer
    ca_cert = x509.load_pem_x509_certificate(ca_pem)

    def make():
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
                .issuer_name(ca_cert.subject).public_key(SIGNER.public_key()).serial_number(serial)
                .not_valid_before(datetime.datetime(*start, tzinfo=datetime.timezone.utc))
                .not_valid_after(datetime.datetime(*end, tzinfo=datetime.timezone.utc))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .sign(ca_key, hashes.SHA256()))
        return cert.public_bytes(serialization.Encoding.PEM)

    return fixture(file, make).decode()


TEST_CA = ca("test-ca")
OTHER_CA = ca("other-ca")
CA_PEM = TEST_CA[1].decode()
VALID = ((2026, 1, 1), (2036, 1, 1))
EXPIRED = ((2024, 1, 1), (2025, 1, 1))
PP_CERT = leaf("paypal.pem", TEST_CA, "messageverificationcerts.paypal.com", *VALID, 11)
PP_EXPIRED = leaf("paypal-expired.pem", TEST_CA, "messageverificationcerts.paypal.com", *EXPIRED, 12)
PP_UNTRUSTED = leaf("paypal-untrusted.pem", OTHER_CA, "messageverificationcerts.paypal.com", *VALID, 13)
PP_OTHER_NAME = leaf("paypal-other-name.pem", TEST_CA, "certs.example.com", *VALID, 14)
SNS_CERT = leaf("sns.pem", TEST_CA, "sns.amazonaws.com", *VALID, 21)
SNS_EXPIRED = leaf("sns-expired.pem", TEST_CA, "sns.amazonaws.com", *EXPIRED, 22)
SNS_UNTRUSTED = leaf("sns-untrusted.pem", OTHER_CA, "sns.amazonaws.com", *VALID, 23)


def rsa_sign(msg, hash_alg):
    return base64.b64encode(SIGNER.sign(msg, padding.PKCS1v15(), hash_alg)).decode()


def vector(name, provider, secrets, headers, body, expect, why, certs):
    return {"name": name, "provider": provider, "secrets": secrets, "method": "POST", "url": URL,
            "headers": headers, "body_b64": base64.b64encode(body).decode(), "now": NOW, "expect": expect,
            "why": why, "certificates": certs, "test_ca": CA_PEM}


# ---------------------------------------------------------------------------------------------
# PayPal

PP_URL = "https://api.sandbox.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-a5cafa77"
WEBHOOK_ID = "1JE4291016473214C"


def paypal_sign(tid, ts, webhook_id, body):
    """The documented recipe: <transmissionId>|<timeStamp>|<webhookId>|<crc32 of body, decimal>."""
    msg = f"{tid}|{ts}|{webhook_id}|{binascii.crc32(body) & 0xffffffff}".encode()
    return rsa_sign(msg, hashes.SHA256())


def paypal_headers(tid, ts, sig, url=PP_URL, algo="SHA256withRSA"):
    h = [["PAYPAL-TRANSMISSION-ID", tid], ["PAYPAL-TRANSMISSION-TIME", ts], ["PAYPAL-CERT-URL", url],
         ["PAYPAL-AUTH-ALGO", algo], ["Content-Type", "application/json"]]
    if sig is not None:
        h.append(["PAYPAL-TRANSMISSION-SIG", sig])
    return h


def paypal_oracle(headers, body, webhook_id, cert_pem):
    """paypalrestsdk's verdict, its certificate download and CA store given the fixtures."""
    from OpenSSL import crypto
    from paypalrestsdk.notifications import WebhookEvent
    if not hasattr(crypto, "verify"):
        # pyOpenSSL 24.3 dropped crypto.verify, which paypalrestsdk calls; this is what it
        # did (raise unless the certificate's key verifies the signature), with cryptography.
        def verify(cert, signature, data, digest):
            alg = {"sha256WithRSAEncryption": hashes.SHA256(), "sha1WithRSAEncryption": hashes.SHA1()}[digest]
            cert.to_cryptography().public_key().verify(signature, data, padding.PKCS1v15(), alg)
        crypto.verify = verify
    WebhookEvent._get_cert = staticmethod(lambda url: crypto.load_certificate(crypto.FILETYPE_PEM, cert_pem))

    def store(cls):
        s = crypto.X509Store()
        s.add_cert(crypto.load_certificate(crypto.FILETYPE_PEM, CA_PEM))
        return s
    WebhookEvent._get_certificate_store = classmethod(store)
    h = {k.upper(): v for k, v in headers}
    if "PAYPAL-TRANSMISSION-SIG" not in h:
        return False
    import contextlib, io
    with contextlib.redirect_stdout(io.StringIO()):
        return bool(WebhookEvent.verify(h["PAYPAL-TRANSMISSION-ID"], h["PAYPAL-TRANSMISSION-TIME"], webhook_id,
                                        body.decode(), h["PAYPAL-CERT-URL"], h["PAYPAL-TRANSMISSION-SIG"],
                                        h["PAYPAL-AUTH-ALGO"]))


def paypal_vectors():
    out = []
    body = json.dumps({"id": "8PT597110X687430LKGECATA", "create_time": "2026-11-30T11:59:58Z",
                       "resource_type": "authorization", "event_type": "PAYMENT.AUTHORIZATION.CREATED",
                       "summary": "A payment authorization was created",
                       "resource": {"id": "2DC87612EK520411B", "state": "authorized",
                                    "amount": {"total": "7.47", "currency": "USD"}}}, separators=(",", ":")).encode()
    body2 = json.dumps({"id": "WH-2WR32451HC0233532-67976317FL4543714", "event_type": "PAYMENT.CAPTURE.COMPLETED",
                        "resource": {"id": "42311647XV020574X", "amount": {"value": "10.00", "currency_code": "EUR"},
                                     "note": "caf\u00e9 | pipes"}}, ensure_ascii=False).encode()
    tid, tid2 = "69cd13f0-d67a-11e5-baa3-778b53f4ae55", "b4a4d6e0-8f2b-11ef-9e2c-2b1a3c4d5e6f"
    ts = iso(NOW - 20)
    certs = {PP_URL: PP_CERT}

    def add(name, headers, b, expect, why, secrets=(WEBHOOK_ID,), cert=PP_CERT, oracle=True):
        if oracle:
            got = paypal_oracle(headers, b, secrets[-1] if expect == "valid" and len(secrets) > 1 else secrets[0], cert)
            assert got == (expect == "valid"), f"paypalrestsdk disagrees on {name}: {got}"
            why = "paypalrestsdk 1.13.3 WebhookEvent.verify: " + ("True" if got else "False")
        else:
            # The library checks no time nor host: it must accept the signature, the rule refuses it.
            assert paypal_oracle(headers, b, secrets[0], cert), f"paypalrestsdk refuses {name} for another reason"
            why = "paypalrestsdk 1.13.3 accepts the signature; " + why
        url = dict(headers)["PAYPAL-CERT-URL"]
        out.append(vector("paypal " + name, "paypal", list(secrets), headers, b, expect, why, {url: cert}))

    sig = paypal_sign(tid, ts, WEBHOOK_ID, body)
    add("valid", paypal_headers(tid, ts, sig), body, "valid", "")
    sig2 = paypal_sign(tid2, iso(NOW + 100), WEBHOOK_ID, body2)
    add("valid, UTF-8 body, time 100 s ahead", paypal_headers(tid2, iso(NOW + 100), sig2), body2, "valid", "")
    add("valid with the previous webhook id configured second", paypal_headers(tid, ts, sig), body, "valid", "",
        secrets=("7XY4291016473214Z", WEBHOOK_ID))
    add("wrong webhook id", paypal_headers(tid, ts, sig), body, "invalid", "", secrets=("7XY4291016473214Z",))
    add("tampered body", paypal_headers(tid, ts, sig), body.replace(b"7.47", b"9.47"), "invalid", "")
    add("missing signature", paypal_headers(tid, ts, None), body, "invalid", "")
    add("empty signature", paypal_headers(tid, ts, ""), body, "invalid", "")
    add("truncated signature", paypal_headers(tid, ts, sig[:-8]), body, "invalid", "")
    add("transmission id changed", paypal_headers(tid2, ts, sig), body, "invalid", "")
    add("expired certificate", paypal_headers(tid, ts, sig), body, "invalid", "", cert=PP_EXPIRED)
    add("certificate from an untrusted CA", paypal_headers(tid, ts, sig), body, "invalid", "", cert=PP_UNTRUSTED)
    add("certificate naming another domain", paypal_headers(tid, ts, sig), body, "invalid", "", cert=PP_OTHER_NAME)
    stale = iso(NOW - 301)
    add("stale transmission time (301 s)", paypal_headers(tid, stale, paypal_sign(tid, stale, WEBHOOK_ID, body)), body,
        "invalid", "the signed transmission time is older than the 300 s tolerance", oracle=False)
    future = iso(NOW + 301)
    add("future transmission time (301 s)", paypal_headers(tid, future, paypal_sign(tid, future, WEBHOOK_ID, body)), body,
        "invalid", "the signed transmission time is beyond the 300 s tolerance", oracle=False)
    evil = "https://api.sandbox.paypal.com.evil.example/v1/notifications/certs/CERT-1"
    add("certificate URL off PayPal's hosts", paypal_headers(tid, ts, sig, url=evil), body, "invalid",
        "the certificate URL must be on PayPal's hosts (refused before fetching)", oracle=False)
    add("PAYPAL-AUTH-ALGO SHA1withRSA", paypal_headers(tid, ts, sig, algo="SHA1withRSA"), body, "invalid", "")
    # The certificate URL must be PayPal's exact shape, /v1/notifications/certs/CERT-<letters, digits, '-'>,
    # with no query, fragment or percent-escape: anything else is refused before fetching, so
    # unauthenticated requests cannot make the gateway fetch other URLs.
    for what, bad in [("with a query", PP_URL + "?n=1"),
                      ("with percent-encoded dots", PP_URL.replace("/certs/", "/certs/%2e%2e/%2e%2e/")),
                      ("naming another file", PP_URL.replace("/CERT-", "/OTHER-"))]:
        add("certificate URL " + what, paypal_headers(tid, ts, sig, url=bad), body, "invalid",
            "the certificate URL must be https://<PayPal host>/v1/notifications/certs/CERT-<id> (refused before fetching)",
            oracle=False)
    return out


# ---------------------------------------------------------------------------------------------
# Amazon SNS

SNS_URL = "https://sns.us-west-2.amazonaws.com/SimpleNotificationService-7ff5318490ec183fbaddaa2a969abfda.pem"
TOPIC = "arn:aws:sns:us-west-2:123456789012:MyTopic"
NOTIFY_KEYS = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
CONFIRM_KEYS = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]


def sns_sign(msg, version):
    """The documented recipe: name\\nvalue\\n for each signed field present, in order."""
    keys = NOTIFY_KEYS if msg["Type"] == "Notification" else CONFIRM_KEYS
    s = "".join(f"{k}\n{msg[k]}\n" for k in keys if k in msg).encode()
    return rsa_sign(s, hashes.SHA1() if version == "1" else hashes.SHA256())


def sns_message(kind, version, **extra):
    m = {"Type": kind, "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324", "TopicArn": TOPIC,
         "Message": "{\"order\":\"o_1\",\"total\":\"12.00\"}", "Timestamp": "2026-11-30T11:59:50.123Z",
         "SignatureVersion": version, "SigningCertURL": SNS_URL,
         "UnsubscribeURL": "https://sns.us-west-2.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=" + TOPIC + ":c9135db0"}
    if kind != "Notification":
        del m["UnsubscribeURL"]
        m["Token"] = "2336412f37fb687f5d51e6e241d09c805a5a57b30d712f794cc5f6a988666d92768dd60a747ba6f3beb71854e285d6ad02428b09ceece29417f1f02d609c582afbacc99c583a916b9981dd2728f4ae6fdb82efd087cc3b7849e05798d2d2785c03b0879594eeac82c01f235d0e717736"
        m["SubscribeURL"] = "https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription&TopicArn=" + TOPIC + "&Token=2336412f37fb"
        m["Message"] = "You have chosen to subscribe to the topic " + TOPIC + ".\nTo confirm the subscription, visit the SubscribeURL included in this message."
    m.update(extra)
    m["Signature"] = sns_sign(m, version)
    return m


def sns_oracle(cases):
    """sns-validator 0.3.5's verdicts, its certificate download answered from the fixtures."""
    script = os.path.join(NPM, "sns_oracle.js")
    res = subprocess.run(["node", script], input=json.dumps(cases).encode(), capture_output=True, check=True)
    return json.loads(res.stdout)


def sns_vectors():
    n1 = sns_message("Notification", "1")
    n2 = sns_message("Notification", "2", Subject="Order placed", MessageId="6f9a2d1c-8a55-4a0b-9a0e-5d1f3c2b7e10",
                     Message="caf\u00e9 \u2615 line one\nline two")
    c2 = sns_message("SubscriptionConfirmation", "2")
    cases = []  # (name, message or raw body, expect, why-if-no-oracle, cert, secrets)

    def case(name, msg, expect, cert=SNS_CERT, why=None, secrets=(TOPIC,), oracle=True):
        cases.append((name, msg, expect, cert, why, list(secrets), oracle))

    case("valid notification, SignatureVersion 1", n1, "valid")
    case("valid notification with a Subject, SignatureVersion 2", n2, "valid")
    case("valid subscription confirmation (forwarded to the upstream)", c2, "valid")
    case("another topic than the route's", n2, "invalid", why="the signed TopicArn is not the route's topic_arn (AWS: reject an unexpected TopicArn)",
         secrets=("arn:aws:sns:us-west-2:123456789012:OtherTopic",), oracle=False)
    case("tampered message", dict(n2, Message=n2["Message"] + "!"), "invalid")
    case("tampered subject", dict(n2, Subject="Order refunded"), "invalid")
    case("missing signature", {k: v for k, v in n2.items() if k != "Signature"}, "invalid")
    case("empty signature", dict(n2, Signature=""), "invalid")
    case("truncated signature", dict(n2, Signature=n2["Signature"][:-8]), "invalid")
    case("version 1 signature claimed as version 2", dict(n1, SignatureVersion="2"), "invalid")
    case("certificate URL off the SNS hosts", dict(n2, SigningCertURL="https://sns.us-west-2.amazonaws.com.evil.example/c.pem"), "invalid")
    case("certificate URL over http", dict(n2, SigningCertURL=SNS_URL.replace("https:", "http:")), "invalid")
    # Only https://sns.<region>.amazonaws.com[.cn]/SimpleNotificationService-<hex>.pem, with no query,
    # fragment or percent-escape, is fetched (sns-validator checks the host and a path ending in
    # .pem, query included: it refuses the query and the .crt, not the escapes nor the file name).
    for what, bad, oracle in [("with a query", SNS_URL + "?n=1", True),
                              ("with percent-encoded dots", SNS_URL.replace(".com/", ".com/%2e%2e/"), False),
                              ("naming another file", SNS_URL.replace(".pem", ".crt"), True),
                              ("not SimpleNotificationService-<hex>.pem",
                               SNS_URL.replace("7ff5318490ec183fbaddaa2a969abfda", "x/../../other"), False)]:
        case("certificate URL " + what, dict(n2, SigningCertURL=bad), "invalid", oracle=oracle,
             why="the certificate URL must be https://sns.<region>.amazonaws.com/SimpleNotificationService-<hex>.pem "
                 "(refused before fetching)")
    case("expired certificate", n2, "invalid", cert=SNS_EXPIRED, oracle=False,
         why="the signing certificate has expired (AWS: confirm the certificate's chain of trust and validity)")
    case("certificate from an untrusted CA", n2, "invalid", cert=SNS_UNTRUSTED, oracle=False,
         why="the signing certificate does not chain to a trusted root (AWS: confirm the certificate's chain of trust)")

    verdicts = sns_oracle([{"message": m, "certs": {SNS_URL: cert, m.get("SigningCertURL", SNS_URL): cert}}
                           for (_, m, _, cert, _, _, _) in cases])
    out = []
    for (name, msg, expect, cert, why, secrets, oracle), got in zip(cases, verdicts):
        if oracle:
            assert got["valid"] == (expect == "valid"), f"sns-validator disagrees on {name}: {got}"
            why = "sns-validator 0.3.5: " + ("valid" if got["valid"] else "invalid: " + got["error"])
        else:
            # The library checks the signature only: it must find it good, the rule above refuses it.
            assert got["valid"], f"sns-validator refuses {name} for another reason: {got}"
            why = "sns-validator 0.3.5 accepts the signature; " + why
        body = json.dumps(msg, indent=2, ensure_ascii=False).encode()
        headers = [["x-amz-sns-message-type", msg["Type"]], ["x-amz-sns-message-id", msg["MessageId"]],
                   ["x-amz-sns-topic-arn", msg["TopicArn"]], ["Content-Type", "text/plain; charset=UTF-8"]]
        url = msg.get("SigningCertURL", SNS_URL)
        out.append(vector("amazon-sns " + name, "amazon-sns", secrets, headers, body, expect, why, {url: cert}))
    return out


if __name__ == "__main__":
    json.dump(paypal_vectors() + sns_vectors(), sys.stdout, indent=1, ensure_ascii=False)
    sys.stdout.write("\n")
