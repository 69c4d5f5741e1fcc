#!/usr/bin/env python3
"""Generates tests/vectors/catalog-fmt.json: vectors for helper `fmt`'s profiles, each verdict
taken from a source outside portcullis.

Oracles, per provider (versions pinned in tests/vectors/requirements-fmt.txt):
- adyen: PyPI `Adyen` 16.0.0, `Adyen.util.generate_notification_sig` signs and
  `Adyen.util.is_valid_hmac_notification` gives every verdict; plus the library's own test
  example (HmacSignatureTest, already in catalog.json).
- box: PyPI `box-sdk-gen` 1.17.0, `WebhooksManager.validate_message` (Box's own SDK; its
  clock pinned to the vector's `now`) gives every verdict; `compute_webhook_signature` signs.
- braintree: PyPI `braintree` 4.48.0: `Crypto.sha1_hmac_hash` signs and
  `BraintreeGateway.webhook_notification.parse` (the SDK's verifier) gives every verdict.
- zendesk: no SDK; the documented recipe base64(HMACSHA256(TIMESTAMP + BODY)) of
  https://developer.zendesk.com/documentation/webhooks/verifying/ (zendesk()).
- docusign: no SDK verifier; the documented recipe (base64 HMAC-SHA256 of the body, one
  X-DocuSign-Signature-N header per key) of
  https://developers.docusign.com/platform/webhooks/connect/hmac/ (docusign()).
- recurly: Recurly's Python and Node clients have no verifier (the Ruby and Go ones do, and
  neither runtime is here); the documented recipe of
  https://docs.recurly.com/recurly-subscriptions/docs/signature-verification (recurly()).
- sumsub: the documented recipe of https://docs.sumsub.com/docs/webhook-manager#verify-webhook-sender
  (sumsub()).
- mandrill: the documented recipe (the docs' generateSignature: URL, then each POST key and
  value sorted by key, base64 HMAC-SHA1) of
  https://mailchimp.com/developer/transactional/guides/track-respond-activity-webhooks/#authenticating-webhook-requests
  (mandrill()). Two verdicts are portcullis' policy rather than the recipe's: a multipart body
  and a field with an empty name are refused (Mandrill posts url-encoded forms only).
- mailgun-routes: the documented recipe (hex HMAC-SHA256 of timestamp + token) of
  https://documentation.mailgun.com/docs/mailgun/user-manual/tracking-messages/#securing-webhooks,
  the fields posted as a form as Routes do (mailgun_routes()).

usage: /work/venv/bin/python tests/vectors/gen_fmt.py > tests/vectors/catalog-fmt.json
Deterministic: fixed keys, bodies and times.
"""
import base64, copy, datetime, hashlib, hmac, json, sys

NOW = 1796025600
URL = "https://hooks.example.com/webhooks/x"


def vector(name, provider, secrets, headers, body, expect, now=NOW, url=URL, method="POST"):
    if isinstance(body, str):
        body = body.encode()
    return {"name": name, "provider": provider, "secrets": secrets, "method": method, "url": url,
            "headers": headers, "body_b64": base64.b64encode(body).decode(), "now": now, "expect": expect}


def J(doc):
    return json.dumps(doc, separators=(",", ":")).encode()


def check(expect, verdict, name):
    """The oracle's verdict must be the vector's: a vector is only written if it agrees."""
    if (expect == "valid") != bool(verdict):
        sys.exit(f"oracle disagrees with {name}: expected {expect}")


# ---------------------------------------------------------------------------------------------
# Adyen (oracle: PyPI Adyen)

def adyen():
    from Adyen.util import generate_notification_sig, is_valid_hmac_notification
    key = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056"
    other = "DFB1EB5485895CFA84146406857104ABB4CBCABDC8AAF103A624C8F6A3EAAB00"
    out = []

    def item(ref, psp="8816178914079738", value=1250):
        return {"pspReference": psp, "originalReference": "", "merchantAccountCode": "AcmeShop",
                "merchantReference": ref, "amount": {"value": value, "currency": "EUR"},
                "eventCode": "AUTHORISATION", "success": "true"}

    def signed(n, k=key):
        n = copy.deepcopy(n)
        n["additionalData"] = {"hmacSignature": generate_notification_sig(n, k).decode()}
        return n

    def add(name, n, expect, secrets=(key,), oracle_key=key):
        doc = {"live": "false", "notificationItems": [{"NotificationRequestItem": n}]}
        try:
            verdict = is_valid_hmac_notification(copy.deepcopy(doc), oracle_key)
        except (ValueError, KeyError, TypeError):
            verdict = False
        check(expect, verdict, name)
        out.append(vector(f"adyen (Adyen 16.0.0) {name}", "adyen", list(secrets),
                          [["Content-Type", "application/json"]], J(doc), expect))

    add("valid", signed(item("order-1001")), "valid")
    add("merchantReference with ':' and '\\' (joined unescaped)", signed(item("ord:12\\3:x")), "valid")
    add("signed with the second of two secrets", signed(item("order-1002"), other), "valid",
        secrets=(key, other), oracle_key=other)
    # The old, escaped signing string no longer verifies.
    n = item("ord:12\\3:x")
    esc = lambda s: s.replace("\\", "\\\\").replace(":", "\\:")
    fields = [n["pspReference"], "", n["merchantAccountCode"], n["merchantReference"], "1250", "EUR", "AUTHORISATION", "true"]
    old = base64.b64encode(hmac.new(bytes.fromhex(key), ":".join(map(esc, fields)).encode(), hashlib.sha256).digest()).decode()
    add("escaped signing string (the old HPP form)", dict(n, additionalData={"hmacSignature": old}), "invalid")
    add("wrong secret", signed(item("order-1003"), other), "invalid")
    t = signed(item("order-1004"))
    t["amount"]["value"] = 99999
    add("tampered amount", t, "invalid")
    t = signed(item("order-1005"))
    t["additionalData"]["hmacSignature"] = t["additionalData"]["hmacSignature"][:20]
    add("truncated signature", t, "invalid")
    t = signed(item("order-1006"))
    t["additionalData"]["hmacSignature"] = ""
    add("empty signature", t, "invalid")
    t = signed(item("order-1007"))
    del t["additionalData"]
    add("missing signature", t, "invalid")
    return out


# ---------------------------------------------------------------------------------------------
# Recipes from the providers' documentation (no SDK verifier exists or can run here)

def hm(alg, key, msg):
    return hmac.new(key, msg, alg).digest()


def b64(d):
    return base64.b64encode(d).decode()


def rfc3339(secs, offset_minutes=0):
    tz = datetime.timezone(datetime.timedelta(minutes=offset_minutes))
    return datetime.datetime.fromtimestamp(secs, tz).isoformat()


def zendesk():
    # https://developer.zendesk.com/documentation/webhooks/verifying/
    key, old = "dGhpc19zZWNyZXRfaXNfZm9yX3Rlc3Rpbmdfb25seQ", "zendesk-old-secret"
    body = J({"type": "zen:event-type:ticket.created", "id": "01J7ZX9Q8R", "detail": {"id": "35436", "subject": "Help"}})
    def sign(k, b, ts):
        return [["X-Zendesk-Webhook-Signature", b64(hm(hashlib.sha256, k.encode(), ts.encode() + b))],
                ["X-Zendesk-Webhook-Signature-Timestamp", ts], ["Content-Type", "application/json"]]
    ts = rfc3339(NOW - 30).replace("+00:00", "Z")
    v = [vector("zendesk valid", "zendesk", [key], sign(key, body, ts), body, "valid"),
         vector("zendesk valid, offset timestamp with fractions", "zendesk", [key],
                sign(key, body, rfc3339(NOW - 30, -300)[:19] + ".250-05:00"), body, "valid"),
         vector("zendesk valid with the second of two secrets", "zendesk", [key, old], sign(old, body, ts), body, "valid"),
         vector("zendesk wrong secret", "zendesk", [key], sign(old, body, ts), body, "invalid"),
         vector("zendesk tampered body", "zendesk", [key], sign(key, body, ts), body.replace(b"Help", b"Hel!"), "invalid")]
    h = sign(key, body, ts)
    h[0][1] = h[0][1][:16]
    v.append(vector("zendesk truncated signature", "zendesk", [key], h, body, "invalid"))
    h = sign(key, body, ts)
    h[0][1] = ""
    v.append(vector("zendesk empty signature", "zendesk", [key], h, body, "invalid"))
    v.append(vector("zendesk missing signature", "zendesk", [key], sign(key, body, ts)[1:], body, "invalid"))
    stale = rfc3339(NOW - 301).replace("+00:00", "Z")
    v.append(vector("zendesk stale timestamp (301 s)", "zendesk", [key], sign(key, body, stale), body, "invalid"))
    future = rfc3339(NOW + 3600).replace("+00:00", "Z")
    v.append(vector("zendesk future timestamp (1 h)", "zendesk", [key], sign(key, body, future), body, "invalid"))
    h = sign(key, body, ts)
    h[1][1] = rfc3339(NOW - 10).replace("+00:00", "Z")
    v.append(vector("zendesk timestamp header changed", "zendesk", [key], h, body, "invalid"))
    v.append(vector("zendesk unix-seconds timestamp is not RFC 3339", "zendesk", [key], sign(key, body, str(NOW)), body, "invalid"))
    return v


def docusign():
    # https://developers.docusign.com/platform/webhooks/connect/hmac/
    k1, k2, wrong = "dsKey1+8n0QwzVTQh5CLY4Pv7j0=", "dsKey2+Jd8Wb1lM0qZ3rS4tU5v=", "not-the-key"
    body = J({"event": "envelope-completed", "apiVersion": "v2.1", "uri": "/restapi/v2.1/accounts/a/envelopes/e",
              "retryCount": 0, "configurationId": 10418, "generatedDateTime": "2026-11-30T23:59:00.1230000Z",
              "data": {"accountId": "a", "envelopeId": "93be49ab-0000-4e4f-a5b7-0a5a8d6ab1b3"}})
    sig = lambda k, b: b64(hm(hashlib.sha256, k.encode(), b))
    ct = ["Content-Type", "application/json"]
    v = [vector("docusign valid, one key", "docusign", [k1], [ct, ["X-DocuSign-Signature-1", sig(k1, body)]], body, "valid"),
         vector("docusign valid, second header matches the route's key", "docusign", [k2],
                [ct, ["X-DocuSign-Signature-1", sig(k1, body)], ["X-DocuSign-Signature-2", sig(k2, body)]], body, "valid"),
         vector("docusign valid, route has both keys", "docusign", [k1, k2],
                [ct, ["X-DocuSign-Signature-1", sig(k1, body)], ["X-DocuSign-Signature-2", sig(k2, body)]], body, "valid"),
         vector("docusign wrong key", "docusign", [k1], [ct, ["X-DocuSign-Signature-1", sig(wrong, body)]], body, "invalid"),
         vector("docusign tampered body", "docusign", [k1], [ct, ["X-DocuSign-Signature-1", sig(k1, body)]],
                body.replace(b"completed", b"voided"), "invalid"),
         vector("docusign missing signature", "docusign", [k1], [ct], body, "invalid"),
         vector("docusign empty signature", "docusign", [k1], [ct, ["X-DocuSign-Signature-1", ""]], body, "invalid"),
         vector("docusign truncated signature", "docusign", [k1], [ct, ["X-DocuSign-Signature-1", sig(k1, body)[:30]]], body, "invalid"),
         vector("docusign unnumbered header is not read", "docusign", [k1], [ct, ["X-DocuSign-Signature", sig(k1, body)]], body, "invalid")]
    return v


def recurly():
    # https://docs.recurly.com/recurly-subscriptions/docs/signature-verification
    key, other = "recurly-webhook-key-0f3c", "recurly-other-key"
    body = J({"id": "u5wmn7pnnjx4", "object_type": "charge_invoice", "site_id": "p9j1x", "event_type": "paid",
              "event_time": "2026-11-30T23:59:30Z", "uuid": "ab12"})
    def sign(keys, b, ms):
        sigs = [hm(hashlib.sha256, k.encode(), f"{ms}.".encode() + b).hex() for k in keys]
        return [["recurly-signature", ",".join([str(ms)] + sigs)], ["Content-Type", "application/json"]]
    ms = (NOW - 20) * 1000 + 123
    v = [vector("recurly valid", "recurly", [key], sign([key], body, ms), body, "valid"),
         vector("recurly valid, second of two signatures (key rotation)", "recurly", [key], sign([other, key], body, ms), body, "valid"),
         vector("recurly wrong key", "recurly", [key], sign([other], body, ms), body, "invalid"),
         vector("recurly tampered body", "recurly", [key], sign([key], body, ms), body.replace(b"paid", b"failed"), "invalid"),
         vector("recurly stale timestamp (5 min 1 s)", "recurly", [key], sign([key], body, (NOW - 301) * 1000), body, "invalid"),
         vector("recurly future timestamp (10 min)", "recurly", [key], sign([key], body, (NOW + 600) * 1000), body, "invalid"),
         vector("recurly timestamp only", "recurly", [key], [["recurly-signature", str(ms)]], body, "invalid"),
         vector("recurly empty header", "recurly", [key], [["recurly-signature", ""]], body, "invalid"),
         vector("recurly missing header", "recurly", [key], [["Content-Type", "application/json"]], body, "invalid")]
    h = sign([key], body, ms)
    h[0][1] = h[0][1][:40]
    v.append(vector("recurly truncated signature", "recurly", [key], h, body, "invalid"))
    h = sign([key], body, ms)
    h[0][1] = h[0][1].replace(str(ms), str(ms + 1000), 1)
    v.append(vector("recurly timestamp changed", "recurly", [key], h, body, "invalid"))
    return v


def sumsub():
    # https://docs.sumsub.com/docs/webhook-manager#verify-webhook-sender
    key, other = "sumsub-secret-key-7Xq", "sumsub-wrong"
    body = J({"applicantId": "5cb56e8e0a975a35f333cb83", "inspectionId": "5cb56e8e0a975a35f333cb84",
              "correlationId": "req-a260b669", "type": "applicantReviewed", "reviewStatus": "completed",
              "createdAtMs": "2026-11-30 23:59:30.123", "reviewResult": {"reviewAnswer": "GREEN"}})
    algs = {"HMAC_SHA1_HEX": hashlib.sha1, "HMAC_SHA256_HEX": hashlib.sha256, "HMAC_SHA512_HEX": hashlib.sha512}
    def sign(k, b, name, alg=None):
        return [["X-Payload-Digest", hm(alg or algs[name], k.encode(), b).hex()], ["X-Payload-Digest-Alg", name],
                ["Content-Type", "application/json"]]
    v = [vector(f"sumsub valid {n}", "sumsub", [key], sign(key, body, n), body, "valid") for n in algs]
    v += [vector("sumsub valid with the second of two secrets", "sumsub", [other, key], sign(key, body, "HMAC_SHA256_HEX"), body, "valid"),
          vector("sumsub wrong secret", "sumsub", [key], sign(other, body, "HMAC_SHA256_HEX"), body, "invalid"),
          vector("sumsub tampered body", "sumsub", [key], sign(key, body, "HMAC_SHA512_HEX"), body.replace(b"GREEN", b"RED"), "invalid"),
          vector("sumsub SHA-256 digest named as SHA-512", "sumsub", [key], sign(key, body, "HMAC_SHA512_HEX", hashlib.sha256), body, "invalid"),
          vector("sumsub unlisted algorithm name", "sumsub", [key], sign(key, body, "HMAC_MD5_HEX", hashlib.md5), body, "invalid"),
          vector("sumsub missing algorithm header", "sumsub", [key], sign(key, body, "HMAC_SHA256_HEX")[::2], body, "invalid"),
          vector("sumsub missing digest", "sumsub", [key], sign(key, body, "HMAC_SHA256_HEX")[1:], body, "invalid")]
    h = sign(key, body, "HMAC_SHA256_HEX")
    h[0][1] = ""
    v.append(vector("sumsub empty digest", "sumsub", [key], h, body, "invalid"))
    h = sign(key, body, "HMAC_SHA256_HEX")
    h[0][1] = h[0][1][:63]
    v.append(vector("sumsub truncated digest", "sumsub", [key], h, body, "invalid"))
    return v


def mandrill():
    # https://mailchimp.com/developer/transactional/guides/track-respond-activity-webhooks/#authenticating-webhook-requests
    # generateSignature($webhook_key, $url, $params): $signed_data = $url; ksort($params);
    # foreach ($params as $key => $value) { $signed_data .= $key; $signed_data .= $value; }
    # return base64_encode(hash_hmac('sha1', $signed_data, $webhook_key, true));
    key, other = "mandrill-webhook-key-Xy12", "mandrill-other"
    url = "https://hooks.example.com/webhooks/mandrill?route=a"
    events = json.dumps([{"event": "send", "_id": "exampleaaaaaaaaaaaaaaaaaaaaaaaaa", "ts": 1796025570,
                          "msg": {"email": "a+b@example.com", "subject": "Hi & bye"}}])
    def sign(k, params, u=url):
        data = u + "".join(name + value for name, value in sorted(params.items()))
        return b64(hm(hashlib.sha1, k.encode(), data.encode()))
    from urllib.parse import urlencode
    params = {"mandrill_events": events}
    body = urlencode(params).encode()
    form = ["Content-Type", "application/x-www-form-urlencoded"]
    two = {"mandrill_events": events, "extra": "x y"}
    body2 = urlencode(two).encode()
    v = [vector("mandrill valid", "mandrill", [key], [form, ["X-Mandrill-Signature", sign(key, params)]], body, "valid", url=url),
         vector("mandrill valid, two fields sorted by name", "mandrill", [key], [form, ["X-Mandrill-Signature", sign(key, two)]], body2, "valid", url=url),
         vector("mandrill wrong key", "mandrill", [key], [form, ["X-Mandrill-Signature", sign(other, params)]], body, "invalid", url=url),
         vector("mandrill tampered body", "mandrill", [key], [form, ["X-Mandrill-Signature", sign(key, params)]],
                body.replace(b"send", b"open"), "invalid", url=url),
         vector("mandrill other URL", "mandrill", [key], [form, ["X-Mandrill-Signature", sign(key, params, "https://evil.example.com/x")]], body, "invalid", url=url),
         vector("mandrill missing signature", "mandrill", [key], [form], body, "invalid", url=url),
         vector("mandrill empty signature", "mandrill", [key], [form, ["X-Mandrill-Signature", ""]], body, "invalid", url=url),
         vector("mandrill truncated signature", "mandrill", [key], [form, ["X-Mandrill-Signature", sign(key, params)[:20]]], body, "invalid", url=url)]
    # The recipe signs the decoded fields: another encoding of the same body is valid (the
    # gateway answers it as a duplicate of the first: its id is the signed string's digest).
    reencoded = body.replace(b"%5B", b"%5b").replace(b"%7B", b"%7b") + b"&"
    v.append(vector("mandrill valid, the body re-encoded", "mandrill", [key], [form, ["X-Mandrill-Signature", sign(key, params)]], reencoded, "valid", url=url))
    # Portcullis' policy, not the recipe's verdict: Mandrill POSTs url-encoded forms only, so a
    # multipart body (whose file parts no signature covers) and a field with an empty name
    # (which adds only its value to the signed string) are refused.
    mp = ("--B\r\nContent-Disposition: form-data; name=\"mandrill_events\"\r\n\r\n" + events + "\r\n--B--\r\n").encode()
    v.append(vector("mandrill multipart body refused", "mandrill", [key],
                    [["Content-Type", "multipart/form-data; boundary=B"], ["X-Mandrill-Signature", sign(key, params)]], mp, "invalid", url=url))
    empty = {"mandrill_events": events, "": "x"}
    v.append(vector("mandrill empty field name refused", "mandrill", [key], [form, ["X-Mandrill-Signature", sign(key, empty)]],
                    body + b"&=x", "invalid", url=url))
    return v


def mailgun_routes():
    # https://documentation.mailgun.com/docs/mailgun/user-manual/tracking-messages/#securing-webhooks
    key, other = "key-mg-routes-1b2c3d", "key-mg-other"
    def fields(k, ts, token):
        return {"timestamp": str(ts), "token": token, "signature": hm(hashlib.sha256, k.encode(), f"{ts}{token}".encode()).hex()}
    msg = {"recipient": "inbox@example.com", "sender": "bob@example.org", "subject": "Re: 1+1=2 & more",
           "body-plain": "Hello\r\nthere", "Message-Id": "<20261130.1@example.org>"}
    from urllib.parse import urlencode
    def urlenc(f):
        return [["Content-Type", "application/x-www-form-urlencoded"]], urlencode({**msg, **f}).encode()
    def multipart(f, boundary="----MailgunBoundary7d1"):
        parts = []
        for k, val in {**msg, **f}.items():
            parts.append(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{val}\r\n")
        parts.append(f"--{boundary}\r\nContent-Disposition: form-data; name=\"attachment-1\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\nfile bytes\r\n")
        return [["Content-Type", f"multipart/form-data; boundary={boundary}"]], ("".join(parts) + f"--{boundary}--\r\n").encode()
    tok = hashlib.sha256(b"mailgun routes token").hexdigest()[:50]
    good = fields(key, NOW - 5, tok)
    v = []
    def add(name, enc, f, expect, secrets=(key,)):
        h, b = enc(f)
        v.append(vector(f"mailgun-routes {name}", "mailgun-routes", list(secrets), h, b, expect))
    add("valid, url-encoded", urlenc, good, "valid")
    add("valid, multipart with an attachment", multipart, good, "valid")
    add("valid with the second of two keys", urlenc, good, "valid", secrets=(other, key))
    add("wrong key", urlenc, fields(other, NOW - 5, tok), "invalid")
    t = dict(good, token=tok[:-1] + ("1" if tok[-1] != "1" else "2"))
    add("token changed", multipart, t, "invalid")
    add("stale timestamp (301 s)", urlenc, fields(key, NOW - 301, tok), "invalid")
    add("future timestamp (1 h)", multipart, fields(key, NOW + 3600, tok), "invalid")
    add("empty signature", urlenc, dict(good, signature=""), "invalid")
    add("truncated signature", urlenc, dict(good, signature=good["signature"][:40]), "invalid")
    add("missing signature", urlenc, {k: x for k, x in good.items() if k != "signature"}, "invalid")
    # A field given twice: the first and the last could be read by different parsers.
    h, b = urlenc(good)
    v.append(vector("mailgun-routes token given twice", "mailgun-routes", [key], h, b + b"&token=" + tok.encode(), "invalid"))
    h, b = urlenc(good)
    v.append(vector("mailgun-routes JSON content type", "mailgun-routes", [key], [["Content-Type", "application/json"]], b, "invalid"))
    return v


# ---------------------------------------------------------------------------------------------
# Box (oracle: PyPI box-sdk-gen)

def box():
    import box_sdk_gen.managers.webhooks as wm
    from box_sdk_gen.internal.utils import compute_webhook_signature
    primary, secondary, wrong = "SamplePrimaryKey4v8Tn2", "SampleSecondaryKey9dQ1", "WrongKey000"
    body = json.dumps({"type": "webhook_event", "id": "0f46a6ca-86bf-44ab-8cf5-f08e1e02876b",
                       "created_at": "2026-11-30T15:59:30-08:00", "trigger": "FILE.UPLOADED",
                       "source": {"id": "1234567890", "type": "file", "name": "report.pdf"}})
    out = []
    def headers(ts, p_key=primary, s_key=secondary, b=body):
        h = {"box-delivery-timestamp": ts, "box-signature-version": "1", "box-signature-algorithm": "HmacSHA256"}
        if p_key:
            h["box-signature-primary"] = compute_webhook_signature(b, dict(h), p_key)
        if s_key:
            h["box-signature-secondary"] = compute_webhook_signature(b, dict(h), s_key)
        return h
    def add(name, h, expect, secrets=(primary, secondary), b=body):
        wm.get_epoch_time_in_seconds = lambda: NOW
        verdict = wm.WebhooksManager.validate_message(b, dict(h), secrets[0], secondary_key=secrets[1] if len(secrets) > 1 else None)
        check(expect, verdict, name)
        hl = [[k, x] for k, x in h.items()] + [["Content-Type", "application/json"]]
        out.append(vector(f"box (box-sdk-gen 1.17.0) {name}", "box", list(secrets), hl, b, expect))
    ts = rfc3339(NOW - 60, -480)
    add("valid, both headers", headers(ts), "valid")
    add("valid, only the secondary header", headers(ts, p_key=None), "valid")
    add("valid, primary rotated away: the secondary matches", headers(ts, p_key=wrong), "valid")
    add("valid, UTC timestamp", headers(rfc3339(NOW - 599).replace("+00:00", "Z")), "valid")
    add("wrong keys", headers(ts, p_key=wrong, s_key=wrong), "invalid")
    h = headers(ts)
    add("tampered body", h, "invalid", b=body.replace("report", "rep0rt"))
    add("stale timestamp (11 min)", headers(rfc3339(NOW - 660, -480)), "invalid")
    add("future timestamp (1 h)", headers(rfc3339(NOW + 3600, 60)), "invalid")
    h = headers(ts)
    h["box-delivery-timestamp"] = rfc3339(NOW - 30, -480)
    add("timestamp changed after signing", h, "invalid")
    add("no signature headers", headers(ts, p_key=None, s_key=None), "invalid")
    h = headers(ts, s_key=None)
    h["box-signature-primary"] = ""
    add("empty signature", h, "invalid")
    h = headers(ts, s_key=None)
    h["box-signature-primary"] = h["box-signature-primary"][:22]
    add("truncated signature", h, "invalid")
    return out


# ---------------------------------------------------------------------------------------------
# Braintree (oracle: PyPI braintree)

def braintree_vectors():
    import braintree
    from braintree.util.crypto import Crypto
    from urllib.parse import urlencode
    private, other = "integration_private_key", "some_other_private_key"
    def gw(priv):
        return braintree.BraintreeGateway(braintree.Configuration(
            braintree.Environment.Sandbox, merchant_id="integration_merchant_id",
            public_key="integration_public_key", private_key=priv))
    secret = lambda priv: hashlib.sha1(priv.encode()).hexdigest()
    xml = ("<notification><timestamp type=\"datetime\">2026-11-30T07:59:30Z</timestamp>"
           "<kind>subscription_went_past_due</kind><subject><subscription><id>sub_1</id></subscription></subject></notification>")
    payload = base64.encodebytes(xml.encode()).decode()  # with newlines, as Braintree posts it
    out = []
    def add(name, fields, expect, routes=(private,), oracle=private, raw=None):
        try:
            gw(oracle).webhook_notification.parse(fields.get("bt_signature"), fields.get("bt_payload"))
            verdict = True
        except Exception:
            verdict = False
        check(expect, verdict, name)
        body = raw if raw is not None else urlencode(fields).encode()
        out.append(vector(f"braintree (braintree 4.48.0) {name}", "braintree", [secret(r) for r in routes],
                          [["Content-Type", "application/x-www-form-urlencoded"]], body, expect))
    sig = lambda priv, pl=payload: Crypto.sha1_hmac_hash(priv, pl)
    add("valid", {"bt_signature": f"integration_public_key|{sig(private)}", "bt_payload": payload}, "valid")
    add("valid, matching pair second", {"bt_signature": f"old_public_key|{sig(other)}&integration_public_key|{sig(private)}",
                                        "bt_payload": payload}, "valid")
    add("valid with the second of two keys", {"bt_signature": f"integration_public_key|{sig(private)}", "bt_payload": payload},
        "valid", routes=(other, private))
    add("wrong private key", {"bt_signature": f"integration_public_key|{sig(other)}", "bt_payload": payload}, "invalid")
    tampered = base64.encodebytes(xml.replace("past_due", "canceled").encode()).decode()
    add("tampered payload", {"bt_signature": f"integration_public_key|{sig(private)}", "bt_payload": tampered}, "invalid")
    add("truncated signature", {"bt_signature": f"integration_public_key|{sig(private)[:20]}", "bt_payload": payload}, "invalid")
    add("empty signature", {"bt_signature": "integration_public_key|", "bt_payload": payload}, "invalid")
    add("missing signature", {"bt_payload": payload}, "invalid")
    return out


# ---------------------------------------------------------------------------------------------

def main():
    vectors = []
    for gen in (adyen, box, braintree_vectors, zendesk, docusign, recurly, sumsub, mandrill, mailgun_routes):
        vectors.extend(gen())
    json.dump(vectors, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
