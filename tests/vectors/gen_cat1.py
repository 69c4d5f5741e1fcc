#!/usr/bin/env python3
"""Generates tests/vectors/catalog-cat1.json: vectors for the catalog-v2 batch 1 profiles.

Every verdict here comes from outside portcullis: each vector is checked by an oracle before it
is written, and the generator stops if the oracle disagrees with the expected verdict. The
signatures are computed from each provider's documented recipe; portcullis' `sign` is never used.

Oracles, per provider:
- revolut:   doc recipe, Revolut's own reference Python (payload `v1.{timestamp}.{body}`, 5-minute
             tolerance), https://developer.revolut.com/docs/guides/manage-accounts/webhooks/verify-the-payload-signature
             (its example secret and payload are used for the first vector).
- paystack:  PyPI pypaystack2 3.4.0, `PaystackClient.is_verified_webhook_payload`, which follows
             Paystack's published snippet (hex HMAC-SHA512 of the raw body with the secret key),
             https://paystack.com/docs/payments/webhooks/#verify-event-origin
- mollie:    Mollie's official PHP SDK, mollie/mollie-api-php src/Webhooks/SignatureValidator.php
             (X-Mollie-Signature, optional `sha256=` prefix, hex HMAC-SHA256 of the body, any configured
             secret), ported line for line below (no PHP runtime or Packagist here); Mollie's docs:
             https://docs.mollie.com/reference/webhooks-best-practices
- bitbucket: doc recipe, https://support.atlassian.com/bitbucket-cloud/docs/manage-webhooks/
             (X-Hub-Signature: sha256=<hex HMAC-SHA256 of the body>).
- sentry:    doc recipe, Sentry's verifySignature snippet,
             https://docs.sentry.io/organization/integrations/integration-platform/webhooks/
- mux:       npm @mux/mux-node 15.3.0, `webhooks.verifySignature` (Date.now fixed to `now`).
- clerk:     PyPI svix 2.9.1, `svix.webhooks.Webhook.verify` (Clerk's documented verifier;
             the clock of standardwebhooks 1.1.0, which it wraps, fixed to `now`).
- resend:    PyPI svix 2.9.1, as for clerk (Resend's documented verifier); plus Resend's documented
             example headers and payload, https://resend.com/docs/dashboard/webhooks/verify-webhooks-requests.
- workos:    PyPI workos 10.6.0, `Webhooks.verify_header` (time.time fixed to `now`).
- webflow:   npm webflow-api 3.3.4, `webhooks.verifySignature` for the signature, plus the
             5-minute age check of https://developers.webflow.com/data/docs/working-with-webhooks
             (the SDK checks no time).
- cashfree:  npm cashfree-pg 6.0.6, `Cashfree.PGVerifyWebhookSignature` (it checks no time, so
             no stale-timestamp vector is claimed for Cashfree).
- onfido:    PyPI onfido-python 6.2.0, `WebhookEventVerifier.read_payload` (Onfido, now Entrust:
             https://documentation.identity.entrust.com/api/manual-webhook-signature-verification/).
- intuit:    PyPI python-quickbooks 0.9.12, `QuickBooks.validate_webhook_signature`, which follows
             https://developer.intuit.com/app/developer/qbo/docs/develop/webhooks/managing-webhooks-notifications#validating-the-notification
             (base64 HMAC-SHA256 of the body with the verifier token).
- xero:      doc recipe, https://developer.xero.com/documentation/webhooks/configuring-your-server
             (base64 HMAC-SHA256 of the body with the webhook key); its intent-to-receive body verbatim.

For the doc-recipe providers the oracle is the provider's published recipe, written out below
apart from the profiles (portcullis' code is never called).

usage: /work/venv/bin/python tests/vectors/gen_cat1.py > tests/vectors/catalog-cat1.json
Needs the packages of tests/vectors/requirements-cat1.txt, and node with the packages of
tests/vectors/npm-cat1/package.json installed (`npm ci` there, or NODE_PATH pointing at them).
Deterministic: fixed secrets, bodies, ids and times.
"""
import base64, datetime, hashlib, hmac, json, os, subprocess, sys
from unittest import mock

NOW = 1796025600
URL = "https://hooks.example.com/webhooks/x"
HERE = os.path.dirname(os.path.abspath(__file__))

VECTORS = []
NODE_CASES = []  # (vector index, oracle input) checked in one node run at the end


def mac(alg, key, msg):
    return hmac.new(key.encode() if isinstance(key, str) else key, msg, alg).digest()


def hexmac(alg, key, msg):
    return mac(alg, key, msg).hex()


def b64mac(alg, key, msg):
    return base64.b64encode(mac(alg, key, msg)).decode()


S256, S512 = hashlib.sha256, hashlib.sha512


def hdict(headers):
    return {k.lower(): v for k, v in headers}


def add(provider, name, secrets, headers, body, now, expect, oracle):
    """Records a vector once its oracle agrees; `oracle` is a bool, or ("node", input)."""
    v = {"name": f"{provider} {name}", "provider": provider, "secrets": secrets, "method": "POST", "url": URL,
         "headers": [list(h) for h in headers], "body_b64": base64.b64encode(body).decode(), "now": now,
         "expect": expect}
    if isinstance(oracle, tuple):
        NODE_CASES.append((len(VECTORS), oracle[1]))
    elif oracle != (expect == "valid"):
        sys.exit(f"oracle disagrees on {v['name']}: oracle says {'valid' if oracle else 'invalid'}")
    VECTORS.append(v)


def any_secret(secrets, check):
    return any(check(s) for s in secrets)


def truncate(value):
    return value[: len(value) // 2]


# ---------------------------------------------------------------- Revolut (doc recipe)
def revolut_sig(secret, ts, body):
    # Revolut's reference: 'v1=' + hmac(secret, 'v1.' + timestamp + '.' + raw_payload, sha256).hexdigest()
    return "v1=" + hexmac(S256, secret, b"v1." + ts.encode() + b"." + body)


def revolut_oracle(secrets, headers, body, now):
    h = hdict(headers)
    ts, sig = h.get("revolut-request-timestamp"), h.get("revolut-signature")
    if not ts or not sig:
        return False
    if abs(now * 1000 - int(ts)) > 5 * 60 * 1000:  # "within a 5-minute time tolerance"
        return False
    given = sig.split(",")  # several v1=… separated by a comma while secrets overlap
    return any_secret(secrets, lambda s: any(hmac.compare_digest(revolut_sig(s, ts, body), g) for g in given))


def revolut():
    p = "revolut"
    # Revolut's documented example: its secret, payload and timestamp.
    doc_secret = "wsk_r59a4HfWVAKycbCaNO1RvgCJec02gRd8"
    doc_body = (b'{"data":{"id":"645a7696-22f3-aa47-9c74-cbae0449cc46","new_state":"completed",'
                b'"old_state":"pending","request_id":"app_charges-9f5d5eb3-1e06-46c5-b1c0-3914763e0bcb"},'
                b'"event":"TransactionStateChanged","timestamp":"2023-05-09T16:36:38.028960Z"}')
    doc_ts = "1683650202360"
    doc_now = 1683650202360 // 1000 + 2
    hs = [["Revolut-Request-Timestamp", doc_ts], ["Revolut-Signature", revolut_sig(doc_secret, doc_ts, doc_body)]]
    add(p, "valid (Revolut's documented example secret and payload)", [doc_secret], hs, doc_body, doc_now, "valid",
        revolut_oracle([doc_secret], hs, doc_body, doc_now))

    s1, s2 = "wsk_cat1CurrentSigningSecret01", "wsk_cat1PreviousSigningSecret2"
    body = b'{"event":"ORDER_COMPLETED","order_id":"9fc01989-3f61-4484-a5d9-ffe768531be9","merchant_order_ext_ref":"Test #3928"}'
    ts = str(NOW * 1000 - 1500)

    def sign(secrets, ts=ts, b=body):
        return [["Revolut-Request-Timestamp", ts], ["Revolut-Signature", ",".join(revolut_sig(s, ts, b) for s in secrets)]]

    def case(name, secrets, hs, b, now, expect):
        add(p, name, secrets, hs, b, now, expect, revolut_oracle(secrets, hs, b, now))

    case("valid", [s1], sign([s1]), body, NOW, "valid")
    case("valid with two signatures during a rotation", [s1], sign([s2, s1]), body, NOW, "valid")
    case("valid with the second of two configured secrets", [s1, s2], sign([s2]), body, NOW, "valid")
    case("valid 4 minutes late", [s1], sign([s1]), body, NOW + 240, "valid")
    case("wrong secret", [s1], sign([s2]), body, NOW, "invalid")
    case("tampered body", [s1], sign([s1]), body.replace(b"Test #3928", b"Test #3929"), NOW, "invalid")
    case("missing signature", [s1], sign([s1])[:1], body, NOW, "invalid")
    case("empty signature", [s1], [sign([s1])[0], ["Revolut-Signature", ""]], body, NOW, "invalid")
    sig = sign([s1])[1][1]
    case("truncated signature", [s1], [sign([s1])[0], ["Revolut-Signature", truncate(sig)]], body, NOW, "invalid")
    case("stale timestamp (6 minutes)", [s1], sign([s1]), body, NOW + 360, "invalid")
    case("future timestamp (6 minutes)", [s1], sign([s1]), body, NOW - 360, "invalid")
    case("timestamp changed after signing", [s1], [["Revolut-Request-Timestamp", str(int(ts) + 1000)], sign([s1])[1]],
         body, NOW, "invalid")


# ---------------------------------------------------------------- Simple body HMACs (doc recipes)
def body_hmac(provider, header, alg, enc, prefix, s1, s2, body, tampered, extra=(), check=None):
    """Vectors for a signature over the body alone; `check(secret, header value, body)` is a library's
    verifier, else the documented recipe is the oracle."""
    f = hexmac if enc == "hex" else b64mac

    def sig(s, b):
        return prefix + f(alg, s, b)

    def oracle(secrets, headers, b, now):
        got = hdict(headers).get(header.lower())
        if got is None:
            return False
        if check is not None:
            return any_secret(secrets, lambda s: check(s, got, b))
        return bool(got) and any_secret(secrets, lambda s: hmac.compare_digest(sig(s, b), got))

    def case(name, secrets, hs, b, expect):
        add(provider, name, secrets, hs, b, NOW, expect, oracle(secrets, hs, b, NOW))

    good = sig(s1, body)
    case("valid", [s1], [[header, good]], body, "valid")
    case("valid with the second of two configured secrets", [s1, s2], [[header, sig(s2, body)]], body, "valid")
    case("wrong secret", [s1], [[header, sig(s2, body)]], body, "invalid")
    case("tampered body", [s1], [[header, good]], tampered, "invalid")
    case("missing signature", [s1], [], body, "invalid")
    case("empty signature", [s1], [[header, ""]], body, "invalid")
    case("truncated signature", [s1], [[header, truncate(good)]], body, "invalid")
    for name, hs, b, expect in extra:
        case(name, [s1], hs(sig), b, expect)


def paystack():
    from pypaystack2 import PaystackClient

    p = "paystack"
    s1, s2 = "sk_test_cat1a5b6c7d8e9f0", "sk_test_cat1previous00"
    body = (b'{"event":"charge.success","data":{"id":302961,"domain":"live","status":"success",'
            b'"reference":"qTPrJoy9Bx","amount":10000,"currency":"NGN","customer":{"email":"bojack@horsinaround.com"}}}')

    def oracle(secrets, headers, b, now):
        got = hdict(headers).get("x-paystack-signature")
        if got is None:
            return False
        return any_secret(secrets, lambda s: PaystackClient(secret_key=s).is_verified_webhook_payload(b, got))

    def case(name, secrets, hs, b, expect):
        add(p, name, secrets, hs, b, NOW, expect, oracle(secrets, hs, b, NOW))

    good = hexmac(S512, s1, body)
    case("valid", [s1], [["x-paystack-signature", good]], body, "valid")
    case("valid with the second of two configured secret keys", [s1, s2],
         [["x-paystack-signature", hexmac(S512, s2, body)]], body, "valid")
    case("wrong secret key", [s1], [["x-paystack-signature", hexmac(S512, s2, body)]], body, "invalid")
    case("tampered body", [s1], [["x-paystack-signature", good]], body.replace(b"10000", b"90000"), "invalid")
    case("missing signature", [s1], [], body, "invalid")
    case("empty signature", [s1], [["x-paystack-signature", ""]], body, "invalid")
    case("truncated signature", [s1], [["x-paystack-signature", truncate(good)]], body, "invalid")
    case("sha256 instead of sha512", [s1], [["x-paystack-signature", hexmac(S256, s1, body)]], body, "invalid")


def mollie():
    p = "mollie"
    s1, s2 = "cat1MollieSigningSecretCurrent0001", "cat1MollieSigningSecretPrevious002"
    body = (b'{"resource":"event","id":"event_GvJ8WHrp5isUdRub9CJyH","type":"payment-link.paid",'
            b'"entityId":"pl_qng5gbbv8NAZ5gpM5ZYgx","createdAt":"2026-11-30T08:00:00.0Z",'
            b'"_links":{"self":{"href":"https://api.mollie.com/v2/events/event_GvJ8WHrp5isUdRub9CJyH"}}}')

    def oracle(secrets, headers, b, now):
        # SignatureValidator::validatePayload: array_filter drops an empty header; no signature is a
        # "legacy webhook" (false); extractSignature strips a leading "sha256="; hash_equals with
        # hash_hmac('sha256', payload, secret) for any secret.
        sigs = [v for k, v in headers if k.lower() == "x-mollie-signature" and v]
        if not sigs:
            return False
        strip = lambda h: h[len("sha256="):] if h.startswith("sha256=") else h
        return any(hmac.compare_digest(hexmac(S256, s, b), strip(h)) for h in sigs for s in secrets)

    def case(name, secrets, hs, b, expect):
        add(p, name, secrets, hs, b, NOW, expect, oracle(secrets, hs, b, NOW))

    good = "sha256=" + hexmac(S256, s1, body)
    case("valid", [s1], [["X-Mollie-Signature", good]], body, "valid")
    case("valid with the second of two configured secrets", [s1, s2],
         [["X-Mollie-Signature", "sha256=" + hexmac(S256, s2, body)]], body, "valid")
    case("valid without the sha256= prefix (the docs compare the bare hex)", [s1],
         [["X-Mollie-Signature", hexmac(S256, s1, body)]], body, "valid")
    case("wrong secret", [s1], [["X-Mollie-Signature", "sha256=" + hexmac(S256, s2, body)]], body, "invalid")
    case("tampered body", [s1], [["X-Mollie-Signature", good]], body.replace(b"paid", b"pai_"), "invalid")
    case("missing signature (a classic, unsigned webhook)", [s1], [], b"id=tr_5B8cwPMGnU6qLbRvo7qEZo", "invalid")
    case("empty signature", [s1], [["X-Mollie-Signature", ""]], body, "invalid")
    case("truncated signature", [s1], [["X-Mollie-Signature", truncate(good)]], body, "invalid")


def bitbucket():
    body = (b'{"push":{"changes":[{"new":{"type":"branch","name":"main","target":{"hash":"a1b2c3d4e5f6"}}}]},'
            b'"repository":{"full_name":"team/repo","uuid":"{7b1c2d3e-0000-4000-8000-000000000001}"},'
            b'"actor":{"display_name":"Ada"}}')
    s1 = "bb-cat1-webhook-secret"
    body_hmac("bitbucket", "X-Hub-Signature", S256, "hex", "sha256=", s1, "bb-cat1-previous-secret",
              body, body.replace(b'"main"', b'"prod"'),
              [("without the sha256= prefix", lambda sig: [["X-Hub-Signature", hexmac(S256, s1, body)]], body,
                "invalid"),
               ("sha1= with an HMAC-SHA1", lambda sig: [["X-Hub-Signature", "sha1=" + hexmac(hashlib.sha1, s1, body)]],
                body, "invalid")])


def sentry():
    # Sentry signs JSON.stringify(request.body): the compact JSON it sends.
    doc = {"action": "created", "installation": {"uuid": "7a485448-a9e2-4c85-8a3c-4f44175783c9"},
           "data": {"issue": {"id": "1170820242", "title": "ZeroDivisionError: division by zero", "level": "error"}},
           "actor": {"type": "application", "id": "sentry", "name": "Sentry"}}
    body = json.dumps(doc, separators=(",", ":")).encode()
    body_hmac("sentry", "Sentry-Hook-Signature", S256, "hex", "", "cat1sentryclientsecret0123456789abcdef",
              "cat1sentryclientsecretprevious0000000", body, body.replace(b"1170820242", b"1170820243"))


def intuit_check(token, got, b):
    from quickbooks.client import QuickBooks
    try:
        # An instance method that reads nothing of the instance when the token is given.
        return QuickBooks.validate_webhook_signature(None, b.decode(), got, verifier_token=token)
    except ValueError:  # binascii.Error: not base64
        return False


def intuit():
    body = (b'{"eventNotifications":[{"realmId":"1185883450","dataChangeEvent":{"entities":['
            b'{"name":"Customer","id":"1","operation":"Create","lastUpdated":"2026-11-30T08:00:00.000Z"}]}}]}')
    body_hmac("intuit", "intuit-signature", S256, "base64", "", "cat1-intuit-verifier-token-0001",
              "cat1-intuit-verifier-token-0002", body, body.replace(b'"Create"', b'"Delete"'),
              [("hex instead of base64", lambda sig: [["intuit-signature",
                                                       hexmac(S256, "cat1-intuit-verifier-token-0001", body)]], body,
                "invalid")], check=intuit_check)


# Xero's documented intent-to-receive body, verbatim.
ITR = b'{"events":[],"lastEventSequence":0,"firstEventSequence":0,"entropy":"S0m3r4Nd0mt3xt"}'


def xero():
    body = (b'{"events":[{"resourceUrl":"https://api.xero.com/api.xro/2.0/Contacts/717f2bfc-c6d4-41fd-b238-3f2f0c0cf777",'
            b'"resourceId":"717f2bfc-c6d4-41fd-b238-3f2f0c0cf777","eventDateUtc":"2026-11-30T08:00:00.000",'
            b'"eventType":"Create","eventCategory":"CONTACT","tenantId":"c2cc9b6e-9458-4c7d-93cc-f02b81b0594f",'
            b'"tenantType":"ORGANISATION"}],"firstEventSequence":1,"lastEventSequence":1,"entropy":"S0m3r4Nd0mt3xt"}')
    body_hmac("xero", "x-xero-signature", S256, "base64", "", "cat1XeroWebhookKey+abc/123==",
              "cat1XeroWebhookKeyPrevious0000", body, body.replace(b'"Create"', b'"Update"'),
              [("valid intent-to-receive request (the body Xero's documentation shows)",
                lambda sig: [["x-xero-signature", sig("cat1XeroWebhookKey+abc/123==", ITR)]], ITR, "valid"),
               ("intent to receive, incorrectly signed",
                lambda sig: [["x-xero-signature", sig("cat1XeroWebhookKey+abc/123==", b'{"events":[]}')]],
                b'{"events":[],"firstEventSequence":0,"lastEventSequence":0,"entropy":"X"}', "invalid")])


# ---------------------------------------------------------------- Onfido (onfido-python)
def onfido():
    from onfido.webhook_event_verifier import WebhookEventVerifier

    p = "onfido"
    t1, t2 = "cat1_onfido_webhook_token_current", "cat1_onfido_webhook_token_previous"
    body = (b'{"payload":{"resource_type":"check","action":"check.completed","object":{"id":"f2302f45-227d-413d-ad61-'
            b'09ec077a086a","status":"complete","completed_at_iso8601":"2026-11-30T08:00:00Z","href":"https://api.'
            b'eu.onfido.com/v3.6/checks/f2302f45-227d-413d-ad61-09ec077a086a"}}}')

    def sig(t, b):
        return hexmac(S256, t, b)

    def oracle(secrets, headers, b, now):
        got = hdict(headers).get("x-sha2-signature")
        if got is None:
            return False

        def one(t):
            try:
                WebhookEventVerifier(t).read_payload(b.decode(), got)
                return True
            except Exception:
                return False
        return any_secret(secrets, one)

    def case(name, secrets, hs, b, expect):
        add(p, name, secrets, hs, b, NOW, expect, oracle(secrets, hs, b, NOW))

    good = sig(t1, body)
    case("valid", [t1], [["X-SHA2-Signature", good]], body, "valid")
    case("valid with the second of two configured tokens", [t1, t2], [["X-SHA2-Signature", sig(t2, body)]], body,
         "valid")
    case("wrong token", [t1], [["X-SHA2-Signature", sig(t2, body)]], body, "invalid")
    case("tampered body", [t1], [["X-SHA2-Signature", good]], body.replace(b'"complete"', b'"withdrawn"'), "invalid")
    case("missing signature", [t1], [], body, "invalid")
    case("empty signature", [t1], [["X-SHA2-Signature", ""]], body, "invalid")
    case("truncated signature", [t1], [["X-SHA2-Signature", truncate(good)]], body, "invalid")
    case("legacy SHA-1 X-Signature only", [t1], [["X-Signature", hexmac(hashlib.sha1, t1, body)]], body, "invalid")


# ---------------------------------------------------------------- Svix (Clerk, Resend) — PyPI svix
class FixedDatetime(datetime.datetime):
    fixed = 0

    @classmethod
    def now(cls, tz=None):
        return datetime.datetime.fromtimestamp(cls.fixed, tz)


def svix_provider(p, body, msg_id):
    import standardwebhooks.webhooks as stdwh
    from svix.webhooks import Webhook

    s1 = "whsec_" + base64.b64encode(hashlib.sha256(f"{p}-cat1-current".encode()).digest()[:24]).decode()
    s2 = "whsec_" + base64.b64encode(hashlib.sha256(f"{p}-cat1-previous".encode()).digest()[:24]).decode()

    def sign(secret, ts, b=body, mid=msg_id):
        # Webhook.sign is the SDK's own signer: "v1,<base64>".
        return Webhook(secret).sign(mid, datetime.datetime.fromtimestamp(ts, datetime.timezone.utc), b.decode())

    def oracle(secrets, headers, b, now):
        FixedDatetime.fixed = now

        def one(s):
            try:
                with mock.patch.object(stdwh, "datetime", FixedDatetime):
                    Webhook(s).verify(b, hdict(headers))
                return True
            except Exception:
                return False
        return any_secret(secrets, one)

    def hs(sig, ts=NOW, mid=msg_id):
        return [["svix-id", mid], ["svix-timestamp", str(ts)], ["svix-signature", sig]]

    def case(name, secrets, h, b, now, expect):
        add(p, name, secrets, h, b, now, expect, oracle(secrets, h, b, now))

    good = sign(s1, NOW)
    case("valid", [s1], hs(good), body, NOW, "valid")
    case("valid with two signatures during a rotation", [s1], hs(sign(s2, NOW) + " " + good), body, NOW, "valid")
    case("valid with the second of two configured secrets", [s1, s2], hs(sign(s2, NOW)), body, NOW, "valid")
    case("valid 4 minutes late", [s1], hs(good), body, NOW + 240, "valid")
    case("wrong secret", [s1], hs(sign(s2, NOW)), body, NOW, "invalid")
    case("tampered body", [s1], hs(good), body.replace(b"example", b"exampl3"), NOW, "invalid")
    case("missing signature", [s1], hs(good)[:2], body, NOW, "invalid")
    case("empty signature", [s1], hs(""), body, NOW, "invalid")
    case("truncated signature", [s1], hs(truncate(good)), body, NOW, "invalid")
    case("stale timestamp (6 minutes)", [s1], hs(good), body, NOW + 360, "invalid")
    case("future timestamp (6 minutes)", [s1], hs(sign(s1, NOW + 360), NOW + 360), body, NOW, "invalid")
    case("svix-id changed after signing", [s1], hs(good, mid=msg_id + "x"), body, NOW, "invalid")
    case("svix-timestamp changed after signing", [s1], hs(good, ts=NOW + 1), body, NOW, "invalid")


def clerk():
    body = (b'{"data":{"id":"user_29w83sxmDNGwOuEthce5gg56FcC","email_addresses":[{"email_address":"ada@example.org"}],'
            b'"first_name":"Ada","object":"user"},"object":"event","type":"user.created","timestamp":1654012591835}')
    svix_provider("clerk", body, "msg_2cat1clerk0000000000000001")


def resend():
    body = (b'{"type":"email.delivered","created_at":"2026-11-30T08:00:00.000Z","data":{"email_id":'
            b'"56761188-7520-42d8-8898-ff6fc54ce618","from":"Acme <onboarding@example.org>","to":["ada@example.org"],'
            b'"subject":"Sending this example"}}')
    svix_provider("resend", body, "msg_2cat1resend000000000000001")
    # Resend's documented headers and payload (verify-webhooks-requests), with the secret of Svix's
    # documentation, whose example it is; the svix SDK decides.
    import standardwebhooks.webhooks as stdwh
    from svix.webhooks import Webhook
    secret, b = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", b'{"test": 2432232314}'
    hs = [["svix-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"], ["svix-timestamp", "1614265330"],
          ["svix-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="]]
    for name, now, expect in (("valid (Resend's documented example)", 1614265330, "valid"),
                              ("documented example replayed an hour later", 1614265330 + 3600, "invalid")):
        FixedDatetime.fixed = now
        try:
            with mock.patch.object(stdwh, "datetime", FixedDatetime):
                Webhook(secret).verify(b, hdict(hs))
            ok = True
        except Exception:
            ok = False
        add("resend", name, [secret], hs, b, now, expect, ok)


# ---------------------------------------------------------------- WorkOS — PyPI workos
def workos():
    from workos.webhooks._resource import Webhooks

    p = "workos"
    s1, s2 = "cat1WorkOSWebhookSecretCurrent", "cat1WorkOSWebhookSecretPrevious"
    body = (b'{"id":"event_01HCAT1000000000000000000","event":"user.created","data":{"object":"user",'
            b'"id":"user_01HCAT1000000000000000000","email":"ada@example.org"},"created_at":"2026-11-30T08:00:00.000Z"}')
    t_ms = NOW * 1000 - 1234

    def header(secret, t=t_ms, b=body):
        return f"t={t}, v1={hexmac(S256, secret, f'{t}.'.encode() + b)}"

    def oracle(secrets, headers, b, now):
        sig = hdict(headers).get("workos-signature")
        if sig is None:
            return False

        def one(s):
            try:
                with mock.patch("time.time", return_value=float(now)):
                    Webhooks.__new__(Webhooks).verify_header(event_body=b, event_signature=sig, secret=s)
                return True
            except ValueError:
                return False
        return any_secret(secrets, one)

    def case(name, secrets, hs, b, now, expect):
        add(p, name, secrets, hs, b, now, expect, oracle(secrets, hs, b, now))

    good = header(s1)
    case("valid", [s1], [["WorkOS-Signature", good]], body, NOW, "valid")
    case("valid with the second of two configured secrets", [s1, s2], [["WorkOS-Signature", header(s2)]], body, NOW,
         "valid")
    case("valid 2 minutes late", [s1], [["WorkOS-Signature", good]], body, NOW + 120, "valid")
    case("wrong secret", [s1], [["WorkOS-Signature", header(s2)]], body, NOW, "invalid")
    case("tampered body", [s1], [["WorkOS-Signature", good]], body.replace(b"ada@", b"eve@"), NOW, "invalid")
    case("missing signature", [s1], [], body, NOW, "invalid")
    case("empty signature", [s1], [["WorkOS-Signature", ""]], body, NOW, "invalid")
    case("truncated signature", [s1], [["WorkOS-Signature", truncate(good)]], body, NOW, "invalid")
    case("stale timestamp (4 minutes)", [s1], [["WorkOS-Signature", good]], body, NOW + 240, "invalid")
    t_future = NOW * 1000 + 240_000
    case("future timestamp (4 minutes)", [s1], [["WorkOS-Signature", header(s1, t_future)]], body, NOW, "invalid")
    case("timestamp changed after signing", [s1],
         [["WorkOS-Signature", good.replace(f"t={t_ms}", f"t={t_ms + 1000}")]], body, NOW, "invalid")


# ---------------------------------------------------------------- Mux — npm @mux/mux-node
def mux():
    p = "mux"
    s1, s2 = "cat1muxsigningsecretcurrent000", "cat1muxsigningsecretprevious00"
    body = (b'{"type":"video.asset.ready","object":{"type":"asset","id":"0201p02fGKPE7MrbC269XRD7LpcHhrmbu0002"},'
            b'"id":"3a56ac3d-33da-4366-855b-f592d898409d","environment":{"name":"Production","id":"j0863n"},'
            b'"data":{"status":"ready","id":"0201p02fGKPE7MrbC269XRD7LpcHhrmbu0002"},'
            b'"created_at":"2026-11-30T07:59:58.000000Z"}')
    ts = NOW - 2

    def header(secrets, t=ts, b=body):
        return ",".join([f"t={t}"] + [f"v1={hexmac(S256, s, f'{t}.'.encode() + b)}" for s in secrets])

    def case(name, secrets, hs, b, now, expect):
        add(p, name, secrets, hs, b, now, expect,
            ("node", {"oracle": "mux", "secrets": secrets, "headers": hdict(hs), "body_b64":
                      base64.b64encode(b).decode(), "now": now}))

    good = header([s1])
    case("valid", [s1], [["Mux-Signature", good]], body, NOW, "valid")
    case("valid with two v1 signatures", [s1], [["Mux-Signature", header([s2, s1])]], body, NOW, "valid")
    case("valid with the second of two configured secrets", [s1, s2], [["Mux-Signature", header([s2])]], body, NOW,
         "valid")
    case("valid 4 minutes late", [s1], [["Mux-Signature", good]], body, NOW + 240, "valid")
    case("wrong secret", [s1], [["Mux-Signature", header([s2])]], body, NOW, "invalid")
    case("tampered body", [s1], [["Mux-Signature", good]], body.replace(b"ready", b"errored"), NOW, "invalid")
    case("missing signature", [s1], [], body, NOW, "invalid")
    case("empty signature", [s1], [["Mux-Signature", ""]], body, NOW, "invalid")
    case("truncated signature", [s1], [["Mux-Signature", truncate(good)]], body, NOW, "invalid")
    case("stale timestamp (6 minutes)", [s1], [["Mux-Signature", good]], body, NOW + 360, "invalid")
    case("timestamp changed after signing", [s1], [["Mux-Signature", good.replace(f"t={ts}", f"t={ts + 1}")]], body,
         NOW, "invalid")


# ---------------------------------------------------------------- Webflow — npm webflow-api
def webflow():
    p = "webflow"
    s1, s2 = "cat1webflowclientsecret0000000000000000000000000000000000000001", "cat1webflowclientsecretprevious"
    body = (b'{"triggerType":"form_submission","payload":{"name":"Contact Form","siteId":"65427cf400e02b306eaa049c",'
            b'"data":{"First Name":"Ada","Email":"ada@example.org"},"submittedAt":"2026-11-30T08:00:00.000Z",'
            b'"id":"6321ca84df3949bfc6752327"}}')
    ts = str(NOW * 1000 - 700)

    def hs(secret, t=ts, b=body):
        return [["x-webflow-timestamp", t], ["x-webflow-signature", hexmac(S256, secret, t.encode() + b":" + b)]]

    def case(name, secrets, h, b, now, expect):
        add(p, name, secrets, h, b, now, expect,
            ("node", {"oracle": "webflow", "secrets": secrets, "headers": hdict(h), "body_b64":
                      base64.b64encode(b).decode(), "now": now}))

    good = hs(s1)
    case("valid", [s1], good, body, NOW, "valid")
    case("valid with the second of two configured secrets", [s1, s2], hs(s2), body, NOW, "valid")
    case("valid 4 minutes late", [s1], good, body, NOW + 240, "valid")
    case("wrong secret", [s1], hs(s2), body, NOW, "invalid")
    case("tampered body", [s1], good, body.replace(b"Ada", b"Eve"), NOW, "invalid")
    case("missing signature", [s1], good[:1], body, NOW, "invalid")
    case("empty signature", [s1], [good[0], ["x-webflow-signature", ""]], body, NOW, "invalid")
    case("truncated signature", [s1], [good[0], ["x-webflow-signature", truncate(good[1][1])]], body, NOW, "invalid")
    case("stale timestamp (6 minutes)", [s1], good, body, NOW + 360, "invalid")
    case("timestamp changed after signing", [s1], [["x-webflow-timestamp", str(int(ts) + 1)], good[1]], body, NOW,
         "invalid")


# ---------------------------------------------------------------- Cashfree — npm cashfree-pg
def cashfree():
    p = "cashfree"
    s1, s2 = "cfsk_ma_test_cat1currentclientsecret_0001", "cfsk_ma_test_cat1previousclientsecret_02"
    body = (b'{"data":{"order":{"order_id":"order_OFR_2","order_amount":2,"order_currency":"INR"},'
            b'"payment":{"cf_payment_id":1107253891,"payment_status":"SUCCESS","payment_amount":2}},'
            b'"event_time":"2026-11-30T13:30:00+05:30","type":"PAYMENT_SUCCESS_WEBHOOK"}')
    ts = str(NOW * 1000 - 900)

    def hs(secret, t=ts, b=body):
        return [["x-webhook-timestamp", t], ["x-webhook-signature", b64mac(S256, secret, t.encode() + b)]]

    def case(name, secrets, h, b, now, expect):
        add(p, name, secrets, h, b, now, expect,
            ("node", {"oracle": "cashfree", "secrets": secrets, "headers": hdict(h), "body_b64":
                      base64.b64encode(b).decode(), "now": now}))

    good = hs(s1)
    case("valid", [s1], good, body, NOW, "valid")
    case("valid with the second of two configured secrets", [s1, s2], hs(s2), body, NOW, "valid")
    case("wrong secret", [s1], hs(s2), body, NOW, "invalid")
    case("tampered body", [s1], good, body.replace(b"SUCCESS", b"FAILED!"), NOW, "invalid")
    case("missing signature", [s1], good[:1], body, NOW, "invalid")
    case("empty signature", [s1], [good[0], ["x-webhook-signature", ""]], body, NOW, "invalid")
    case("truncated signature", [s1], [good[0], ["x-webhook-signature", truncate(good[1][1])]], body, NOW, "invalid")
    case("timestamp changed after signing", [s1], [["x-webhook-timestamp", str(int(ts) + 1)], good[1]], body, NOW,
         "invalid")


def run_node():
    if not NODE_CASES:
        return
    env = dict(os.environ)
    local = os.path.join(HERE, "npm-cat1", "node_modules")
    if os.path.isdir(local):
        env["NODE_PATH"] = local
    inputs = [c for _, c in NODE_CASES]
    out = subprocess.run(["node", os.path.join(HERE, "npm-cat1", "oracle.js")], input=json.dumps(inputs).encode(),
                         capture_output=True, env=env, check=True).stdout
    verdicts = json.loads(out)
    for (i, _), ok in zip(NODE_CASES, verdicts, strict=True):
        want = VECTORS[i]["expect"] == "valid"
        if ok != want:
            sys.exit(f"oracle disagrees on {VECTORS[i]['name']}: oracle says {'valid' if ok else 'invalid'}")


def main():
    for gen in (revolut, paystack, mollie, bitbucket, sentry, mux, clerk, resend, workos, webflow, cashfree, onfido, intuit,
                xero):
        gen()
    run_node()
    json.dump(VECTORS, sys.stdout, indent=1, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
