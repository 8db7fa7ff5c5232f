#!/usr/bin/env python3
"""Sign (or check) the x-twilio-signature header of an API Gateway v2 sample event.

Twilio signs base64(HMAC-SHA1(auth token, URL + every POST parameter name
and value, sorted by name)), where URL is the full URL it called. The
twilio-webhook function rebuilds that URL as PUBLIC_BASE_URL + rawPath
(+ "?" + rawQueryString), so this script does the same:

    infra/scripts/sign-twilio-event.py events/twilio-webhook/inbound-sms.json
    infra/scripts/sign-twilio-event.py --token my-token --base-url https://crm.example.com FILE...
    infra/scripts/sign-twilio-event.py --check events/twilio-webhook/*.json

Defaults are what the tests use: token test-twilio-token, base URL
https://crm.example.com. The body (decoded when isBase64Encoded) is never
re-serialised: edit it, then re-sign. With --check nothing is written and
the exit status is 1 if a signature differs (bad-signature.json is meant to).
Stdlib only.
"""

import argparse
import base64
import hashlib
import hmac
import json
import sys
import urllib.parse


def expected(event, token, base_url):
    body = event.get("body") or ""
    raw = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode()
    params = urllib.parse.parse_qsl(raw.decode(), keep_blank_values=True)
    url = base_url.rstrip("/") + event["rawPath"]
    if event.get("rawQueryString"):
        url += "?" + event["rawQueryString"]
    data = url + "".join(k + v for k, v in sorted(params, key=lambda kv: kv[0]))
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+")
    ap.add_argument("--token", default="test-twilio-token")
    ap.add_argument("--base-url", default="https://crm.example.com")
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    status = 0
    for path in args.files:
        with open(path, encoding="utf-8") as f:
            event = json.load(f)
        sig = expected(event, args.token, args.base_url)
        if args.check:
            ok = event.get("headers", {}).get("x-twilio-signature") == sig
            print(f"{'ok ' if ok else 'BAD'} {path}")
            status |= 0 if ok else 1
            continue
        event.setdefault("headers", {})["x-twilio-signature"] = sig
        with open(path, "w", encoding="utf-8") as f:
            json.dump(event, f, indent=2, ensure_ascii=False)
            f.write("\n")
        print(f"signed {path}")
    sys.exit(status)


if __name__ == "__main__":
    main()
