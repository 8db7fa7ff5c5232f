#!/usr/bin/env python3
"""Cold starts of release binaries against a local Lambda Runtime API.

For each function: spawn target/release/<fn> with AWS_LAMBDA_RUNTIME_API
pointing here, hand it the first events/<fn>/*.json on its first
`GET /invocation/next`, wait for the response (or error), read its peak RSS
(VmHWM) and stop it. Repeated RUNS times (default 5); prints p50 init
(spawn -> first /next), p50 first invoke (event handed out -> answer), max
peak RSS and the binary size. Used by `make coldstart` (coldstart.sh sets the
environment). An init error posted to /init/error is printed and counts as a
failed run.
"""
import http.server
import json
import os
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
RUNS = int(os.environ.get("RUNS", "5"))
TIMEOUT = float(os.environ.get("COLDSTART_TIMEOUT_S", "20"))


class State:
    def __init__(self, event):
        self.event = event
        self.handed = False
        self.t_next = None
        self.t_done = None
        self.outcome = None
        self.done = threading.Event()


def make_handler(state):
    class H(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def _body(self):
            n = int(self.headers.get("content-length") or 0)
            return self.rfile.read(n) if n else b""

        def do_GET(self):
            if not self.path.endswith("/runtime/invocation/next"):
                self.send_response(404)
                self.end_headers()
                return
            if state.handed:
                # The next invocation never comes: the run is over.
                state.done.wait(TIMEOUT)
                self.send_response(500)
                self.end_headers()
                return
            state.handed = True
            state.t_next = time.monotonic()
            body = state.event
            self.send_response(200)
            self.send_header("Lambda-Runtime-Aws-Request-Id", "coldstart-1")
            self.send_header("Lambda-Runtime-Deadline-Ms", str(int((time.time() + 60) * 1000)))
            self.send_header(
                "Lambda-Runtime-Invoked-Function-Arn",
                "arn:aws:lambda:us-east-1:123456789012:function:coldstart",
            )
            self.send_header("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            body = self._body()
            if self.path.endswith("/response"):
                state.outcome = "ok"
            elif self.path.endswith("/init/error"):
                state.outcome = "init error: " + body.decode(errors="replace")[:200]
            else:
                state.outcome = "error: " + body.decode(errors="replace")[:200]
            state.t_done = time.monotonic()
            self.send_response(202)
            self.end_headers()
            state.done.set()

    return H


def peak_rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def one_run(binary, event):
    state = State(event)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = dict(os.environ)
    env["AWS_LAMBDA_RUNTIME_API"] = f"127.0.0.1:{server.server_address[1]}"
    env.setdefault("AWS_LAMBDA_FUNCTION_NAME", "coldstart")
    env.setdefault("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
    env.setdefault("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
    t0 = time.monotonic()
    proc = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    state.done.wait(TIMEOUT)
    rss = peak_rss_kb(proc.pid)
    proc.kill()
    _, err = proc.communicate()
    server.shutdown()
    if state.outcome is None:
        state.outcome = "no answer: " + err.decode(errors="replace").strip()[-200:]
    init_ms = (state.t_next - t0) * 1000 if state.t_next else None
    invoke_ms = (state.t_done - state.t_next) * 1000 if state.t_done and state.t_next else None
    return init_ms, invoke_ms, rss, state.outcome


def main():
    functions = sys.argv[1:] or sorted(os.listdir(os.path.join(ROOT, "functions")))
    print(f"{'function':<20} {'init p50 ms':>11} {'invoke p50 ms':>13} {'peak RSS MB':>11} {'size MB':>8}  event / outcome")
    for fn in functions:
        binary = os.path.join(ROOT, "target", os.environ.get("COLDSTART_PROFILE", "release"), fn)
        if not os.path.isfile(binary):
            print(f"{fn:<20} {'-':>11} {'-':>13} {'-':>11} {'-':>8}  no {binary} (cargo build --release --bins)")
            continue
        events_dir = os.path.join(ROOT, "events", fn)
        names = sorted(n for n in os.listdir(events_dir) if n.endswith(".json")) if os.path.isdir(events_dir) else []
        event = open(os.path.join(events_dir, names[0]), "rb").read() if names else b"{}"
        inits, invokes, rsss, outcomes = [], [], [], []
        for _ in range(RUNS):
            i, v, r, o = one_run(binary, event)
            if i is not None:
                inits.append(i)
            if v is not None:
                invokes.append(v)
            if r is not None:
                rsss.append(r)
            outcomes.append(o)
        size = os.path.getsize(binary) / 1e6
        p50 = lambda xs: f"{statistics.median(xs):.1f}" if xs else "-"
        rss = f"{max(rsss) / 1024:.1f}" if rsss else "-"
        worst = next((o for o in outcomes if o != "ok"), "ok")
        print(f"{fn:<20} {p50(inits):>11} {p50(invokes):>13} {rss:>11} {size:>8.1f}  {names[0] if names else '{}'} / {worst}")


if __name__ == "__main__":
    main()
