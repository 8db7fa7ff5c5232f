#!/usr/bin/env python3
"""Soak driver for `make soak`: mixed traffic against a local runner on
loopback, bounded in time and rate, printing per interval the requests,
errors, p50/p99 latency and the runner's RSS. Figures only, no assertions.

Mix: 50 % new Instantly replies (POST, shared-secret header), 10 % the same
reply again (a duplicate: 409 is the right answer), 30 % GET /crm/contacts
with an HS256 token, 10 % GET /health. An error is a transport failure or a
5xx. Stdlib only.

    soak.py BASE_URL PID SECONDS RATE INTERVAL
"""

import base64, hashlib, hmac, json, os, random, sys, threading, time
import urllib.error, urllib.request
from concurrent.futures import ThreadPoolExecutor

base, pid = sys.argv[1], int(sys.argv[2])
seconds, rate, interval = float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
assert base.startswith("http://127.0.0.1:"), "loopback only"
secret = os.environ.get("HMAC_SHARED_SECRET_INSTANTLY", "soak-secret")
jwt_secret = os.environ.get("JWT_SECRET", "soak-jwt-secret-0123456789abcdef0123")
run = str(time.time_ns())


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def token():
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps({"sub": "soak", "role": "admin", "exp": int(time.time()) + 3600}).encode())
    sig = b64(hmac.new(jwt_secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest())
    return f"{head}.{body}.{sig}"


bearer = token()
counter = iter(range(10**9))
lock = threading.Lock()
sent_ids = []


def reply(n):
    return json.dumps({"event_type": "reply_received", "timestamp": "2026-11-20T14:03:00Z",
        "campaign_id": "soak", "campaign_name": "Soak", "lead_email": f"lead-{run}-{n}@soak.example.com",
        "email_account": "sdr@ourco.io", "reply_text": "Interested, can we talk next week?",
        "reply_subject": "Re: hello", "email_id": f"soak-{run}-{n}", "first_name": "Soak", "last_name": "Lead"}).encode()


def one():
    r = random.random()
    if r < 0.6:
        with lock:
            n = next(counter) if (r < 0.5 or not sent_ids) else random.choice(sent_ids)
            if n not in sent_ids[-1000:]:
                sent_ids.append(n)
        req = urllib.request.Request(base + "/crm/webhooks/instantly/reply", data=reply(n), method="POST",
            headers={"Content-Type": "application/json", "X-Webhook-Secret": secret})
    elif r < 0.9:
        req = urllib.request.Request(base + "/crm/contacts?limit=20", headers={"Authorization": f"Bearer {bearer}"})
    else:
        req = urllib.request.Request(base + "/health")
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            resp.read()
            status = resp.status
    except urllib.error.HTTPError as e:
        status = e.code
    except Exception:
        status = 0
    return status, (time.perf_counter() - started) * 1000


def rss_mib():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def pct(xs, p):
    if not xs:
        return 0.0
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))]


start_rss = rss_mib()
print(f"soak: {seconds:.0f} s at {rate:.0f} req/s, intervals of {interval:.0f} s; RSS at start {start_rss:.1f} MiB")
print(f"{'t(s)':>6} {'requests':>9} {'errors':>7} {'p50 ms':>8} {'p99 ms':>8} {'RSS MiB':>8}")
total = errors = 0
all_lat = []
codes = {}
t0 = time.monotonic()
with ThreadPoolExecutor(max_workers=64) as pool:
    next_at = t0
    window_end = t0 + interval
    futures = []
    while time.monotonic() - t0 < seconds:
        now = time.monotonic()
        if now < next_at:
            time.sleep(next_at - now)
        futures.append(pool.submit(one))
        next_at += 1.0 / rate
        if time.monotonic() >= window_end:
            done = [f.result() for f in futures]
            futures = []
            lat = [l for _, l in done]
            errs = sum(1 for s, _ in done if s == 0 or s >= 500)
            for s, _ in done:
                codes[s] = codes.get(s, 0) + 1
            total += len(done); errors += errs; all_lat += lat
            print(f"{time.monotonic() - t0:6.0f} {len(done):9d} {errs:7d} {pct(lat, 50):8.1f} {pct(lat, 99):8.1f} {rss_mib():8.1f}")
            window_end += interval
    for f in futures:
        s, l = f.result()
        total += 1; errors += s == 0 or s >= 500; all_lat.append(l)
        codes[s] = codes.get(s, 0) + 1
print(f"total: {total} requests, {errors} errors, p50 {pct(all_lat, 50):.1f} ms, p99 {pct(all_lat, 99):.1f} ms; "
      f"RSS {start_rss:.1f} -> {rss_mib():.1f} MiB; status codes {dict(sorted(codes.items()))}")
