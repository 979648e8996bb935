#!/usr/bin/env python3
"""Soak: mixed load through the proxy for a long time, with short-lived
credentials and a control-plane fault every minute (issue 8).

Setup (inside a private network namespace, loopback only): the ACR-like
registry of tests/support/acr_like.py (docker-registry with `auth: token`,
a realm accepting only the fake ACR's temporary passwords, fake IMDS / STS /
ACR OpenAPI, blob 307s to a signed OSS stand-in), REPOS repositories each
holding a small two-layer image, and the proxy with the fake ECS RAM role,
`followRedirects: true` (blob bytes flow through it), registry tokens that
live TOKEN_LIFE_S seconds and temporary passwords that live PASSWORD_LIFE_S
(refreshed EXPIRING_THRESHOLD before expiry).

Load: WORKERS threads, each with its own keep-alive connection, loop over
  70 %  manifest GET of a random repository (digest checked),
  25 %  blob GET of a random layer or config through the 307 (sha256 checked),
   5 %  cold scope: a manifest GET in a repository never asked for before
        (a new token scope; the registry answers 404 NAME_UNKNOWN or
        MANIFEST_UNKNOWN, which is the right answer).

Faults, one per minute (first after 30 s; --fault-every changes it), in turn:
  acr-down       ACR OpenAPI answers 503 for 8 s
  imds-down      ECS metadata answers 503 for 8 s
  realm-slow     the next 30 realm requests take 1.5 s
  acr-garbage    the next 3 GetAuthorizationToken calls answer 200 with a
                 body that is not the documented JSON
  realm-500      the next 2 realm requests answer 500
Every one is something the proxy must ride out with the credentials it still
holds. Expected failures are only: a 502 for a request whose token fetch got
one of realm-500's injected answers (counted, bounded by the injected count).
Anything else - another status, a wrong byte, a dropped connection - is an
unexpected failure.

Pass criteria: zero unexpected failures; the proxy's RSS at the end is less
than 1 MiB above its RSS after warm-up (medians of 3 samples, 5 s apart);
its fd count over the last quarter is no higher than over the first quarter
after warm-up (+2 for pooled upstream connections in flight); it is alive,
ready, and exits 0 on SIGTERM.

Usage: soak.py --proxy BUILD/proxy/acr-credential-proxy [--seconds N]
(scripts/soak runs 1800 s; scripts/test runs 120 s.)
"""

import argparse
import json
import os
import random
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))

import acr_like  # noqa: E402
import harness  # noqa: E402
import oci_image  # noqa: E402
import proxy as proxy_mod  # noqa: E402
from oci_image import LayerSpec  # noqa: E402

REPOS = 8
WORKERS = 6
TOKEN_LIFE_S = 4
PASSWORD_LIFE_S = 40
EXPIRING_THRESHOLD = "20s"
WARMUP_S = 20
SAMPLE_S = 5
FAULT_EVERY_S = 60
FIRST_FAULT_S = 30
FAULTS = ("acr-down", "imds-down", "realm-slow", "acr-garbage", "realm-500")
REALM_500_COUNT = 2


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--proxy", required=True)
    ap.add_argument("--seconds", type=int, default=1800)
    ap.add_argument("--fault-every", type=int, default=FAULT_EVERY_S,
                    help="seconds between control-plane faults (default 60; scripts/test's 2-minute run uses 20 "
                         "so every kind of fault happens once)")
    return ap.parse_args()


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.ok = {"manifest": 0, "blob": 0, "cold": 0}
        self.bytes = 0
        self.expected = []  # (t, what)
        self.unexpected = []  # (t, what)
        self.statuses = {}

    def count(self, kind, status, nbytes=0):
        with self.lock:
            self.ok[kind] += 1
            self.bytes += nbytes
            self.statuses[status] = self.statuses.get(status, 0) + 1

    def fail(self, t, what, expected=False):
        with self.lock:
            (self.expected if expected else self.unexpected).append((round(t, 1), what))


class Soak:
    def __init__(self, args):
        self.args = args
        self.tmp = harness.TempDir("acp-soak-")
        self.stats = Stats()
        self.stop = threading.Event()
        self.started = None
        self.realm_500_until = 0.0  # monotonic: 502s from the realm are expected until then
        self.fault_log = []
        self.samples = []  # (t, rss_kib, fds)
        self.cold_counter = 0
        self.cold_lock = threading.Lock()

    # -- setup -------------------------------------------------------------

    def setup(self):
        self.acr = acr_like.AcrLike(self.tmp.join("acr"), password_lifetime_s=PASSWORD_LIFE_S,
                                    token_lifetime_s=TOKEN_LIFE_S)
        self.acr.start()
        image = oci_image.build_image(self.tmp.join("layout"), [LayerSpec(1 << 20, 2), LayerSpec(96 << 10, 3)],
                                      tag="v1", seed="soak")
        self.repos = [f"soak/app-{i}" for i in range(REPOS)]
        for repo in self.repos:
            self.acr.upload_image(image, repo, "v1")
        self.manifest = image.manifest
        self.blobs = {b.digest: b for b in image.blobs()}
        cfg = self.acr.proxy_config(followRedirects=True, log={"level": "debug", "format": "text"})
        cfg["expiringThreshold"] = EXPIRING_THRESHOLD
        cfg.setdefault("alibaba", {}).update({"refreshBackoffInitial": "500ms", "refreshBackoffMax": "2s"})
        self.proxy = proxy_mod.Proxy(self.args.proxy, self.tmp.join("proxy"), cfg, env=self.acr.proxy_env())
        self.proxy.start()
        harness.wait_until(lambda: self.proxy.admin("/readyz").status == 200, 30, "proxy /readyz")

    def teardown(self):
        for name in ("proxy", "acr"):
            obj = getattr(self, name, None)
            if obj is not None:
                try:
                    obj.stop()
                except Exception as e:  # noqa: BLE001 - report, go on stopping the rest
                    print(f"stopping {name}: {e}", flush=True)
        self.tmp.cleanup()

    # -- load --------------------------------------------------------------

    def now(self):
        return time.monotonic() - self.started

    def worker(self, seed):
        rng = random.Random(seed)
        client = self.proxy.client(timeout=30)
        ns = acr_like.DOMAIN
        while not self.stop.is_set():
            roll = rng.random()
            t = self.now()
            try:
                if roll < 0.70:
                    repo = rng.choice(self.repos)
                    r = client.request("GET", f"/v2/{repo}/manifests/v1?ns={ns}",
                                       [("Accept", self.manifest.media_type)])
                    if r.status == 200 and r.sha256() == self.manifest.digest:
                        self.stats.count("manifest", 200, len(r.body))
                    else:
                        self.judge(t, f"manifest {repo}: {r.status} {r.body[:160]!r}", r.status, r.body)
                elif roll < 0.95:
                    repo = rng.choice(self.repos)
                    digest = rng.choice(list(self.blobs))
                    r = client.request("GET", f"/v2/{repo}/blobs/{digest}?ns={ns}")
                    if r.status == 200 and r.sha256() == digest:
                        self.stats.count("blob", 200, len(r.body))
                    else:
                        self.judge(t, f"blob {digest[:19]}: {r.status} {len(r.body)} bytes", r.status, r.body)
                else:
                    with self.cold_lock:
                        self.cold_counter += 1
                        n = self.cold_counter
                    r = client.request("GET", f"/v2/soak/cold-{seed}-{n}/manifests/v1?ns={ns}")
                    if r.status == 404 and (b"NAME_UNKNOWN" in r.body or b"MANIFEST_UNKNOWN" in r.body):
                        self.stats.count("cold", 404)
                    else:
                        self.judge(t, f"cold scope {n}: {r.status} {r.body[:160]!r}", r.status, r.body)
            except Exception as e:  # noqa: BLE001 - any transport error is an unexpected failure
                client.close()
                self.stats.fail(t, f"{type(e).__name__}: {e}")

    def judge(self, t, what, status, body):
        expected = (status == 502 and time.monotonic() < self.realm_500_until and b"realm" in body)
        self.stats.fail(t, what, expected=expected)

    # -- faults --------------------------------------------------------------

    def fault(self, name):
        t = self.now()
        fake, tr = self.acr.fake, self.acr.tr
        if name == "acr-down":
            fake.configure({"down": {"acr": True}})
            self.stop.wait(8)
            fake.configure({"down": {"acr": False}})
        elif name == "imds-down":
            fake.configure({"down": {"imds": True}})
            self.stop.wait(8)
            fake.configure({"down": {"imds": False}})
        elif name == "realm-slow":
            tr.inject("ok", count=30, delay=1.5)
        elif name == "acr-garbage":
            fake.configure({"fail": {"GetAuthorizationToken": [
                {"status": 200, "body": "<html>maintenance</html>"}] * 3}})
        elif name == "realm-500":
            # Requests waiting on these fetches may fail with 502 until a fetch succeeds.
            self.realm_500_until = time.monotonic() + 30
            tr.fail(count=REALM_500_COUNT, status=500)
        self.fault_log.append((round(t, 1), name))
        print(f"  t={t:6.1f}s fault {name}", flush=True)

    # -- sampling ------------------------------------------------------------

    def sample(self):
        pid = self.proxy.child.pid
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        self.samples.append((round(self.now(), 1), self.proxy.rss_kib(), fds))

    # -- the run ---------------------------------------------------------------

    def run(self):
        self.started = time.monotonic()
        threads = [threading.Thread(target=self.worker, args=(i,), daemon=True) for i in range(WORKERS)]
        for th in threads:
            th.start()
        end = self.args.seconds
        next_fault, fault_i, next_sample = min(FIRST_FAULT_S, self.args.fault_every + 5), 0, WARMUP_S
        while self.now() < end:
            if not self.proxy.child.alive():
                self.stats.fail(self.now(), "the proxy died")
                break
            if self.now() >= next_sample:
                self.sample()
                next_sample += SAMPLE_S
            if self.now() >= next_fault:
                self.fault(FAULTS[fault_i % len(FAULTS)])
                fault_i += 1
                next_fault += self.args.fault_every
            self.stop.wait(0.2)
        self.stop.set()
        for th in threads:
            th.join(60)
        self.acr.tr.clear_faults()
        self.sample()

    def verdict(self):
        s = self.stats
        problems = []
        total = sum(s.ok.values())
        print(f"soak: {self.args.seconds} s, {WORKERS} workers, {total} requests answered as expected "
              f"({s.ok['manifest']} manifests, {s.ok['blob']} blobs, {s.ok['cold']} cold scopes), "
              f"{s.bytes / 1e6:.0f} MB", flush=True)
        print(f"  faults: {', '.join(f'{n}@{t}s' for t, n in self.fault_log) or 'none'}", flush=True)
        realm = self.acr.tr.stats()
        print(f"  registry tokens issued by the realm: {realm.get('tokens_issued')} "
              f"(each lives {TOKEN_LIFE_S} s); ACR temporary passwords issued: "
              f"{len(self.acr.fake.token_calls())}", flush=True)
        print(f"  expected failures (502 while realm-500 was injected): {len(s.expected)}", flush=True)
        if len(s.expected) > REALM_500_COUNT * WORKERS:
            problems.append(f"{len(s.expected)} expected-kind failures, more than realm-500 can explain")
        if s.unexpected:
            problems.append(f"{len(s.unexpected)} unexpected failures, first: {s.unexpected[:5]}")
        if total == 0:
            problems.append("no request succeeded")
        warm = [x for x in self.samples if x[0] >= WARMUP_S]
        if len(warm) >= 6:
            first, last = warm[:3], warm[-3:]
            rss0, rss1 = statistics.median(x[1] for x in first), statistics.median(x[1] for x in last)
            q = max(1, len(warm) // 4)
            fd0, fd1 = max(x[2] for x in warm[:q]), max(x[2] for x in warm[-q:])
            print(f"  RSS after warm-up {rss0 / 1024:.1f} MiB, at the end {rss1 / 1024:.1f} MiB "
                  f"(growth {(rss1 - rss0):+.0f} KiB, bound < 1024); fds first quarter max {fd0}, "
                  f"last quarter max {fd1}", flush=True)
            step = max(1, len(warm) // 40)  # at most ~40 shown; the bounds above use all of them
            print(f"  RSS min/max after warm-up {min(x[1] for x in warm)}/{max(x[1] for x in warm)} KiB over "
                  f"{len(warm)} samples; every {step}. (t s, RSS KiB, fds): "
                  + " ".join(f"{t}/{r}/{f}" for t, r, f in warm[::step]), flush=True)
            if rss1 - rss0 >= 1024:
                problems.append(f"RSS grew {rss1 - rss0} KiB after warm-up (bound < 1024)")
            if fd1 > fd0 + 2:
                problems.append(f"fd count rose from {fd0} to {fd1}")
        else:
            problems.append(f"only {len(warm)} samples after warm-up (run longer than {WARMUP_S + 6 * SAMPLE_S} s)")
        if self.proxy.child.alive():
            ready = self.proxy.admin("/readyz").status
            if ready != 200:
                problems.append(f"/readyz is {ready} at the end")
        rc = self.proxy.stop(check=False)
        if rc != 0:
            problems.append(f"the proxy exited with {rc} on SIGTERM")
        for p in problems:
            print(f"FAIL {p}", flush=True)
        return not problems


def main():
    args = parse_args()
    harness.enter_private_netns()
    harness.require_tools("docker-registry")
    soak = Soak(args)
    ok = False
    try:
        soak.setup()
        print(f"soak: setup done, running {args.seconds} s", flush=True)
        soak.run()
        ok = soak.verdict()
    finally:
        soak.teardown()
    ok = harness.secret_scan() and ok
    print("soak: PASS" if ok else "soak: FAIL", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
