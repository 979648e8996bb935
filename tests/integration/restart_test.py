"""Restarts without failed pulls (issue 8): the proxy restarted 10 times in each
mode while a client pulls through it without pause; not one request may fail.

  python3 tests/integration/restart_test.py --proxy BUILD/proxy/acr-credential-proxy

A refused or reset connection is a failed private pull on a node: containerd
falls back to the registry itself, which has no credentials. Two modes:

  socket activation  The test plays systemd: it owns the listening sockets
                     (data + admin) and starts each proxy with them as fds 3
                     and 4 (LISTEN_FDS=2, LISTEN_PID=its pid). Restart = SIGTERM,
                     wait for the exit, start the next one: connections made in
                     between wait in the socket's queue.
  --reuse-port       DaemonSet rolling update with maxSurge: the next proxy
                     starts on the same addresses while the old one runs,
                     /readyz OK, then the old one gets SIGTERM and drains.
                     The new one's steering program must leave the old one no
                     new connections (checked: five fresh connections after each
                     start all reach the new one, by the access logs).

The client behaves like containerd's Go transport: keep-alive connections
(two of them, manifest + blob requests alternating), and a request that fails
on a *reused* connection before any byte of the answer arrived is retried once
on a new one (net/http does that for GET/HEAD: the server may have closed an
idle connection). A failure on a new connection, a non-200, a short or wrong
body — any of these counts as a failed pull.
"""

import hashlib
import http.client
import json
import os
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import harness  # noqa: E402
import oci_image  # noqa: E402
import proxy as proxy_mod  # noqa: E402
import registry as registry_mod  # noqa: E402
from oci_image import OCI_INDEX, OCI_MANIFEST, LayerSpec  # noqa: E402

REPO = "restart/app"
RESTARTS = 10
# The wrapper a service manager would be: put the sockets on fds 3 and 4 and
# name this process as their owner, then become the proxy (same pid).
ACTIVATE = ("import os, sys\n"
            "os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4)\n"
            "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='2', LISTEN_FDNAMES='data:admin')\n"
            "os.execv(sys.argv[3], sys.argv[3:])\n")


class World:
    binary = None
    tmp = None
    reg = None
    layer = None  # (digest, sha256 hex, size)


def setUpModule():
    harness.require_tools("docker-registry", "skopeo", "htpasswd")
    World.binary = proxy_mod.find_binary()
    World.tmp = harness.TempDir("restart")
    image = oci_image.build_image(World.tmp.join("layout"), [LayerSpec(1_500_000, 1)], tag="v1", seed="restart")
    World.reg = registry_mod.Registry(World.tmp.join("reg"), "registry-restart", users={"robot": harness.secrets_token()})
    World.reg.start()
    oci_image.push(image.layout, "v1", World.reg.host, REPO, authfile=World.reg.authfile(World.tmp.join("auth.json")))


def tearDownModule():
    if World.reg:
        World.reg.stop()


class Puller(threading.Thread):
    """Manifest + blob GETs through the proxy, back to back, until stopped."""

    def __init__(self, port, ns):
        super().__init__(daemon=True)
        self.port, self.ns = port, ns
        self.stop_flag = threading.Event()
        self.ok = 0
        self.retried = 0
        self.failures = []
        self.conn = None
        self.expected_blob = None

    def _new_conn(self):
        if self.conn:
            self.conn.close()
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        self.conn.connect()
        return self.conn

    def _get(self, path, headers):
        """One GET with Go's retry rule; returns (status, body)."""
        reused = self.conn is not None
        conn = self.conn or self._new_conn()
        try:
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
        except (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine, OSError) as e:
            if not reused:
                raise
            self.retried += 1  # the server closed an idle keep-alive connection: retry on a new one
            conn = self._new_conn()
            try:
                conn.request("GET", path, headers=headers)
                resp = conn.getresponse()
            except OSError as e2:
                raise RuntimeError(f"retry on a new connection failed: {e2!r} (first: {e!r})") from e2
        body = resp.read()  # raises IncompleteRead on a short body
        if resp.getheader("Connection", "").lower() == "close" or resp.will_close:
            conn.close()
            self.conn = None
        return resp.status, body

    def run(self):
        accept = {"Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"}
        while not self.stop_flag.is_set():
            try:
                status, body = self._get(f"/v2/{REPO}/manifests/v1?ns={self.ns}", accept)
                if status != 200:
                    raise RuntimeError(f"manifest: {status} {body[:200]!r}")
                layer = json.loads(body)["layers"][0]
                status, blob = self._get(f"/v2/{REPO}/blobs/{layer['digest']}?ns={self.ns}", {})
                if status != 200:
                    raise RuntimeError(f"blob: {status} {blob[:200]!r}")
                if "sha256:" + hashlib.sha256(blob).hexdigest() != layer["digest"] or len(blob) != layer["size"]:
                    raise RuntimeError(f"blob: {len(blob)} bytes with the wrong digest")
                self.ok += 1
            except Exception as e:  # noqa: BLE001 - every failure is recorded
                self.failures.append(f"{time.monotonic():.3f} {e!r}")
                if self.conn:
                    self.conn.close()
                self.conn = None


def proxy_config(reg, directory, data_port, admin_port):
    os.makedirs(directory, exist_ok=True)
    entry, overrides, _ = proxy_mod.registry_entry(reg, directory)
    return {"registries": [entry], "endpointOverrides": overrides,
            "listen": f"127.0.0.1:{data_port}", "adminListen": f"127.0.0.1:{admin_port}",
            "log": {"level": "debug", "format": "text"},
            "timeouts": {"shutdownGrace": "10s"}}


def listening_socket():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(4096)
    return s


def admin_ready(port):
    try:
        return harness.request("127.0.0.1", port, "GET", "/readyz", timeout=2).status == 200
    except OSError:
        return False


class Restarts(harness.TestCaseBase):
    def _pull_while(self, port, restart_all):
        puller = [Puller(port, World.reg.host) for _ in range(2)]
        for p in puller:
            p.start()
        harness.wait_until(lambda: all(p.ok >= 3 for p in puller), 30, "the pull loop to get going")
        restart_all()
        before = [p.ok for p in puller]
        harness.wait_until(lambda: all(p.ok >= b + 3 for p, b in zip(puller, before)), 30,
                           "pulls after the last restart")
        for p in puller:
            p.stop_flag.set()
        for p in puller:
            p.join(timeout=60)
        return puller

    def _report(self, mode, pullers, started):
        ok = sum(p.ok for p in pullers)
        failures = [f for p in pullers for f in p.failures]
        retried = sum(p.retried for p in pullers)
        print(f"{mode}: {RESTARTS} restarts in {time.monotonic() - started:.1f}s, {ok} pulls (manifest + blob) "
              f"ok, {len(failures)} failed, {retried} idle keep-alive retries", flush=True)
        self.assertEqual(failures, [], f"{mode}: failed pulls")
        self.assertGreater(ok, RESTARTS, "pulls went on during the restarts")

    def test_socket_activation(self):
        data, admin = listening_socket(), listening_socket()
        self.addCleanup(data.close)
        self.addCleanup(admin.close)
        port, admin_port = data.getsockname()[1], admin.getsockname()[1]
        d = World.tmp.join("activation")
        p = proxy_mod.Proxy(World.binary, d, proxy_config(World.reg, d, port, admin_port), name="activated")
        p.write_config()
        pids = []

        def launch(i):
            child = harness.Child(f"activated-{i}", [sys.executable, "-c", ACTIVATE, str(data.fileno()),
                                                     str(admin.fileno()), World.binary, "serve", "--config",
                                                     p.config_path], p.log_path + f".{i}",
                                  pass_fds=(data.fileno(), admin.fileno()))
            harness.wait_until(lambda: child.ensure_alive() or admin_ready(admin_port), 30, f"proxy {i} ready")
            pids.append(child.pid)
            return child

        current = [launch(0)]
        self.assertIn("(inherited from systemd)", current[0].log_text())

        def restart_all():
            for i in range(1, RESTARTS + 1):
                old = current[0]
                self.assertEqual(old.stop(timeout=30), 0, f"proxy {i - 1} exit status")
                current[0] = launch(i)  # connections made meanwhile wait in the queue

        started = time.monotonic()
        pullers = self._pull_while(port, restart_all)
        self.assertEqual(current[0].stop(), 0)
        self.assertEqual(len(set(pids)), RESTARTS + 1, "a new process each time")
        self._report("socket activation", pullers, started)

    def test_reuse_port_hand_over(self):
        port, admin_port = harness.free_port(), harness.free_port()
        d = World.tmp.join("reuseport")
        p = proxy_mod.Proxy(World.binary, d, proxy_config(World.reg, d, port, admin_port), name="reuseport")
        p.write_config()
        steered = []  # per hand-over: fresh connections the old process still got (want 0)

        def launch(i):
            child = harness.Child(f"reuseport-{i}", [World.binary, "serve", "--config", p.config_path,
                                                     "--reuse-port"], p.log_path + f".{i}")
            harness.wait_until(lambda: child.ensure_alive() or "listening data=" in child.log_text(), 30,
                               f"proxy {i} listening")
            return child

        current = [launch(0)]
        self.assertIn("(SO_REUSEPORT)", current[0].log_text())

        def restart_all():
            for i in range(1, RESTARTS + 1):
                old = current[0]
                new = launch(i)  # maxSurge: the new pod is up before the old one goes
                self.assertIn("taking over", new.log_text())
                harness.wait_until(lambda: admin_ready(admin_port), 30, f"proxy {i} ready")
                # From now on every new connection goes to the new process (steering):
                # five fresh connections, told apart in the access logs by their repository.
                probe = f"probe{i}"
                for _ in range(5):
                    harness.request("127.0.0.1", port, "GET", f"/v2/{probe}/manifests/v1?ns={World.reg.host}",
                                    timeout=10)
                harness.wait_until(lambda: new.log_text().count(f"repository={probe} ") == 5, 10,
                                   f"proxy {i} to log the five probes")
                steered.append(old.log_text().count(f"repository={probe} "))
                self.assertEqual(old.stop(timeout=30), 0, f"proxy {i - 1} exit status")
                current[0] = new

        started = time.monotonic()
        pullers = self._pull_while(port, restart_all)
        self.assertEqual(current[0].stop(), 0)
        self._report("reuse-port hand-over", pullers, started)
        self.assertEqual(steered, [0] * RESTARTS, "fresh connections that reached the old process after the "
                                                  "new one listened")


if __name__ == "__main__":
    sys.exit(harness.run_tests())
