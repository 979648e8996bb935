#!/usr/bin/env python3
"""The registry token flow end to end: the proxy against a real docker-registry
with `auth: token` and an ACR-like token realm (tests/support/token_registry.py).

The client sends no credentials. The proxy holds `auth: {type: basic,
username, passwordFile}` for the registry, which it reaches through an
explicit http:// endpointOverrides entry; it sends Basic first, learns the
registry's Bearer challenge, fetches a token from the realm with its Basic
credentials and retries with `Authorization: Bearer`. The registry itself
verifies the JWTs and their scopes, so a 200 proves the token flow ran.

Every test starts its own proxy (a cold token cache), so counts at the realm
(stats()["by_scope"], per test after reset_stats()) belong to that test:
  T1 manifests (tag, digest, index; GET and HEAD) and every blob, by digest;
     one token per scope, issued to the proxy's Basic user;
  T2 single-flight: 500 concurrent cold requests, one realm request per scope;
     warm requests none;
  T3 a realm on a host not allow-listed: 502, a log line naming the realm,
     zero realm requests (the password never left);
  T4 a wrong password: the realm refuses, the client gets 403 DENIED; a token
     the registry refuses is replaced once, then 403;
  T5 2 s tokens over a 7.5 s pull loop: no request fails;
  T6 realm faults: 500s then recovery, slow realm -> 504, bad answers -> 502;
  T7 password rotation picked up on SIGHUP;
  T8 no password, Basic value or token in any proxy log (debug level).

Usage: token_flow_test.py --proxy build/proxy/acr-credential-proxy
"""

import base64
import concurrent.futures
import json
import math
import os
import re
import signal
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))

import harness  # noqa: E402
import oci_image  # noqa: E402
import proxy as proxy_mod  # noqa: E402
import registry as registry_mod  # noqa: E402
import token_registry  # noqa: E402
from oci_image import OCI_INDEX, OCI_MANIFEST, LayerSpec  # noqa: E402

APP = "team/app"
OTHER = "team/other"
REPOS = (APP, OTHER)
USER = "temp_user"
PASSWORD = "temp:Pa55-" + harness.secrets_token()  # ACR temporary passwords may hold ':'
WRONG_PASSWORD = "wrong-" + harness.secrets_token()
ROTOR = "rotor"  # a user of its own for the rotation test
ROTOR_PW1 = "rotor1-" + harness.secrets_token()
ROTOR_PW2 = "rotor2-" + harness.secrets_token()
ALL_PASSWORDS = (PASSWORD, WRONG_PASSWORD, ROTOR_PW1, ROTOR_PW2)
ACCEPT = [("Accept", OCI_MANIFEST), ("Accept", OCI_INDEX)]
# Any JWS in compact form (every token the realm issues is one).
JWT_SHAPE = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")


def scope(repo):
    return f"repository:{repo}:pull"


class World:
    tmp = None
    tr = None  # token_registry.TokenRegistry
    image = None
    refs = {}  # (repo, tag) -> (media type, digest, body)
    binary = None
    proxies = []  # every proxy started, for the log check and teardown
    token_header_b64 = None  # the first JWS segment: the same in every token the realm issues


def setUpModule():
    harness.require_tools("docker-registry", "skopeo")
    World.binary = proxy_mod.find_binary()
    World.tmp = harness.TempDir("token-flow")
    started = time.monotonic()
    World.tr = token_registry.start_token_registry(World.tmp.join("tr"), users={USER: PASSWORD, ROTOR: ROTOR_PW1})
    tr = World.tr
    World.image = oci_image.build_image(World.tmp.join("layout"),
                                        [LayerSpec(200_000, 2), LayerSpec(30_000, 1), LayerSpec(1_000_000, 1, gzip_level=1)],
                                        tag="v1", index_tag="v1-index", seed="token-flow")
    authfile = tr.authfile(World.tmp.join("push-auth.json"), user=USER)
    for repo in REPOS:
        oci_image.push(World.image.layout, "v1", tr.registry_host, repo, authfile=authfile)
    oci_image.push(World.image.layout, "v1-index", tr.registry_host, APP, authfile=authfile, all_images=True)
    for repo, tags in ((APP, ("v1", "v1-index")), (OTHER, ("v1",))):
        tok = tr.token([scope(repo)], user=USER)
        for tag in tags:
            r = tr.registry_request(f"/v2/{repo}/manifests/{tag}", tok, headers=ACCEPT)
            if r.status != 200:
                raise RuntimeError(f"direct GET of {repo}:{tag} with a token: {r!r}")
            World.refs[(repo, tag)] = (r.header("Content-Type"), r.header("Docker-Content-Digest"), r.body)
    World.token_header_b64 = tok.split(".")[0]
    print(f"setup: token registry, {len(World.refs)} manifests in {len(REPOS)} repositories "
          f"in {time.monotonic() - started:.1f}s", flush=True)


def tearDownModule():
    for p in World.proxies:
        p.stop(check=False)
    if World.tr:
        World.tr.stop()


def password_file(name, password):
    """A 0600 password file outside the proxy's config directory (no inotify reload)."""
    d = World.tmp.join("secrets")
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, f"{name}.password")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(password)
    return path


def start_proxy(name, user=USER, password=PASSWORD, realm_hosts=None, extra=(), timeouts=None, log_level="debug"):
    """A fresh proxy (cold token cache) whose one registry is the token registry."""
    tr = World.tr
    entry = {"host": tr.registry_host,
             "auth": {"type": "basic", "username": user, "passwordFile": password_file(name, password)}}
    if realm_hosts is not None:
        entry["realmHosts"] = realm_hosts
    entries = [entry] + [dict(e) for e in extra]
    overrides = {e["host"]: tr.registry_url for e in entries}
    cfg = {"registries": entries, "endpointOverrides": overrides,
           "log": {"level": log_level, "format": "text"}}
    if timeouts:
        cfg["timeouts"] = timeouts
    p = proxy_mod.Proxy(World.binary, World.tmp.join(name), cfg, name=name)
    World.proxies.append(p)
    return p.start()


def target(kind, repo, ref, ns=None):
    return f"/v2/{repo}/{kind}/{ref}?" + urllib.parse.urlencode({"ns": ns or World.tr.registry_host})


def get_manifest(p, repo=APP, ref="v1", method="GET", ns=None):
    return p.request(method, target("manifests", repo, ref, ns), ACCEPT)


def registry_statuses(since):
    return [s for _, _, s in World.tr.registry.access_log()[since:]]


def error_doc(resp):
    """The registry error JSON of a local reply, or None."""
    try:
        doc = json.loads(resp.body)
        return doc if isinstance(doc.get("errors"), list) and doc["errors"] and "code" in doc["errors"][0] else None
    except (ValueError, AttributeError):
        return None


def where(needle, paths):
    """'file:line' of the first log line holding `needle` (a string or a compiled pattern)."""
    for path in paths:
        with open(path, errors="replace") as f:
            for n, line in enumerate(f, 1):
                if (needle.search(line) if hasattr(needle, "search") else needle in line):
                    return f"{path}:{n}"
    return "(not found line by line)"


class Base(harness.TestCaseBase):
    proxy = None

    def setUp(self):
        tr = World.tr
        # Every test starts from the realm's defaults, whatever the previous one changed.
        tr.clear_faults()
        tr.configure(**token_registry._KNOBS)
        tr.set_password(USER, PASSWORD)
        tr.set_password(ROTOR, ROTOR_PW1)
        tr.reset_stats()
        self.proxy = None

    def tearDown(self):
        try:
            super().tearDown()  # blames a crash on this test (and restarts the proxy)
        finally:
            if self.proxy is not None:
                self.proxy.stop()  # exit status 0 after SIGTERM

    def watched(self):
        return [self.proxy] if self.proxy else []

    def assert_no_secret(self, text, what):
        # assertFalse, not assertNotIn: a failure must not print the secret it found.
        for i, pw in enumerate(ALL_PASSWORDS):
            self.assertFalse(pw in text, f"password #{i} reached {what}")
        self.assertIsNone(JWT_SHAPE.search(text), f"a token reached {what}")


class T1_PullThroughTokenFlow(Base):
    def test_manifests_and_blobs_through_the_proxy_with_tokens_for_its_basic_user(self):
        tr = World.tr
        direct = tr.registry_request(f"/v2/{APP}/manifests/v1", headers=ACCEPT)
        self.assertEqual(direct.status, 401, "the registry enforces token auth")
        self.proxy = start_proxy("t1")
        log_start = len(tr.registry.access_log())
        c = harness.Checks(self)
        client = self.proxy.client()
        try:
            for (repo, tag), (media, digest, body) in sorted(World.refs.items()):
                c.eq(digest, World.image.tags[tag].digest, f"{repo}:{tag} pushed digest equals the OCI layout's")
                for ref in (tag, digest):
                    for method in ("HEAD", "GET"):
                        what = f"{method} {repo} manifests/{ref[:19]}"
                        r = client.request(method, target("manifests", repo, ref), ACCEPT)
                        if not c.eq(r.status, 200, f"{what}: status"):
                            continue
                        c.eq(r.header("Content-Type"), media, f"{what}: Content-Type")
                        c.eq(r.header("Docker-Content-Digest"), digest, f"{what}: Docker-Content-Digest")
                        c.eq(r.header("Content-Length"), str(len(body)), f"{what}: Content-Length")
                        if method == "GET":
                            c.eq(r.sha256(), digest, f"{what}: sha256 of body")
                        else:
                            c.eq(r.body, b"", f"{what}: HEAD body")
                        c.eq(r.header("WWW-Authenticate"), None, f"{what}: no challenge reaches the client")
            for repo in REPOS:
                for blob in World.image.blobs():
                    what = f"{repo} blob {blob.digest[7:19]} ({blob.size} B)"
                    r = client.request("HEAD", target("blobs", repo, blob.digest))
                    c.eq((r.status, r.header("Content-Length")), (200, str(blob.size)), f"HEAD {what}")
                    r = client.request("GET", target("blobs", repo, blob.digest))
                    if c.eq(r.status, 200, f"GET {what}: status"):
                        c.eq(r.sha256(), blob.digest, f"GET {what}: sha256 of body")
        finally:
            client.close()
        st = tr.stats()
        c.eq(st["by_scope"], {scope(APP): 1, scope(OTHER): 1}, "realm requests per scope (one token each)")
        c.eq(st["tokens_by_scope"], {scope(APP): 1, scope(OTHER): 1}, "tokens issued per scope")
        c.eq(st["by_user"], {USER: 2}, "Basic user at the realm")
        c.eq(st["by_status"], {"200": 2}, "realm answers")
        c.eq(st["by_method"], {"GET": 2}, "realm methods")
        for e in st["log"]:
            c.eq(e["service"], tr.service, "service sent to the realm (from the challenge)")
            c.check("acr-credential-proxy" in (e["user_agent"] or ""), f"realm User-Agent {e['user_agent']!r}")
        statuses = registry_statuses(log_start)
        # Only the very first request meets a challenge: the realm is then known for every scope.
        c.eq(statuses.count(401), 1, f"401s at the registry (statuses {statuses})")
        c.check(USER in tr.registry.users_seen(), "the registry saw the token's subject")
        print(f"      realm requests {st['by_scope']}; registry answers: {len(statuses)} "
              f"({statuses.count(401)} x 401)", flush=True)
        c.done()


class T2_SingleFlight(Base):
    N = 500      # the cold burst for one scope
    N_OTHER = 50  # the other bursts only need to show per-scope tokens and warm hits

    def _burst(self, repo, n):
        """n concurrent requests, each on its own connection, released together."""
        barrier = threading.Barrier(n)

        def one(_):
            barrier.wait(30)
            t0 = time.monotonic()
            r = self.proxy.request("GET", target("manifests", repo, "v1"), ACCEPT)
            return r.status, r.header("Docker-Content-Digest"), time.monotonic() - t0

        with concurrent.futures.ThreadPoolExecutor(n) as pool:
            return list(pool.map(one, range(n)))

    def test_concurrent_cold_requests_make_one_realm_request_per_scope(self):
        tr = World.tr
        self.proxy = start_proxy("t2")
        c = harness.Checks(self)
        tr.slow(0.5)  # every waiter arrives while the one fetch is still in flight
        t0 = time.monotonic()
        cold = self._burst(APP, self.N)
        cold_s = time.monotonic() - t0
        want_digest = World.refs[(APP, "v1")][1]
        c.eq(sorted(set((s, d) for s, d, _ in cold)), [(200, want_digest)], f"{self.N} cold {APP} answers")
        st = tr.stats()
        c.eq(st["by_scope"], {scope(APP): 1}, f"realm requests for {self.N} concurrent cold requests")
        c.eq(st["max_in_flight"], 1, "realm requests in flight at once")
        cold_other = self._burst(OTHER, self.N_OTHER)
        c.eq(sorted(set(s for s, _, _ in cold_other)), [200], f"{self.N_OTHER} cold {OTHER} answers")
        st = tr.stats()
        c.eq(st["by_scope"], {scope(APP): 1, scope(OTHER): 1}, "a second repository gets its own token")
        tr.clear_faults()
        log_start = len(tr.registry.access_log())
        warm = self._burst(APP, self.N_OTHER) + self._burst(OTHER, self.N_OTHER)
        c.eq(sorted(set(s for s, _, _ in warm)), [200], "warm answers")
        c.eq(tr.stats()["requests"], 2, "realm requests after the warm bursts (none new)")
        c.eq(registry_statuses(log_start).count(401), 0, "401s at the registry for warm requests")
        # Latency of one cached-token request through the proxy vs. the same Bearer request made directly.
        tok = tr.token([scope(APP)])
        tr.reset_stats()
        via, direct = self.proxy.client(), tr.registry.client()
        try:
            def median_ms(fn):
                times = []
                for _ in range(21):
                    t = time.monotonic()
                    c.eq(fn().status, 200, "latency probe")
                    times.append((time.monotonic() - t) * 1000)
                return sorted(times)[len(times) // 2]

            via_ms = median_ms(lambda: via.request("GET", target("manifests", APP, "v1"), ACCEPT))
            direct_ms = median_ms(lambda: direct.request("GET", f"/v2/{APP}/manifests/v1",
                                                         ACCEPT + [("Authorization", f"Bearer {tok}")]))
        finally:
            via.close()
            direct.close()
        c.eq(tr.stats()["requests"], 0, "realm requests for the latency probe")
        # The same manifest from an anonymous docker-registry through the same proxy:
        # the cost of a cached-token request over an anonymous one.
        anon = registry_mod.Registry(World.tmp.join("t2-anon"), name="anon").start()
        try:
            oci_image.push(World.image.layout, "v1", anon.host, APP)
            both = proxy_mod.Proxy(World.binary, World.tmp.join("t2-both"), {
                "registries": [{"host": tr.registry_host, "auth": {"type": "basic", "username": USER,
                                                                    "passwordFile": password_file("t2-both", PASSWORD)}},
                               {"host": anon.host}],
                "endpointOverrides": {tr.registry_host: tr.registry_url, anon.host: anon.url}}, name="t2-both")
            World.proxies.append(both)
            both.start()
            conn = both.client()
            try:
                token_req = lambda: conn.request("GET", target("manifests", APP, "v1"), ACCEPT)  # noqa: E731
                anon_req = lambda: conn.request("GET", target("manifests", APP, "v1", ns=anon.host), ACCEPT)  # noqa: E731
                c.eq(token_req().status, 200, "warm-up with a token")
                token_ms, anon_ms = [], []
                for _ in range(101):  # interleaved, so machine noise hits both alike
                    for fn, out in ((token_req, token_ms), (anon_req, anon_ms)):
                        t = time.monotonic()
                        c.eq(fn().status, 200, "latency probe")
                        out.append((time.monotonic() - t) * 1000)
                token_med, anon_med = sorted(token_ms)[50], sorted(anon_ms)[50]
            finally:
                conn.close()
        finally:
            anon.stop()
        print(f"      cold burst {cold_s:.2f}s (slowest {max(t for _, _, t in cold):.2f}s, realm delay 0.5s); "
              f"realm requests {st['by_scope']}; warm manifest median: proxy {via_ms:.1f} ms, "
              f"direct with Bearer {direct_ms:.1f} ms; through the proxy, cached token {token_med:.2f} ms "
              f"vs anonymous {anon_med:.2f} ms (median of 101, interleaved)", flush=True)
        c.done()


class T3_RealmNotAllowListed(Base):
    def test_realm_on_a_host_not_allow_listed_gets_no_credentials(self):
        tr = World.tr
        # The registry's own host is 127.0.0.1, like the realm's: only the explicit list refuses it.
        # "tokreg.test" has the default list (its own name), which 127.0.0.1 is not either.
        self.proxy = start_proxy("t3", realm_hosts=["auth.example.com"], extra=[
            {"host": "tokreg.test", "auth": {"type": "basic", "username": USER,
                                             "passwordFile": password_file("t3-named", PASSWORD)}}])
        c = harness.Checks(self)
        for ns in (tr.registry_host, "tokreg.test"):
            for method in ("GET", "HEAD", "GET"):
                r = get_manifest(self.proxy, method=method, ns=ns)
                c.eq(r.status, 502, f"{method} ns={ns}: status")
                c.eq(r.header("WWW-Authenticate"), None, f"{method} ns={ns}: no challenge")
                if method == "GET":
                    doc = error_doc(r)
                    c.check(doc is not None, f"GET ns={ns}: registry error JSON: {r.body[:200]!r}")
                    self.assert_no_secret(r.body.decode(errors="replace"), "a 502 body")
            r = self.proxy.request("GET", target("blobs", APP, World.image.config.digest, ns))
            c.eq(r.status, 502, f"blob ns={ns}: status")
        st = tr.stats()
        c.eq(st["requests"], 0, "realm requests (the password never left)")
        realm = f"http://{tr.realm_host}"
        lines = [line for line in self.proxy.log_text().splitlines() if realm in line and "realm" in line]
        c.check(any(tr.registry_host in line for line in lines),
                f"a log line names the realm {realm} and the registry {tr.registry_host}")
        c.check(any("tokreg.test" in line for line in lines), f"a log line names the realm {realm} for tokreg.test")
        if lines:
            print(f"      log: {lines[0].strip()[:220]}", flush=True)
        c.done()


class T4_Refusals(Base):
    def test_realm_refusing_the_password_is_403_denied_naming_the_registry(self):
        tr = World.tr
        self.proxy = start_proxy("t4", password=WRONG_PASSWORD)
        c = harness.Checks(self)
        for method in ("GET", "HEAD"):
            for what, path in (("manifest", target("manifests", APP, "v1")),
                               ("blob", target("blobs", OTHER, World.image.layers[0].digest))):
                r = self.proxy.request(method, path, ACCEPT)
                c.eq(r.status, 403, f"{method} {what}: status (never 401)")
                c.eq(r.header("WWW-Authenticate"), None, f"{method} {what}: no challenge reaches containerd")
                if method == "GET":
                    doc = error_doc(r)
                    if c.check(doc is not None, f"GET {what}: registry error JSON: {r.body[:200]!r}"):
                        c.eq(doc["errors"][0]["code"], "DENIED", f"GET {what}: error code")
                        c.check(tr.registry_host in doc["errors"][0]["message"],
                                f"GET {what}: the message names the registry: {doc['errors'][0]['message']!r}")
                    self.assert_no_secret(r.body.decode(errors="replace"), "a 403 body")
        st = tr.stats()
        c.check(st["requests"] >= 1, "the realm was asked")
        c.eq(set(st["by_status"]), {"401"}, "realm answers")
        c.eq(st["tokens_issued"], 0, "tokens issued")
        c.eq(set(st["by_user"]), {USER}, "user at the realm")
        print(f"      realm requests {st['by_scope']} all 401", flush=True)
        c.done()

    def test_token_the_registry_refuses_is_replaced_once_then_403(self):
        tr = World.tr
        self.proxy = start_proxy("t4-untrusted")
        self.assertEqual(get_manifest(self.proxy, APP).status, 200)  # the realm is known from here on
        # One bad token (signed by a key the registry does not trust): replaced, the request retried once.
        tr.reset_stats()
        tr.inject("untrusted_key", count=1, scope=scope(OTHER))
        r = get_manifest(self.proxy, OTHER)
        self.assertEqual(r.status, 200, repr(r))
        self.assertEqual(tr.stats()["by_scope"], {scope(OTHER): 2})
        # Every token bad: one retry, then 403 DENIED (never 401, no loop).
        missing = "team/missing"
        tr.reset_stats()
        tr.inject("untrusted_key", count=None)
        r = get_manifest(self.proxy, missing)
        self.assertEqual(r.status, 403, repr(r))
        self.assertEqual(error_doc(r)["errors"][0]["code"], "DENIED")
        self.assertEqual(tr.stats()["by_scope"], {scope(missing): 2})
        tr.clear_faults()
        # The registry's own answer once a good token is had: authorised, and the repository is unknown.
        r = get_manifest(self.proxy, missing)
        self.assertEqual(r.status, 404, repr(r))
        self.assertRegex(r.body, rb"MANIFEST_UNKNOWN|NAME_UNKNOWN")


class T5_ShortLivedTokens(Base):
    # 2 s tokens: the proxy caches each for half its life (a token living under
    # twice the cache's 5 s safety margin keeps half of it), so a token serves
    # ~10 request pairs. The loop spans 2.5 of the longest lives the registry
    # allows (exp rounds up: [TOKEN_S, TOKEN_S + 1) s), as 10 s did for 3 s tokens.
    TOKEN_S = 2
    LOOP_S = 7.5

    def _pull_loop(self, seconds):
        """Manifest + blob GETs back to back for `seconds`; returns the statuses."""
        statuses = []
        blob = World.image.layers[1]
        client = self.proxy.client()
        try:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                r = client.request("GET", target("manifests", APP, "v1"), ACCEPT)
                statuses.append(r.status)
                r = client.request("GET", target("blobs", APP, blob.digest))
                statuses.append(r.status if r.sha256() == blob.digest else -r.status)
                # Paced by a wait on nothing: ~10 pairs a second, not a synchronisation.
                threading.Event().wait(0.1)
        finally:
            client.close()
        return statuses

    def test_2s_tokens_are_refreshed_and_no_request_fails(self):
        tr = World.tr
        tr.configure(lifetime=self.TOKEN_S)
        self.proxy = start_proxy("t5")
        log_start = len(tr.registry.access_log())
        seconds = self.LOOP_S
        statuses = self._pull_loop(seconds)
        st = tr.stats()
        tokens = st["tokens_by_scope"].get(scope(APP), 0)
        reg = registry_statuses(log_start)
        print(f"      {len(statuses)} requests over {seconds:g}s with {self.TOKEN_S}s tokens: {tokens} tokens fetched, "
              f"registry 401s {reg.count(401)}", flush=True)
        self.assertEqual(set(statuses), {200}, f"statuses over the loop: {statuses}")
        # The registry refuses a token 2 s after issue: at least ceil(7.5/2) tokens were needed.
        self.assertGreaterEqual(tokens, math.ceil(seconds / self.TOKEN_S))
        self.assertLessEqual(tokens, len(statuses) // 4, "tokens are cached, not fetched per request")
        self.assertEqual(st["by_scope"], {scope(APP): tokens})
        # Refreshed ahead of expiry: only the first contact met a challenge.
        self.assertEqual(reg.count(401), 1, f"registry statuses {reg}")

    def test_token_refused_before_its_stated_expiry_is_replaced_and_retried(self):
        tr = World.tr
        tr.configure(lifetime=self.TOKEN_S, expires_in=300)  # the realm promises 300 s; the registry allows 2
        self.proxy = start_proxy("t5-lie")
        log_start = len(tr.registry.access_log())
        seconds = self.LOOP_S
        statuses = self._pull_loop(seconds)
        tokens = tr.stats()["tokens_by_scope"].get(scope(APP), 0)
        reg = registry_statuses(log_start)
        print(f"      {len(statuses)} requests over {seconds:g}s, tokens really {self.TOKEN_S}s but stated 300s: "
              f"{tokens} tokens fetched, registry 401s {reg.count(401)}", flush=True)
        self.assertEqual(set(statuses), {200}, f"statuses over the loop: {statuses}")
        # Each token lives 2-3 s at the registry (exp is rounded up to a whole second).
        self.assertGreaterEqual(tokens, 3, "each refused token was replaced")
        self.assertGreaterEqual(reg.count(401), 3, "the registry refused the expired tokens")


class T6_RealmFaults(Base):
    def test_realm_500s_are_502_then_recovery(self):
        tr = World.tr
        self.proxy = start_proxy("t6-500", timeouts={"upstreamHeaders": "1s"})
        tr.fail(3, 500)
        r = get_manifest(self.proxy)
        self.assertEqual(r.status, 502, repr(r))
        self.assertIsNotNone(error_doc(r), r.body[:200])
        t0 = time.monotonic()
        seen = []

        def recovered():
            s = get_manifest(self.proxy).status
            seen.append(s)
            return s == 200

        harness.wait_until(recovered, 15, "a 200 after the realm's faults clear")
        took = time.monotonic() - t0
        st = tr.stats()
        print(f"      realm 500 x3: {seen.count(502) + 1} x 502 then 200 after {took:.2f}s; "
              f"realm requests {st['by_status']}", flush=True)
        # During the backoff requests fail fast with 503 naming the cause (issue 4).
        self.assertTrue(set(seen[:-1]) <= {502, 503}, seen)
        # The backoff (1 s, doubling, jittered) spares the realm: one request per failure, then one success.
        self.assertEqual(st["by_status"], {"500": 3, "200": 1})
        self.assertEqual([e["status"] for e in st["log"]], [500, 500, 500, 200])

    def test_realm_failing_until_cleared_then_recovery(self):
        tr = World.tr
        self.proxy = start_proxy("t6-clear", timeouts={"upstreamHeaders": "1s"})
        tr.inject("status", status=503, count=None)
        t0 = time.monotonic()
        statuses = []
        while time.monotonic() - t0 < 2.5:
            statuses.append(get_manifest(self.proxy).status)
            threading.Event().wait(0.05)  # pacing: ~20 requests a second
        self.assertEqual(statuses[0], 502, "the first failure is the realm's own (502)")
        self.assertTrue(set(statuses) <= {502, 503}, f"statuses {sorted(set(statuses))} in {len(statuses)} requests")
        self.assertIn(503, statuses, "requests during the backoff fail fast with 503")
        failed = tr.stats()["requests"]
        self.assertLessEqual(failed, 4, f"{len(statuses)} requests in 2.5 s made {failed} realm requests")
        tr.clear_faults()
        # Exponential backoff: after ~3 failures the next attempt is at most 4 s away.
        harness.wait_until(lambda: get_manifest(self.proxy).status == 200, 10, "recovery after clear_faults()")
        print(f"      {len(statuses)} requests against a failing realm: {failed} realm requests", flush=True)

    def test_slow_realm_is_504_and_stalls_only_its_own_scope(self):
        tr = World.tr
        self.proxy = start_proxy("t6-slow", timeouts={"upstreamHeaders": "1s"})
        self.assertEqual(get_manifest(self.proxy, OTHER).status, 200)  # OTHER's token is cached
        tr.inject("ok", delay=4.0, count=1, scope=scope(APP))
        result = {}

        def slow_one():
            t = time.monotonic()
            result["resp"] = get_manifest(self.proxy, APP)
            result["took"] = time.monotonic() - t

        th = threading.Thread(target=slow_one)
        th.start()
        try:
            harness.wait_until(lambda: tr.stats()["in_flight"] == 1, 5, "the slow realm request to arrive")
            t = time.monotonic()
            r = get_manifest(self.proxy, OTHER)
            other_ms = (time.monotonic() - t) * 1000
        finally:
            th.join(30)
        self.assertEqual(r.status, 200)
        self.assertLess(other_ms, 500, "a cached scope waited for another scope's slow realm")
        resp, took = result["resp"], result["took"]
        print(f"      slow realm (4s, upstreamHeaders 1s): {resp.status} after {took:.2f}s; "
              f"cached scope meanwhile {other_ms:.0f} ms", flush=True)
        self.assertEqual(resp.status, 504, repr(resp))
        self.assertIsNotNone(error_doc(resp), resp.body[:200])
        self.assertGreaterEqual(took, 0.9)
        self.assertLess(took, 3.0, "the realm fetch is bounded by timeouts.upstreamHeaders (1s)")
        harness.wait_until(lambda: get_manifest(self.proxy, APP).status == 200, 10, "recovery after the slow answer")

    def test_bad_realm_answers_are_502(self):
        tr = World.tr
        c = harness.Checks(self)
        for kind, status in (("garbage", 200), ("no_token", 200), ("close", 0), ("status", 503), ("status", 404)):
            tr.reset_stats()
            p = self.proxy = start_proxy(f"t6-{kind}-{status}", timeouts={"upstreamHeaders": "1s"})
            try:
                tr.inject(kind, status=status, count=1)
                r = get_manifest(p)
                c.eq(r.status, 502, f"realm fault {kind} {status}: status")
                c.check(error_doc(r) is not None, f"realm fault {kind} {status}: registry error JSON {r.body[:200]!r}")
                c.eq(tr.stats()["requests"], 1, f"realm fault {kind} {status}: realm requests")
                harness.wait_until(lambda: get_manifest(p).status == 200, 5, f"recovery after {kind}")
            finally:
                self.proxy = None
                p.stop()
        c.done()


class T7_PasswordRotation(Base):
    def reloads_ok(self):
        m = re.search(r'^acp_config_reloads_total\{result="ok"\} (\d+)', self.proxy.metrics(), re.M)
        return int(m.group(1)) if m else None

    def test_rotated_password_is_used_after_sighup(self):
        tr = World.tr
        self.proxy = start_proxy("t7", user=ROTOR, password=ROTOR_PW1)
        pw_file = self.proxy.config["registries"][0]["auth"]["passwordFile"]
        self.assertEqual(get_manifest(self.proxy, APP).status, 200)
        tr.set_password(ROTOR, ROTOR_PW2)
        before = tr.stats()["requests"]
        self.assertEqual(get_manifest(self.proxy, APP).status, 200, "a cached token keeps working")
        self.assertEqual(tr.stats()["requests"], before, "served from the cache")
        r = get_manifest(self.proxy, OTHER)
        self.assertEqual(r.status, 403, f"a new scope with the old password: {r!r}")
        self.assertEqual(password_file("t7", ROTOR_PW2), pw_file)
        self.assertEqual(self.reloads_ok(), 0, "the password file is not watched; SIGHUP reloads")
        t0 = time.monotonic()
        os.kill(self.proxy.child.pid, signal.SIGHUP)
        harness.wait_until(lambda: self.reloads_ok() == 1, 10, "the reload after SIGHUP")
        harness.wait_until(lambda: get_manifest(self.proxy, OTHER).status == 200, 5, "a pull with the new password")
        took = time.monotonic() - t0
        self.assertEqual(get_manifest(self.proxy, APP).status, 200)
        statuses = [(e["user"], e["status"]) for e in tr.stats()["log"]]
        print(f"      SIGHUP to a 200 with the rotated password: {took:.2f}s; realm (user, status): {statuses}",
              flush=True)
        self.assertEqual(statuses[0], (ROTOR, 200))
        self.assertIn((ROTOR, 401), statuses)
        self.assertEqual(statuses[-1], (ROTOR, 200))


class T8_NoSecretsInLogs(Base):
    def test_proxy_logs_hold_no_password_basic_value_or_token(self):
        # Traffic of its own at trace level (the test also runs alone), then every proxy log of the run.
        self.proxy = start_proxy("t8", log_level="trace")
        for repo in REPOS:
            self.assertEqual(get_manifest(self.proxy, repo).status, 200)
            self.assertEqual(self.proxy.request("GET", target("blobs", repo, World.image.config.digest)).status, 200)
        own = self.proxy.log_text()
        self.assertRegex(own, r"debug +tokens: .*realm", "the token flow logged at debug level")
        logs = [p.log_path for p in World.proxies]
        text = ""
        for path in logs:
            with open(path, errors="replace") as f:
                text += f.read()
        secrets_used = list(ALL_PASSWORDS)
        for user, pw in ((USER, PASSWORD), (USER, WRONG_PASSWORD), (ROTOR, ROTOR_PW1), (ROTOR, ROTOR_PW2)):
            secrets_used.append(base64.b64encode(f"{user}:{pw}".encode()).decode())
        # assertFalse, not assertNotIn: a failure names the log and line, never prints the secret.
        for i, s in enumerate(secrets_used):
            self.assertFalse(s in text, f"secret #{i} (password or Basic value) reached a proxy log: {where(s, logs)}")
        self.assertFalse(World.token_header_b64 in text,
                         f"the first segment of a token reached a proxy log: {where(World.token_header_b64, logs)}")
        # The detectors find what they look for (a planted token and Basic value).
        planted = World.tr.token([scope(APP)])
        self.assertIsNotNone(JWT_SHAPE.search(f"x {planted} y"))
        self.assertIn(World.token_header_b64, planted)
        self.assertIsNone(JWT_SHAPE.search(text), f"a token-shaped string reached a proxy log: {where(JWT_SHAPE, logs)}")
        bearer = re.compile(r"Bearer [A-Za-z0-9._~+/-]{16,}")
        self.assertIsNone(bearer.search(text), f"a Bearer value reached a proxy log: {where(bearer, logs)}")
        print(f"      {len(logs)} proxy logs, {len(text)} bytes checked", flush=True)


if __name__ == "__main__":
    sys.exit(harness.run_tests())
