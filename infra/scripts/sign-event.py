#!/usr/bin/env python3
"""Sign (or check) the x-signature header of an API Gateway v2 sample event.

The Instantly webhook accepts `x-signature: sha256=<hex>`, the lowercase hex
HMAC-SHA256 of the exact raw request body, keyed with the shared secret.
This script recomputes that header for an event file in place:

    infra/scripts/sign-event.py events/instantly-reply/native.json
    infra/scripts/sign-event.py events/instantly-reply/native.json my-secret
    infra/scripts/sign-event.py --check events/instantly-reply/*.json

The signed bytes are the UTF-8 bytes of the event's `body` string (or the
decoded bytes when `isBase64Encoded` is true), which is exactly what
lambda_http hands the handler as `req.body()`. The body itself is never
re-serialised: edit it, then re-sign. A `content-length` header, if present,
is updated to the body's byte length. The file is rewritten as JSON with a
2-space indent and non-ASCII characters kept as they are.

With --check nothing is written: each file's x-signature is compared with
the expected value (files without an x-signature are reported and skipped)
and the exit status is 1 if any differs. Stdlib only.

Other sources sign into another header, without the `sha256=` prefix. Cal.com
(`x-cal-signature-256`, bare lowercase hex; its sample secret,
test-calcom-secret, is the default for that header):

    infra/scripts/sign-event.py --header x-cal-signature-256 --no-prefix events/calcom-booking/*.json
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import sys
import tempfile

DEFAULT_SECRET = "test-instantly-secret"
HEADER = "x-signature"
# The sample secret of each other signature header (see events/README.md).
DEFAULT_SECRETS = {"x-cal-signature-256": "test-calcom-secret"}


def body_bytes(event: dict) -> bytes:
    body = event.get("body")
    if not isinstance(body, str):
        raise ValueError("event has no string 'body'")
    if event.get("isBase64Encoded"):
        return base64.b64decode(body, validate=True)
    return body.encode("utf-8")


def signature(raw: bytes, secret: str, prefix: str = "sha256=") -> str:
    return prefix + hmac.new(secret.encode("utf-8"), raw, hashlib.sha256).hexdigest()


def load(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        event = json.load(f)
    if not isinstance(event, dict):
        raise ValueError("not a JSON object")
    return event


def write(path: str, event: dict) -> None:
    text = json.dumps(event, indent=2, ensure_ascii=False) + "\n"
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".sign-event.", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def sign(path: str, secret: str, header: str = HEADER, prefix: str = "sha256=") -> str:
    event = load(path)
    raw = body_bytes(event)
    headers = event.get("headers")
    if headers is None:
        headers = event["headers"] = {}
    if not isinstance(headers, dict):
        raise ValueError("'headers' is not an object")
    # Header names are case-insensitive: drop variants so only one remains.
    for name in [n for n in headers if n.lower() == header and n != header]:
        del headers[name]
    value = signature(raw, secret, prefix)
    headers[header] = value
    if "content-length" in headers:
        headers["content-length"] = str(len(raw))
    write(path, event)
    return value


def check(path: str, secret: str, header: str = HEADER, prefix: str = "sha256=") -> bool:
    event = load(path)
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    got = headers.get(header)
    if got is None:
        print(f"{path}: no {header} header (skipped)")
        return True
    want = signature(body_bytes(event), secret, prefix)
    ok = hmac.compare_digest(got, want)
    print(f"{path}: {'OK' if ok else 'MISMATCH'} {got}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="verify instead of writing; exit 1 on any mismatch")
    parser.add_argument("files", nargs="+", metavar="EVENT_FILE")
    parser.add_argument("--secret", default=None,
                        help=f"HMAC key (default {DEFAULT_SECRET!r}, or the header's sample secret "
                             "in DEFAULT_SECRETS); may also be "
                             "given as the last positional argument when signing one file")
    parser.add_argument("--header", default=HEADER, type=str.lower,
                        help=f"header that carries the signature (default {HEADER!r})")
    parser.add_argument("--no-prefix", action="store_true",
                        help="bare hex, without the 'sha256=' prefix (Cal.com's x-cal-signature-256)")
    args = parser.parse_args()
    prefix = "" if args.no_prefix else "sha256="

    files, secret = args.files, args.secret
    # `sign-event.py FILE SECRET`: a second positional that is not a file is the secret.
    if secret is None and len(files) == 2 and not os.path.exists(files[1]):
        files, secret = files[:1], files[1]
    if secret is None:
        secret = DEFAULT_SECRETS.get(args.header, DEFAULT_SECRET)

    status = 0
    for path in files:
        try:
            if args.check:
                if not check(path, secret, args.header, prefix):
                    status = 1
            else:
                print(f"{path}: {sign(path, secret, args.header, prefix)}")
        except (OSError, ValueError) as e:
            print(f"{path}: error: {e}", file=sys.stderr)
            status = 2
    return status


if __name__ == "__main__":
    sys.exit(main())
