#!/usr/bin/env python3
"""Blob redirects (ACR sends blobs to signed OSS URLs) in both proxy modes.

A fake registry (in-process, recording) answers blob GET/HEAD with 307 to a
second loopback server, the "object store", which serves the bytes (Range
honoured) and records every request's headers. The proxy is configured with
Basic credentials for the fake registry, so it injects Authorization there.

  followRedirects: false (default) - the 307 reaches the client unchanged
                                     (status, Location); the store sees nothing.
  followRedirects: true            - the proxy follows: the client gets the
                                     bytes (200, or 206 with Range kept), and the
                                     store never sees Authorization (neither the
                                     injected one nor one the client sent).
                                     A redirect loop ends with an error after a
                                     bounded number of hops.

Usage: redirect_test.py --proxy build/proxy/acr-credential-proxy
"""

import hashlib
import os
import random
import re
import sys
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))

import fake_upstream  # noqa: E402
import harness  # noqa: E402
import proxy as proxy_mod  # noqa: E402

REGISTRY = "redirect.test"
REPO = "team/app"
SIGNED_QUERY = "Expires=1700000000&OSSAccessKeyId=LTAI-test&Signature=abc%2Fdef%3D"


def _blob(seed, size):
    data = random.Random(seed).randbytes(size)
    return "sha256:" + hashlib.sha256(data).hexdigest(), data


# digest -> (bytes, how the registry redirects it)
BLOBS = {}
for _name, _size, _target in (("host-change", 1_500_000, "localhost"),   # another host name
                              ("port-change", 70_000, "127.0.0.1"),      # same IP, another port
                              ("two-hops", 4_000, "hop"),                # registry -> registry -> store
                              ("loop", 10, "loop")):                     # store redirects to itself forever
    _d, _b = _blob(_name, _size)
    BLOBS[_name] = (_d, _b, _target)
BY_DIGEST = {d: (name, b, target) for name, (d, b, target) in BLOBS.items()}


class World:
    tmp = None
    registry = None  # fake registry
    store = None  # fake object store
    password = None
    proxies = {}  # follow (bool) -> Proxy


def _store_handler(req):
    m = re.fullmatch(r"/bucket/(sha256:[0-9a-f]{64})", req.path)
    if not m or m.group(1) not in BY_DIGEST:
        return 404, [("Content-Type", "application/xml")], b"<Error><Code>NoSuchKey</Code></Error>"
    name, data, _ = BY_DIGEST[m.group(1)]
    if name == "loop":
        return 307, [("Location", f"http://127.0.0.1:{World.store.port}{req.target}")], b""
    return fake_upstream.serve_bytes(req, data, extra=[("ETag", '"oss-etag"')])


def _registry_handler(req):
    if req.path == "/v2/":
        return 200, [("Content-Type", "application/json")], b"{}"
    m = re.fullmatch(rf"/v2/{REPO}/blobs/(sha256:[0-9a-f]{{64}})", req.path)
    if m and m.group(1) in BY_DIGEST:
        digest = m.group(1)
        _, _, target = BY_DIGEST[digest]
        if target == "hop" and "hopped" not in req.query:
            # First hop stays on the registry (same origin), second goes to the store.
            return 307, [("Location", f"/v2/{REPO}/blobs/{digest}?hopped=1")], b""
        host = {"localhost": "localhost", "127.0.0.1": "127.0.0.1", "hop": "127.0.0.1", "loop": "127.0.0.1"}[target]
        location = f"http://{host}:{World.store.port}/bucket/{digest}?{SIGNED_QUERY}"
        return 307, [("Location", location), ("Content-Type", "text/html; charset=utf-8"),
                     ("Docker-Distribution-Api-Version", "registry/2.0")], b'<a href="x">Temporary Redirect</a>.\n'
    return 404, [("Content-Type", "application/json")], b'{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}'


def setUpModule():
    binary = proxy_mod.find_binary()
    World.tmp = harness.TempDir("redirect")
    World.store = fake_upstream.FakeServer(_store_handler, "object-store").start()
    World.registry = fake_upstream.FakeServer(_registry_handler, "redirecting-registry").start()
    World.password = harness.secrets_token()
    pw_file = World.tmp.join("registry.password")
    with open(pw_file, "w") as f:
        f.write(World.password)
    for follow in (False, True):
        World.proxies[follow] = proxy_mod.Proxy(binary, World.tmp.join(f"proxy-follow-{follow}"), {
            "followRedirects": follow,
            "registries": [{"host": REGISTRY, "auth": {"type": "basic", "username": "robot", "passwordFile": pw_file}}],
            "endpointOverrides": {REGISTRY: f"http://127.0.0.1:{World.registry.port}"},
        }, name=f"proxy-follow-{str(follow).lower()}").start()


def tearDownModule():
    for p in World.proxies.values():
        p.stop()
    for s in (World.registry, World.store):
        if s:
            s.stop()


def _target(digest):
    return f"/v2/{REPO}/blobs/{digest}?" + urllib.parse.urlencode({"ns": REGISTRY})


def _clear():
    World.registry.clear()
    World.store.clear()



class Base(harness.TestCaseBase):
    def watched(self):  # after each test: the proxy must still be alive
        return list(World.proxies.values())

class PassThrough(Base):
    """followRedirects: false — the client (containerd) follows the redirect itself."""

    def test_307_reaches_client_unchanged(self):
        c = harness.Checks(self)
        p = World.proxies[False]
        for name in ("host-change", "port-change"):
            digest, _, _ = BLOBS[name]
            for method in ("GET", "HEAD"):
                _clear()
                r = p.request(method, _target(digest), [("Range", "bytes=0-99")])
                c.eq(r.status, 307, f"{name} {method} status")
                sent = World.registry.seen()
                c.eq(len(sent), 1, f"{name} {method}: requests at the registry")
                want_location = _registry_handler(sent[0])[1][0][1] if sent else None
                c.eq(r.header("Location"), want_location, f"{name} {method} Location (signed URL untouched)")
                if sent:
                    c.secret_eq(sent[0].header("Authorization"), harness.basic_auth("robot", World.password),
                         f"{name} {method}: the registry got the injected credentials")
                    c.eq(sent[0].header("Range"), "bytes=0-99", f"{name} {method}: Range forwarded to the registry")
                c.eq(World.store.seen(), [], f"{name} {method}: the store saw nothing (the client follows, not the proxy)")
        c.done()


class Follow(Base):
    """followRedirects: true — the proxy fetches the signed URL itself."""

    def _get(self, c, name, headers=(), method="GET"):
        digest, data, _ = BLOBS[name]
        _clear()
        r = World.proxies[True].request(method, _target(digest), list(headers))
        store = World.store.seen()
        c.check(len(World.registry.seen()) >= 1, f"{name}: the registry was asked first")
        for i, req in enumerate(store):
            c.secret_eq(req.header_all("Authorization"), [], f"{name} {method}: Authorization at the store (request {i + 1})")
            c.eq(req.query, SIGNED_QUERY, f"{name} {method}: the signed query string reached the store untouched")
        return r, data, store

    def test_follows_and_returns_the_bytes(self):
        c = harness.Checks(self)
        for name in ("host-change", "port-change", "two-hops"):
            r, data, store = self._get(c, name)
            c.eq(r.status, 200, f"{name} status")
            c.eq(r.sha256(), BLOBS[name][0], f"{name} sha256 of body")
            c.eq(r.header("Content-Length"), str(len(data)), f"{name} Content-Length")
            c.eq(r.header("Location"), None, f"{name}: no Location left for the client")
            c.eq(len(store), 1, f"{name}: requests at the store")
        c.done()

    def test_head_is_followed_without_body(self):
        c = harness.Checks(self)
        r, data, store = self._get(c, "host-change", method="HEAD")
        c.eq((r.status, r.body), (200, b""), "HEAD")
        c.eq(r.header("Content-Length"), str(len(data)), "HEAD Content-Length")
        c.done()

    def test_range_is_kept_across_the_redirect(self):
        c = harness.Checks(self)
        for name in ("host-change", "two-hops"):
            size = len(BLOBS[name][1])
            for start, end in ((0, 0), (1000, 3999), (size - 100, size - 1)):
                r, data, store = self._get(c, name, [("Range", f"bytes={start}-{end}")])
                c.eq(r.status, 206, f"{name} bytes={start}-{end} status")
                c.eq(r.header("Content-Range"), f"bytes {start}-{end}/{size}", f"{name} Content-Range")
                c.check(r.body == data[start:end + 1], f"{name} bytes={start}-{end}: body differs")
                c.eq([q.header("Range") for q in store], [f"bytes={start}-{end}"], f"{name}: Range at the store")
        c.done()

    def test_client_authorization_never_reaches_the_store(self):
        c = harness.Checks(self)
        own = "Bearer pod-pull-secret-token"
        r, data, store = self._get(c, "host-change", [("Authorization", own)])
        c.eq(r.status, 200, "status")
        c.secret_eq(World.registry.seen()[0].header_all("Authorization") if World.registry.seen() else None, [own],
             "the registry got the client's own Authorization untouched")
        c.done()

    def test_redirect_loop_is_bounded(self):
        c = harness.Checks(self)
        r, _, store = self._get(c, "loop")
        c.check(r.status >= 500 or 300 <= r.status < 400,
                f"a redirect loop ends in an error (or hands the last redirect over), got {r.status}")
        c.check(1 <= len(store) <= 5, f"hops followed into the loop: {len(store)} (at most 5 in total)")
        c.done()


if __name__ == "__main__":
    sys.exit(harness.run_tests())
