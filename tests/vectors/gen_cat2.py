#!/usr/bin/env python3
"""Generates tests/vectors/catalog-cat2.json: vectors for the catalog-v2 profiles of batch 2.

Every verdict comes from outside portcullis: the provider's SDK where one verifies webhooks
(the SDK is called on each vector and must agree with its `expect`), otherwise a verifier
written here from the provider's documentation, line by line (the URL is given per provider),
which signs and checks each vector independently of the profiles. Nothing here calls
`portcullis sign`.

Oracles, per provider:
  trello        doc recipe: https://developer.atlassian.com/cloud/trello/guides/rest-api/webhooks/#webhook-signatures
  clickup       doc recipe: https://developer.clickup.com/docs/webhooksignature
  airtable      doc recipe: https://airtable.com/developers/web/api/webhooks-overview#webhook-notification-delivery
  heroku        doc recipe: https://devcenter.heroku.com/articles/app-webhooks#securing-webhook-requests
  circleci      doc recipe: https://circleci.com/docs/webhooks/#validate-webhooks
  openai        SDK: PyPI openai==3.57.0 (client.webhooks.verify_signature); signed with standardwebhooks==1.1.0;
                plus the SDKs' published test vector (openai-python tests/api_resources/test_webhooks.py)
  replicate     SDK: PyPI standardwebhooks==1.1.0 (Webhook.verify), as https://replicate.com/docs/topics/webhooks/verify-webhook says
  paymongo      doc recipe: https://developers.paymongo.com/docs/securing-webhook (li = live mode)
  paymongo-test doc recipe: same page (te = test mode)
  frameio       doc recipe: https://developer.frame.io/docs/automations-webhooks/webhooks-overview#security-and-verification
  persona       doc recipe: https://docs.withpersona.com/docs/webhooks-best-practices#checking-signatures
  customerio    doc recipe: https://customer.io/docs/api/webhooks/#section/Securely-Verifying-Requests
  helpscout     doc recipe: https://developer.helpscout.com/webhooks/#verifying
  alchemy       doc recipe: https://docs.alchemy.com/reference/notify-api-faq#how-do-i-validate-the-webhook-event
  notion        doc recipe: https://developers.notion.com/reference/webhooks#step-3-validating-event-payloads-recommended
  nylas         doc recipe: https://developer.nylas.com/docs/cookbook/use-cases/build/verify-webhook-signatures/
  pusher        SDK: PyPI pusher==3.3.4 (Pusher.validate_webhook; it also holds `time_ms` to ±300 s)
  squarespace   doc recipe: https://developers.squarespace.com/webhooks/verifying-notifications
  ghost         source recipe: TryGhost/Ghost ghost/core/core/server/services/webhooks/WebhookTrigger.js
                (X-Ghost-Signature: sha256=hex(HMAC-SHA256(secret, body + ts_ms)), t=ts_ms); https://ghost.org/docs/webhooks/
  polar         SDK: PyPI polar-sdk==1.0.2 (polar.webhooks validate_event's signature check)
  segment       doc recipe: https://segment.com/docs/connections/destinations/catalog/webhooks/#authentication
  buildkite     doc recipe: https://buildkite.com/docs/apis/webhooks/pipelines#webhook-signature (its Ruby example)
  calcom        doc recipe: https://cal.com/docs/developing/guides/automation/webhooks (X-Cal-Signature-256)
  tally         doc recipe: https://tally.so/help/webhooks#add-a-signing-secret (its Express example)

usage: /work/venv/bin/python tests/vectors/gen_cat2.py > tests/vectors/catalog-cat2.json
(pins: tests/vectors/requirements-cat2.txt)
"""
import base64
import hashlib
import hmac
import json
import re
import sys
import time
from datetime import datetime, timezone
from unittest import mock

import openai
import pusher
import standardwebhooks
from polar import webhooks as polar_webhooks

NOW = 1796025600
URL = "https://hooks.example.com/webhooks/x"
S1, S256 = hashlib.sha1, hashlib.sha256
OUT = []


def mac(alg, key, msg):
    return hmac.new(key, msg, alg).digest()


def hexmac(alg, key, msg):
    return mac(alg, key, msg).hex()


def b64mac(alg, key, msg):
    return base64.b64encode(mac(alg, key, msg)).decode()


def hdr(headers, name):
    """The value of a header, case-insensitive; None when absent."""
    for k, v in headers:
        if k.lower() == name.lower():
            return v
    return None


def at(now):
    """Freezes the clocks the SDKs read (time.time and datetime.now) at `now`."""
    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime.fromtimestamp(now, tz or timezone.utc)
    return mock.patch.multiple("time", time=lambda: float(now)), mock.patch.object(
        standardwebhooks.webhooks, "datetime", Frozen)


def emit(name, provider, secrets, headers, body, expect, oracle, now=NOW, url=URL):
    """Records a vector after asking the oracle, which must agree with `expect`."""
    p1, p2 = at(now)
    with p1, p2:
        got = any(oracle(s, headers, body, now, url) for s in secrets)
    want = expect == "valid"
    if got != want:
        sys.exit(f"oracle disagrees on {name}: expected {expect}")
    OUT.append({"name": name, "provider": provider, "secrets": secrets, "method": "POST", "url": url,
                "headers": headers, "body_b64": base64.b64encode(body).decode(), "now": now,
                "expect": expect})


def fresh(ts, now, tol=300):
    return abs(now - ts) <= tol


# ---------------------------------------------------------------------------------------------
# Signers and verifiers, one pair per provider, from the documentation named above.

def simple(header, alg, enc, prefix="", key=lambda s: s.encode()):
    """HMAC of the raw body in one header (`prefix` + hex or base64)."""
    f = hexmac if enc == "hex" else b64mac

    def sign(secret, body, ts=None, url=URL):
        return [[header, prefix + f(alg, key(secret), body)]]

    def check(secret, headers, body, now, url):
        v = hdr(headers, header)
        if not v or not v.startswith(prefix):
            return False
        want = f(alg, key(secret), body)
        got = v[len(prefix):]
        if enc == "hex":
            got = got.lower()
        return hmac.compare_digest(got.encode(), want.encode())
    return sign, check


# Trello: base64(HMAC-SHA1(app secret, body + callbackURL)), in X-Trello-Webhook.
def trello_sign(secret, body, ts=None, url=URL):
    return [["X-Trello-Webhook", b64mac(S1, secret.encode(), body + url.encode())]]


def trello_check(secret, headers, body, now, url):
    v = hdr(headers, "X-Trello-Webhook")
    return bool(v) and hmac.compare_digest(v, b64mac(S1, secret.encode(), body + url.encode()))


# CircleCI: circleci-signature: v1=<hex HMAC-SHA256(secret, body)>[,vN=...]; any v1 may match.
def circleci_sign(secret, body, ts=None, url=URL):
    return [["circleci-signature", "v1=" + hexmac(S256, secret.encode(), body)]]


def circleci_check(secret, headers, body, now, url):
    v = hdr(headers, "circleci-signature") or ""
    want = hexmac(S256, secret.encode(), body)
    sigs = [p.split("=", 1)[1] for p in v.split(",") if p.startswith("v1=")]
    return any(hmac.compare_digest(s, want) for s in sigs)


# Standard Webhooks (OpenAI, Replicate): signed with the standardwebhooks package.
def standard_sign(secret, body, ts, url=URL, id_="msg_2f5bY1kq7c"):
    wh = standardwebhooks.Webhook(secret)
    sig = wh.sign(id_, datetime.fromtimestamp(ts, timezone.utc), body.decode())
    return [["webhook-id", id_], ["webhook-timestamp", str(ts)], ["webhook-signature", sig]]


def openai_check(secret, headers, body, now, url):
    client = openai.OpenAI(api_key="sk-unused", webhook_secret=secret)
    try:
        client.webhooks.verify_signature(body, {k.lower(): v for k, v in headers})
        return True
    except Exception:
        return False


def replicate_check(secret, headers, body, now, url):
    try:
        standardwebhooks.Webhook(secret).verify(body.decode(), {k.lower(): v for k, v in headers})
        return True
    except standardwebhooks.webhooks.WebhookVerificationError:
        return False


# PayMongo: Paymongo-Signature: t=<unix>,te=<test sig>,li=<live sig>; hex HMAC-SHA256 of
# "{t}.{body}"; the mode's key is filled, the other empty.
def paymongo(mode):
    def sign(secret, body, ts, url=URL):
        s = hexmac(S256, secret.encode(), f"{ts}.".encode() + body)
        te, li = (s, "") if mode == "te" else ("", s)
        return [["Paymongo-Signature", f"t={ts},te={te},li={li}"]]

    def check(secret, headers, body, now, url):
        v = hdr(headers, "Paymongo-Signature") or ""
        parts = dict(p.split("=", 1) for p in v.split(",") if "=" in p)
        t, s = parts.get("t", ""), parts.get(mode, "")
        if not t.isdigit() or not s or not fresh(int(t), now):
            return False
        return hmac.compare_digest(s, hexmac(S256, secret.encode(), f"{t}.".encode() + body))
    return sign, check


# Persona: Persona-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "{t}.{body}">.
def persona_sign(secret, body, ts, url=URL):
    return [["Persona-Signature", f"t={ts},v1=" + hexmac(S256, secret.encode(), f"{ts}.".encode() + body)]]


def persona_check(secret, headers, body, now, url):
    # While secrets rotate the header holds two space-separated "t=…,v1=…" sets; any may match.
    for group in (hdr(headers, "Persona-Signature") or "").split(" "):
        parts = dict(p.split("=", 1) for p in group.split(",") if "=" in p)
        t, s = parts.get("t", ""), parts.get("v1", "")
        if not t.isdigit() or not s or not fresh(int(t), now):
            continue
        if hmac.compare_digest(s, hexmac(S256, secret.encode(), f"{t}.".encode() + body)):
            return True
    return False


# Slack-like schemes with their own names: a timestamp header, and a hex HMAC-SHA256 of
# "v0:{ts}:{body}" (Frame.io with a "v0=" prefix, Customer.io without).
def v0_scheme(ts_header, sig_header, prefix):
    def sign(secret, body, ts, url=URL):
        return [[ts_header, str(ts)],
                [sig_header, prefix + hexmac(S256, secret.encode(), f"v0:{ts}:".encode() + body)]]

    def check(secret, headers, body, now, url):
        t, v = hdr(headers, ts_header), hdr(headers, sig_header)
        if not t or not t.isdigit() or not v or not v.startswith(prefix) or len(v) == len(prefix):
            return False
        if not fresh(int(t), now):
            return False
        want = hexmac(S256, secret.encode(), f"v0:{t}:".encode() + body)
        return hmac.compare_digest(v[len(prefix):], want)
    return sign, check


# Pusher: X-Pusher-Key and X-Pusher-Signature (hex HMAC-SHA256 of the body, app secret).
PUSHER_APP = ("1234567", "2f9ea2ee4a0a5c2d7b1e")


def pusher_sign(secret, body, ts=None, url=URL):
    from pusher.signature import sign
    return [["X-Pusher-Key", PUSHER_APP[1]], ["X-Pusher-Signature", sign(secret, body.decode())]]


def pusher_check(secret, headers, body, now, url):
    client = pusher.Pusher(app_id=PUSHER_APP[0], key=PUSHER_APP[1], secret=secret, cluster="eu")
    key, sig = hdr(headers, "X-Pusher-Key"), hdr(headers, "X-Pusher-Signature")
    if key is None or sig is None:
        return False
    return client.validate_webhook(key, sig, body.decode()) is not None


# Ghost (WebhookTrigger.js): sha256=<hex HMAC-SHA256(secret, body + ts)>, t=<ts in ms>.
def ghost_sign(secret, body, ts_ms, url=URL):
    s = hexmac(S256, secret.encode(), body + str(ts_ms).encode())
    return [["X-Ghost-Signature", f"sha256={s}, t={ts_ms}"]]


def ghost_check(secret, headers, body, now, url):
    v = hdr(headers, "X-Ghost-Signature") or ""
    parts = dict(p.strip().split("=", 1) for p in v.split(",") if "=" in p)
    t, s = parts.get("t", ""), parts.get("sha256", "")
    if not t.isdigit() or not s or abs(now * 1000 - int(t)) > 300_000:
        return False
    return hmac.compare_digest(s, hexmac(S256, secret.encode(), body + t.encode()))


# Buildkite: X-Buildkite-Signature: timestamp=<unix>,signature=<hex HMAC-SHA256 of "{timestamp}.{body}">.
def buildkite_sign(secret, body, ts, url=URL):
    return [["X-Buildkite-Signature", f"timestamp={ts},signature=" + hexmac(S256, secret.encode(), f"{ts}.".encode() + body)]]


def buildkite_check(secret, headers, body, now, url):
    parts = dict(kv.split("=", 1) for kv in (hdr(headers, "X-Buildkite-Signature") or "").split(",") if "=" in kv)
    t, s = parts.get("timestamp", "").strip(), parts.get("signature", "").strip()
    if not t.isdigit() or not s or not fresh(int(t), now):
        return False
    return hmac.compare_digest(s, hexmac(S256, secret.encode(), f"{t}.".encode() + body))


# Polar: Standard Webhooks headers; the SDK keys the HMAC with the secret's own bytes.
def polar_sign(secret, body, ts, url=URL, id_="msg_31GkO8tpVQ"):
    sig = base64.b64encode(mac(S256, secret.encode(), f"{id_}.{ts}.".encode() + body)).decode()
    return [["webhook-id", id_], ["webhook-timestamp", str(ts)], ["webhook-signature", "v1," + sig]]


def polar_check(secret, headers, body, now, url):
    try:
        polar_webhooks._verify_signature(body.decode(), dict(headers), secret)
        return True
    except polar_webhooks.PolarWebhookVerificationError:
        return False


# ---------------------------------------------------------------------------------------------
# The vectors: for each provider, the valid and invalid cases its scheme allows.

def tamper(body):
    return body.replace(b"1", b"2", 1) if b"1" in body else body + b" "


def truncate(headers, name):
    """Cuts the last 4 characters of the signature (the longest hex/base64 run of the value)."""
    def cut(v):
        m = max(re.finditer(r"[A-Za-z0-9+/]{16,}=*", v), key=lambda m: len(m.group()))
        return v[:m.end() - 4] + v[m.end():]
    return [[k, cut(v)] if k.lower() == name.lower() else [k, v] for k, v in headers]


def empty(headers, name):
    return [[k, ""] if k.lower() == name.lower() else [k, v] for k, v in headers]


def drop(headers, name):
    return [[k, v] for k, v in headers if k.lower() != name.lower()]


def suite(provider, sig_header, sign, check, secrets, bodies, timed=False, unit=1, url=URL,
          extra=()):
    """The common cases; `secrets` = (current, previous, wrong); `timed` when a timestamp is
    signed and checked, `unit` 1000 for milliseconds."""
    cur, prev, wrong = secrets
    b1, b2 = bodies
    ts = NOW * unit
    h = sign(cur, b1, ts, url=url)
    E = lambda name, secs, headers, body, expect, now=NOW: emit(
        f"{provider}: {name}", provider, secs, headers, body, expect, check, now=now, url=url)
    E("valid", [cur], h, b1, "valid")
    E("valid, second body", [cur], sign(cur, b2, ts, url=url), b2, "valid")
    E("valid, rotated (previous secret signed)", [cur, prev], sign(prev, b1, ts, url=url), b1, "valid")
    E("wrong secret", [wrong], h, b1, "invalid")
    E("tampered body", [cur], h, tamper(b1), "invalid")
    E("signature missing", [cur], drop(h, sig_header), b1, "invalid")
    E("signature empty", [cur], empty(h, sig_header), b1, "invalid")
    E("signature truncated", [cur], truncate(h, sig_header), b1, "invalid")
    if timed:
        E("in tolerance (signed 200 s ago)", [cur], sign(cur, b1, (NOW - 200) * unit, url=url), b1, "valid")
        E("stale (signed 1 h ago)", [cur], sign(cur, b1, (NOW - 3600) * unit, url=url), b1, "invalid")
        E("future (signed 1 h ahead)", [cur], sign(cur, b1, (NOW + 3600) * unit, url=url), b1, "invalid")
    for name, secs, headers, body, expect in extra:
        E(name, secs, headers, body, expect)


def main():
    # Trello
    trello_url = "https://hooks.example.com/webhooks/trello"
    tb1 = b'{"model":{"id":"5a1f2b3c4d5e6f7a8b9c0d1e","name":"Roadmap"},"action":{"id":"6b2e3f4a5b6c7d8e9f0a1b2c","type":"updateCard","date":"2026-11-30T10:00:00.000Z","data":{"card":{"id":"c1","name":"Ship v2"}}}}'
    tb2 = b'{"model":{"id":"5a1f2b3c4d5e6f7a8b9c0d1e"},"action":{"id":"6b2e3f4a5b6c7d8e9f0a1b2d","type":"commentCard","data":{"text":"caf\xc3\xa9 \xe2\x9c\x93"}}}'
    tsecrets = ("3f9a1c0e8b7d6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a19", "0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c", "wrong-trello-secret")
    suite("trello", "X-Trello-Webhook", trello_sign, trello_check, tsecrets, (tb1, tb2), url=trello_url, extra=[
        ("signed for another callback URL", [tsecrets[0]], trello_sign(tsecrets[0], tb1, url="https://attacker.example/cb"), tb1, "invalid"),
    ])

    # ClickUp
    cs, cc = simple("X-Signature", S256, "hex")
    suite("clickup", "X-Signature", cs, cc, ("HJ8T4KD2O0RZ1X5Q7W3E9NBVCMAS6L", "PZ6X8C1V3B5N7M9QWERTYUIOPASDFG", "wrong"),
          (b'{"event":"taskStatusUpdated","history_items":[{"id":"2800763136717140857","type":1,"date":"1642734631523","field":"status"}],"task_id":"1vj37mc","webhook_id":"7fa3ec74-69a8-4530-a251-8a13730bd204"}',
           b'{"event":"taskCreated","history_items":[{"id":"2800768061568222238","type":1}],"task_id":"1vj38vv","webhook_id":"7fa3ec74-69a8-4530-a251-8a13730bd204"}'))

    # Airtable: the MAC secret is given base64 (macSecretBase64) and decoded to the key.
    a_key = lambda s: base64.b64decode(s)
    asign, acheck = simple("X-Airtable-Content-MAC", S256, "hex", prefix="hmac-sha256=", key=a_key)
    suite("airtable", "X-Airtable-Content-MAC", asign, acheck,
          ("BwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAhIiMkJSY=",
           "Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5d2FsZG9mcmVkcGx1Z3h5enp5", "d3Jvbmcta2V5LWJ5dGVz"),
          (b'{"base":{"id":"appQ7ZgK2mYx1Wz8V"},"webhook":{"id":"achW3mNqL9sR1tUvX"},"timestamp":"2026-11-30T21:25:05.663Z"}',
           b'{"base":{"id":"appQ7ZgK2mYx1Wz8V"},"webhook":{"id":"achW3mNqL9sR1tUvX"},"timestamp":"2026-11-30T21:26:11.021Z"}'),
          extra=[])

    # Heroku
    hs, hc = simple("Heroku-Webhook-Hmac-SHA256", S256, "base64")
    suite("heroku", "Heroku-Webhook-Hmac-SHA256", hs, hc, ("ba6a30c9-6c2f-4c1e-8d3b-5a2f1e0d9c8b", "1f2e3d4c-5b6a-4978-8697-a5b4c3d2e1f0", "wrong"),
          (b'{"id":"43b6d8f0-1c2a-4e5b-9f8a-7d6c5b4a3e21","action":"update","resource":"release","data":{"version":42},"webhook_metadata":{"event":{"id":"43b6d8f0-1c2a-4e5b-9f8a-7d6c5b4a3e21","include":"api:release"}}}',
           b'{"id":"a91e7c1d-2b3f-4a5e-8c9d-0e1f2a3b4c5d","action":"create","resource":"dyno","data":{"name":"web.1"}}'))

    # CircleCI
    suite("circleci", "circleci-signature", circleci_sign, circleci_check, ("cci-webhook-secret-5d1e", "cci-webhook-secret-old-77a0", "wrong"),
          (b'{"type":"workflow-completed","id":"3888f21b-eaa7-38e3-8f3d-75a63bba8895","happened_at":"2026-11-30T15:21:07.000Z","webhook":{"id":"cf8c4fdd-0587-4da1-b4ca-4846e9640af9","name":"Sample"}}',
           b'{"type":"job-completed","id":"8bd26e7d-0a65-3f4c-8d56-2e9c5f1a0b71","happened_at":"2026-11-30T15:22:11.000Z"}'),
          extra=[
              ("valid, v1 among future versions", ["cci-webhook-secret-5d1e"],
               [["circleci-signature", "v2=" + "ab" * 32 + ",v1=" + hexmac(S256, b"cci-webhook-secret-5d1e", b'{"type":"ping"}')]], b'{"type":"ping"}', "valid"),
              ("only an unknown version", ["cci-webhook-secret-5d1e"],
               [["circleci-signature", "v2=" + hexmac(S256, b"cci-webhook-secret-5d1e", b'{"type":"ping"}')]], b'{"type":"ping"}', "invalid"),
          ])

    # OpenAI and Replicate: Standard Webhooks.
    osecrets = ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_c2Vjb25kLXNlY3JldC1ieXRlcy0xMjM0NTY=", "whsec_d3Jvbmctc2VjcmV0LWJ5dGVz")
    suite("openai", "webhook-signature", standard_sign, openai_check, osecrets,
          (b'{"id":"evt_685343a1381c819085d44c354e1b330e","object":"event","created_at":1796025590,"type":"response.completed","data":{"id":"resp_abc123"}}',
           b'{"id":"evt_7a1b2c3d4e5f","object":"event","created_at":1796025595,"type":"batch.completed","data":{"id":"batch_xyz"}}'), timed=True,
          extra=[("webhook-id changed", [osecrets[0]],
                  [["webhook-id", "msg_other"]] + standard_sign(osecrets[0], b'{"id":"evt_1"}', NOW)[1:], b'{"id":"evt_1"}', "invalid")])
    # The openai SDKs' shared test vector (openai/openai-python tests/api_resources/test_webhooks.py).
    ob = b'{"id": "evt_685c059ae3a481909bdc86819b066fb6", "object": "event", "created_at": 1750861210, "type": "response.completed", "data": {"id": "resp_123"}}'
    oh = [["webhook-signature", "v1,gUAg4R2hWouRZqRQG4uJypNS8YK885G838+EHb4nKBY="], ["webhook-timestamp", "1750861210"],
          ["webhook-id", "wh_685c059ae39c8190af8c71ed1022a24d"]]
    osk = "whsec_RdvaYFYUXuIFuEbvZHwMfYFhUf7aMYjYcmM24+Aj40c="
    emit("openai: SDK test vector", "openai", [osk], oh, ob, "valid", openai_check, now=1750861210)
    emit("openai: SDK test vector, 10 min later", "openai", [osk], oh, ob, "invalid", openai_check, now=1750861810)
    emit("openai: SDK test vector, other secret", "openai", [osecrets[0]], oh, ob, "invalid", openai_check, now=1750861210)
    rsecrets = ("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD", "whsec_cHJldmlvdXMtcmVwbGljYXRlLWtleQ==", "whsec_d3Jvbmctc2VjcmV0LWJ5dGVz")
    suite("replicate", "webhook-signature", standard_sign, replicate_check, rsecrets,
          (b'{"id":"ufawqhfynnddngldkgtslldrkq","version":"5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa","status":"succeeded","output":["https://replicate.delivery/x.png"]}',
           b'{"id":"rrr4z55ocneqzikepnug6xezpe","status":"processing","logs":"step 1/50"}'), timed=True)

    # PayMongo, live and test mode.
    for name, mode in (("paymongo", "li"), ("paymongo-test", "te")):
        ps, pc = paymongo(mode)
        other = "te" if mode == "li" else "li"
        b = b'{"data":{"id":"evt_9C3Dm4vJ2xqG6xKJ1QdG7Hh4","type":"event","attributes":{"type":"payment.paid","livemode":' + (b"true" if mode == "li" else b"false") + b'}}}'
        wrong_mode = lambda secret, body, ts: [["Paymongo-Signature", f"t={ts},{mode}=,{other}=" + hexmac(S256, secret.encode(), f"{ts}.".encode() + body)]]
        suite(name, "Paymongo-Signature", ps, pc, ("whsk_3DXwVvQw2YJ6LWwH9mAd1cXB", "whsk_Pz8q1RkT4mN7vB2cX5zL0aSd", "wrong"),
              (b, b'{"data":{"id":"evt_4Kp2Qm7Xw9Lr3Ty6","type":"event","attributes":{"type":"source.chargeable"}}}'), timed=True,
              extra=[(f"signed only under the other mode's key ({other})", ["whsk_3DXwVvQw2YJ6LWwH9mAd1cXB"], wrong_mode("whsk_3DXwVvQw2YJ6LWwH9mAd1cXB", b, NOW), b, "invalid")])

    # Frame.io and Customer.io
    fs, fc = v0_scheme("X-Frameio-Request-Timestamp", "X-Frameio-Signature", "v0=")
    suite("frameio", "X-Frameio-Signature", fs, fc, ("frameio-secret-b8c1d2", "frameio-secret-old-00aa", "wrong"),
          (b'{"type":"asset.created","resource":{"type":"asset","id":"0f5c8a4e-1b2d-4c3e-9f8a-7b6c5d4e3f2a"},"team":{"id":"t-1"},"user":{"id":"u-1"}}',
           b'{"type":"comment.created","resource":{"type":"comment","id":"9a8b7c6d-5e4f-3a2b-1c0d-e9f8a7b6c5d4"}}'), timed=True)
    cis, cic = v0_scheme("X-CIO-Timestamp", "X-CIO-Signature", "")
    suite("customerio", "X-CIO-Signature", cis, cic, ("cio_signing_key_5f2a9c", "cio_signing_key_old_11b3", "wrong"),
          (b'{"event_id":"01E4C4CT6YDC7Y5M7FE1GWWPQJ","object_type":"email","metric":"opened","timestamp":1796025580,"data":{"customer_id":"42"}}',
           b'{"event_id":"01E4C4CT6YDC7Y5M7FE1GWWPQK","object_type":"email","metric":"clicked","timestamp":1796025581}'), timed=True)

    # Persona
    PB = b'{"data":{"type":"event","id":"evt_R0t8Xq","attributes":{"name":"inquiry.approved"}}}'
    suite("persona", "Persona-Signature", persona_sign, persona_check, ("wbhsec_3c6d9f2a-4b5e-4c7d-8e9f-0a1b2c3d4e5f", "wbhsec_prev-7e8f9a0b", "wrong"),
          (b'{"data":{"type":"event","id":"evt_yAh2ZJ7v8zVGCt1nPaBwQ8aV","attributes":{"name":"inquiry.completed","payload":{"data":{"id":"inq_1"}}}}}',
           b'{"data":{"type":"event","id":"evt_Pq3Lr8sT1uVw2XyZ","attributes":{"name":"verification.passed"}}}'), timed=True,
          extra=[("rotating: two sets, the route holds both secrets", ["wbhsec_prev-7e8f9a0b", "wbhsec_3c6d9f2a-4b5e-4c7d-8e9f-0a1b2c3d4e5f"],
                  [["Persona-Signature", persona_sign("wbhsec_prev-7e8f9a0b", PB, NOW)[0][1] + " " + persona_sign("wbhsec_3c6d9f2a-4b5e-4c7d-8e9f-0a1b2c3d4e5f", PB, NOW)[0][1]]], PB, "valid"),
                 ("rotating: two sets, new first, the route holds only the new secret", ["wbhsec_3c6d9f2a-4b5e-4c7d-8e9f-0a1b2c3d4e5f"],
                  [["Persona-Signature", persona_sign("wbhsec_3c6d9f2a-4b5e-4c7d-8e9f-0a1b2c3d4e5f", PB, NOW)[0][1] + " " + persona_sign("wbhsec_prev-7e8f9a0b", PB, NOW)[0][1]]], PB, "valid"),
                 ("rotating: two sets, neither from the route's secret", ["wbhsec_other"],
                  [["Persona-Signature", persona_sign("wbhsec_prev-7e8f9a0b", PB, NOW)[0][1] + " " + persona_sign("wbhsec_3c6d9f2a-4b5e-4c7d-8e9f-0a1b2c3d4e5f", PB, NOW)[0][1]]], PB, "invalid")])

    # Help Scout, Alchemy, Notion, Nylas, Segment: HMAC of the raw body in one header.
    for provider, header, alg, enc, prefix, secrets, bodies in (
        ("helpscout", "X-HelpScout-Signature", S1, "base64", "", ("hs-secret-key-0123456789", "hs-secret-key-previous", "wrong"),
         (b'{"id":1234567,"number":42,"subject":"Help with my order","status":"active"}', b'{"id":7654321,"firstName":"Ada","lastName":"L"}')),
        ("alchemy", "X-Alchemy-Signature", S256, "hex", "", ("whsec_ALCH3mY2kP9qR1sT4uV7wX0z", "whsec_ALCHold5nB8vC1xZ4", "wrong"),
         (b'{"webhookId":"wh_octjglnywaupz6th","id":"whevt_ogrc5v64myey69ux","createdAt":"2026-11-30T21:25:05.663Z","type":"ADDRESS_ACTIVITY","event":{"network":"ETH_MAINNET"}}',
          b'{"webhookId":"wh_octjglnywaupz6th","id":"whevt_55i2al4sc2ivp1m8","createdAt":"2026-11-30T21:26:00.000Z","type":"MINED_TRANSACTION","event":{}}')),
        ("notion", "X-Notion-Signature", S256, "hex", "sha256=", ("secret_tMrlL1qK5vuQAh1b6cZGhFChZTSYJlce98V0pYn7yBl", "secret_prevVerificationToken0123", "wrong"),
         (b'{"id":"367cba44-b6f3-4c92-81e7-6a2e9659efd4","timestamp":"2026-11-30T21:25:05.663Z","workspace_id":"13950b26-c203-4f3b-b97d-93ec06319565","type":"page.created","entity":{"id":"153104cd-477e-809d-8dc4-ff2d96ae3090","type":"page"}}',
          b'{"id":"4a2c9e71-0d3b-4f5a-8c6e-1b2d3f4a5c6e","type":"comment.created","entity":{"id":"c-1","type":"comment"}}')),
        ("nylas", "X-Nylas-Signature", S256, "hex", "", ("nyl_webhook_secret_a1b2c3d4e5", "nyl_webhook_secret_prev_f6a7", "wrong"),
         (b'{"specversion":"1.0","type":"message.created","source":"/google/emails/realtime","id":"5ba9c2b2-1c3a-4f8e-9d7b-6a5c4b3a2f10","time":1796025590,"webhook_delivery_attempt":1,"data":{"object":{"id":"m-1"}}}',
          b'{"specversion":"1.0","type":"event.updated","id":"7cd1e3f4-2a5b-4c6d-8e9f-0a1b2c3d4e5f","webhook_delivery_attempt":2,"data":{}}')),
        ("segment", "X-Signature", S1, "hex", "", ("segment-shared-secret-9f8e7d", "segment-shared-secret-old-11", "wrong"),
         (b'{"type":"track","event":"Order Completed","messageId":"ajs-next-1796025590-1a2b3c","userId":"u-42","properties":{"total":19.99}}',
          b'{"type":"identify","messageId":"ajs-next-1796025591-4d5e6f","userId":"u-43","traits":{"plan":"pro"}}')),
    ):
        s, c = simple(header, alg, enc, prefix=prefix)
        suite(provider, header, s, c, secrets, bodies)

    # Squarespace: the secret is hex, decoded to the key (upper-case as Squarespace prints it).
    ss, sc = simple("Squarespace-Signature", S256, "hex", key=lambda s: bytes.fromhex(s))
    suite("squarespace", "Squarespace-Signature", ss, sc,
          ("F3F9B981C78E7A6187E42853F6CE2804177E98206164779423B02DEC981ACD6B", "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9", "00112233445566778899aabbccddeeff"),
          (b'{"id":"5c2ba184b63ed3cb411ce2b1","websiteId":"5f3c3d55ac435e1a051f77b3","subscriptionId":"5f3c2155d947844beedda991","topic":"order.create","createdOn":"2026-11-30T22:18+00:00","data":{"orderId":"o-1"}}',
           b'{"id":"5c2ba184b63ed3cb411ce2b2","websiteId":"5f3c3d55ac435e1a051f77b3","topic":"extension.uninstall","data":{}}'),
          extra=[("secret used as text, not hex-decoded", ["F3F9B981C78E7A6187E42853F6CE2804177E98206164779423B02DEC981ACD6B"],
                  [["Squarespace-Signature", hexmac(S256, b"F3F9B981C78E7A6187E42853F6CE2804177E98206164779423B02DEC981ACD6B", b'{"id":"x"}')]], b'{"id":"x"}', "invalid")])

    # Pusher: the body carries time_ms, which the SDK holds to 300 s.
    def pusher_body(ms, ev="channel_occupied"):
        return json.dumps({"time_ms": ms, "events": [{"name": ev, "channel": "presence-room-1"}]}, separators=(",", ":")).encode()
    psec = ("7ad3773142a6692b25b8", "c1a2b3d4e5f6a7b8c9d0", "wrong")
    suite("pusher", "X-Pusher-Signature", pusher_sign, pusher_check, psec,
          (pusher_body(NOW * 1000 - 1500), pusher_body(NOW * 1000 - 800, "channel_vacated")),
          extra=[
              ("time_ms in tolerance (200 s ago)", [psec[0]], pusher_sign(psec[0], pusher_body((NOW - 200) * 1000)), pusher_body((NOW - 200) * 1000), "valid"),
              ("time_ms stale (1 h ago)", [psec[0]], pusher_sign(psec[0], pusher_body((NOW - 3600) * 1000)), pusher_body((NOW - 3600) * 1000), "invalid"),
              ("time_ms in the future (1 h)", [psec[0]], pusher_sign(psec[0], pusher_body((NOW + 3600) * 1000)), pusher_body((NOW + 3600) * 1000), "invalid"),
          ])

    # Ghost: timestamp in milliseconds, appended to the body.
    suite("ghost", "X-Ghost-Signature", ghost_sign, ghost_check, ("a8b1c4d7e0f3a6b9c2d5e8f1a4b7c0d3", "0d3c0b7a4f1e8d5c2b9a6f3e0d7c4b1a", "wrong"),
          (b'{"post":{"current":{"id":"6745f1a2b3c4d5e6f7a8b9c0","title":"Hello","status":"published"},"previous":{"status":"draft"}}}',
           b'{"member":{"current":{"id":"6745f1a2b3c4d5e6f7a8b9c1","email":"ada@example.com"},"previous":{}}}'), timed=True, unit=1000)

    # Polar
    suite("polar", "webhook-signature", polar_sign, polar_check, ("polar_whs_Yq3Nf8Kd2Lm5Pq7Rs9Tu1Vw", "polar_whs_prevAb4Cd6Ef8Gh0Ij2Kl", "polar_whs_wrong"),
          (b'{"type":"order.paid","timestamp":"2026-11-30T21:25:05.663Z","data":{"id":"a1b2c3d4-0000-4000-8000-000000000001"}}',
           b'{"type":"subscription.active","timestamp":"2026-11-30T21:26:00.000Z","data":{"id":"a1b2c3d4-0000-4000-8000-000000000002"}}'), timed=True)

    # Buildkite
    suite("buildkite", "X-Buildkite-Signature", buildkite_sign, buildkite_check, ("bk-webhook-token-7c1e9a", "bk-webhook-token-old-2f3d", "wrong"),
          (b'{"event":"build.finished","build":{"id":"f62a1b4d-10f9-4790-bc1c-e2c3a0c80983","number":42,"state":"passed"},"pipeline":{"slug":"deploy"},"sender":{"name":"Ada"}}',
           b'{"event":"ping","service":{"id":"c9f8372d-c0cd-43dc-9275-10bfcad7a1b3","provider":"webhook"}}'), timed=True)

    # Cal.com and Tally: HMAC-SHA256 of the raw body, hex and base64.
    for provider, header, enc, secrets, bodies in (
        ("calcom", "X-Cal-Signature-256", "hex", ("cal-webhook-secret-4d2f", "cal-webhook-secret-old-8e1a", "wrong"),
         (b'{"triggerEvent":"BOOKING_CREATED","createdAt":"2026-11-30T21:25:05.663Z","payload":{"uid":"bFJeNb2uX8ANpT3JL5EfXw","title":"30 Min Meeting"}}',
          b'{"triggerEvent":"BOOKING_CANCELLED","createdAt":"2026-11-30T21:26:00.000Z","payload":{"uid":"bFJeNb2uX8ANpT3JL5EfXw"}}')),
        ("tally", "Tally-Signature", "base64", ("tally-signing-secret-91ab", "tally-signing-secret-old-22cd", "wrong"),
         (b'{"eventId":"a4cb511e-d513-4fa5-baee-b815d718dfd1","eventType":"FORM_RESPONSE","createdAt":"2026-11-30T21:25:05.663Z","data":{"responseId":"2wgx4n","formId":"VwbNEw"}}',
          b'{"eventId":"b5dc622f-e624-4fb6-8bff-c926e829e0e2","eventType":"FORM_RESPONSE","data":{"responseId":"3xhy5o"}}')),
    ):
        s_, c_ = simple(header, S256, enc)
        suite(provider, header, s_, c_, secrets, bodies)

    json.dump(OUT, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
