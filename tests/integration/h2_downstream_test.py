#!/usr/bin/env python3
"""HTTP/2 clients on the proxy's data listener (h2c with prior knowledge), in front of docker-registry.

The registry (htpasswd) holds a small OCI image pushed with skopeo and a 64 MiB uncompressed blob;
the proxy holds its Basic credentials and runs with timeouts.idle 5 s. Then:

  * curl --http2-prior-knowledge: a manifest GET (HTTP/2, 200, Docker-Content-Digest, sha256 of the
    body, no hop-by-hop fields) and HEAD (its Content-Length); a whole blob (digest verified) and a ranged one (206, exact
    bytes) — one URL per curl run (curl 7.88.1 fails a second request on a reused prior-knowledge
    connection: curl issue 10634, fixed in 8.0);
  * nghttp: the proxy announces SETTINGS_MAX_CONCURRENT_STREAMS 100 and MAX_HEADER_LIST_SIZE 16384;
    one connection carries a manifest, a blob, /v2/ and an unrouted ns: the 404 NAME_UNKNOWN on its
    stream, 200 on the others;
  * h2load -n 1000 -c 1 -m 100: 100 concurrent streams on one connection, every answer 2xx;
  * HTTP/1.1 is still served on the same port (keep-alive, two requests);
  * per-stream errors (python3-h2 on one connection): a 20 KB header -> 431, 150 fields -> 431,
    POST with a body -> 405, unrouted -> 404, a manifest -> 200 beside them, and the connection
    serves another request afterwards;
  * rapid reset (CVE-2023-44487 shape): 2000 HEADERS + RST_STREAM pairs end in
    GOAWAY(ENHANCE_YOUR_CALM); 100 pairs do not; the proxy keeps serving;
  * a client that stops reading a 64 MiB blob for 3 s (huge HTTP/2 windows, a full socket): the
    proxy's VmRSS stays flat (peak - idle < 24 MiB, asserted with --rss, which runs this case
    alone: suite 'rss', build/ only), the blob arrives whole afterwards;
  * a client that never returns window credit: its stream is reset (CANCEL) after timeouts.idle
    and the connection, then idle, is closed after timeouts.idle more;
  * last, SIGTERM while curl downloads the 64 MiB blob at 16 MiB/s: the client gets GOAWAY(NO_ERROR),
    its stream finishes whole, new connections are refused, the proxy exits 0.

Needs python3-h2 (Debian; scripts/install-deps). Meson may run this with another python3: then it
re-executes itself with /usr/bin/python3 when that one has h2. Exits 77 when a tool is missing, or
when the data listener does not answer the HTTP/2 preface (h2c not wired yet).

Usage: h2_downstream_test.py --proxy BUILD/proxy/acr-credential-proxy [--rss]
"""

import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import unittest
import urllib.parse

try:
    import h2  # noqa: F401
except ImportError:
    if sys.executable != "/usr/bin/python3" and os.access("/usr/bin/python3", os.X_OK):
        probe = subprocess.run(["/usr/bin/python3", "-c", "import h2"], capture_output=True)
        if probe.returncode == 0:
            os.execv("/usr/bin/python3", ["/usr/bin/python3", *sys.argv])

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))

import h2_fault_server  # noqa: E402
import harness  # noqa: E402
import oci_image  # noqa: E402
import proxy as proxy_mod  # noqa: E402
import registry as registry_mod  # noqa: E402
from oci_image import LayerSpec  # noqa: E402
from proc_stats import RssSampler  # noqa: E402

MIB = 1 << 20
REPO = "team/app"
BIG_REPO = "team/big"
TAG = "v1"
ACCEPT = "application/vnd.oci.image.manifest.v1+json"  # docker-registry answers 404 to a client not accepting OCI
BIG_MIB = 64
IDLE_S = 5
RSS_GROWTH_LIMIT_KIB = 24 * 1024
ENHANCE_YOUR_CALM = 0xB
CANCEL = 0x8
RSS = "--rss" in sys.argv
if RSS:
    sys.argv.remove("--rss")


class World:
    tmp = None
    reg = None
    proxy = None
    image = None
    big = None


def ns():
    return "?" + urllib.parse.urlencode({"ns": World.reg.host})


def url(path):
    return f"http://127.0.0.1:{World.proxy.port}{path}"


def manifest_path():
    return f"/v2/{REPO}/manifests/{TAG}{ns()}"


def blob_path(blob, repo=REPO):
    return f"/v2/{repo}/blobs/{blob.digest}{ns()}"


def speaks_h2c(port):
    """True when the listener answers the client preface with a SETTINGS frame."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        s.settimeout(3)
        try:
            head = s.recv(9)
        except OSError:
            return False
        return len(head) >= 4 and head[3] == 0x4


def setUpModule():
    h2_fault_server.require_h2()
    harness.require_tools("docker-registry", "skopeo", "htpasswd", "curl", "nghttp", "h2load")
    binary = proxy_mod.find_binary()
    World.tmp = harness.TempDir("h2-downstream")
    t0 = time.monotonic()
    World.image = oci_image.build_image(World.tmp.join("layout"), [LayerSpec(300_000, 3)], tag=TAG, seed="h2-down")
    big = oci_image.build_image(World.tmp.join("big-layout"), [LayerSpec(BIG_MIB * MIB, 1, compression="none")],
                                tag="big", seed="h2-down-big")
    World.big = big.layers[0]
    World.reg = registry_mod.Registry(World.tmp.join("registry"), "registry", users=True).start()
    authfile = World.reg.authfile(World.tmp.join("auth.json"))
    oci_image.push(World.image.layout, TAG, World.reg.host, REPO, authfile=authfile)
    World.reg.upload_blob(BIG_REPO, World.big.path, World.big.digest, World.big.size)
    entry, overrides, env = proxy_mod.registry_entry(World.reg, World.tmp.path)
    World.proxy = proxy_mod.Proxy(binary, World.tmp.join("proxy"),
                                  {"registries": [entry], "endpointOverrides": overrides,
                                   "timeouts": {"idle": f"{IDLE_S}s"}}, env=env).start()
    if not speaks_h2c(World.proxy.port):
        World.proxy.stop(check=False)
        World.reg.stop()
        print("SKIP: the data listener does not answer the HTTP/2 preface (h2c not wired)", flush=True)
        sys.exit(harness.SKIP_EXIT)
    print(f"registry + image + {BIG_MIB} MiB blob + proxy up in {time.monotonic() - t0:.1f}s", flush=True)


def tearDownModule():
    if World.proxy:
        World.proxy.stop(check=False)
    if World.reg:
        World.reg.stop()


# -- clients --------------------------------------------------------------------------------------


def curl(path, *args, timeout=120):
    """(http_version, status, headers {lower name: value}, body bytes) of one curl --http2-prior-knowledge run."""
    headers_file = World.tmp.join(f"curl-headers-{time.monotonic_ns()}")
    argv = ["curl", "-sS", "--http2-prior-knowledge", "-D", headers_file, "-o", "-",
            "-w", "\n%{http_version}", *args, url(path)]
    proc = subprocess.run(argv, capture_output=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"curl {path} exited {proc.returncode}: {proc.stderr.decode(errors='replace')}")
    body, _, version = proc.stdout.rpartition(b"\n")
    status, headers = 0, {}
    with open(headers_file, "rb") as f:
        for line in f.read().decode("latin-1").splitlines():
            m = re.match(r"HTTP/\S+ (\d+)", line)
            if m:
                status, headers = int(m.group(1)), {}
            elif ":" in line:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
    return version.decode(), status, headers, body


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


class H2Client:
    """One python3-h2 client connection to the proxy (h2c prior knowledge)."""

    def __init__(self, window=None, rcvbuf=None, timeout=30):
        import h2.config
        import h2.connection
        import h2.settings
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", World.proxy.port))
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        if window:
            codes = h2.settings.SettingCodes
            self.conn.local_settings = h2.settings.Settings(
                client=True, initial_values={codes.INITIAL_WINDOW_SIZE: window, codes.MAX_FRAME_SIZE: (1 << 24) - 1})
        self.conn.initiate_connection()
        if window:
            self.conn.increment_flow_control_window(window - 65535)
        self.flush()
        self.next_id = 1
        self.status = {}
        self.bodies = {}
        self.ended = set()
        self.resets = {}
        self.goaway = None
        self.closed = False

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(self, path, method="GET", extra=(), body=None, send=True):
        sid = self.next_id
        self.next_id += 2
        headers = [(":method", method), (":scheme", "http"), (":authority", f"127.0.0.1:{World.proxy.port}"),
                   (":path", path), *extra]
        self.conn.send_headers(sid, headers, end_stream=body is None)
        if body is not None:
            self.conn.send_data(sid, body, end_stream=True)
        self.bodies[sid] = bytearray()
        if send:
            self.flush()
        return sid

    def read_once(self, ack=True):
        """Reads what arrives once and handles its events; False when the connection closed."""
        import h2.events
        data = self.sock.recv(1 << 20)
        if not data:
            self.closed = True
            return False
        for ev in self.conn.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived):
                self.status[ev.stream_id] = int(dict(ev.headers)[":status"])
            elif isinstance(ev, h2.events.DataReceived):
                self.bodies[ev.stream_id] += ev.data
                if ack:
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                self.ended.add(ev.stream_id)
            elif isinstance(ev, h2.events.StreamReset):
                self.resets[ev.stream_id] = ev.error_code
                self.ended.add(ev.stream_id)
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.goaway = ev
        self.flush()
        return True

    def wait(self, predicate, ack=True):
        while not predicate():
            if not self.read_once(ack):
                break

    def close(self):
        self.sock.close()


# -- tests -----------------------------------------------------------------------------------------


class Base(harness.TestCaseBase):
    def watched(self):
        return [World.proxy] if World.proxy and World.proxy.child and World.proxy.child.alive() else []


class Curl(Base):
    def test_manifest_get_and_head(self):
        version, status, headers, body = curl(manifest_path(), "-H", f"Accept: {ACCEPT}")
        self.assertEqual(version, "2")
        self.assertEqual(status, 200, body[:300])
        self.assertEqual(sha256(body), World.image.manifest.digest)
        self.assertEqual(headers.get("docker-content-digest"), World.image.manifest.digest)
        for hop in ("connection", "keep-alive", "transfer-encoding"):
            self.assertNotIn(hop, headers)
        version, status, headers, _ = curl(manifest_path(), "-I", "-H", f"Accept: {ACCEPT}")  # -I: headers on stdout
        self.assertEqual((version, status), ("2", 200))
        self.assertEqual(headers.get("content-length"), str(World.image.manifest.size))

    def test_blob_whole_and_ranged(self):
        layer = World.image.layers[0]
        _, status, headers, body = curl(blob_path(layer), "-L")
        self.assertEqual(status, 200)
        self.assertEqual(sha256(body), layer.digest)
        _, status, headers, body = curl(blob_path(layer), "-L", "-r", "1000-4999")
        self.assertEqual(status, 206)
        self.assertEqual(body, layer.read(1000, 5000))
        self.assertTrue(headers.get("content-range", "").startswith("bytes 1000-4999/"), headers)

    def test_unrouted_ns_is_404(self):
        _, status, headers, body = curl("/v2/team/app/manifests/v1?ns=nowhere.example")
        self.assertEqual(status, 404)
        self.assertIn(b"NAME_UNKNOWN", body)


class Nghttp(Base):
    def test_settings_and_mixed_streams_on_one_connection(self):
        urls = [url(manifest_path()), url(blob_path(World.image.layers[0])), url("/v2/"),
                url("/v2/team/app/manifests/v1?ns=nowhere.example")]
        proc = subprocess.run(["nghttp", "-nv", "-H", f"accept: {ACCEPT}", *urls], capture_output=True, timeout=60)
        out = proc.stdout.decode(errors="replace")
        self.assertEqual(proc.returncode, 0, out[-2000:])
        self.assertIn("SETTINGS_MAX_CONCURRENT_STREAMS(0x03):100", out)
        self.assertIn("SETTINGS_MAX_HEADER_LIST_SIZE(0x06):16384", out)
        statuses = {int(sid): int(st) for sid, st in re.findall(r"recv \(stream_id=(\d+)\) :status: (\d+)", out)}
        self.assertEqual(sorted(statuses.values()), [200, 200, 200, 404], out[-3000:])
        self.assertEqual(out.count("Connected"), 1)

    def test_h2load_100_concurrent_streams(self):
        proc = subprocess.run(["h2load", "-n", "1000", "-c", "1", "-m", "100", "-H", f"accept: {ACCEPT}",
                               url(manifest_path())],
                              capture_output=True, timeout=120)
        out = proc.stdout.decode(errors="replace")
        self.assertIn("1000 succeeded, 0 failed, 0 errored", out, out)
        self.assertIn("status codes: 1000 2xx", out, out)


class SamePort(Base):
    def test_http11_still_served_with_keep_alive(self):
        client = World.proxy.client()
        try:
            for _ in range(2):
                resp = client.request("GET", manifest_path(),
                                      headers=[("Accept", ACCEPT)])
                self.assertEqual(resp.status, 200)
                self.assertEqual(sha256(resp.body), World.image.manifest.digest)
            self.assertEqual(client.connects, 1)
        finally:
            client.close()


class PerStream(Base):
    def test_errors_stay_on_their_stream(self):
        c = H2Client()
        try:
            big = c.request(manifest_path(), extra=[("x-big", "a" * 20000)], send=False)
            many = c.request(manifest_path(), extra=[(f"x-f{i}", "1") for i in range(150)], send=False)
            post = c.request(manifest_path(), method="POST", body=b"body", send=False)
            unrouted = c.request("/v2/team/app/manifests/v1?ns=nowhere.example", send=False)
            good = c.request(manifest_path(), extra=[("accept", ACCEPT)])
            sids = {big, many, post, unrouted, good}
            c.wait(lambda: sids <= c.ended)
            self.assertEqual({sid: c.status.get(sid) for sid in sids},
                             {big: 431, many: 431, post: 405, unrouted: 404, good: 200})
            self.assertEqual(sha256(bytes(c.bodies[good])), World.image.manifest.digest)
            self.assertIsNone(c.goaway)
            again = c.request("/v2/")
            c.wait(lambda: again in c.ended)
            self.assertEqual(c.status.get(again), 200)
        finally:
            c.close()


class RapidReset(Base):
    def _pairs(self, n):
        """n HEADERS + RST_STREAM pairs on one connection; returns the client after reading what came back."""
        c = H2Client(timeout=5)
        try:
            for i in range(n):
                sid = c.request("/v2/", send=False)
                c.conn.reset_stream(sid)
                if i % 50 == 49:
                    c.flush()
            c.flush()
        except (BrokenPipeError, ConnectionResetError):
            c.closed = True
        return c

    def test_2000_pairs_end_in_enhance_your_calm(self):
        c = self._pairs(2000)
        try:
            try:
                c.wait(lambda: c.goaway is not None)
            except (ConnectionResetError, socket.timeout):
                pass
            self.assertIsNotNone(c.goaway, "no GOAWAY")
            self.assertEqual(int(c.goaway.error_code), ENHANCE_YOUR_CALM)
        finally:
            c.close()
        _, status, _, _ = curl("/v2/")
        self.assertEqual(status, 200)

    def test_100_pairs_then_a_request_are_served(self):
        c = self._pairs(100)
        try:
            sid = c.request(manifest_path(), extra=[("accept", ACCEPT)])
            c.wait(lambda: sid in c.ended)
            self.assertEqual(c.status.get(sid), 200)
            self.assertIsNone(c.goaway)
        finally:
            c.close()


class SlowClients(Base):
    def test_stalled_reader_memory_flat(self):
        c = H2Client(window=(1 << 31) - 1, rcvbuf=64 * 1024, timeout=60)
        try:
            idle = World.proxy.rss_kib()
            sid = c.request(blob_path(World.big, BIG_REPO))
            c.wait(lambda: len(c.bodies[sid]) >= MIB or sid in c.ended)
            with RssSampler(World.proxy) as sampler:
                deadline = time.monotonic() + 3  # a measurement window, not synchronisation
                while time.monotonic() < deadline:
                    time.sleep(0.05)
                stall_peak = sampler.max_kib
            c.wait(lambda: sid in c.ended)
            self.assertEqual(c.status.get(sid), 200)
            self.assertNotIn(sid, c.resets)
            got = bytes(c.bodies[sid])
            self.assertEqual(len(got), World.big.size)
            self.assertEqual(sha256(got), World.big.digest, f"first difference at {_first_difference(got, World.big)}")
            print(f"RSS idle {idle / 1024:.1f} MiB, peak while the h2 client stalled {stall_peak / 1024:.1f} MiB",
                  flush=True)
            if RSS:
                self.assertLess(stall_peak - idle, RSS_GROWTH_LIMIT_KIB)
        finally:
            c.close()

    def test_no_window_update_resets_the_stream_after_idle(self):
        c = H2Client(timeout=IDLE_S * 4)
        try:
            t0 = time.monotonic()
            sid = c.request(blob_path(World.big, BIG_REPO))
            c.wait(lambda: sid in c.ended, ack=False)  # never returns credit: 65,535 bytes, then nothing
            reset_at = time.monotonic() - t0
            self.assertEqual(c.resets.get(sid), CANCEL)
            self.assertEqual(len(c.bodies[sid]), 65535)
            self.assertGreater(reset_at, IDLE_S - 0.5)
            self.assertLess(reset_at, IDLE_S + 3)  # from the last byte the client took, not twice that
            c.wait(lambda: c.closed)  # no stream left: closed after the idle timeout
            closed_at = time.monotonic() - t0
            print(f"no window update: stream reset after {reset_at:.1f}s, connection closed after {closed_at:.1f}s "
                  f"(timeouts.idle {IDLE_S}s)", flush=True)
            self.assertTrue(c.closed)
            self.assertLess(closed_at, 2 * IDLE_S + 4)
        finally:
            c.close()


class ZDrain(Base):
    """Last: stops the proxy."""

    def test_sigterm_lets_the_stream_in_flight_finish(self):
        out = World.tmp.join("drain.blob")
        argv = ["curl", "-sS", "--http2-prior-knowledge", "--limit-rate", "16M", "-o", out, "-w", "%{http_code}",
                url(blob_path(World.big, BIG_REPO))]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        harness.wait_until(lambda: os.path.exists(out) and os.path.getsize(out) > 4 * MIB, 30, "the download under way")
        os.kill(World.proxy.child.pid, signal.SIGTERM)
        harness.wait_until(lambda: not _connects(World.proxy.port), 10, "the listener closed")
        stdout, stderr = proc.communicate(timeout=60)
        self.assertEqual(proc.returncode, 0, stderr)
        self.assertEqual(stdout, b"200")
        with open(out, "rb") as f:
            self.assertEqual(sha256(f.read()), World.big.digest)
        self.assertEqual(World.proxy.child.stop(timeout=30, check=False), 0)


def _first_difference(got, blob):
    with open(blob.path, "rb") as f:
        offset = 0
        while True:
            want = f.read(MIB)
            if not want:
                return None
            if got[offset:offset + len(want)] != want:
                for i, b in enumerate(want):
                    if offset + i >= len(got) or got[offset + i] != b:
                        return offset + i
            offset += len(want)


def _connects(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def load_tests(loader, tests, pattern):
    """--rss runs the stalled-reader case alone (suite 'rss', build/ only)."""
    if RSS:
        return unittest.TestSuite([SlowClients("test_stalled_reader_memory_flat")])
    return tests


if __name__ == "__main__":
    sys.exit(harness.run_tests())
