#!/usr/bin/env python3
"""Generates tests/vectors/catalog-fmt.json: vectors for helper `fmt`'s profiles, each verdict
taken from a source outside portcullis.

Oracles, per provider (versions pinned in tests/vectors/requirements-fmt.txt):
- adyen: PyPI `Adyen` 16.0.0, `Adyen.util.generate_notification_sig` signs and
  `Adyen.util.is_valid_hmac_notification` gives every verdict; plus the library's own test
  example (HmacSignatureTest, already in catalog.json).
- zendesk: no SDK; the documented recipe base64(HMACSHA256(TIMESTAMP + BODY)) of
  https://developer.zendesk.com/documentation/webhooks/verifying/ (see zendesk_sign).

usage: /work/venv/bin/python tests/vectors/gen_fmt.py > tests/vectors/catalog-fmt.json
Deterministic: fixed keys, bodies and times.
"""
import base64, copy, hashlib, hmac, json, sys

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

def main():
    vectors = []
    for gen in (adyen,):
        vectors.extend(gen())
    json.dump(vectors, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
