#!/usr/bin/env python3
"""HTTP/2 through the proxy, named by protocol pair: client -> proxy -> upstream.

  h1->h1   curl --http1.1                  -> docker-registry over TLS, `http2: off`
  h1->h2   curl --http1.1                  -> nghttpx (TLS, ALPN h2) -> docker-registry, `http2: on`
  h2->h1   curl --http2-prior-knowledge, nghttp (h2c on the data listener) -> docker-registry, `http2: off`
  h2->h2   curl --http2-prior-knowledge, nghttp                           -> nghttpx, `http2: on`

Both registries run `auth: token` with an ACR-like realm (tests/support/token_registry.py); the
h2 one names its realm on the nghttpx host itself (nghttpx routes /auth to the token server), so
the realm can share the upstream connection. The proxy holds Basic credentials; clients send none.

For each pair (class Pair_<client>_to_<upstream>):
  * manifest GET and HEAD: 200, Content-Type, Docker-Content-Digest, Content-Length, sha256 of the
    body; the client really spoke its protocol (curl's HTTP version) and so did the upstream
    (h2 upstream: nghttpx's access log shows HTTP/2 over ALPN h2; h1: docker-registry's log);
  * a whole blob (digest verified) and a ranged blob (Range -> 206, Content-Range, exact bytes);
  * the token flow with a fresh proxy: the registry's 401, one realm request with the proxy's
    Basic user, the retry with the token -> 200, no challenge reaches the client;
  * an unrouted ns -> 404 NAME_UNKNOWN (never forwarded);
  * h2 clients: the same manifest through nghttp.
h1->h2 and h2->h2 also: 64 concurrent manifest GETs share ONE upstream connection (nghttpx's log:
one client port, ALPN h2), and the realm request of the token flow came on that same connection.

h2c upstream: `http2: on` for a plain-http endpoint (a cleartext nghttpx front before an anonymous
docker-registry) speaks HTTP/2 with prior knowledge (nghttpx logs ALPN "h2c").

Faults (tests/support/h2_fault_server.py: python3-h2 over TLS, ALPN h2 only, `http2: on`):
  * GOAWAY(last_stream_id = the 4th of 8 streams) while the 4 kept streams are mid-body (the 4
    above it unanswered): the kept ones finish on that connection, the 4 above the id are retried
    on another; every client gets the whole blob (h1 clients on 8 connections; an h2 client with
    8 streams on one connection, python3-h2);
  * RST_STREAM(INTERNAL_ERROR) mid-blob: an h1 client sees the connection closed short of
    Content-Length; an h2 client sees its stream reset (curl exit 92) while another stream on the
    same connection still completes.
Downstream h2 also:
  * the TLS data listener (tlsListen): ALPN picks h2 when offered, http/1.1 otherwise; both serve;
  * h2load -n 2000 -c 4 -m 32 through the proxy: every answer 2xx;
  * rapid reset (CVE-2023-44487 shape): a client opening and resetting 2000 streams is cut off
    with GOAWAY, and the proxy keeps serving others.

--rss (suite 'rss', build/ only: sanitizer shadow memory makes RSS meaningless): a 64 MiB blob
over the h2 upstream to a client that stops reading for 3 s (an h1 client, then an h2 client with
huge windows that stops reading its socket): VmRSS stays flat (peak - idle < 24 MiB) and the
blob arrives whole afterwards.

Usage: h2_matrix_test.py --proxy BUILD/proxy/acr-credential-proxy [--rss]
Needs python3-h2 for the interpreter running it (meson runs it with /usr/bin/python3).
"""

import concurrent.futures
import hashlib
import http.client
import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))

import h2_fault_server  # noqa: E402
import harness  # noqa: E402
import nghttpx  # noqa: E402
import oci_image  # noqa: E402
import proxy as proxy_mod  # noqa: E402
import registry as registry_mod  # noqa: E402
import token_registry  # noqa: E402
from oci_image import OCI_INDEX, OCI_MANIFEST, LayerSpec  # noqa: E402
from proc_stats import RssSampler  # noqa: E402

RSS_MODE = "--rss" in sys.argv
USER = "temp_user"
PASSWORD = "temp:h2m-" + harness.secrets_token()
ACCEPT = [("Accept", OCI_MANIFEST), ("Accept", OCI_INDEX)]
# nghttp and h2load keep only the last -H of a name: one Accept with both types.
NGHTTP_ACCEPT = ["-H", "accept: " + ", ".join(v for _, v in ACCEPT)]
PAIRS = [("h1", "h1"), ("h1", "h2"), ("h2", "h1"), ("h2", "h2")]
TAG = "v1"
MIB = 1 << 20
FANOUT = 64
GOAWAY_STREAMS, GOAWAY_KEEP = 8, 4
RSS_BLOB_MIB = 64
RSS_GROWTH_LIMIT_KIB = 24 * 1024


class World:
    tmp = None
    binary = None
    tr1 = None  # h1 upstream: docker-registry over TLS
    tr2 = None  # h2 upstream: plain docker-registry behind nghttpx
    ng = None
    plain = None  # an anonymous docker-registry ...
    ngc = None  # ... behind a cleartext nghttpx front (h2c with prior knowledge)
    fs = None  # h2 fault server
    fault_blobs = []
    rst_blob = None
    image = None
    big = None
    proxy = None
    proxy_tls = None
    tls_port = None
    proxies = []


def repo(kind, client, upstream):
    return f"{kind}/{client}-{upstream}"


def upstream_host(upstream):
    return World.tr1.registry_host if upstream == "h1" else World.ng.host


def scope(name):
    return f"repository:{name}:pull"


# ---------------------------------------------------------------------------
# set-up


def _start_h2_upstream():
    """The token registry whose challenge names a realm on the nghttpx front, and that front.

    The registry must know the realm URL before it starts, and nghttpx the registry's port: so the
    front's port is picked first (a lost race on it restarts both)."""
    last = None
    for attempt in range(3):
        port = harness.free_port()
        tr = token_registry.TokenRegistry(World.tmp.join(f"tr2-{attempt}"), users={USER: PASSWORD},
                                          realm_url=f"https://127.0.0.1:{port}{token_registry.DEFAULT_REALM_PATH}")
        tr.start()
        ng = nghttpx.Nghttpx(World.tmp.join(f"nghttpx-{attempt}"), tr.registry.port,
                             routes=[(tr.realm_path, tr.token_port)], port=port)
        try:
            ng.start()
            return tr, ng
        except RuntimeError as e:
            last = e
            tr.stop()
    raise RuntimeError(f"nghttpx front did not start: {last}")


def _push(image, host, repos, authfile, ca_dir):
    for name in repos:
        oci_image.push(image.layout, TAG, host, name, authfile=authfile, ca_dir=ca_dir)


def _password_file():
    path = World.tmp.join("secrets", "registry.password")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(PASSWORD)
    return path


def proxy_config():
    pw = _password_file()
    basic = {"type": "basic", "username": USER, "passwordFile": pw}
    regs = [
        {"host": World.tr1.registry_host, "auth": basic, "caFile": World.tr1.ca, "http2": "off"},
        {"host": World.ng.host, "auth": basic, "caFile": World.ng.ca, "http2": "on"},
    ]
    overrides = {}
    if World.ngc is not None:
        regs.append({"host": World.ngc.host, "auth": {"type": "anonymous"}, "http2": "on"})
        overrides[World.ngc.host] = World.ngc.url
    if World.fs is not None:
        regs.append({"host": World.fs.host, "auth": {"type": "anonymous"}, "caFile": World.fs.ca, "http2": "on"})
    return {"registries": regs, "endpointOverrides": overrides, "log": {"level": "debug", "format": "text"}}


def start_proxy(name, tls_listener=False):
    cfg = proxy_config()
    if tls_listener:
        World.proxy_tls = registry_mod.make_tls_material(World.tmp.join(f"{name}-tls"))
        World.tls_port = harness.free_port()
        cfg.update({"tlsListen": f"127.0.0.1:{World.tls_port}", "tlsCertFile": World.proxy_tls["cert"],
                    "tlsKeyFile": World.proxy_tls["key"]})
    p = proxy_mod.Proxy(World.binary, World.tmp.join(name), cfg, name=name)
    World.proxies.append(p)
    return p.start()


def setUpModule():
    h2_fault_server.require_h2()
    nghttpx.require_nghttpx()
    harness.require_tools("docker-registry", "skopeo", "curl", "nghttp", "h2load")
    World.binary = proxy_mod.find_binary()
    World.tmp = harness.TempDir("h2-matrix")
    t0 = time.monotonic()
    World.tr1 = token_registry.start_token_registry(World.tmp.join("tr1"), users={USER: PASSWORD}, tls=True)
    World.tr2, World.ng = _start_h2_upstream()
    if RSS_MODE:
        World.big = oci_image.build_image(World.tmp.join("big"), [LayerSpec(RSS_BLOB_MIB * MIB, 1, gzip_level=1)],
                                          tag=TAG, seed="h2-matrix-big")
        _push(World.big, World.ng.host, ["rss/big"], oci_image.write_authfile(
            World.tmp.join("auth-ng.json"), World.ng.host, USER, PASSWORD), World.ng.ca_dir)
    else:
        World.image = oci_image.build_image(World.tmp.join("layout"),
                                            [LayerSpec(256 << 10, 2), LayerSpec(1 << 20, 1, gzip_level=1)],
                                            tag=TAG, seed="h2-matrix")
        auth1 = World.tr1.authfile(World.tmp.join("auth1.json"))
        auth_ng = oci_image.write_authfile(World.tmp.join("auth-ng.json"), World.ng.host, USER, PASSWORD)
        h1_repos, h2_repos = [], []
        for client, upstream in PAIRS:
            names = [repo("pair", client, upstream), repo("token", client, upstream), repo("realm", client, upstream)]
            (h1_repos if upstream == "h1" else h2_repos).extend(names)
        h2_repos += ["fanout/h1-h2", "fanout/h2-h2", "load/h2-h2"]
        _push(World.image, World.tr1.registry_host, h1_repos, auth1, World.tr1.ca_dir)
        _push(World.image, World.ng.host, h2_repos, auth_ng, World.ng.ca_dir)
        World.plain = registry_mod.Registry(World.tmp.join("plain-registry"), name="plain-registry").start()
        _push(World.image, World.plain.host, ["h2c/app"], None, None)
        World.ngc = nghttpx.Nghttpx(World.tmp.join("nghttpx-clear"), World.plain.port, name="nghttpx-clear",
                                    cleartext=True).start()
        World.fs = h2_fault_server.H2FaultServer(World.tmp.join("faults"), goaway_after=GOAWAY_STREAMS,
                                                 goaway_keep=GOAWAY_KEEP, goaway_partial=16384,
                                                 rst_after=64 << 10).start()
        World.fault_blobs = [World.fs.add_blob(os.urandom(256 << 10)) for _ in range(GOAWAY_STREAMS)]
        World.rst_blob = World.fs.add_blob(os.urandom(1 << 20))
    World.proxy = start_proxy("proxy", tls_listener=not RSS_MODE)
    print(f"setup: 2 token registries, nghttpx on {World.ng.host}, proxy on {World.proxy.port}"
          f"{' (TLS ' + str(World.tls_port) + ')' if World.tls_port else ''} in {time.monotonic() - t0:.1f}s",
          flush=True)


def tearDownModule():
    for p in World.proxies:
        p.stop(check=False)
    if World.fs:
        World.fs.stop()
    for ng in (World.ngc, World.ng):
        if ng:
            ng.stop()
    for tr in (World.tr1, World.tr2, World.plain):
        if tr:
            tr.stop()


# ---------------------------------------------------------------------------
# clients


def target(kind, name, ref, ns=None, extra=None):
    q = [("ns", ns)] + list((extra or {}).items())
    return f"/v2/{name}/{kind}/{ref}?" + urllib.parse.urlencode(q)


class Answer:
    def __init__(self, version, status, headers, body, rc, stderr):
        self.version, self.status, self.headers, self.body, self.rc, self.stderr = (
            version, status, headers, body, rc, stderr)

    def header(self, name):
        for k, v in self.headers:
            if k == name.lower():
                return v
        return None

    def sha256(self):
        return "sha256:" + hashlib.sha256(self.body).hexdigest()

    def __repr__(self):
        body = "" if self.status is None or 200 <= self.status < 300 else f" {self.body[:240]!r}"
        return f"<{self.version} {self.status} rc={self.rc} {self.stderr.strip()[:200]!r}{body}>"


def curl(client, path, method="GET", headers=(), port=None, tls=False, extra=()):
    """One request through the proxy with curl speaking `client` (h1: --http1.1, h2: h2c prior knowledge,
    or over the TLS listener: --http2 with ALPN)."""
    port = port or World.proxy.port
    hfile = World.tmp.join(f"curl-h-{time.monotonic_ns()}")
    if tls:
        url = f"https://127.0.0.1:{port}{path}"
        proto = ["--http1.1"] if client == "h1" else ["--http2"]
        proto += ["--cacert", World.proxy_tls["ca"]]
    else:
        url = f"http://127.0.0.1:{port}{path}"
        proto = ["--http1.1"] if client == "h1" else ["--http2-prior-knowledge"]
    argv = ["curl", "-sS", *proto, "-D", hfile, "-o", "-", "--max-time", "60"]
    if method == "HEAD":
        argv.append("-I")
    elif method != "GET":
        argv += ["-X", method]
    for k, v in headers:
        argv += ["-H", f"{k}: {v}"]
    argv += [*extra, url]
    proc = subprocess.run(argv, capture_output=True, timeout=90)
    version, status, hdrs = None, None, []
    try:
        with open(hfile, "rb") as f:
            blocks = [b for b in f.read().decode("latin-1").split("\r\n\r\n") if b.strip()]
        lines = blocks[-1].split("\r\n") if blocks else []
        if lines:
            version, status = lines[0].split(" ")[0], int(lines[0].split(" ")[1])
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                hdrs.append((k.strip().lower(), v.strip()))
    except OSError:
        pass
    body = proc.stdout if method != "HEAD" else b""
    ans = Answer(version, status, hdrs, body, proc.returncode, proc.stderr.decode(errors="replace"))
    if status is not None and not 200 <= status < 300:
        harness.scan_source(f"proxy answer {status} to {method} {path[:80]}", body[:65536].decode("utf-8", "replace"))
    return ans


def want_version(client):
    return "HTTP/1.1" if client == "h1" else "HTTP/2"


def h2_entries_for(path_prefix, since=0):
    return [e for e in World.ng.access_entries()[since:] if e["path"].startswith(path_prefix)]


def metric(text, name):
    total = 0.0
    found = False
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
            found = True
    return total if found else None


class _H2Client:
    """A bare HTTP/2 client over cleartext (prior knowledge), python3-h2, for what curl cannot do:
    stop reading mid-body, reset streams as fast as it can."""

    def __init__(self, port, window=None):
        import h2.config
        import h2.connection
        import h2.settings

        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        if window:
            self.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
            self.conn.increment_flow_control_window(window - 65535)
        self.flush()

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(self, path, headers=(), end=True):
        sid = self.conn.get_next_available_stream_id()
        hdrs = [(":method", "GET"), (":scheme", "http"), (":authority", "127.0.0.1"), (":path", path)]
        hdrs += [(k.lower(), v) for k, v in headers]
        self.conn.send_headers(sid, hdrs, end_stream=end)
        self.flush()
        return sid

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def get_all(self, paths, headers=(), timeout=60):
        """GETs every path at once, each on its own stream of this connection; returns per path
        (status or None, body, what ended it: "end", "reset <code>", "goaway", "closed", "timeout")."""
        import h2.events

        sids = {self.request(p, headers): i for i, p in enumerate(paths)}
        out = [[None, b"", None] for _ in paths]
        deadline = time.monotonic() + timeout
        while any(o[2] is None for o in out):
            if time.monotonic() > deadline:
                for o in out:
                    o[2] = o[2] or "timeout"
                break
            try:
                data = self.sock.recv(1 << 20)
            except socket.timeout:
                continue
            if not data:
                for o in out:
                    o[2] = o[2] or "closed"
                break
            for ev in self.conn.receive_data(data):
                i = sids.get(getattr(ev, "stream_id", None))
                if isinstance(ev, h2.events.ResponseReceived) and i is not None:
                    out[i][0] = int(dict(ev.headers)[":status"])
                elif isinstance(ev, h2.events.DataReceived):
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    if i is not None:
                        out[i][1] += ev.data
                elif isinstance(ev, h2.events.StreamEnded) and i is not None:
                    out[i][2] = "end"
                elif isinstance(ev, h2.events.StreamReset) and i is not None:
                    out[i][2] = f"reset {ev.error_code!r}"
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    for o in out:
                        o[2] = o[2] or "goaway"
            self.flush()
        return [tuple(o) for o in out]


# ---------------------------------------------------------------------------
# the pair matrix


class PairChecks:
    """The cases every pair runs; _pair_class() makes one TestCase per pair (this is not one)."""

    client = upstream = None

    def watched(self):
        return [World.proxy]

    def setUp(self):
        if RSS_MODE:
            self.skipTest("--rss runs only the memory case")

    # -- helpers --

    @property
    def ns(self):
        return upstream_host(self.upstream)

    def upstream_log_len(self):
        return len(World.tr1.registry.access_log()) if self.upstream == "h1" else len(World.ng.access_entries())

    def assert_upstream_protocol(self, c, since, path_part, what):
        """The upstream saw the request over the pair's protocol."""
        if self.upstream == "h2":
            entries = [e for e in World.ng.access_entries()[since:] if path_part in e["path"]]
            c.check(entries, f"{what}: nghttpx logged no request for {path_part}")
            for e in entries:
                c.eq((e["version"], e["alpn"]), ("HTTP/2", "h2"), f"{what}: upstream protocol at nghttpx")
        else:
            log = World.tr1.registry.access_log()[since:]
            c.check(any(path_part in str(entry) for entry in log), f"{what}: docker-registry logged no {path_part}")

    # -- the cases --

    def test_manifest_get_and_head(self):
        name = repo("pair", self.client, self.upstream)
        c = harness.Checks(self)
        m = World.image.manifest
        since = self.upstream_log_len()
        for method in ("GET", "HEAD"):
            r = curl(self.client, target("manifests", name, TAG, self.ns), method, ACCEPT)
            what = f"{self.client}->{self.upstream} {method} manifest"
            if not c.eq((r.version, r.status), (want_version(self.client), 200), f"{what}: version, status ({r!r})"):
                continue
            c.eq(r.header("content-type"), OCI_MANIFEST, f"{what}: Content-Type")
            c.eq(r.header("docker-content-digest"), m.digest, f"{what}: Docker-Content-Digest")
            c.eq(r.header("content-length"), str(m.size), f"{what}: Content-Length")
            c.eq(r.header("www-authenticate"), None, f"{what}: no challenge reaches the client")
            if method == "GET":
                c.eq(r.sha256(), m.digest, f"{what}: sha256 of the body")
        self.assert_upstream_protocol(c, since, f"/v2/{name}/manifests/", f"{self.client}->{self.upstream}")
        c.done()

    def test_whole_blob_digest_verified(self):
        name = repo("pair", self.client, self.upstream)
        c = harness.Checks(self)
        for blob in World.image.blobs():
            r = curl(self.client, target("blobs", name, blob.digest, self.ns))
            what = f"{self.client}->{self.upstream} blob {blob.digest[7:19]} ({blob.size} B)"
            if c.eq((r.version, r.status), (want_version(self.client), 200), f"{what}: version, status ({r!r})"):
                c.eq(len(r.body), blob.size, f"{what}: length")
                c.eq(r.sha256(), blob.digest, f"{what}: sha256")
        c.done()

    def test_ranged_blob_is_206_with_the_exact_bytes(self):
        name = repo("pair", self.client, self.upstream)
        c = harness.Checks(self)
        blob = max(World.image.layers, key=lambda b: b.size)
        for first, last in ((0, 0), (10, 1033), (blob.size - 4096, blob.size - 1), (65530, 200000)):
            r = curl(self.client, target("blobs", name, blob.digest, self.ns), headers=[("Range", f"bytes={first}-{last}")])
            what = f"{self.client}->{self.upstream} Range {first}-{last}"
            if c.eq((r.version, r.status), (want_version(self.client), 206), f"{what}: version, status ({r!r})"):
                c.eq(r.header("content-range"), f"bytes {first}-{last}/{blob.size}", f"{what}: Content-Range")
                c.check(r.body == blob.read(first, last + 1), f"{what}: the exact bytes ({len(r.body)} B)")
        c.done()

    def test_token_flow_401_realm_retry_with_a_fresh_proxy(self):
        name = repo("token", self.client, self.upstream)
        tr = World.tr1 if self.upstream == "h1" else World.tr2
        tr.reset_stats()
        p = start_proxy(f"token-{self.client}-{self.upstream}")
        c = harness.Checks(self)
        since = self.upstream_log_len()
        try:
            port = p.port
            for i in range(2):
                r = curl(self.client, target("manifests", name, TAG, self.ns), "GET", ACCEPT, port=port)
                what = f"{self.client}->{self.upstream} token flow request {i + 1}"
                c.eq((r.version, r.status), (want_version(self.client), 200), f"{what}: version, status ({r!r})")
                c.eq(r.sha256(), World.image.manifest.digest, f"{what}: body")
                c.eq(r.header("www-authenticate"), None, f"{what}: no challenge reaches the client")
        finally:
            p.stop()
        st = tr.stats()
        c.eq(st["by_scope"], {scope(name): 1}, "realm requests per scope (the second request reuses the token)")
        c.eq(st["by_user"], {USER: 1}, "the proxy's Basic user at the realm")
        c.eq(st["by_status"], {"200": 1}, "realm answers")
        if self.upstream == "h1":
            statuses = [s for _, path, s in World.tr1.registry.access_log()[since:] if f"/v2/{name}/" in path]
            c.eq(statuses[:1], [401], f"registry statuses for {name}: the challenge first")
            c.eq(statuses.count(200), 2, f"registry statuses for {name}: two 200s ({statuses})")
        else:
            seq = [(e["path"].split("?", 1)[0], e["status"]) for e in World.ng.access_entries()[since:]
                   if f"/v2/{name}/" in e["path"] or e["path"].startswith(tr.realm_path)]
            c.eq(seq[:3], [(f"/v2/{name}/manifests/{TAG}", 401), (tr.realm_path, 200), (f"/v2/{name}/manifests/{TAG}", 200)],
                 "nghttpx saw challenge, realm, retry")
            for e in World.ng.access_entries()[since:]:
                c.eq((e["version"], e["alpn"]), ("HTTP/2", "h2"), f"upstream protocol of {e['path'][:40]}")
        c.done()

    def test_unrouted_name_is_404_name_unknown(self):
        c = harness.Checks(self)
        since = self.upstream_log_len()
        for ns in ("unrouted.example.com", "127.0.0.1:1"):
            r = curl(self.client, target("manifests", repo("pair", self.client, self.upstream), TAG, ns), "GET", ACCEPT)
            what = f"{self.client} ns={ns}"
            c.eq((r.version, r.status), (want_version(self.client), 404), f"{what}: version, status ({r!r})")
            try:
                code = json.loads(r.body)["errors"][0]["code"]
            except (ValueError, KeyError, IndexError, TypeError):
                code = None
            c.eq(code, "NAME_UNKNOWN", f"{what}: error code ({r.body[:120]!r})")
        c.eq(self.upstream_log_len(), since, "nothing reached the upstream")
        c.done()


class H2ClientMixin:
    def test_nghttp_gets_the_manifest(self):
        url = f"http://127.0.0.1:{World.proxy.port}{target('manifests', repo('pair', self.client, self.upstream), TAG, self.ns)}"
        hdrs = NGHTTP_ACCEPT
        body = subprocess.run(["nghttp", *hdrs, url], capture_output=True, timeout=60)
        self.assertEqual(body.returncode, 0, body.stderr.decode(errors="replace")[-500:])
        self.assertEqual("sha256:" + hashlib.sha256(body.stdout).hexdigest(), World.image.manifest.digest)
        verbose = harness.run(["nghttp", "-v", "-n", *hdrs, url], timeout=60, check=False).stdout
        self.assertIn(":status: 200", verbose)
        self.assertIn("recv SETTINGS frame", verbose)


class H2UpstreamMixin:
    def test_64_concurrent_manifests_share_one_upstream_connection(self):
        name = f"fanout/{self.client}-h2"
        path = target("manifests", name, TAG, self.ns)
        # Warm: the token for this scope, and an upstream connection, exist before the burst.
        r = curl(self.client, path, "GET", ACCEPT)
        self.assertEqual(r.status, 200, repr(r))
        since = len(World.ng.access_entries())
        url = f"http://127.0.0.1:{World.proxy.port}{path}"
        hdrs = NGHTTP_ACCEPT
        if self.client == "h1":
            argv = ["h2load", "--h1", "-n", str(FANOUT), "-c", str(FANOUT), "-m", "1", *hdrs, url]
        else:
            argv = ["h2load", "-n", str(FANOUT), "-c", "1", "-m", str(FANOUT), *hdrs, url]
        out = harness.run(argv, timeout=120, check=False).stdout
        self.assertIn(f"status codes: {FANOUT} 2xx", out, out[-1200:])
        def logged():
            found = [e for e in World.ng.access_entries()[since:] if e["path"].startswith(f"/v2/{name}/manifests/")]
            return found if len(found) >= FANOUT else None

        try:
            entries = harness.wait_until(logged, 10, "nghttpx to log the burst")
        except TimeoutError:
            entries = [e for e in World.ng.access_entries()[since:] if e["path"].startswith(f"/v2/{name}/manifests/")]
        self.assertEqual(len(entries), FANOUT, f"nghttpx logged {len(entries)} of the {FANOUT} manifest GETs")
        ports = sorted({e["client_port"] for e in entries})
        self.assertEqual(len(ports), 1, f"{FANOUT} concurrent GETs reached nghttpx on {len(ports)} connections {ports}")
        self.assertEqual({(e["version"], e["alpn"]) for e in entries}, {("HTTP/2", "h2")})

    def test_token_realm_uses_the_shared_upstream_connection(self):
        name = repo("realm", self.client, "h2")
        p = start_proxy(f"realm-{self.client}")
        since = len(World.ng.access_entries())
        try:
            r = curl(self.client, target("manifests", name, TAG, self.ns), "GET", ACCEPT, port=p.port)
        finally:
            p.stop()
        self.assertEqual(r.status, 200, repr(r))
        entries = [e for e in World.ng.access_entries()[since:]
                   if f"/v2/{name}/" in e["path"] or e["path"].startswith(World.tr2.realm_path)]
        realm = [e for e in entries if e["path"].startswith(World.tr2.realm_path)]
        self.assertEqual(len(realm), 1, f"realm requests at nghttpx: {entries}")
        ports = {e["client_port"] for e in entries}
        self.assertEqual(len(ports), 1, f"registry and realm requests came on {len(ports)} connections: "
                         f"{[(e['path'][:30], e['client_port'], e['status']) for e in entries]}")


def _pair_class(client, upstream):
    bases = [PairChecks, harness.TestCaseBase]
    if client == "h2":
        bases.insert(0, H2ClientMixin)
    if upstream == "h2":
        bases.insert(0, H2UpstreamMixin)
    return type(f"Pair_{client}_to_{upstream}", tuple(bases), {"client": client, "upstream": upstream})


for _c, _u in PAIRS:
    globals()[f"Pair_{_c}_to_{_u}"] = _pair_class(_c, _u)
del _c, _u


class H2c_upstream(harness.TestCaseBase):
    """`http2: on` for a plain-http endpoint: HTTP/2 with prior knowledge (h2c), no TLS."""

    def watched(self):
        return [World.proxy]

    def setUp(self):
        if RSS_MODE:
            self.skipTest("--rss runs only the memory case")

    def test_plain_http_upstream_with_http2_on_speaks_h2c_prior_knowledge(self):
        c = harness.Checks(self)
        name = "h2c/app"
        since = len(World.ngc.access_entries())
        for client in ("h1", "h2"):
            r = curl(client, target("manifests", name, TAG, World.ngc.host), "GET", ACCEPT)
            c.eq((r.version, r.status), (want_version(client), 200), f"{client}->h2c manifest ({r!r})")
            c.eq(r.sha256(), World.image.manifest.digest, f"{client}->h2c manifest body")
            blob = World.image.layers[0]
            r = curl(client, target("blobs", name, blob.digest, World.ngc.host))
            c.eq((r.status, r.sha256()), (200, blob.digest), f"{client}->h2c blob")
        entries = [e for e in World.ngc.access_entries()[since:] if f"/v2/{name}/" in e["path"]]
        c.check(entries, "the cleartext front logged the requests")
        for e in entries:
            c.eq((e["version"], e["alpn"]), ("HTTP/2", "h2c"), f"upstream protocol of {e['path'][:50]}")
        c.done()


# ---------------------------------------------------------------------------
# faults from an HTTP/2 upstream


class FaultsBase(harness.TestCaseBase):
    def watched(self):
        return [World.proxy]

    def setUp(self):
        if RSS_MODE:
            self.skipTest("--rss runs only the memory case")


class Goaway_h2_upstream(FaultsBase):
    @staticmethod
    def _snapshot():
        """Arms the GOAWAY for the next connection that gets a fault/goaway request; returns how
        many streams each connection had seen so far. A warm-up request first: the burst then finds a
        pooled connection (the proxy may reuse one from an earlier case)."""
        warm = curl("h1", target("manifests", "warm/up", TAG, World.fs.host), "GET", ACCEPT)
        if warm.status != 200:
            raise AssertionError(f"warm-up through the proxy to the fault server: {warm!r}")
        World.fs.reset_goaway()
        return {x["id"]: len(x["streams"]) for x in World.fs.stats()["per_connection"]}

    def _check_server(self, c, before):
        st = World.fs.stats()
        fired = World.fs.goaway_fired_by
        new = {x["id"]: x["streams"][before.get(x["id"], 0):] for x in st["per_connection"]}
        g = next((x for x in st["per_connection"] if x["id"] == fired), None)
        if not c.check(g is not None and g["goaway_last"] is not None,
                       f"a connection sent GOAWAY (role: connection {fired}; streams {new})"):
            return
        held = [x for x in new[fired] if "/fault/goaway/" in x[1]]
        c.eq(len(held), GOAWAY_STREAMS, f"streams open on connection {fired} when it sent GOAWAY ({held})")
        c.eq(sorted(a for _, _, a in held), ["done"] * GOAWAY_KEEP + ["refused"] * (GOAWAY_STREAMS - GOAWAY_KEEP),
             "kept streams finished, the ones above last_stream_id were not answered")
        c.eq(g["after_goaway"], [], "no new stream on a connection after its GOAWAY")
        refused = sorted(p.split("?")[0] for _, p, a in held if a == "refused")
        retried = sorted(p.split("?")[0] for cid, streams in new.items() if cid != fired for _, p, a in streams
                         if a == "done" and "/fault/goaway/" in p)
        c.eq(retried, refused, "the refused streams were retried (and answered) on another connection")

    def test_h1_clients_all_get_their_blobs_after_goaway_mid_transfer(self):
        before = self._snapshot()
        c = harness.Checks(self)

        def get(i):
            d = World.fault_blobs[i]
            return i, harness.request("127.0.0.1", World.proxy.port, "GET", target("blobs", "fault/goaway", d, World.fs.host),
                                      timeout=60)

        with concurrent.futures.ThreadPoolExecutor(GOAWAY_STREAMS) as ex:
            results = list(ex.map(get, range(GOAWAY_STREAMS)))
        for i, r in results:
            if c.eq(r.status, 200, f"h1 client {i}: status ({r!r})"):
                c.eq(r.sha256(), World.fault_blobs[i], f"h1 client {i}: the whole blob")
        self._check_server(c, before)
        c.done()

    def test_h2_client_streams_all_get_their_blobs_after_goaway_mid_transfer(self):
        before = self._snapshot()
        c = harness.Checks(self)
        cl = _H2Client(World.proxy.port)
        try:
            got = cl.get_all([target("blobs", "fault/goaway", d, World.fs.host) for d in World.fault_blobs])
        finally:
            cl.close()
        for i, (status, body, end) in enumerate(got):
            c.eq((status, end), (200, "end"), f"h2 stream {i}: status and how it ended")
            c.eq("sha256:" + hashlib.sha256(body).hexdigest(), World.fault_blobs[i], f"h2 stream {i}: the whole blob")
        self._check_server(c, before)
        c.done()


class RstStream_h2_upstream(FaultsBase):
    def test_h1_client_sees_the_connection_closed_short_of_content_length(self):
        conn = http.client.HTTPConnection("127.0.0.1", World.proxy.port, timeout=30)
        try:
            conn.request("GET", target("blobs", "fault/rst", World.rst_blob, World.fs.host))
            resp = conn.getresponse()
            self.assertEqual(resp.status, 200)
            self.assertEqual(resp.getheader("Content-Length"), str(1 << 20))
            got = b""
            outcome = "complete"
            try:
                got = resp.read()
            except http.client.IncompleteRead as e:
                got, outcome = e.partial, "short"
            except socket.timeout:
                outcome = "hung"
            except ConnectionResetError:
                outcome = "short"
            self.assertEqual(outcome, "short", f"read {len(got)} of {1 << 20} bytes")
            self.assertLess(len(got), 1 << 20)
        finally:
            conn.close()

    def test_h2_client_sees_its_stream_reset_and_the_connection_lives_on(self):
        blob_url = f"http://127.0.0.1:{World.proxy.port}{target('blobs', 'fault/rst', World.rst_blob, World.fs.host)}"
        r = curl("h2", target("blobs", "fault/rst", World.rst_blob, World.fs.host))
        self.assertEqual(r.rc, 92, f"curl exit (92: HTTP/2 stream error) {r!r}")
        man_url = f"http://127.0.0.1:{World.proxy.port}{target('manifests', 'fault/rst', 'v1', World.fs.host)}"
        out = harness.run(["nghttp", "-v", "-n", "-s", blob_url, man_url], timeout=60, check=False).stdout
        self.assertRegex(out, r"recv RST_STREAM frame <length=4, flags=0x00, stream_id=\d+>")
        self.assertRegex(out, r"\n\s*\d+\s+\S+\s+\S+\s+\S+\s+200\s+\S+\s+/v2/fault/rst/manifests/v1",
                         "the manifest on the same connection completed")
        self.assertNotIn("recv GOAWAY", out)


# ---------------------------------------------------------------------------
# downstream HTTP/2


class Downstream_h2(FaultsBase):
    def test_tls_listener_negotiates_h2_or_http11_by_alpn(self):
        c = harness.Checks(self)
        c.eq(nghttpx.alpn_selected(World.tls_port, ca_file=World.proxy_tls["ca"]), "h2", "ALPN offered h2,http/1.1")
        c.eq(nghttpx.alpn_selected(World.tls_port, offer=("http/1.1",), ca_file=World.proxy_tls["ca"]), "http/1.1",
             "ALPN offered http/1.1")
        for client in ("h1", "h2"):
            for upstream in ("h1", "h2"):
                r = curl(client, target("manifests", repo("pair", client, upstream), TAG, upstream_host(upstream)), "GET",
                         ACCEPT, port=World.tls_port, tls=True)
                what = f"TLS listener {client}->{upstream}"
                c.eq((r.version, r.status), (want_version(client), 200), f"{what}: version, status ({r!r})")
                c.eq(r.sha256(), World.image.manifest.digest, f"{what}: body")
        c.done()

    def test_h2load_2000_requests_4_connections_32_streams_all_2xx(self):
        url = f"http://127.0.0.1:{World.proxy.port}{target('manifests', 'load/h2-h2', TAG, World.ng.host)}"
        hdrs = NGHTTP_ACCEPT
        out = harness.run(["h2load", "-n", "2000", "-c", "4", "-m", "32", *hdrs, url], timeout=180, check=False).stdout
        self.assertIn("status codes: 2000 2xx, 0 3xx, 0 4xx, 0 5xx", out, out[-1500:])
        self.assertIn("2000 succeeded, 0 failed, 0 errored", out, out[-1500:])

    def test_rapid_reset_is_cut_off_and_the_proxy_serves_on(self):
        import select

        import types

        import h2.errors
        import h2.events
        import h2.exceptions

        since = len(World.ng.access_entries())
        cl = _H2Client(World.proxy.port)
        path = target("manifests", "load/h2-h2", TAG, World.ng.host)
        goaway, closed, sent = None, False, 0

        raw = bytearray()  # every byte the proxy sent, for the GOAWAY when h2 gives up on the stream

        def goaway_in_raw():
            # python-h2 closes its state machine at GOAWAY and raises on the RST_STREAMs the
            # proxy may still send behind it: read the frames themselves (RFC 9113 §4.1, §6.8).
            i = 0
            while i + 9 <= len(raw):
                length, kind = int.from_bytes(raw[i:i + 3], "big"), raw[i + 3]
                if kind == 0x7 and i + 9 + 8 <= len(raw):
                    code = int.from_bytes(raw[i + 13:i + 17], "big")
                    return types.SimpleNamespace(error_code=h2.errors.ErrorCodes(code))
                i += 9 + length
            return None

        def take(data):
            nonlocal goaway
            raw.extend(data)
            try:
                for ev in cl.conn.receive_data(data):
                    if isinstance(ev, h2.events.ConnectionTerminated):
                        goaway = ev
                cl.flush()
            except h2.exceptions.ProtocolError:
                goaway = goaway or goaway_in_raw()
                if goaway is None:
                    raise

        try:
            for sent in range(1, 2001):
                sid = cl.request(path, ACCEPT)
                cl.conn.reset_stream(sid, error_code=h2.errors.ErrorCodes.CANCEL)
                cl.flush()
                while not closed and select.select([cl.sock], [], [], 0)[0]:
                    data = cl.sock.recv(65536)
                    closed = not data
                    if data:
                        take(data)
                if goaway is not None or closed:
                    break
        except (BrokenPipeError, ConnectionResetError):
            closed = True
        try:  # what the proxy sent before it closed: the GOAWAY, if not seen yet
            while goaway is None:
                data = cl.sock.recv(65536)
                if not data:
                    break
                take(data)
        except OSError:
            pass
        finally:
            cl.close()
        self.assertIsNotNone(goaway, f"no GOAWAY after {sent} opened-and-reset streams (connection closed: {closed})")
        forwarded = len([e for e in World.ng.access_entries()[since:] if "/load/h2-h2/" in e["path"]])
        print(f"rapid reset: GOAWAY {goaway.error_code!r} after {sent} streams; {forwarded} reached the upstream",
              flush=True)
        r = curl("h2", path, "GET", ACCEPT)
        self.assertEqual(r.status, 200, f"a new client after the abuse: {r!r}")


# ---------------------------------------------------------------------------
# memory (--rss)


class Rss_h2_upstream(harness.TestCaseBase):
    def watched(self):
        return [World.proxy]

    def setUp(self):
        if not RSS_MODE:
            self.skipTest("run with --rss (suite 'rss')")

    def assert_h2_upstream(self, blob):
        entries = harness.wait_until(
            lambda: [e for e in World.ng.access_entries() if e["path"].startswith(f"/v2/rss/big/blobs/{blob.digest}")],
            10, "nghttpx to log the blob GET")
        self.assertEqual((entries[-1]["version"], entries[-1]["alpn"]), ("HTTP/2", "h2"), "the upstream leg spoke h2")

    def _idle(self):
        warm = curl("h1", target("manifests", "rss/big", TAG, World.ng.host), "GET", ACCEPT)
        self.assertEqual(warm.status, 200, repr(warm))
        return World.proxy.rss_kib()

    def test_h1_client_that_stops_reading_keeps_rss_flat(self):
        blob = World.big.layers[0]
        idle = self._idle()
        conn = http.client.HTTPConnection("127.0.0.1", World.proxy.port, timeout=60)
        h = hashlib.sha256()
        try:
            conn.request("GET", target("blobs", "rss/big", blob.digest, World.ng.host))
            resp = conn.getresponse()
            self.assertEqual(resp.status, 200)
            with RssSampler(World.proxy) as stalled:
                h.update(resp.read(MIB))
                deadline = time.monotonic() + 3
                while time.monotonic() < deadline:  # the measurement window: the client reads nothing
                    time.sleep(0.1)
            while True:
                chunk = resp.read(256 << 10)
                if not chunk:
                    break
                h.update(chunk)
        finally:
            conn.close()
        print(f"h1 stalled client: idle {idle} KiB, peak {stalled.max_kib} KiB ({stalled.samples} samples)", flush=True)
        self.assertEqual("sha256:" + h.hexdigest(), blob.digest)
        self.assertLess(stalled.max_kib - idle, RSS_GROWTH_LIMIT_KIB, f"RSS grew from {idle} to {stalled.max_kib} KiB")
        self.assert_h2_upstream(blob)

    def test_h2_client_that_stops_reading_keeps_rss_flat(self):
        import h2.events

        blob = World.big.layers[0]
        idle = self._idle()
        cl = _H2Client(World.proxy.port, window=(1 << 31) - 1)
        h = hashlib.sha256()
        got, status, ended = 0, None, False

        def pump(limit):
            nonlocal got, status, ended
            data = cl.sock.recv(1 << 20)
            if not data:
                raise AssertionError(f"the proxy closed the connection after {got} bytes")
            for ev in cl.conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived):
                    status = dict(ev.headers).get(":status")
                elif isinstance(ev, h2.events.DataReceived):
                    h.update(ev.data)
                    got += len(ev.data)
                    cl.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded):
                    ended = True
                elif isinstance(ev, h2.events.StreamReset):
                    raise AssertionError(f"stream reset after {got} bytes")
            cl.flush()
            return got >= limit or ended

        try:
            cl.request(target("blobs", "rss/big", blob.digest, World.ng.host))
            while not pump(MIB):
                pass
            with RssSampler(World.proxy) as stalled:
                deadline = time.monotonic() + 3
                while time.monotonic() < deadline:  # the client reads nothing from its socket
                    time.sleep(0.1)
            while not ended:
                pump(blob.size + 1)
        finally:
            cl.close()
        print(f"h2 stalled client: idle {idle} KiB, peak {stalled.max_kib} KiB ({stalled.samples} samples)", flush=True)
        self.assertEqual(status, "200")
        self.assertEqual(got, blob.size)
        self.assertEqual("sha256:" + h.hexdigest(), blob.digest)
        self.assertLess(stalled.max_kib - idle, RSS_GROWTH_LIMIT_KIB, f"RSS grew from {idle} to {stalled.max_kib} KiB")
        self.assert_h2_upstream(blob)


if __name__ == "__main__":
    sys.exit(harness.run_tests())
