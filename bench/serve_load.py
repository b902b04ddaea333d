"""serve_load.py - the load test of `uniformaly serve` (make bench, issue 14).

Why: a service must hold up under steady concurrent load without errors or memory growth.
N requests (default 10,000) from C concurrent keep-alive clients (default 16) over loopback
POST the given images in turn to /v1/predict of a running server; reports errors, requests
per second, p50 / p99 latency and the server's resident memory after the first and after
the last thousand requests. Standard library only. Bounded by --max-seconds.
Exit status 1 if any request failed, RSS grew by 5% or more, or time ran out.

    python3 bench/serve_load.py --port P --pid PID [--requests N] [--clients C] IMAGE...
"""
import argparse
import http.client
import sys
import threading
import time


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--requests", type=int, default=10000)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--max-seconds", type=float, default=900)
    ap.add_argument("images", nargs="+")
    a = ap.parse_args()
    bodies = [open(p, "rb").read() for p in a.images]
    lock = threading.Lock()
    state = {"next": 0, "done": 0, "errors": 0, "first_err": None, "rss": {}}
    lat = [0.0] * a.requests
    t_end = time.monotonic() + a.max_seconds

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=60)
        while True:
            with lock:
                i = state["next"]
                if i >= a.requests or time.monotonic() > t_end:
                    break
                state["next"] += 1
            t0 = time.perf_counter()
            ok = False
            try:
                conn.request("POST", "/v1/predict", body=bodies[i % len(bodies)])
                r = conn.getresponse()
                data = r.read()
                ok = r.status == 200 and data.startswith(b'{"image"')
                err = None if ok else "%d %r" % (r.status, data[:200])
            except (OSError, http.client.HTTPException) as e:
                err = repr(e)
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=60)
            lat[i] = time.perf_counter() - t0
            with lock:
                state["done"] += 1
                if not ok:
                    state["errors"] += 1
                    state["first_err"] = state["first_err"] or err
                d = state["done"]
                if d == 1000 or d == a.requests:  # after the first and the last thousand
                    state["rss"][d] = rss_kb(a.pid)
        conn.close()

    t0 = time.monotonic()
    ts = [threading.Thread(target=client) for _ in range(a.clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall = time.monotonic() - t0
    done = state["done"]
    ls = sorted(lat[:done])
    pct = lambda q: ls[min(len(ls) - 1, int(q * len(ls)))] * 1e3 if ls else float("nan")
    r1, r2 = state["rss"].get(1000, 0), state["rss"].get(a.requests, 0)
    growth = (r2 - r1) / r1 * 100 if r1 else float("nan")
    print("serve load: %d requests, %d clients, %d errors, %.1f s, %.0f req/s, latency p50 %.2f ms, "
          "p99 %.2f ms; server RSS %.1f MB after 1000, %.1f MB after %d (%+.2f%%)"
          % (done, a.clients, state["errors"], wall, done / wall, pct(0.5), pct(0.99), r1 / 1e3,
             r2 / 1e3, a.requests, growth))
    bad = []
    if done < a.requests:
        bad.append("only %d of %d requests within %.0f s" % (done, a.requests, a.max_seconds))
    if state["errors"]:
        bad.append("%d errors, first: %s" % (state["errors"], state["first_err"]))
    if not (growth < 5):
        bad.append("RSS grew %.2f%% (limit 5%%)" % growth)
    for b in bad:
        print("serve load: FAIL " + b)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
