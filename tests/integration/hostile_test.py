#!/usr/bin/env python3
"""Hostile input: every request or upstream answer below is refused with a
clear status, nothing reaches a registry, and no credential leaves the proxy.

Runs in a private network namespace (harness.enter_private_netns) with the
metadata address 100.100.100.200, the link-local 169.254.169.254 and a
"remote" registry address 192.0.2.10 (TEST-NET-1) added to its loopback
device: even a bug cannot send a packet off the machine, and a tripwire
listener on each of those addresses proves the proxy never dialled it.

Upstreams (tests/support/fault_tools.RawUpstream, recording every request head):
  good.host      127.0.0.1, Basic credentials injected; answers 200 to anything
  redir.test     192.0.2.10 (not loopback), Basic credentials; answers 307 to a
                 Location chosen by the repository name (followRedirects: true)
  tls.test       127.0.0.1 over TLS (caFile); challenges with a realm on a host
                 that is not allow-listed, or downgraded to http
After each case: the proxy's fds are back to baseline and its RSS growth is
bounded (tests/support/fault_tools.ProcBudget; RSS skipped in sanitizer builds).

Every input and what was observed is printed at the end ("observed:" lines),
the source of the results table in the issue's closing note.

Usage: hostile_test.py --proxy build/proxy/acr-credential-proxy
"""

import os
import socket
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))

import fault_tools  # noqa: E402
import harness  # noqa: E402
import proxy as proxy_mod  # noqa: E402
from fault_tools import http_head  # noqa: E402

METADATA = "100.100.100.200"
LINK_LOCAL = "169.254.169.254"
REMOTE = "192.0.2.10"  # the redirecting registry's address: not loopback
REPO = "team/app"
HEADER_READ_S = 2.0


class World:
    tmp = None
    binary = None
    proxy = None
    budget = None
    good = None
    redir = None
    tls_reg = None
    realm = None
    tripwires = []
    trip_base = {}
    password = None
    observed = []  # (area, input, observed)


def observe(area, what, result):
    World.observed.append((area, what, result))


def q(ns):
    return "?" + urllib.parse.urlencode({"ns": ns})


# -- upstream scripts ---------------------------------------------------------

def _good_script(conn):
    body = b'{"schemaVersion":2}'
    while conn.read_head() is not None:
        if not conn.send(http_head(200, [("Content-Type", "application/vnd.oci.image.manifest.v1+json"),
                                         ("Content-Length", len(body))]) + body):
            return


def redirect_targets():
    """Repository name -> Location the redirecting registry answers with."""
    loop = World.tripwires[0].port  # a loopback tripwire port
    return {
        "ftp": f"ftp://127.0.0.1:{loop}/blob",
        "file": "file:///etc/passwd",
        "gopher": f"gopher://127.0.0.1:{loop}/_GET",
        "javascript": "javascript:alert(1)",
        "data": "data:text/plain,hello",
        "loopback-ip": f"http://127.0.0.1:{loop}/bucket/x",
        "loopback-name": f"http://localhost:{loop}/bucket/x",
        "loopback-v6": f"http://[::1]:{loop}/bucket/x",
        "loopback-other": f"http://127.1.2.3:{loop}/bucket/x",
        "unspecified": f"http://0.0.0.0:{loop}/bucket/x",
        "link-local": f"http://{LINK_LOCAL}/latest/meta-data/",
        "metadata": f"http://{METADATA}/latest/meta-data/ram/security-credentials/",
        "metadata-https": f"https://{METADATA}/latest/meta-data/",
        "metadata-port": f"http://{METADATA}:80/latest/api/token",
        "metadata-mapped-v6": f"http://[::ffff:{METADATA}]/latest/meta-data/",
        "metadata-decimal": "http://1684301000/latest/meta-data/",
        "metadata-hex": "http://0x646464c8/latest/meta-data/",
        "metadata-userinfo": f"http://oss.example@{METADATA}/latest/meta-data/",
        "metadata-relative-scheme": f"//{METADATA}/latest/meta-data/",
    }


def _redir_script(conn):
    while True:
        head = conn.read_head()
        if head is None:
            return
        path = head.split(b" ", 2)[1].decode()
        name = path.split("/")[2] if path.count("/") >= 3 else ""
        location = redirect_targets().get(name, "/nowhere")
        if not conn.send(http_head(307, [("Location", location), ("Content-Length", 0)])):
            return


def _tls_script(conn):
    """A registry over TLS whose challenge names the realm the repository asks for."""
    while True:
        head = conn.read_head()
        if head is None:
            return
        path = head.split(b" ", 2)[1].decode()
        realm_port = World.realm.port
        realm = {
            "realm-http": f"http://127.0.0.1:{realm_port}/auth",
            "realm-evil": "https://evil.example/auth",
            "realm-metadata": f"https://{METADATA}/auth",
            "realm-userinfo": "https://127.0.0.1@evil.example/auth",
        }.get(path.split("/")[2] if path.count("/") >= 3 else "", "https://evil.example/auth")
        challenge = f'Bearer realm="{realm}",service="tls.test",scope="repository:x:pull"'
        if not conn.send(http_head(401, [("WWW-Authenticate", challenge), ("Content-Length", 0)])):
            return


def setUpModule():
    harness.enter_private_netns()
    harness.require_tools("openssl", "ip")
    World.binary = proxy_mod.find_binary()
    World.tmp = harness.TempDir("hostile")
    for address in (METADATA, LINK_LOCAL, REMOTE):
        fault_tools.add_local_address(address)
    loop_tw = fault_tools.Tripwire("127.0.0.1", 0)
    World.tripwires = [loop_tw]
    for address in (METADATA, LINK_LOCAL):
        for port in (80, 443):
            World.tripwires.append(fault_tools.Tripwire(address, port))

    certs = fault_tools.make_certs(World.tmp.join("certs"))
    World.good = fault_tools.RawUpstream(_good_script, name="good")
    World.redir = fault_tools.RawUpstream(_redir_script, host=REMOTE, name="redir")
    World.realm = fault_tools.RawUpstream(_good_script, name="realm")  # must never be asked
    World.tls_reg = fault_tools.RawUpstream(_tls_script, tls=certs["good"], name="tls-registry")
    World.password = harness.secrets_token()
    pw = World.tmp.join("pw")
    with open(pw, "w") as f:
        f.write(World.password)
    basic = {"type": "basic", "username": "robot", "passwordFile": pw}
    World.proxy = proxy_mod.Proxy(World.binary, World.tmp.join("proxy"), {
        "followRedirects": True,
        "registries": [
            {"host": "good.host", "auth": basic},
            {"host": "redir.test", "auth": basic},
            {"host": "tls.test", "auth": basic, "caFile": certs["ca"], "realmHosts": ["127.0.0.1"]},
        ],
        "endpointOverrides": {
            "good.host": f"http://{World.good.authority}",
            "redir.test": f"http://{World.redir.authority}",
            "tls.test": f"https://{World.tls_reg.authority}",
        },
        "timeouts": {"headerRead": f"{HEADER_READ_S}s", "upstreamConnect": "2s", "upstreamHeaders": "3s"},
        "limits": {"maxIdleUpstreamPerHost": 2},
        "log": {"level": "debug", "format": "text"},
    }).start()
    # Warm-up: one request of each kind, so lazily created state is in the baseline.
    for _ in range(3):
        World.proxy.request("GET", f"/v2/{REPO}/manifests/v1{q('good.host')}")
        World.proxy.request("GET", "/v2/")
    World.budget = fault_tools.ProcBudget(World.proxy, World.binary, pool_allowance=6)
    World.budget.take()


def tearDownModule():
    if World.proxy:
        World.proxy.stop()
    for s in (World.good, World.redir, World.tls_reg, World.realm, *World.tripwires):
        if s:
            s.stop()
    if World.observed:
        print("observed (area | input | result):")
        for area, what, result in World.observed:
            print(f"  {area} | {what} | {result}")
        sys.stdout.flush()


def clear_upstreams():
    for s in (World.good, World.redir, World.tls_reg, World.realm):
        s.clear()
    World.trip_base = {f"{t.address}:{t.port}": t.count() for t in World.tripwires}


def upstream_heads():
    """Request lines that reached each upstream (only the first line: the rest may hold credentials)."""
    return {s.name: [h.split(b"\r\n", 1)[0].decode(errors="replace")[:120] for h in s.seen()]
            for s in (World.good, World.redir, World.tls_reg, World.realm) if s.seen()}


def tripwire_hits():
    """Connections to each tripwire since the last clear_upstreams()."""
    now = {f"{t.address}:{t.port}": t.count() for t in World.tripwires}
    return {k: v - World.trip_base.get(k, 0) for k, v in now.items() if v != World.trip_base.get(k, 0)}


class Base(harness.TestCaseBase):
    def watched(self):
        return [World.proxy] if World.proxy else []

    def setUp(self):
        clear_upstreams()

    def tearDown(self):
        super().tearDown()
        problems = World.budget.check(self.id().rsplit(".", 1)[-1])
        self.assertEqual(problems, [], "\n".join(problems))

    def assert_nothing_forwarded(self, c, what):
        c.eq(upstream_heads(), {}, f"{what}: requests that reached an upstream")
        c.eq(tripwire_hits(), {}, f"{what}: connections to a tripwire address")

    def still_serving(self, c, what):
        r = World.proxy.request("GET", f"/v2/{REPO}/manifests/v1{q('good.host')}")
        c.eq(r.status, 200, f"after {what}: a normal pull")
        clear_upstreams()


def raw_status(data, timeout=5):
    raw, closed = fault_tools.raw_exchange(World.proxy.port, data, timeout=timeout)
    codes = fault_tools.statuses(raw)
    return (codes[0] if codes else None), closed, raw


class Smuggling(Base):
    GOOD = f"/v2/{REPO}/manifests/v1?ns=good.host"
    # Well-framed requests (no body, a valid head) that are refused: the
    # connection may stay open for the next request.
    FRAMED = {"absolute-form target to another host", "absolute-form target with ns", "CONNECT"}

    def cases(self):
        g = self.GOOD
        return [
            ("CL+TE", f"GET {g} HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
            ("TE+CL", f"GET {g} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n"),
            ("two CLs (0, 5)", f"GET {g} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\nGET /"),
            ("two equal CLs", f"GET {g} HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc"),
            ("CL list '3, 3'", f"GET {g} HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\nabc"),
            ("negative CL", f"GET {g} HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"),
            ("CL on GET", f"GET {g} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nGET /"),
            ("TE chunked body on GET",
             f"GET {g} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
            ("TE gzip, chunked on GET",
             f"GET {g} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
            ("TE with obs-text", f"GET {g} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \x0bchunked\r\n\r\n0\r\n\r\n"),
            ("obs-fold on TE", f"GET {g} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n"),
            ("bare LF line ends", f"GET {g} HTTP/1.1\nHost: x\n\n"),
            ("bare CR in a header", f"GET {g} HTTP/1.1\r\nHost: x\r\nX-A: b\rc\r\n\r\n"),
            ("space before colon", f"GET {g} HTTP/1.1\r\nHost : x\r\n\r\n"),
            ("space in header name", f"GET {g} HTTP/1.1\r\nHost: x\r\nBad Header: x\r\n\r\n"),
            ("'@' in header name", f"GET {g} HTTP/1.1\r\nHost: x\r\nX@Y: z\r\n\r\n"),
            ("empty header name", f"GET {g} HTTP/1.1\r\nHost: x\r\n: z\r\n\r\n"),
            ("NUL in header value", f"GET {g} HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n"),
            ("header line without colon", f"GET {g} HTTP/1.1\r\nHost: x\r\nnocolon\r\n\r\n"),
            ("CRLF inside the target", f"GET /v2/{REPO}/manifests/v1?ns=good.host\r\nX-Injected: 1 HTTP/1.1\r\nHost: x\r\n\r\n"),
            ("absolute-form target to another host", f"GET http://evil.example/v2/{REPO}/manifests/v1 HTTP/1.1\r\nHost: evil.example\r\n\r\n"),
            ("absolute-form target with ns", f"GET http://good.host{g} HTTP/1.1\r\nHost: good.host\r\n\r\n"),
            ("CONNECT", "CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n"),
            ("HTTP/0.9 request", f"GET {g}\r\n\r\n"),
            ("unknown version", f"GET {g} HTTP/3.7\r\nHost: x\r\n\r\n"),
            ("Upgrade: h2c", f"GET {g} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                             "HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\nContent-Length: 4\r\n\r\nabcd"),
        ]

    def test_ambiguous_or_malformed_requests_are_refused_and_closed(self):
        c = harness.Checks(self)
        for name, data in self.cases():
            clear_upstreams()
            status, closed, raw = raw_status(data.encode("latin-1"))
            observe("smuggling", name, f"{status}, connection {'closed' if closed else 'open'}")
            c.check(status is not None and 400 <= status < 500,
                    f"{name}: a 4xx answer, got {status} ({raw[:120]!r})")
            c.check(len(fault_tools.statuses(raw)) <= 1, f"{name}: one answer only, got {fault_tools.statuses(raw)}")
            if name not in self.FRAMED:
                c.check(closed, f"{name}: the connection is closed after the refusal")
            self.assert_nothing_forwarded(c, name)
        self.still_serving(c, "smuggling shapes")
        c.done()

    def test_h2_preface_then_garbage_is_a_protocol_error_never_forwarded(self):
        # The data listener speaks h2c with prior knowledge (issue 9): the client
        # preface gets the server's SETTINGS; bytes that are not HTTP/2 frames after
        # it end the connection with GOAWAY(PROTOCOL_ERROR), and nothing is forwarded.
        c = harness.Checks(self)
        clear_upstreams()
        preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
        garbage = f"GET {self.GOOD} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        raw, closed = fault_tools.raw_exchange(World.proxy.port, preface + garbage, timeout=5)
        types = []
        rest = raw
        while len(rest) >= 9:  # RFC 9113 §4.1: length (24 bits), type, flags, stream id
            length = int.from_bytes(rest[:3], "big")
            types.append(rest[3])
            rest = rest[9 + length:]
        observe("smuggling", "HTTP/2 preface then an HTTP/1.1 request",
                f"frames {types}, connection {'closed' if closed else 'open'}")
        c.check(not raw.startswith(b"HTTP/"), f"an HTTP/2 answer, not HTTP/1.1 ({raw[:40]!r})")
        c.check(types[:1] == [0x4], f"the server's SETTINGS first, got frame types {types}")
        c.check(0x7 in types, f"a GOAWAY for the garbage, got frame types {types}")
        c.check(closed, "the connection is closed after the GOAWAY")
        self.assert_nothing_forwarded(c, "h2 preface + garbage")
        self.still_serving(c, "an HTTP/2 protocol error")
        c.done()

    def test_obs_fold_is_unfolded_never_passed_on_folded(self):
        # RFC 9112 §5.2 lets a server either refuse obs-fold or replace it with SP
        # before interpreting or forwarding. Beast does the latter; the proxy
        # re-serialises every field on one line, so a fold cannot reach the
        # registry (and folding a framing header is refused: "obs-fold on TE").
        c = harness.Checks(self)
        status, closed, raw = raw_status(
            f"GET {self.GOOD} HTTP/1.1\r\nHost: x\r\nX-A: b\r\n c\r\nConnection: close\r\n\r\n".encode())
        heads = World.good.seen()
        c.eq(status, 200, "status")
        c.eq(len(heads), 1, "requests at the registry")
        if heads:
            c.check(b"\r\nX-A: b c\r\n" in heads[0], "the registry got the field unfolded on one line")
            c.check(b"\r\n c" not in heads[0] and b"\r\n\t" not in heads[0], "no continuation line upstream")
        observe("smuggling", "obs-fold on an ordinary header",
                f"{status}: unfolded to one line (RFC 9112 §5.2 replace-with-SP), forwarded as 'X-A: b c'")
        c.done()

    def test_pipelined_request_after_a_refused_body_is_not_run(self):
        # A GET with a body whose bytes form a second request: the proxy must
        # not parse the body as the next request.
        c = harness.Checks(self)
        inner = f"GET {self.GOOD} HTTP/1.1\r\nHost: x\r\n\r\n"
        data = f"GET {self.GOOD} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(inner)}\r\n\r\n{inner}"
        status, closed, raw = raw_status(data.encode())
        c.eq(fault_tools.statuses(raw), [400], "answers (the smuggled inner GET must not run)")
        self.assert_nothing_forwarded(c, "GET with a request as its body")
        observe("smuggling", "GET whose body is a second request", f"{fault_tools.statuses(raw)}, inner GET not run")
        c.done()


class HeaderFloods(Base):
    GOOD = f"/v2/{REPO}/manifests/v1?ns=good.host"

    def test_too_many_or_too_large_headers_are_431(self):
        c = harness.Checks(self)
        cases = [
            ("1,000 small headers (8 KiB)", "".join(f"X-F{i}: v\r\n" for i in range(1000))),
            ("200 small headers", "".join(f"X-F{i}: v\r\n" for i in range(200))),
            ("one 20 KiB header value", "X-Big: " + "a" * 20_000 + "\r\n"),
            ("one 20 KiB header name", "X" * 20_000 + ": v\r\n"),
            ("64 KiB of headers", "".join(f"X-F{i}: {'b' * 1000}\r\n" for i in range(64))),
            ("a 20 KiB request target", None),
        ]
        for name, extra in cases:
            clear_upstreams()
            if extra is None:
                data = f"GET /v2/{'a' * 20_000}/manifests/v1?ns=good.host HTTP/1.1\r\nHost: x\r\n\r\n"
            else:
                data = f"GET {self.GOOD} HTTP/1.1\r\nHost: x\r\n{extra}\r\n"
            status, closed, raw = raw_status(data.encode())
            observe("header flood", name, f"{status}, connection {'closed' if closed else 'open'}")
            c.eq(status, 431, f"{name}: status")
            c.check(closed, f"{name}: connection closed")
            self.assert_nothing_forwarded(c, name)
        # Under the limits: 60 headers pass.
        r = World.proxy.request("GET", self.GOOD, [(f"X-Ok{i}", "v") for i in range(60)])
        c.eq(r.status, 200, "60 ordinary headers are fine")
        observe("header flood", "60 ordinary headers (control)", f"{r.status}")
        clear_upstreams()
        c.done()


class Slowloris(Base):
    def test_trickled_heads_are_closed_at_the_header_timeout_and_others_are_served(self):
        c = harness.Checks(self)
        socks = []
        t0 = time.monotonic()
        for _ in range(50):
            s = socket.create_connection(("127.0.0.1", World.proxy.port), timeout=10)
            s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n")
            socks.append(s)
        closed_at = {}
        served = []
        deadline = t0 + HEADER_READ_S + 5
        i = 0
        while len(closed_at) < len(socks) and time.monotonic() < deadline:
            # One byte per connection every ~100 ms: never a complete head.
            for n, s in enumerate(socks):
                if n in closed_at:
                    continue
                try:
                    s.sendall(b"X")
                    s.setblocking(False)
                    try:
                        if s.recv(1) == b"":
                            closed_at[n] = time.monotonic() - t0
                    except BlockingIOError:
                        pass
                    finally:
                        s.setblocking(True)
                except (BrokenPipeError, ConnectionResetError):
                    closed_at[n] = time.monotonic() - t0
            if i % 3 == 0:
                t1 = time.monotonic()
                r = World.proxy.request("GET", f"/v2/{REPO}/manifests/v1{q('good.host')}")
                served.append((r.status, time.monotonic() - t1))
            i += 1
            time.sleep(0.1)  # the trickle's pace (what is being tested), not synchronisation
        for s in socks:
            s.close()
        times = sorted(closed_at.values())
        c.eq(len(closed_at), len(socks), "trickling connections closed by the proxy")
        if times:
            c.check(times[0] >= HEADER_READ_S - 0.3, f"first close at {times[0]:.2f}s (headerRead {HEADER_READ_S}s)")
            c.check(times[-1] <= HEADER_READ_S + 2.0, f"last close at {times[-1]:.2f}s (headerRead {HEADER_READ_S}s)")
        c.check(served and all(st == 200 for st, _ in served), f"other clients meanwhile: {[s for s, _ in served]}")
        slowest = max((d for _, d in served), default=0)
        c.check(slowest < 1.0, f"slowest other request meanwhile {slowest:.2f}s")
        observe("slowloris", "50 connections trickling a head 1 byte/100 ms (headerRead 2s)",
                f"closed after {times[0]:.2f}-{times[-1]:.2f}s; {len(served)} other pulls all 200, slowest {slowest:.2f}s"
                if times else "not closed")
        clear_upstreams()
        c.done()


class Namespaces(Base):
    def test_ns_values_that_are_not_configured_hosts_are_404_never_forwarded(self):
        c = harness.Checks(self)
        path = f"/v2/{REPO}/manifests/v1"
        cases = [
            ("evil.example", "?ns=evil.example"),
            ("127.0.0.1:22", "?ns=127.0.0.1%3A22"),
            ("127.0.0.1:22 (raw colon)", "?ns=127.0.0.1:22"),
            ("metadata address", f"?ns={METADATA}"),
            ("link-local", f"?ns={LINK_LOCAL}"),
            ("localhost", "?ns=localhost"),
            ("[::1]", "?ns=%5B%3A%3A1%5D"),
            ("CRLF injected (encoded)", "?ns=good.host%0D%0AX-Injected:%201"),
            ("LF injected (encoded)", "?ns=good.host%0Aevil"),
            ("%00 after the host", "?ns=good.host%00"),
            ("%00 before an evil host", "?ns=good.host%00.evil.example"),
            ("user-info good.host@evil", "?ns=good.host%40evil.example"),
            ("user-info raw @", "?ns=good.host@evil.example"),
            ("user-info evil@good.host", "?ns=evil.example%40good.host"),
            ("user:pass@good.host", "?ns=user:pass%40good.host"),
            ("good.host:443@evil", "?ns=good.host:443%40evil.example"),
            ("path in ns", "?ns=good.host%2Fevil"),
            ("scheme in ns", "?ns=http%3A%2F%2Fgood.host"),
            ("trailing dot", "?ns=good.host."),
            ("suffix trick", "?ns=good.host.evil.example"),
            ("prefix trick", "?ns=evilgood.host"),
            ("port 0", "?ns=good.host%3A0"),
            ("port overflow", "?ns=good.host%3A65616"),
            ("backslash", "?ns=good.host%5Cevil.example"),
            ("percent-encoded host", "?ns=%67ood.host.evil"),
            ("double-encoded", "?ns=good.host%2540evil.example"),
            ("space", "?ns=good.host%20evil.example"),
            ("two ns, good first", "?ns=good.host&ns=evil.example"),
            ("two ns, evil first", "?ns=evil.example&ns=good.host"),
            ("ns[]", "?ns[]=good.host"),
            ("unicode lookalike", "?ns=g%D0%BEod.host"),
            ("4 KiB ns", "?ns=" + "a" * 4096 + ".host"),
        ]
        for name, query in cases:
            clear_upstreams()
            t0 = time.monotonic()
            status, closed, raw = raw_status(f"GET {path}{query} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            elapsed = time.monotonic() - t0
            observe("ns", name, f"{status}")
            c.check(status in (400, 404), f"ns {name}: 400/404, got {status} ({raw[:160]!r})")
            c.check(elapsed < 1.0, f"ns {name}: answered in {elapsed:.2f}s")
            c.check(b"X-Injected" not in raw.split(b"\r\n\r\n", 1)[0],
                    f"ns {name}: no injected header in the answer head")
            self.assert_nothing_forwarded(c, f"ns {name}")
        self.still_serving(c, "ns tricks")
        c.done()


class Names(Base):
    def test_traversal_and_encoding_tricks_in_names_are_refused(self):
        c = harness.Checks(self)
        ns = "?ns=good.host"
        digest = "sha256:" + "a" * 64
        cases = [
            ("..", "/v2/../manifests/v1"),
            ("a/../b", "/v2/team/../app/manifests/v1"),
            ("../ at the end", "/v2/team/app/../manifests/v1"),
            ("%2e%2e", "/v2/%2e%2e/manifests/v1"),
            ("a/%2e%2e/b", "/v2/team/%2e%2e/app/manifests/v1"),
            ("%2E%2E upper", "/v2/team/%2E%2E/app/manifests/v1"),
            ("%2f in name", "/v2/team%2fapp/manifests/v1"),
            ("%2F..%2F", "/v2/team%2F..%2Fapp/manifests/v1"),
            ("%252e%252e (double)", "/v2/team/%252e%252e/app/manifests/v1"),
            ("./", "/v2/./team/manifests/v1"),
            ("//", "/v2/team//app/manifests/v1"),
            ("backslash", "/v2/team\\..\\app/manifests/v1"),
            ("%5c", "/v2/team%5c..%5capp/manifests/v1"),
            ("upper-case name", "/v2/Team/App/manifests/v1"),
            ("%00 in name", "/v2/team%00/app/manifests/v1"),
            ("%00 in tag", f"/v2/{REPO}/manifests/v1%00"),
            ("tag ..", f"/v2/{REPO}/manifests/.."),
            ("tag %2e%2e", f"/v2/{REPO}/manifests/%2e%2e"),
            ("tag with /", f"/v2/{REPO}/manifests/v1/../../x"),
            ("tag with ;", f"/v2/{REPO}/manifests/v1;x=y"),
            ("digest with ..", f"/v2/{REPO}/blobs/sha256:../../etc/passwd"),
            ("short digest", f"/v2/{REPO}/blobs/sha256:abc"),
            ("digest bad hex", f"/v2/{REPO}/blobs/sha256:" + "g" * 64),
            ("blob by tag", f"/v2/{REPO}/blobs/latest"),
            ("name of 256 chars", "/v2/" + "/".join(["a" * 63] * 4) + "a/manifests/v1"),
            ("name of 4,000 chars", "/v2/" + "a" * 4000 + "/manifests/v1"),
            ("name of 200 components", "/v2/" + "/".join(["a"] * 200) + "/manifests/v1"),
            ("tag of 129 chars", f"/v2/{REPO}/manifests/" + "t" * 129),
            ("tag of 4,000 chars", f"/v2/{REPO}/manifests/" + "t" * 4000),
            ("digest of 4,000 hex", f"/v2/{REPO}/blobs/sha256:" + "a" * 4000),
            ("uploads path (push)", f"/v2/{REPO}/blobs/uploads/"),
            ("_catalog", "/v2/_catalog"),
            ("not /v2", "/v1/team/app/manifests/v1"),
            ("fragment", f"/v2/{REPO}/manifests/v1#frag"),
            ("target without /", "v2/team/app/manifests/v1"),
            ("asterisk target", "*"),
        ]
        for name, path in cases:
            clear_upstreams()
            target = path + (ns if path.startswith("/") else "")
            status, closed, raw = raw_status(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            observe("names", name, f"{status}")
            c.check(status in (400, 404, 405, 414, 431), f"{name}: refused with 400/404, got {status} ({raw[:160]!r})")
            self.assert_nothing_forwarded(c, name)
        self.still_serving(c, "name tricks")
        c.done()


class Realms(Base):
    def test_realm_not_allow_listed_or_downgraded_gets_no_credentials(self):
        c = harness.Checks(self)
        for repo in ("realm-http", "realm-evil", "realm-metadata", "realm-userinfo"):
            clear_upstreams()
            r = World.proxy.request("GET", f"/v2/{repo}/x/manifests/v1{q('tls.test')}")
            heads = World.tls_reg.seen()
            observe("realm", repo, f"{r.status}: {r.body[:160].decode(errors='replace')}")
            c.check(r.status in (502, 403, 503), f"{repo}: refused with 502/403/503, got {r.status} {r.body[:200]!r}")
            c.check(r.status != 401, f"{repo}: never 401")
            c.eq(World.realm.seen(), [], f"{repo}: requests at the realm")
            c.eq(tripwire_hits(), {}, f"{repo}: tripwire hits")
            # The registry itself got the configured Basic credentials (its own host), nothing else.
            for h in heads:
                c.check(World.password.encode() not in h, f"{repo}: the raw password never appears in a head")
        log = World.proxy.log_text()
        c.check(World.password not in log, "the password is not in the proxy log")
        c.done()


class Redirects(Base):
    def test_follow_mode_refuses_targets_outside_http_or_on_internal_addresses(self):
        c = harness.Checks(self)
        for name, location in redirect_targets().items():
            clear_upstreams()
            before = {f"{t.address}:{t.port}": t.count() for t in World.tripwires}
            t0 = time.monotonic()
            r = World.proxy.request("GET", f"/v2/{name}/app/blobs/sha256:{'b' * 64}{q('redir.test')}")
            elapsed = time.monotonic() - t0
            after = {f"{t.address}:{t.port}": t.count() for t in World.tripwires}
            dialled = {k: after[k] - before[k] for k in after if after[k] != before[k]}
            observe("redirect (follow mode)", f"307 → {location}",
                    f"{r.status} in {elapsed:.2f}s; {r.body[:140].decode(errors='replace')}")
            c.eq(r.status, 502, f"{name} ({location}): status")
            c.eq(dialled, {}, f"{name}: tripwire connections")
            c.check(elapsed < 2.0, f"{name}: refused in {elapsed:.2f}s (no connect attempt timing out)")
            c.eq(len(World.redir.seen()), 1, f"{name}: requests at the registry (only the first)")
            c.check(r.header("Location") is None, f"{name}: no Location handed to the client")
        self.still_serving(c, "redirect tricks")
        c.done()


if __name__ == "__main__":
    sys.exit(harness.run_tests())
