#!/usr/bin/env python3
"""Generates tests/vectors/catalog-hand.json: vectors for the profiles of helper "hand".

Every verdict comes from outside portcullis (never from `portcullis sign`). Oracles:

- meta:     doc recipe, https://developers.facebook.com/docs/graph-api/webhooks/getting-started
            ("Validating Payloads": X-Hub-Signature-256 = "sha256=" + hex HMAC-SHA256(app
            secret, payload)), computed with Python's stdlib hmac.
- dropbox:  doc recipe, https://www.dropbox.com/developers/reference/webhooks ("Verifying
            requests": X-Dropbox-Signature = hex HMAC-SHA256(app secret, body)).
- twitter:  doc recipe, https://docs.x.com/x-api/webhooks/quickstart and
            https://developer.x.com/en/docs/x-api/enterprise/account-activity-api/guides/securing-webhooks
            (x-twitter-webhooks-signature = "sha256=" + base64 HMAC-SHA256(consumer secret, body)).
            Bodies of a CRC token's shape are "invalid" by portcullis' own rule (profile
            `body: json`, see providers/twitter.yaml), not by X's recipe: X's events are JSON
            objects, and a CRC answer must never verify a delivery.
- twitch:   twitchAPI 4.5.0 (PyPI `twitchAPI`, pinned in requirements-hand.txt): every
            vector's signature verdict is checked against
            `twitchAPI.eventsub.webhook.EventSubWebhook._verify_signature` (the generator stops
            on any disagreement). twitchAPI checks no time, so the stale/future verdicts follow
            https://dev.twitch.tv/docs/eventsub/handling-webhook-events/#verifying-the-event-message
            (refuse messages older than 10 minutes). Timestamps are written as Twitch writes
            them (RFC 3339, nanoseconds, Z), from Python's datetime.
- gitlab, telegram, xendit, okta, cloudflare: the providers' documents say the header's value
            IS the configured secret, sent as is:
            https://docs.gitlab.com/user/project/integrations/webhooks/ (X-Gitlab-Token),
            https://core.telegram.org/bots/api#setwebhook (X-Telegram-Bot-Api-Secret-Token),
            https://docs.xendit.co/webhook/getting-started/ (x-callback-token),
            https://developer.okta.com/docs/concepts/event-hooks/ (Authorization),
            https://developers.cloudflare.com/notifications/get-started/configure-webhooks/ (cf-webhook-auth).
- postmark, chargebee: HTTP Basic credentials as built by urllib3 2.8.0
            (`urllib3.util.make_headers(basic_auth="user:password")`), pinned in
            requirements-hand.txt; https://postmarkapp.com/developer/webhooks/webhooks-overview
            and https://www.chargebee.com/docs/billing/2.0/site-configuration/webhook_settings
            say the webhook carries Basic authentication with the configured credentials.

usage: /work/venv/bin/python tests/vectors/gen_hand.py > tests/vectors/catalog-hand.json
Deterministic: fixed secrets, bodies and times.
"""
import base64, datetime, hashlib, hmac, json, sys

import asyncio

import urllib3
from twitchAPI.eventsub.webhook import EventSubWebhook

NOW = 1796025600
URL = "https://hooks.example.com/webhooks/x"
out = []


def vec(name, provider, secrets, headers, body, expect, now=NOW):
    out.append({
        "name": f"{provider} {name}",
        "provider": provider,
        "secrets": secrets,
        "method": "POST",
        "url": URL,
        "headers": headers,
        "body_b64": base64.b64encode(body).decode(),
        "now": now,
        "expect": expect,
    })


def mac(key, msg):
    return hmac.new(key.encode(), msg, hashlib.sha256).digest()


def body_signed(provider, header, render, body, cur, prev):
    """Valid, rotated, wrong secret, tampered body, missing, empty, truncated signature."""
    good = render(mac(cur, body))
    vec("valid", provider, [cur], [[header, good]], body, "valid")
    vec("valid with the second of two secrets (rotation)", provider, [cur, prev],
        [[header, render(mac(prev, body))]], body, "valid")
    vec("wrong secret", provider, [cur], [[header, render(mac("not-the-secret", body))]], body, "invalid")
    vec("tampered body", provider, [cur], [[header, good]], body.replace(b"1", b"2", 1), "invalid")
    vec("missing signature", provider, [cur], [], body, "invalid")
    vec("empty signature", provider, [cur], [[header, ""]], body, "invalid")
    vec("truncated signature", provider, [cur], [[header, good[:-4]]], body, "invalid")
    vec("signature of the empty body", provider, [cur], [[header, render(mac(cur, b""))]], body, "invalid")


# --- Meta ------------------------------------------------------------------------------------
meta_body = b'{"object":"page","entry":[{"id":"1234567890","time":1796025500,"changes":[{"field":"feed","value":{"item":"status","verb":"add","message":"h\\u00e9llo"}}]}]}'
body_signed("meta", "X-Hub-Signature-256", lambda d: "sha256=" + d.hex(), meta_body,
            "meta-app-secret-cur", "meta-app-secret-prev")
vec("upper-case hex", "meta", ["meta-app-secret-cur"],
    [["X-Hub-Signature-256", "sha256=" + mac("meta-app-secret-cur", meta_body).hex().upper()]], meta_body, "valid")
vec("legacy sha1 header alone", "meta", ["meta-app-secret-cur"],
    [["X-Hub-Signature", "sha1=" + hmac.new(b"meta-app-secret-cur", meta_body, hashlib.sha1).hexdigest()]],
    meta_body, "invalid")

# --- Dropbox ---------------------------------------------------------------------------------
dropbox_body = b'{"list_folder": {"accounts": ["dbid:AAH4f99T0taONIb-OurWxbNQ6ywGRopQngc", "dbid:AAAbcd1234"]}, "delta": {"users": [12345678, 23456789]}}'
body_signed("dropbox", "X-Dropbox-Signature", lambda d: d.hex(), dropbox_body,
            "dropbox-app-secret-cur", "dropbox-app-secret-prev")

# --- Twitter / X -----------------------------------------------------------------------------
twitter_body = b'{"for_user_id":"2244994945","tweet_create_events":[{"id_str":"1796025600123456789","text":"hello 1"}]}'
body_signed("twitter", "x-twitter-webhooks-signature", lambda d: "sha256=" + base64.b64encode(d).decode(),
            twitter_body, "twitter-consumer-secret-cur", "twitter-consumer-secret-prev")
vec("hex instead of base64", "twitter", ["twitter-consumer-secret-cur"],
    [["x-twitter-webhooks-signature", "sha256=" + mac("twitter-consumer-secret-cur", twitter_body).hex()]],
    twitter_body, "invalid")
# The CRC check (GET ?crc_token=X) answers "sha256=" + base64 HMAC-SHA256(consumer secret, X) to
# anyone, the very value a delivery of body X carries: so the profile takes JSON bodies only
# (X's events are JSON objects) and answers token-shaped X only. A body of a CRC token's shape,
# with its CRC answer as the signature, must not verify.
for crc_body in (b"Zm9vYmFy", b"x9Qm3-Fh_0aZ7bYc2dEe4fGg6hIi8jKk1lMm5nOo9pP", b"1796025600"):
    vec("a CRC token as the body, signed by its CRC answer", "twitter", ["twitter-consumer-secret-cur"],
        [["x-twitter-webhooks-signature", "sha256=" + base64.b64encode(mac("twitter-consumer-secret-cur", crc_body)).decode()]],
        crc_body, "invalid")

# --- Twitch ----------------------------------------------------------------------------------
def twitch_ts(unix, nanos=538178936):
    t = datetime.datetime.fromtimestamp(unix, datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"


twitch_body = b'{"subscription":{"id":"f1c2a387-161a-49f9-a165-0f21d7a4e1c4","type":"channel.follow","version":"2","status":"enabled","cost":0},"event":{"user_id":"1337","user_login":"awesome_user","broadcaster_user_id":"12826","followed_at":"2026-11-30T12:00:00.123456789Z"}}'
TW_CUR, TW_PREV = "twitch-eventsub-secret-cur", "twitch-eventsub-secret-prev"
TW_ID = "e76c6bd4-55c9-4987-8304-da1588d8988b"


def twitch(secret, body, ts, msg_id=TW_ID, kind="notification"):
    sig = "sha256=" + mac(secret, msg_id.encode() + ts.encode() + body).hex()
    return [["Twitch-Eventsub-Message-Id", msg_id], ["Twitch-Eventsub-Message-Timestamp", ts],
            ["Twitch-Eventsub-Message-Signature", sig], ["Twitch-Eventsub-Message-Type", kind]]


def twitch_oracle(secret, headers, body):
    """twitchAPI's own check of the signature (not of the time)."""
    class Req:
        def __init__(self):
            self.headers = {k: v for k, v in headers}

        async def text(self):
            return body.decode()

    class Hook:
        pass

    hook = Hook()
    hook.secret = secret
    try:
        return asyncio.run(EventSubWebhook._verify_signature(hook, Req()))
    except KeyError:
        return False


def twitch_vec(name, secrets, headers, body, expect, signature_ok=None):
    """A Twitch vector whose signature verdict twitchAPI confirms (any secret may match)."""
    ok = any(twitch_oracle(s, headers, body) for s in secrets)
    want = (expect == "valid") if signature_ok is None else signature_ok
    if ok != want:
        raise SystemExit(f"twitchAPI disagrees on twitch {name}: signature {'valid' if ok else 'invalid'}")
    vec(name, "twitch", secrets, headers, body, expect)


ts = twitch_ts(NOW - 30)
twitch_vec("valid", [TW_CUR], twitch(TW_CUR, twitch_body, ts), twitch_body, "valid")
twitch_vec("valid with the second of two secrets (rotation)", [TW_CUR, TW_PREV],
    twitch(TW_PREV, twitch_body, ts), twitch_body, "valid")
twitch_vec("valid 9 minutes old", [TW_CUR], twitch(TW_CUR, twitch_body, twitch_ts(NOW - 540)), twitch_body, "valid")
twitch_vec("valid offset timestamp without fraction", [TW_CUR],
    twitch(TW_CUR, twitch_body, datetime.datetime.fromtimestamp(NOW - 30, datetime.timezone(datetime.timedelta(hours=1)))
           .isoformat()), twitch_body, "valid")
twitch_vec("wrong secret", [TW_CUR], twitch("not-the-secret", twitch_body, ts), twitch_body, "invalid")
twitch_vec("tampered body", [TW_CUR], twitch(TW_CUR, twitch_body, ts), twitch_body.replace(b"1337", b"1338"), "invalid")
h = twitch(TW_CUR, twitch_body, ts)
twitch_vec("message id changed", [TW_CUR], [[k, ("x" + v if k == "Twitch-Eventsub-Message-Id" else v)] for k, v in h],
    twitch_body, "invalid")
twitch_vec("missing signature", [TW_CUR], [kv for kv in h if kv[0] != "Twitch-Eventsub-Message-Signature"],
    twitch_body, "invalid")
twitch_vec("empty signature", [TW_CUR], [[k, "" if k == "Twitch-Eventsub-Message-Signature" else v] for k, v in h],
    twitch_body, "invalid")
twitch_vec("truncated signature", [TW_CUR],
    [[k, v[:-2] if k == "Twitch-Eventsub-Message-Signature" else v] for k, v in h], twitch_body, "invalid")
twitch_vec("missing timestamp", [TW_CUR], [kv for kv in h if kv[0] != "Twitch-Eventsub-Message-Timestamp"],
    twitch_body, "invalid")
twitch_vec("stale timestamp (11 minutes)", [TW_CUR], twitch(TW_CUR, twitch_body, twitch_ts(NOW - 660)),
    twitch_body, "invalid", signature_ok=True)
twitch_vec("future timestamp (11 minutes)", [TW_CUR], twitch(TW_CUR, twitch_body, twitch_ts(NOW + 660)),
    twitch_body, "invalid", signature_ok=True)
twitch_vec("unix-seconds timestamp", [TW_CUR], twitch(TW_CUR, twitch_body, str(NOW)), twitch_body, "invalid",
           signature_ok=True)
chal_body = b'{"challenge":"pogchamp-kappa-360noscope-vohiyo","subscription":{"id":"f1c2a387-161a-49f9-a165-0f21d7a4e1c4","status":"webhook_callback_verification_pending","type":"channel.follow","version":"2"}}'
twitch_vec("verification message", [TW_CUR],
    twitch(TW_CUR, chal_body, ts, kind="webhook_callback_verification"), chal_body, "valid")


# --- Shared tokens ---------------------------------------------------------------------------
def token_vectors(provider, header, cur, prev, body):
    """Right token, rotated second token, wrong, missing, empty, truncated, extended, case."""
    vec("valid token", provider, [cur], [[header, cur]], body, "valid")
    vec("valid with the second of two tokens (rotation)", provider, [cur, prev], [[header, prev]], body, "valid")
    vec("wrong token", provider, [cur], [[header, "not-the-token"]], body, "invalid")
    vec("missing header", provider, [cur], [], body, "invalid")
    vec("empty value", provider, [cur], [[header, ""]], body, "invalid")
    vec("truncated value", provider, [cur], [[header, cur[:-1]]], body, "invalid")
    vec("value with a character more", provider, [cur], [[header, cur + "x"]], body, "invalid")
    vec("value in another case", provider, [cur], [[header, cur.upper()]], body, "invalid")
    # NO integrity: the token does not bind the body, so any body passes with it.
    vec("any body passes with the token (no integrity)", provider, [cur], [[header, cur]], b'{"forged":true}', "valid")


token_vectors("gitlab", "X-Gitlab-Token", "gl-hook-token-cur", "gl-hook-token-prev",
              b'{"object_kind":"push","event_name":"push","before":"95790bf8","after":"da1560886","ref":"refs/heads/main","user_id":4,"project_id":15}')
token_vectors("telegram", "X-Telegram-Bot-Api-Secret-Token", "tg_Secret-token_cur", "tg_Secret-token_prev",
              b'{"update_id":10000,"message":{"message_id":1365,"date":1796025600,"chat":{"id":1111111,"type":"private"},"text":"/start"}}')
token_vectors("xendit", "x-callback-token", "xnd-callback-token-cur", "xnd-callback-token-prev",
              b'{"id":"579c8d61f23fa4ca35e52da4","external_id":"invoice_123124123","status":"PAID","amount":50000}')
token_vectors("okta", "Authorization", "okta-hook-secret-cur", "okta-hook-secret-prev",
              b'{"eventType":"com.okta.event_hook","eventTypeVersion":"1.0","cloudEventsVersion":"0.1","eventId":"b5a188b9-5ece-4636-b041-482ffda96311","data":{"events":[{"uuid":"ba0a8b8c-1b2a-11ee-be56-0242ac120002","eventType":"user.session.start"}]}}')
token_vectors("cloudflare", "cf-webhook-auth", "cf-webhook-secret-cur", "cf-webhook-secret-prev",
              b'{"name":"Origin monitoring","text":"Origin 203.0.113.1 is unreachable","data":{"zone":"example.com"},"ts":1796025600}')


# --- HTTP Basic ------------------------------------------------------------------------------
def basic(cred):
    return urllib3.util.make_headers(basic_auth=cred)["authorization"]


def basic_vectors(provider, cur, prev, body):
    vec("valid credentials", provider, [cur], [["Authorization", basic(cur)]], body, "valid")
    vec("valid with the second of two credentials (rotation)", provider, [cur, prev],
        [["Authorization", basic(prev)]], body, "valid")
    user, pw = cur.split(":", 1)
    vec("wrong password", provider, [cur], [["Authorization", basic(user + ":wrong-password")]], body, "invalid")
    vec("wrong user", provider, [cur], [["Authorization", basic("someone:" + pw)]], body, "invalid")
    vec("missing header", provider, [cur], [], body, "invalid")
    vec("empty value", provider, [cur], [["Authorization", ""]], body, "invalid")
    vec("truncated value", provider, [cur], [["Authorization", basic(cur)[:-4]]], body, "invalid")
    vec("password truncated", provider, [cur], [["Authorization", basic(cur[:-1])]], body, "invalid")
    vec("credentials not base64-encoded", provider, [cur], [["Authorization", "Basic " + cur]], body, "invalid")
    vec("bearer scheme", provider, [cur], [["Authorization", "Bearer " + basic(cur).split(" ", 1)[1]]], body, "invalid")
    # NO integrity: the credentials do not bind the body, so any body passes with them.
    vec("any body passes with the credentials (no integrity)", provider, [cur], [["Authorization", basic(cur)]],
        b'{"forged":true}', "valid")


basic_vectors("postmark", "pm-hooks:Pm-passw0rd:with-colon", "pm-hooks:Pm-old-passw0rd",
              b'{"RecordType":"Delivery","ServerID":23,"MessageStream":"outbound","MessageID":"883953f4-6105-42a2-a16a-77a8eac79483","Recipient":"john@example.com","DeliveredAt":"2026-11-30T12:00:00Z"}')
basic_vectors("chargebee", "cb-hooks:Cb_s3cret", "cb-hooks:Cb_old_s3cret",
              b'{"id":"ev_16BHbhF4s42tO2lK","occurred_at":1796025600,"object":"event","api_version":"v2","event_type":"customer_created","content":{"customer":{"id":"cus_1"}}}')

json.dump(out, sys.stdout, indent=1, ensure_ascii=False)
sys.stdout.write("\n")
