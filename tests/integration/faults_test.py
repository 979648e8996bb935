#!/usr/bin/env python3
"""Data-plane faults: upstreams that reset, stall, trickle, fail name
resolution, refuse connections or present bad certificates; clients that go
away mid-blob; connection bursts; many concurrent pulls of one blob.

Runs in a private network namespace (harness.enter_private_netns), so the
name that does not resolve makes no DNS query leave the machine.

One proxy; each configured registry is a raw upstream
(tests/support/fault_tools.RawUpstream) whose behaviour is chosen by the
first component of the repository name:
  reset-cl       200 with Content-Length, part of the body, then a TCP reset
  reset-chunked  200 chunked, some chunks, then a reset (no 0-chunk)
  close-cl       200 with Content-Length, part of the body, then a clean FIN
  slow-headers   never answers (the proxy must give up at upstreamHeaders)
  slow-body      the head and 1 KiB, then silence (upstreamIdle ends it)
  status-NNN     an NNN answer with a registry error body and extra headers
  big            a 64 MiB body sent as fast as the proxy reads it
  blob           a fixed 2 MiB blob, keep-alive
TLS registries (certificates made with openssl by fault_tools.make_certs):
good, expired, wrong name and unknown CA. Plus one whose endpoint is a name
that does not resolve and one whose port refuses connections.

After each case the proxy's fds are back to baseline (idle pooled upstream
connections allowed) and its RSS growth is bounded (skipped for sanitizer
builds). Every fault and what was observed is printed at the end.

Usage: faults_test.py --proxy build/proxy/acr-credential-proxy
"""

import base64
import hashlib
import os
import random
import re
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))

import fake_upstream  # noqa: E402
import fault_tools  # noqa: E402
import harness  # noqa: E402
from acr_like import FakeAlibaba  # noqa: E402
import proxy as proxy_mod  # noqa: E402
from fault_tools import http_head  # noqa: E402

UPSTREAM_HEADERS_S = 2.0
UPSTREAM_IDLE_S = 2.0
CL_TOTAL = 1_000_000
BLOB = random.Random("faults").randbytes(2 * 1024 * 1024)
BLOB_DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()
BIG_SIZE = 64 * 1024 * 1024
ERROR_BODY = b'{"errors":[{"code":"UNAVAILABLE","message":"registry says: backend down"}]}'


class World:
    tmp = None
    binary = None
    proxy = None
    budget = None
    up = None
    tls = {}
    observed = []
    big_sent = {}  # connection index -> bytes the upstream managed to send


def observe(what, result):
    World.observed.append((what, result))


def _send_slowly(conn, data, piece=16384):
    for i in range(0, len(data), piece):
        if not conn.send(data[i:i + piece]):
            return False
    return True


def _script(conn):
    while True:
        head = conn.read_head()
        if head is None:
            return
        path = head.split(b" ", 2)[1].decode()
        kind = path.split("/")[2] if path.count("/") >= 3 else ""
        if kind == "reset-cl":
            conn.send(http_head(200, [("Content-Type", "application/octet-stream"), ("Content-Length", CL_TOTAL)]))
            _send_slowly(conn, b"r" * 300_000)
            conn.reset()
            return
        if kind == "close-cl":
            conn.send(http_head(200, [("Content-Type", "application/octet-stream"), ("Content-Length", CL_TOTAL)]))
            _send_slowly(conn, b"c" * 300_000)
            conn.sock.shutdown(socket.SHUT_WR)
            conn.wait_peer_close(10)
            conn.close()
            return
        if kind in ("reset-chunked", "close-chunked"):
            conn.send(http_head(200, [("Content-Type", "application/octet-stream"), ("Transfer-Encoding", "chunked")]))
            for _ in range(5):
                conn.send(b"4000\r\n" + b"k" * 0x4000 + b"\r\n")
            if kind == "reset-chunked":
                conn.reset()
                return
            conn.sock.shutdown(socket.SHUT_WR)
            conn.wait_peer_close(10)
            conn.close()
            return
        if kind == "slow-headers":
            conn.wait_peer_close(UPSTREAM_HEADERS_S + 10)
            conn.close()
            return
        if kind == "slow-body":
            conn.send(http_head(200, [("Content-Type", "application/octet-stream"), ("Content-Length", 100_000)]))
            conn.send(b"s" * 1024)
            conn.wait_peer_close(UPSTREAM_IDLE_S + 10)
            conn.close()
            return
        if kind == "trickle":
            # 12 pieces of 100 bytes, one every 0.4 s: never silent for upstreamIdle,
            # but far less than one relay buffer in any upstreamIdle window.
            conn.send(http_head(200, [("Content-Type", "application/octet-stream"), ("Content-Length", 1200)]))
            for i in range(12):
                if i:
                    time.sleep(0.4)  # the trickle's pace is what is being tested
                if not conn.send(bytes([65 + i]) * 100):
                    return
            continue
        if kind.startswith("status-"):
            status = int(kind.split("-")[1])
            extra = [("Content-Type", "application/json"), ("Retry-After", "7"), ("X-Registry-Trace", "abc123"),
                     ("Content-Length", len(ERROR_BODY))]
            if not conn.send(http_head(status, extra) + ERROR_BODY):
                return
            continue
        if kind == "big":
            conn.send(http_head(200, [("Content-Type", "application/octet-stream"), ("Content-Length", BIG_SIZE)]))
            piece = b"b" * 65536
            sent = 0
            while sent < BIG_SIZE and conn.send(piece):
                sent += len(piece)
                World.big_sent[conn.index] = sent
            if sent < BIG_SIZE:
                conn.wait_peer_close(5)
                conn.close()
                return
            continue
        if kind == "blob":
            if not conn.send(http_head(200, [("Content-Type", "application/octet-stream"),
                                             ("Docker-Content-Digest", BLOB_DIGEST),
                                             ("Content-Length", len(BLOB))]) + BLOB):
                return
            continue
        if not conn.send(http_head(404, [("Content-Length", 0)])):
            return


def setUpModule():
    harness.enter_private_netns()
    harness.require_tools("openssl")
    World.binary = proxy_mod.find_binary()
    World.tmp = harness.TempDir("faults")
    certs = fault_tools.make_certs(World.tmp.join("certs"))
    World.up = fault_tools.RawUpstream(_script, name="faulty")
    for name in ("good", "expired", "wrongname", "unknown"):
        World.tls[name] = fault_tools.RawUpstream(_script, tls=certs[name], name=f"tls-{name}")
    registries = [{"host": "up.test", "auth": {"type": "anonymous"}},
                  {"host": "nodns.test", "auth": {"type": "anonymous"}},
                  {"host": "refused.test", "auth": {"type": "anonymous"}}]
    overrides = {"up.test": f"http://{World.up.authority}",
                 "nodns.test": "http://no-such-registry.invalid:5000",
                 "refused.test": f"http://127.0.0.1:{harness.free_port()}"}
    for name, srv in World.tls.items():
        registries.append({"host": f"tls-{name}.test", "auth": {"type": "anonymous"}, "caFile": certs["ca"]})
        overrides[f"tls-{name}.test"] = f"https://{srv.authority}"
    World.proxy = proxy_mod.Proxy(World.binary, World.tmp.join("proxy"), {
        "registries": registries,
        "endpointOverrides": overrides,
        "timeouts": {"upstreamConnect": "2s", "upstreamHeaders": f"{UPSTREAM_HEADERS_S:g}s",
                     "upstreamIdle": f"{UPSTREAM_IDLE_S:g}s", "idle": "5s"},
        "limits": {"maxIdleUpstreamPerHost": 2},
        "log": {"level": "debug", "format": "text"},
    }).start()
    for _ in range(3):  # warm-up
        World.proxy.request("GET", "/v2/blob/x/blobs/" + BLOB_DIGEST + "?ns=up.test")
        World.proxy.request("GET", "/v2/")
    # Idle pooled upstream connections the proxy may keep: 2 per origin (5 TLS/plain origins).
    World.budget = fault_tools.ProcBudget(World.proxy, World.binary, pool_allowance=2 * 5)
    World.budget.take()


def tearDownModule():
    if World.proxy:
        World.proxy.stop()
    for s in (World.up, *World.tls.values()):
        if s:
            s.stop()
    if World.observed:
        print("observed (fault | result):")
        for what, result in World.observed:
            print(f"  {what} | {result}")
        sys.stdout.flush()


def fetch_raw(path, timeout=20, read_limit=None):
    """GET on a new connection; reads the head, then the body until the proxy
    closes or the framing says it is complete. Returns a dict."""
    s = socket.create_connection(("127.0.0.1", World.proxy.port), timeout=timeout)
    t0 = time.monotonic()
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = b""
    closed = False
    head = None
    while True:
        if head is None and b"\r\n\r\n" in data:
            head, _, data = data.partition(b"\r\n\r\n")
        if head is not None:
            cl = re.search(rb"\r\ncontent-length: *(\d+)", head, re.I)
            if cl and len(data) >= int(cl.group(1)):
                break
            if re.search(rb"\r\ntransfer-encoding: *chunked", head, re.I) and data.endswith(b"\r\n0\r\n\r\n"):
                break
            if read_limit is not None and len(data) >= read_limit:
                break
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            closed = True
            break
        if not chunk:
            closed = True
            break
        data += chunk
    elapsed = time.monotonic() - t0
    s.close()
    status = None
    if head:
        m = re.match(rb"HTTP/1\.1 (\d{3})", head)
        status = int(m.group(1)) if m else None
    return {"status": status, "head": head or b"", "body": data, "closed": closed, "elapsed": elapsed}


def header(head, name):
    m = re.search(rb"\r\n" + name.encode() + rb": *([^\r]*)", head, re.I)
    return m.group(1).decode() if m else None


class Base(harness.TestCaseBase):
    def watched(self):
        return [World.proxy] if World.proxy else []

    def setUp(self):
        World.up.clear()

    def tearDown(self):
        super().tearDown()
        problems = World.budget.check(self.id().rsplit(".", 1)[-1])
        self.assertEqual(problems, [], "\n".join(problems))

    def log_has(self, pattern, since):
        return re.search(pattern, World.proxy.log_text()[since:]) is not None


class BrokenTransfers(Base):
    def test_upstream_reset_or_close_mid_body_is_a_broken_transfer_for_the_client(self):
        c = harness.Checks(self)
        for kind in ("reset-cl", "close-cl"):
            r = fetch_raw(f"/v2/{kind}/x/blobs/sha256:{'a' * 64}?ns=up.test")
            cl = header(r["head"], "Content-Length")
            c.eq(r["status"], 200, f"{kind}: status (headers were already sent)")
            c.eq(cl, str(CL_TOTAL), f"{kind}: Content-Length passed through")
            c.check(len(r["body"]) < CL_TOTAL, f"{kind}: body shorter than Content-Length ({len(r['body'])})")
            c.check(r["closed"], f"{kind}: the proxy closed the connection before Content-Length was reached")
            observe(f"upstream {'resets' if kind == 'reset-cl' else 'closes (FIN)'} after 300,000 of {CL_TOTAL} bytes "
                    "(Content-Length)", f"client: 200, {len(r['body'])} bytes, then the connection is closed "
                    "(short of Content-Length: a broken transfer)")
        c.done()

    def test_chunked_upstream_cut_short_never_sends_the_last_chunk(self):
        c = harness.Checks(self)
        for kind in ("reset-chunked", "close-chunked"):
            r = fetch_raw(f"/v2/{kind}/x/blobs/sha256:{'a' * 64}?ns=up.test")
            c.eq(r["status"], 200, f"{kind}: status")
            c.eq(header(r["head"], "Transfer-Encoding"), "chunked", f"{kind}: chunked to the client")
            c.check(b"\r\n0\r\n\r\n" not in r["body"] and not r["body"].startswith(b"0\r\n"),
                    f"{kind}: no terminating 0-chunk")
            c.check(r["closed"], f"{kind}: connection closed")
            observe(f"chunked upstream {'resets' if kind == 'reset-chunked' else 'closes (FIN)'} after 5 chunks "
                    "(80 KiB), no 0-chunk",
                    f"client: 200 chunked, {len(r['body'])} bytes, no terminating 0-chunk, connection closed")
        c.done()


class Timeouts(Base):
    def test_slow_headers_are_504_at_the_configured_timeout(self):
        c = harness.Checks(self)
        r = fetch_raw("/v2/slow-headers/x/manifests/v1?ns=up.test")
        c.eq(r["status"], 504, "status")
        c.check(UPSTREAM_HEADERS_S - 0.2 <= r["elapsed"] <= UPSTREAM_HEADERS_S + 1.5,
                f"answered after {r['elapsed']:.2f}s (upstreamHeaders {UPSTREAM_HEADERS_S}s)")
        conn = World.up.conn_for(b"/slow-headers/")
        c.check(conn is not None and conn.wait_peer_close(3), "the proxy closed the upstream connection")
        observe(f"upstream never answers (upstreamHeaders {UPSTREAM_HEADERS_S:g}s)",
                f"{r['status']} after {r['elapsed']:.2f}s; upstream connection closed")
        c.done()

    def test_slow_body_is_ended_by_the_idle_timeout(self):
        c = harness.Checks(self)
        r = fetch_raw(f"/v2/slow-body/x/blobs/sha256:{'a' * 64}?ns=up.test")
        c.eq(r["status"], 200, "status")
        c.check(len(r["body"]) < 100_000, f"a short body ({len(r['body'])} of 100,000 bytes)")
        c.check(r["closed"], "client connection closed (broken transfer)")
        c.check(UPSTREAM_IDLE_S - 0.2 <= r["elapsed"] <= UPSTREAM_IDLE_S + 1.5,
                f"closed after {r['elapsed']:.2f}s (upstreamIdle {UPSTREAM_IDLE_S}s)")
        conn = World.up.conn_for(b"/slow-body/")
        c.check(conn is not None and conn.wait_peer_close(3), "the proxy closed the upstream connection")
        observe(f"upstream sends the head and 1 KiB, then nothing (upstreamIdle {UPSTREAM_IDLE_S:g}s)",
                f"client: 200, {len(r['body'])} of the 1,024 sent bytes, closed after {r['elapsed']:.2f}s; "
                "upstream connection closed")
        c.done()


    def test_slow_but_steady_body_is_relayed_as_it_comes(self):
        # upstreamIdle is "no body byte for this long", not "one relay buffer per
        # upstreamIdle": a trickling upstream that never pauses that long completes,
        # and its bytes reach the client as they arrive.
        c = harness.Checks(self)
        s = socket.create_connection(("127.0.0.1", World.proxy.port), timeout=10)
        t0 = time.monotonic()
        s.sendall(b"GET /v2/trickle/x/blobs/sha256:" + b"a" * 64 + b"?ns=up.test HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        first_body_at = None
        while True:
            try:
                chunk = s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not chunk:
                break
            data += chunk
            if first_body_at is None and b"\r\n\r\n" in data and data.split(b"\r\n\r\n", 1)[1]:
                first_body_at = time.monotonic() - t0
            if b"\r\n\r\n" in data and len(data.split(b"\r\n\r\n", 1)[1]) >= 1200:
                break
        s.close()
        elapsed = time.monotonic() - t0
        body = data.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in data else b""
        want = b"".join(bytes([65 + i]) * 100 for i in range(12))
        c.check(body == want, f"the whole 1,200-byte body arrived ({len(body)} bytes in {elapsed:.2f}s)")
        c.check(first_body_at is not None and first_body_at < 1.0,
                f"the first piece reached the client after {first_body_at}s (sent at once)")
        observe(f"upstream trickles 1,200 bytes over 4.4 s, 100 bytes every 0.4 s (upstreamIdle {UPSTREAM_IDLE_S:g}s)",
                f"client: {len(body)} bytes in {elapsed:.2f}s, first bytes after "
                f"{first_body_at if first_body_at is None else round(first_body_at, 2)}s")
        c.done()


class Statuses(Base):
    def test_5xx_are_passed_through_unchanged(self):
        c = harness.Checks(self)
        for status in (500, 502, 503, 504):
            r = World.proxy.request("GET", f"/v2/status-{status}/x/manifests/v1?ns=up.test")
            c.eq(r.status, status, f"{status}: status")
            c.eq(r.body, ERROR_BODY, f"{status}: body")
            c.eq(r.header("Retry-After"), "7", f"{status}: Retry-After")
            c.eq(r.header("X-Registry-Trace"), "abc123", f"{status}: other headers")
            observe(f"upstream answers {status} with a registry error body", f"{r.status}, body and headers unchanged")
        c.done()


class Dialling(Base):
    def _case(self, c, host, want_status, log_pattern, what):
        since = len(World.proxy.log_text())
        t0 = time.monotonic()
        r = World.proxy.request("GET", f"/v2/team/app/manifests/v1?ns={host}")
        elapsed = time.monotonic() - t0
        c.eq(r.status, want_status, f"{what}: status")
        c.check(elapsed < 2.5, f"{what}: answered in {elapsed:.2f}s")
        try:
            harness.wait_until(lambda: self.log_has(log_pattern, since), 5, f"log line for {what}")
            logged = True
        except TimeoutError:
            logged = False
        c.check(logged, f"{what}: a log line matching {log_pattern!r}; log tail:\n"
                + World.proxy.log_text()[since:][-600:])
        reason = re.search(rb'"reason":"([^"]*)"', r.body)
        observe(what, f"{r.status} in {elapsed:.2f}s; reason: {reason.group(1).decode() if reason else '-'}")

    def test_dns_failure_connection_refused_and_tls_failures_are_502_naming_the_cause(self):
        c = harness.Checks(self)
        self._case(c, "nodns.test", 502, r"cannot resolve no-such-registry\.invalid", "DNS: name does not resolve")
        self._case(c, "refused.test", 502, r"[Cc]onnection refused", "connection refused")
        self._case(c, "tls-expired.test", 502, r"certificate has expired", "TLS: expired certificate")
        self._case(c, "tls-wrongname.test", 502, r"(IP address|[Hh]ostname) mismatch", "TLS: wrong host name")
        self._case(c, "tls-unknown.test", 502, r"unable to get local issuer certificate|self.signed",
                   "TLS: certificate from an unknown CA")
        r = World.proxy.request("GET", f"/v2/blob/x/blobs/{BLOB_DIGEST}?ns=tls-good.test")
        c.eq((r.status, r.sha256()), (200, BLOB_DIGEST), "control: the good TLS registry serves")
        c.done()


class ClientGoesAway(Base):
    def test_upstream_transfer_stops_and_the_connection_is_not_pooled(self):
        c = harness.Checks(self)
        World.big_sent.clear()
        r = fetch_raw(f"/v2/big/x/blobs/sha256:{'a' * 64}?ns=up.test", read_limit=1_000_000)
        c.eq(r["status"], 200, "status")
        t_gone = time.monotonic()
        big = World.up.conn_for(b"/big/")
        stopped = big is not None and big.wait_peer_close(5)
        c.check(stopped, "the upstream saw its connection closed after the client went away")
        sent = World.big_sent.get(big.index, 0) if big else 0
        c.check(sent < BIG_SIZE // 2, f"the upstream sent {sent} of {BIG_SIZE} bytes (the transfer stopped)")
        # The next request works, on a new upstream connection (the aborted one was not pooled).
        before = World.up.accepted
        r2 = World.proxy.request("GET", f"/v2/blob/x/blobs/{BLOB_DIGEST}?ns=up.test")
        c.eq((r2.status, r2.sha256()), (200, BLOB_DIGEST), "next request")
        heads = [(i, h) for i, h in World.up.heads if b"/blob/x/" in h]
        c.check(heads and heads[-1][0] != (big.index if big else -1),
                "the next request did not reuse the aborted connection")
        observe("client reads 1 MB of a 64 MiB blob and disconnects",
                f"upstream connection closed {((big.peer_closed_at or t_gone) - t_gone):+.2f}s after; "
                f"upstream sent {sent / 1e6:.1f} MB in all; next request 200 on a new upstream connection "
                f"({World.up.accepted - before} opened)")
        c.done()


class Load(Base):
    def test_1000_connections_opened_and_dropped_in_bursts(self):
        c = harness.Checks(self)
        shapes = [b"", b"GET /v2/", b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n",
                  f"GET /v2/blob/x/blobs/{BLOB_DIGEST}?ns=up.test HTTP/1.1\r\nHost: x\r\n\r\n".encode()]
        opened = 0
        for burst in range(10):
            socks = []
            for i in range(100):
                s = socket.socket()
                s.connect(("127.0.0.1", World.proxy.port))
                data = shapes[(burst + i) % len(shapes)]
                if data:
                    s.sendall(data)
                socks.append(s)
                opened += 1
            for n, s in enumerate(socks):
                if n % 2:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
                s.close()
        problems = World.budget.check("1000 dropped connections", deadline=20)
        c.eq(problems, [], "fds after the bursts")
        r = World.proxy.request("GET", f"/v2/blob/x/blobs/{BLOB_DIGEST}?ns=up.test")
        c.eq((r.status, r.sha256()), (200, BLOB_DIGEST), "still serving")
        observe(f"{opened} connections in 10 bursts of 100 (nothing / partial head / ping / blob GET), "
                "closed at once (half with RST)", "fds back to baseline; next pull 200")
        c.done()

    def test_64_concurrent_pulls_of_the_same_blob(self):
        c = harness.Checks(self)
        results = [None] * 64
        start = threading.Barrier(64)

        def pull(i):
            start.wait()
            try:
                r = harness.request("127.0.0.1", World.proxy.port, "GET",
                                    f"/v2/blob/x/blobs/{BLOB_DIGEST}?ns=up.test", timeout=60)
                results[i] = (r.status, r.sha256(), len(r.body))
            except OSError as e:
                results[i] = ("error", repr(e), 0)

        threads = [threading.Thread(target=pull, args=(i,)) for i in range(64)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        elapsed = time.monotonic() - t0
        good = sum(1 for r in results if r == (200, BLOB_DIGEST, len(BLOB)))
        c.eq(good, 64, f"pulls with every byte right (others: {[r for r in results if r != (200, BLOB_DIGEST, len(BLOB))][:3]})")
        observe("64 concurrent pulls of one 2 MiB blob", f"{good}/64 with the right digest in {elapsed:.1f}s")
        c.done()


# ---------------------------------------------------------------------------
# Control plane: IMDS, STS and the ACR OpenAPI misbehaving (the token realm's
# down/slow/garbage cases are token_flow_test's T6, the ACR API down for longer
# than a password's life is acr_credentials_test's T3).

CP_REGION = "cn-hangzhou"
CP_INSTANCE = "cri-faults0000000"
CP_LIFE_S = 14  # every credential the scenarios depend on lives this long
CP_AK_ID = "LTAI" + harness.secrets_token()[:20]
CP_AK_SECRET = harness.secrets_token()
CP_MANIFEST = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}'


class Scenario:
    """One fake Alibaba Cloud (its own process), one fake registry that accepts
    exactly the fake ACR's valid temporary passwords (Basic), one proxy."""

    def __init__(self, name, knobs, env_ak, instance_extra=None):
        self.name = name
        self.domain = f"{name}.faults.cr.aliyuncs.com"
        self.fake = FakeAlibaba(World.tmp.join(f"{name}-alibaba.log"), knobs)
        self.registry = fake_upstream.FakeServer(self._registry, f"{name}-registry").start()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ALIBABA_CLOUD_", "ALICLOUD_"))}
        if env_ak:
            env.update({"ALIBABA_CLOUD_ACCESS_KEY_ID": CP_AK_ID, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": CP_AK_SECRET,
                        "ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true"})
        self.proxy = proxy_mod.Proxy(World.binary, World.tmp.join(f"proxy-{name}"), {
            "expiringThreshold": "10s",
            "alibaba": {"regionId": CP_REGION, "imdsEndpoint": self.fake.url("imds"),
                        "stsEndpoint": self.fake.url("sts"), "acrEndpoint": self.fake.url("acr"),
                        "apiTimeout": "1s", "firstCredentialWait": "2s",
                        "refreshBackoffInitial": "500ms", "refreshBackoffMax": "2s"},
            "acrInstances": [dict({"instanceId": CP_INSTANCE, "regionId": CP_REGION, "domains": [self.domain],
                                   "realmHosts": ["127.0.0.1"]}, **(instance_extra or {}))],
            "endpointOverrides": {self.domain: f"http://{self.registry.host}"},
            "log": {"level": "debug", "format": "text"},
        }, env=env, name=f"proxy-{name}")
        self.proxy.env = env  # the whole environment: no AccessKey leaks in from ours
        self.timeline = []

    def _registry(self, req):
        auth = req.header("Authorization") or ""
        if auth.startswith("Basic "):
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            answer = self.fake.control("POST", "/check_password", {"username": user, "password": password})
            if answer.get("valid"):
                return 200, [("Content-Type", "application/vnd.oci.image.manifest.v1+json")], CP_MANIFEST
        return 401, [("WWW-Authenticate", 'Basic realm="acr"'), ("Content-Type", "application/json")], \
            b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}'

    def pull(self):
        r = self.proxy.request("GET", f"/v2/team/app/manifests/v1?ns={self.domain}")
        return r.status, r.body

    def ready(self):
        return self.proxy.admin("/readyz").status

    def note(self, what):
        self.timeline.append(what)

    def stop(self):
        """Stops everything; returns a problem string when the proxy did not exit 0 after SIGTERM."""
        status = self.proxy.stop(check=False) if self.proxy.child else 0
        self.registry.stop()
        self.fake.stop()
        if status != 0:
            return f"{self.name}: proxy exited with {status}; log tail:\n{self.proxy.child.log_tail(15)}"
        return None


def _still_valid_then_503_then_recovery(sc, fault, clear, c):
    """Serves, turns the fault on, expects pulls to keep working while the
    password is valid, then 503 + /readyz 503, then recovery once cleared."""
    sc.proxy.start()
    harness.wait_until(lambda: sc.ready() == 200, 20, f"{sc.name}: /readyz 200")
    status, _ = sc.pull()
    c.eq(status, 200, f"{sc.name}: pull before the fault")
    calls = [r for r in sc.fake.requests() if r.get("action") == "GetAuthorizationToken" and r.get("status") == 200]
    c.eq(len(calls), 1, f"{sc.name}: passwords obtained before the fault")
    expires = calls[0]["expire_time"] / 1000.0 if calls else time.time() + CP_LIFE_S
    sc.fake.configure(fault)
    t_fault = time.time()
    early, first_503 = [], None
    while time.time() < expires + 8:
        status, body = sc.pull()
        now = time.time()
        if status == 503:
            first_503 = (now, body)
            break
        if status != 200:
            early.append((round(now - t_fault, 1), status))
        time.sleep(0.25)  # request pacing
    c.eq(early, [], f"{sc.name}: failures while the password was still valid")
    c.check(first_503 is not None, f"{sc.name}: 503 once the password expired")
    if first_503:
        c.check(first_503[0] >= expires - 1.0, f"{sc.name}: 503 only after expiry ({first_503[0] - expires:+.1f}s)")
        c.check(CP_INSTANCE.encode() in first_503[1] or sc.domain.encode() in first_503[1],
                f"{sc.name}: the 503 names the instance or registry: {first_503[1][:200]!r}")
    ready = sc.ready()
    c.eq(ready, 503, f"{sc.name}: /readyz after expiry")
    sc.note(f"served {(expires - t_fault):.1f}s on the valid password, first 503 "
            f"{(first_503[0] - expires) if first_503 else float('nan'):+.1f}s after its expiry, /readyz {ready}")
    sc.fake.configure(clear)
    t_clear = time.time()
    try:
        harness.wait_until(lambda: sc.ready() == 200 and sc.pull()[0] == 200, 10, f"{sc.name}: recovery")
        sc.note(f"recovered {time.time() - t_clear:.1f}s after the fault cleared, same process")
    except TimeoutError as e:
        c.check(False, str(e))
    c.check(sc.proxy.child.alive(), f"{sc.name}: no restart")


def _cold_start_fault_then_recovery(sc, fault, clear, c):
    """The fault from the start: no password, 503 + /readyz 503, recovery once cleared."""
    sc.fake.configure(fault)
    sc.proxy.start()
    t0 = time.time()
    status, body = sc.pull()
    c.eq(status, 503, f"{sc.name}: pull without a password")
    c.check(CP_INSTANCE.encode() in body or sc.domain.encode() in body,
            f"{sc.name}: the 503 names the instance or registry: {body[:200]!r}")
    ready = sc.ready()
    c.eq(ready, 503, f"{sc.name}: /readyz")
    sc.note(f"pull {status} after {time.time() - t0:.1f}s (firstCredentialWait 2s), /readyz {ready}")
    sc.fake.configure(clear)
    t_clear = time.time()
    try:
        harness.wait_until(lambda: sc.ready() == 200 and sc.pull()[0] == 200, 10, f"{sc.name}: recovery")
        sc.note(f"recovered {time.time() - t_clear:.1f}s after the fault cleared, same process")
    except TimeoutError as e:
        c.check(False, str(e))


class ControlPlane(harness.TestCaseBase):
    def test_imds_garbage_acr_garbage_sts_slow_imds_down(self):
        base_knobs = {"region": CP_REGION, "static_keys": {CP_AK_ID: CP_AK_SECRET},
                      "acr": {"password_lifetime_s": 3600, "instances": {CP_INSTANCE: {"endpoints": []}}}}
        imds_short = dict(base_knobs, imds={"role": "acr-node-role", "cred_lifetime_s": CP_LIFE_S, "rotate_before_s": 0})
        acr_short = dict(base_knobs, imds={"role": None},
                         acr={"password_lifetime_s": CP_LIFE_S, "instances": {CP_INSTANCE: {"endpoints": []}}})
        scenarios = [
            (Scenario("imds-garbage", imds_short, env_ak=False), _still_valid_then_503_then_recovery,
             {"garbage": {"imds": True}}, {"garbage": {"imds": False}},
             "IMDS answers 200 with an HTML page (ECS RAM role credentials live 14 s)"),
            (Scenario("imds-down", imds_short, env_ak=False), _still_valid_then_503_then_recovery,
             {"down": {"imds": True}}, {"down": {"imds": False}},
             "IMDS answers 503 (ECS RAM role credentials live 14 s)"),
            (Scenario("acr-garbage", acr_short, env_ak=True), _still_valid_then_503_then_recovery,
             {"garbage": {"acr": True}}, {"garbage": {"acr": False}},
             "ACR OpenAPI answers 200 with an HTML page (passwords live 14 s)"),
            (Scenario("sts-slow", dict(base_knobs, imds={"role": None}), env_ak=True,
                      instance_extra={"assumeRoleARN": "acs:ram::1234567890123456:role/acr-puller"}),
             _cold_start_fault_then_recovery, {"delay_ms": {"sts": 3000}}, {"delay_ms": {"sts": 0}},
             "STS AssumeRole answers after 3 s (apiTimeout 1 s) from the start"),
        ]
        checks = {}
        threads = []
        for sc, fn, fault, clear, _ in scenarios:
            checks[sc.name] = harness.Checks(self)
            threads.append(threading.Thread(target=fn, args=(sc, fault, clear, checks[sc.name])))
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
        finally:
            stops = [sc.stop() for sc, *_ in scenarios]
        c = harness.Checks(self)
        for problem in stops:
            c.check(problem is None, problem)
        for sc, _, _, _, what in scenarios:
            c.problems += checks[sc.name].problems
            c.count += checks[sc.name].count
            observe(what, "; ".join(sc.timeline) or "no result")
        c.done()


if __name__ == "__main__":
    sys.exit(harness.run_tests())
