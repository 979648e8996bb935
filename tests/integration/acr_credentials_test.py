#!/usr/bin/env python3
"""ACR temporary passwords end to end: the proxy's credential store against the
fake Alibaba Cloud APIs (tests/support/fake_alibaba.py), used through the
registry token flow against a real docker-registry with `auth: token`
(tests/support/token_registry.py).

Wiring (everything on 127.0.0.1, ports picked at run time):
  * fake_alibaba.py: IMDS, STS and the ACR OpenAPI. The proxy signs its
    GetAuthorizationToken calls with an environment AccessKey the fake knows
    (`static_keys`), so the fake checks the ACS3-HMAC-SHA256 signature. Every
    temporary password lives PASSWORD_LIFE_S (10 s: the production ratios -
    threshold = life / 2, bearer tokens well inside a password's life, the
    refresh backoff a small fraction of it - on a short clock, so the run
    sees several refreshes and an outage longer than a password's life in
    under a minute).
  * token_registry.py: the realm's `password_check_url` points at a small spy
    in this process that forwards each check to the fake's
    POST /check_password: the realm accepts exactly the temporary passwords
    the fake ACR issued (and still valid), and the spy remembers the
    passwords it saw so the log check below looks for the real values.
  * the proxy: `acrInstances` with one made-up ACR domain whose
    `endpointOverrides` entry is the registry (the domain is never resolved),
    `realmHosts: [127.0.0.1]`, `alibaba.*Endpoint` -> the fake (never a real
    address), `expiringThreshold: 5s`, `alibaba.refreshBackoffInitial:
    500ms`, debug logging.

Every test starts its own proxy (the fake's request log is reset first, so
its GetAuthorizationToken records belong to that proxy):
  T1 a pull (manifest + every blob, digests checked) with no client
     credentials; the realm saw the fake ACR's temporary user and password;
  T2 refresh ahead of expiry over a pull loop of three password lives (30 s):
     zero failed requests, the expected number of GetAuthorizationToken calls
     (= the refresh metric), spaced as the refresh rule says, and the realm
     got the new passwords;
  T3 the OpenAPI down for longer than a password's life: the old password
     serves until it expires, then 503 (registry error JSON naming the
     instance) and /readyz 503 naming it; API back -> pulls and /readyz
     recover without a restart within the backoff bound;
  T4 no password, Basic value, AccessKey secret or token in any proxy log.

Usage: acr_credentials_test.py --proxy build/proxy/acr-credential-proxy
"""

import base64
import json
import math
import os
import re
import sys
import threading
import time
import urllib.parse
import unittest
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))

import harness  # noqa: E402
import oci_image  # noqa: E402
import proxy as proxy_mod  # noqa: E402
import token_registry  # noqa: E402
from acr_like import FakeAlibaba  # noqa: E402
from oci_image import OCI_INDEX, OCI_MANIFEST, LayerSpec  # noqa: E402

REPO = "team/app"
TAG = "v1"
INSTANCE = "cri-acptest0000"
REGION = "cn-hangzhou"
DOMAIN = "acptest-registry.cn-hangzhou.cr.aliyuncs.com"  # made up; endpointOverrides gives the IP
TEMP_USER = "cr_temp_user"  # what the fake ACR's GetAuthorizationToken answers
AK_ID = "LTAI" + harness.secrets_token()[:20]
AK_SECRET = harness.secrets_token()
PUSH_PASSWORD = "push-" + harness.secrets_token()  # the realm's own user, for the initial push only
PASSWORD_LIFE_S = 10
THRESHOLD_S = 5  # expiringThreshold: half a password's life, so a refresh every ~4.5-5 s
TOKEN_LIFE_S = 3  # bearer tokens (whole seconds): short, so the proxy goes back to the realm with the current password
ACCEPT = [("Accept", OCI_MANIFEST), ("Accept", OCI_INDEX)]
JWT_SHAPE = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")
# The refresh backoff: alibaba.refreshBackoffInitial as configured below (the default
# is 1 s; halved with the password's life), refreshBackoffMax the default 5 min.
BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 300.0
# Absolute slack for API latency and timer lateness (does not shrink with the clock).
LATENCY_SLACK_S = 0.5


class CheckSpy:
    """The realm's password_check_url: forwards to the fake's /check_password and
    remembers the passwords it was asked about (in memory only, never printed)."""

    def __init__(self, fake):
        spy = self
        self.lock = threading.Lock()
        self.passwords = set()
        self.target = f"{fake.url('control')}/check_password"

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, fmt, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                pw = json.loads(body or b"{}").get("password")
                if pw:
                    with spy.lock:
                        spy.passwords.add(pw)
                req = urllib.request.Request(spy.target, data=body, headers={"Content-Type": "application/json"},
                                             method="POST")
                with urllib.request.urlopen(req, timeout=10) as r:
                    answer = r.read()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/check_password"

    def seen(self):
        with self.lock:
            return set(self.passwords)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class World:
    tmp = None
    tr = None
    fake = None
    spy = None
    image = None
    manifest = None  # (content type, digest, body)
    binary = None
    proxies = []
    observations = []  # printed at the end: what the closing note needs
    unavailable_body = None  # T3's first 503 body


def note(line):
    World.observations.append(line)
    print(line, flush=True)


def setUpModule():
    harness.require_tools("docker-registry", "skopeo")
    World.binary = proxy_mod.find_binary()
    World.tmp = harness.TempDir("acr-credentials")
    started = time.monotonic()
    World.fake = FakeAlibaba(World.tmp.join("fake-alibaba.log"), {
        "region": REGION,
        "static_keys": {AK_ID: AK_SECRET},
        "imds": {"role": None},  # no ECS role: the environment AccessKey is the only identity
        "acr": {"password_lifetime_s": PASSWORD_LIFE_S, "instances": {INSTANCE: {"endpoints": []}}},
    })
    World.spy = CheckSpy(World.fake)
    World.tr = token_registry.start_token_registry(World.tmp.join("tr"), users={"pusher": PUSH_PASSWORD},
                                                   lifetime=TOKEN_LIFE_S)
    tr = World.tr
    World.image = oci_image.build_image(World.tmp.join("layout"), [LayerSpec(300_000, 2), LayerSpec(40_000, 1)],
                                        tag=TAG, seed="acr-credentials")
    oci_image.push(World.image.layout, TAG, tr.registry_host, REPO,
                   authfile=tr.authfile(World.tmp.join("push-auth.json"), user="pusher"))
    tok = tr.token([f"repository:{REPO}:pull"], user="pusher")
    r = tr.registry_request(f"/v2/{REPO}/manifests/{TAG}", tok, headers=ACCEPT)
    if r.status != 200:
        raise RuntimeError(f"direct GET of {REPO}:{TAG} with a token: {r!r}")
    World.manifest = (r.header("Content-Type"), r.header("Docker-Content-Digest"), r.body)
    # From now on the realm accepts exactly the fake ACR's temporary passwords.
    tr.configure(password_check_url=World.spy.url)
    print(f"setup: fake Alibaba Cloud, token registry, image pushed in {time.monotonic() - started:.1f}s", flush=True)


def tearDownModule():
    for p in World.proxies:
        p.stop(check=False)
    if World.tr:
        World.tr.stop()
    if World.spy:
        World.spy.stop()
    if World.fake:
        World.fake.stop()
    if World.observations:
        print("observations:\n  " + "\n  ".join(World.observations), flush=True)


def proxy_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALIBABA_CLOUD_") and not k.startswith("ALICLOUD_")}
    env.update({"ALIBABA_CLOUD_ACCESS_KEY_ID": AK_ID, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": AK_SECRET,
                "ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true"})
    return env


def start_proxy(name):
    fake = World.fake
    cfg = {
        "expiringThreshold": f"{THRESHOLD_S}s",
        "alibaba": {"regionId": REGION, "imdsEndpoint": fake.url("imds"), "stsEndpoint": fake.url("sts"),
                    "acrEndpoint": fake.url("acr"), "refreshBackoffInitial": f"{int(BACKOFF_INITIAL_S * 1000)}ms"},
        "acrInstances": [{"instanceId": INSTANCE, "regionId": REGION, "domains": [DOMAIN],
                          "realmHosts": ["127.0.0.1"]}],
        "endpointOverrides": {DOMAIN: World.tr.registry_url},
        "log": {"level": "debug", "format": "text"},
    }
    p = proxy_mod.Proxy(World.binary, World.tmp.join(name), cfg, name=name)
    p.env = proxy_env()
    World.proxies.append(p)
    return p.start()


def target(kind, ref):
    return f"/v2/{REPO}/{kind}/{ref}?" + urllib.parse.urlencode({"ns": DOMAIN})


def get_manifest(p):
    return p.request("GET", target("manifests", TAG), ACCEPT)


def manifest_ok(resp):
    return (resp.status == 200 and resp.header("Docker-Content-Digest") == World.manifest[1]
            and resp.sha256() == World.manifest[1])


def refresh_metric(p, outcome):
    m = re.search(r'^acp_acr_password_refresh_total\{[^}]*instance="' + re.escape(INSTANCE) + r'"[^}]*outcome="'
                  + outcome + r'"[^}]*\}\s+([0-9.e+]+)$', p.metrics(), re.M)
    return int(float(m.group(1))) if m else None


def successes(calls):
    return [c for c in calls if c.get("status") == 200]


class Base(harness.TestCaseBase):
    proxy = None

    def setUp(self):
        World.fake.configure({"down": {"acr": False}})
        World.fake.reset()
        World.tr.clear_faults()
        World.tr.reset_stats()
        self.proxy = None

    def tearDown(self):
        try:
            super().tearDown()
        finally:
            if self.proxy is not None:
                self.proxy.stop()  # exit status 0 after SIGTERM
            World.fake.configure({"down": {"acr": False}})

    def watched(self):
        return [self.proxy] if self.proxy else []

    def wait_ready(self, timeout=20):
        harness.wait_until(lambda: self.proxy.admin("/readyz").status == 200, timeout, "proxy /readyz 200")


class T1PullTest(Base):
    def test_pull_without_client_credentials_uses_the_acr_temporary_password(self):
        self.proxy = start_proxy("t1")
        c = harness.Checks(self)
        # No wait for readiness: the first request waits (bounded) for the first password.
        r = get_manifest(self.proxy)
        c.eq(r.status, 200, "manifest status")
        c.eq(r.header("Docker-Content-Digest"), World.manifest[1], "Docker-Content-Digest")
        c.eq(r.sha256(), World.manifest[1], "sha256 of the manifest body")
        manifest = json.loads(r.body) if r.status == 200 else {"config": {}, "layers": []}
        digests = [manifest["config"].get("digest")] + [layer["digest"] for layer in manifest["layers"]]
        c.eq(sorted(digests), sorted(b.digest for b in World.image.blobs()), "blobs the manifest names")
        for blob in World.image.blobs():
            rb = self.proxy.request("GET", target("blobs", blob.digest))
            c.eq((rb.status, rb.sha256(), len(rb.body)), (200, blob.digest, blob.size), f"blob {blob.digest[:19]}")
        # The realm saw the fake ACR's temporary user with a password the fake issued.
        st = World.tr.stats()
        c.eq(set(st["by_user"]), {TEMP_USER}, "users the realm saw")
        checks = st["password_checks"]
        c.check(checks and all(x["valid"] and x["user"] == TEMP_USER for x in checks),
                f"realm password checks all valid for {TEMP_USER}: {checks}")
        issued = {x["expire_time"] for x in successes(World.fake.token_calls())}
        c.eq(len(issued), 1, "GetAuthorizationToken successes")
        c.eq({x["expires_ms"] for x in checks}, issued, "the password the realm checked is the one the fake issued")
        c.eq(st["by_status"].get("401", 0), 0, "realm 401s")
        # The client sent nothing; the registry saw only bearer-authenticated retries succeed.
        c.done()


class T2RefreshAheadTest(Base):
    LOOP_S = 3.0 * PASSWORD_LIFE_S  # 30 s: 6-7 passwords
    INTERVAL_S = 0.25  # 120 manifest GETs over the loop

    def test_refresh_ahead_over_a_pull_loop_of_three_password_lives(self):
        t_start = time.time()
        self.proxy = start_proxy("t2")
        c = harness.Checks(self)
        failures = []
        n = 0
        loop_end = time.monotonic() + self.LOOP_S
        next_at = time.monotonic()
        while time.monotonic() < loop_end:
            r = get_manifest(self.proxy)
            n += 1
            if not manifest_ok(r):
                failures.append((round(time.time() - t_start, 1), r.status, r.body[:200]))
            next_at += self.INTERVAL_S
            time.sleep(max(0.0, next_at - time.monotonic()))  # pacing of the loop, not synchronisation
        t_end = time.time()
        c.eq(failures, [], f"failed requests among {n}")

        # Stable reading: fake stats and the metric from the same moment (no refresh in between).
        def consistent():
            a = successes(World.fake.token_calls())
            m = refresh_metric(self.proxy, "success")
            b = successes(World.fake.token_calls())
            return (a, m) if len(a) == len(b) else None
        calls, metric = harness.wait_until(consistent, 10, "a stable GetAuthorizationToken count")
        all_calls = World.fake.token_calls()
        c.eq(len(all_calls), len(calls), "GetAuthorizationToken calls that failed")
        c.eq(metric, len(calls), "acp_acr_password_refresh_total{outcome=success} vs the fake's count")
        c.eq(refresh_metric(self.proxy, "failure"), 0, "acp_acr_password_refresh_total{outcome=failure}")

        # Issue times, from the fake's answers: ExpireTime = issue + PASSWORD_LIFE_S.
        issued = sorted(x["expire_time"] / 1000.0 - PASSWORD_LIFE_S for x in calls)
        gaps = [b - a for a, b in zip(issued, issued[1:])]
        # The refresh rule (acr_password_store.hpp compute_refresh_at): a password
        # issued at s expiring at s + L is refreshed at s + L - T - j*T/10, j in [0,1)
        # (never before s + L/4). L = 10 s, T = 5 s: every 4.5..5 s (+ API latency).
        # Over W seconds from the first fetch to the end of the loop that is
        #   count = 1 + floor(W / gap), gap in [4.5, 5.5]  (0.5 s slack for latency),
        # i.e. 6 or 7 for W ~ 30 s.
        gap_min = (PASSWORD_LIFE_S - THRESHOLD_S) - THRESHOLD_S / 10
        gap_max = (PASSWORD_LIFE_S - THRESHOLD_S) + LATENCY_SLACK_S
        window = t_end - issued[0] if issued else 0
        lo = 1 + math.floor(window / gap_max)
        hi = 1 + math.floor(window / gap_min)
        c.check(lo <= len(calls) <= hi, f"GetAuthorizationToken count {len(calls)} not in [{lo}, {hi}] over {window:.1f}s")
        c.check(all(gap_min - 0.1 <= g <= gap_max + 0.1 for g in gaps),
                f"refresh gaps outside [{gap_min}, {gap_max}] s: {[round(g, 2) for g in gaps]}")
        c.check(issued and issued[0] - t_start < 5, "first fetch at proxy start")
        # The realm got the new passwords: each password but possibly the newest
        # (issued near the end) was presented with bearer tokens living TOKEN_LIFE_S.
        st = World.tr.stats()
        checks = st["password_checks"]
        seen = {x["expires_ms"] for x in checks if x["valid"]}
        c.check(all(x["valid"] for x in checks), f"realm refused a password: {[x for x in checks if not x['valid']]}")
        c.check(len(seen) >= len(calls) - 1 and len(seen) >= 5,
                f"realm saw {len(seen)} distinct passwords of {len(calls)} issued")
        c.eq(st["by_status"].get("401", 0), 0, "realm 401s")
        note(f"T2 refresh ahead: {n} manifest GETs in {self.LOOP_S:.0f}s, {len(failures)} failed; "
             f"{len(calls)} GetAuthorizationToken over {window:.1f}s (expected [{lo}, {hi}]); "
             f"gaps {[round(g, 2) for g in gaps]} s; realm saw {len(seen)} distinct passwords, "
             f"{len(checks)} password checks")
        c.done()


class T3ApiDownTest(Base):
    def test_api_down_longer_than_a_password_life_then_recovery(self):
        self.proxy = start_proxy("t3")
        self.wait_ready()
        c = harness.Checks(self)
        c.check(manifest_ok(get_manifest(self.proxy)), "pull before the outage")
        first = successes(World.fake.token_calls())
        c.eq(len(first), 1, "passwords before the outage")
        expires = first[0]["expire_time"] / 1000.0 if first else time.time() + PASSWORD_LIFE_S
        World.fake.configure({"down": {"acr": True}})
        t_down = time.time()

        # Until the password expires the proxy keeps using it; afterwards 503.
        served_late = []
        early_failures = []
        first_503 = None
        while True:
            r = get_manifest(self.proxy)
            now = time.time()
            if manifest_ok(r):
                if now > expires + TOKEN_LIFE_S + 2:
                    served_late.append(round(now - expires, 1))
            elif r.status == 503:
                first_503 = (now, r)
                break
            elif now < expires:
                early_failures.append((round(now - t_down, 1), r.status))
            if now > expires + TOKEN_LIFE_S + 10:
                break
            time.sleep(0.25)  # request pacing
        c.eq(early_failures, [], "failures while the password was still valid")
        c.eq(served_late, [], "pulls served long after the password expired")
        c.check(first_503 is not None, "a 503 once the password expired")
        if first_503:
            t503, r = first_503
            c.check(t503 >= expires - 0.5, f"503 only after expiry ({t503 - expires:+.1f}s)")
            doc = json.loads(r.body) if r.body else {}
            errors = doc.get("errors") or [{}]
            c.eq(errors[0].get("code"), "UNAVAILABLE", "503 registry error code")
            c.check(DOMAIN in r.body.decode(errors="replace"), f"503 body names the registry: {r.body[:300]!r}")
            World.unavailable_body = r.body  # T3b: does it name the instance?
            note(f"T3 first 503 {t503 - expires:+.1f}s after the password's expiry "
                 f"({t503 - t_down:.1f}s into the outage)")
        ready = self.proxy.admin("/readyz")
        c.eq(ready.status, 503, "/readyz during the outage")
        c.check(INSTANCE in ready.body.decode(errors="replace"), f"/readyz names the instance: {ready.body!r}")

        # Down for longer than a password's life: every pull meanwhile is a 503, /readyz stays 503.
        during = []
        while time.time() - t_down < PASSWORD_LIFE_S + 2:
            during.append((get_manifest(self.proxy).status, self.proxy.admin("/readyz").status))
            time.sleep(0.5)  # request pacing
        c.check(during and all(s == (503, 503) for s in during),
                f"(pull, /readyz) statuses until the outage outlasted a password: {sorted(set(during))}")

        # API back: the next retry is at most one backoff delay away.
        failed = [x for x in World.fake.token_calls() if x.get("status") != 200]
        k = len(failed)
        World.fake.configure({"down": {"acr": False}})
        t_up = time.time()
        bound = min(BACKOFF_MAX_S, BACKOFF_INITIAL_S * 2 ** max(0, k - 1)) + 2.0
        c.check(k >= 3, f"retries during the outage: {k}")
        c.eq(refresh_metric(self.proxy, "failure"), k, "acp_acr_password_refresh_total{outcome=failure}")
        try:
            harness.wait_until(lambda: self.proxy.admin("/readyz").status == 200, bound + 5, "/readyz 200 again")
            t_ready = time.time()
            c.check(t_ready - t_up <= bound, f"recovered in {t_ready - t_up:.1f}s, bound {bound:.0f}s after {k} failures")
            c.check(manifest_ok(get_manifest(self.proxy)), "pull after recovery")
            note(f"T3 outage {t_up - t_down:.1f}s (> password life {PASSWORD_LIFE_S}s): {k} failed refreshes; "
                 f"ready and pulling {t_ready - t_up:.1f}s after the API came back (bound {bound:.0f}s)")
        except TimeoutError as e:
            c.check(False, str(e))
        c.eq(self.proxy.child.pid, World.proxies[-1].child.pid, "same proxy process (no restart)")
        c.done()


class T3bUnavailableReasonTest(Base):
    # The store's reason ("ACR instance cri-...: ...") travels with the provider's
    # error (tokens::auth_error) into the 503 body's detail.
    def test_503_body_names_the_instance(self):
        body = World.unavailable_body
        self.assertIsNotNone(body, "T3 got no 503")
        self.assertIn(INSTANCE, body.decode(errors="replace"), f"503 body: {body[:400]!r}")


class T4NoSecretInLogTest(Base):
    def test_no_password_or_token_in_any_proxy_log(self):
        c = harness.Checks(self)
        passwords = World.spy.seen()
        c.check(len(passwords) >= 5, f"temporary passwords seen by the realm: {len(passwords)}")
        c.check(all(":" in p for p in passwords), "fake passwords hold ':'")
        basics = {base64.b64encode(f"{TEMP_USER}:{p}".encode()).decode() for p in passwords}
        c.check(World.proxies, "proxies ran")
        for p in World.proxies:
            text = p.log_text()
            c.check(len(text) > 0, f"{p.name} log not empty")
            c.check("temporary password refreshed" in text, f"{p.name} log shows the refresh (redacted)")
            # c.check, not c.eq: a failure must not print the secret it found.
            c.check(not any(pw in text for pw in passwords), f"a temporary password reached {p.name}'s log")
            c.check(not any(pw.split(":", 1)[1] in text for pw in passwords),
                    f"part of a temporary password reached {p.name}'s log")
            c.check(not any(b in text for b in basics), f"a Basic value reached {p.name}'s log")
            c.check(AK_SECRET not in text, f"the AccessKey secret reached {p.name}'s log")
            c.check(JWT_SHAPE.search(text) is None, f"a token reached {p.name}'s log")
        c.done()


if __name__ == "__main__":
    sys.exit(harness.run_tests())
