"""nghttpx (Debian nghttp2-proxy) as a real HTTP/2 upstream: TLS with ALPN h2 and http/1.1 on
127.0.0.1, in front of a registry (tests/support/registry.py or token_registry.py) spoken to over
plain HTTP/1.1 — the shape of a registry front end that answers over HTTP/2.

Nghttpx(dir, backend_port).start() makes a throwaway CA and server certificate (registry.py's
make_tls_material) unless `tls` is given, writes an empty config file (so /etc/nghttpx is never
read), picks a free loopback port (nghttpx refuses port 0: a port taken meanwhile makes it exit,
and start() tries another), starts nghttpx as a child and polls until a TLS handshake on the port
negotiates h2. stop() sends the master SIGQUIT (nghttpx's graceful shutdown: it stops its worker
process, reaps it and exits; SIGTERM would kill the master alone and orphan the worker, which keeps
the port open), SIGKILL after a deadline, and then any worker pid recorded at start still alive.

Extra backends by path prefix: routes=[("/auth", token_port)] sends /auth* there (nghttpx's
pattern routing), so a realm on the same host can be served through the same connection.
Knobs: max_concurrent_streams (SETTINGS_MAX_CONCURRENT_STREAMS to clients), window_bits (the
per-stream window nghttpx announces, 2^bits - 1), port (listen exactly there, one attempt: for a
peer that must name this front before it starts, e.g. a registry whose token realm is on it),
cleartext (a plain-TCP front speaking h2c with prior knowledge, and HTTP/1.1, instead of TLS),
extra_args for anything else.

The access log (stdout) is the combined format with the client's port and the ALPN protocol in
front: `127.0.0.1:PORT ALPN - [time] "GET /path HTTP/2" status bytes "referer" "user agent"`.
access_entries() parses it: one dict per request (client_port, alpn, method, path, version,
status, bytes), so a test can tell how many connections a client used and which protocol each
spoke.

A missing nghttpx makes the test exit 77 naming the package.
"""

import os
import re
import shutil
import signal
import socket
import ssl
import sys

import harness
import registry

PACKAGE = "nghttp2-proxy"
_LISTENING = "Listening on 127.0.0.1:"
ACCESS_FORMAT = ('$remote_addr:$remote_port $alpn - [$time_local] "$request" $status $body_bytes_sent '
                 '"$http_referer" "$http_user_agent"')
_ACCESS_LINE = re.compile(r'^(?P<addr>[0-9a-fA-F.:\[\]]+):(?P<port>\d+) (?P<alpn>\S+) - \[[^\]]*\] '
                          r'"(?P<method>\S+) (?P<path>\S+) (?P<version>HTTP/[0-9.]+)" (?P<status>\d+) (?P<bytes>\d+)')


def nghttpx_binary():
    """nghttpx lives in /usr/sbin on Debian (often off a user's PATH)."""
    found = shutil.which("nghttpx")
    if found:
        return found
    for path in ("/usr/sbin/nghttpx", "/usr/local/sbin/nghttpx"):
        if os.access(path, os.X_OK):
            return path
    return None


def require_nghttpx():
    if nghttpx_binary() is None:
        print(f"SKIP: 'nghttpx' is not installed (Debian package {PACKAGE}; scripts/install-deps installs it)",
              flush=True)
        sys.exit(harness.SKIP_EXIT)


def alpn_selected(port, offer=("h2", "http/1.1"), ca_file=None, timeout=5):
    """The protocol the server at 127.0.0.1:port picks from `offer` in the TLS handshake (None: none)."""
    ctx = ssl.create_default_context(cafile=ca_file) if ca_file else ssl._create_unverified_context()  # noqa: S323
    ctx.set_alpn_protocols(list(offer))
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            return s.selected_alpn_protocol()


def _children_of(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def _alive(pid):
    """Running (a zombie left to init counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


class Nghttpx:
    def __init__(self, directory, backend_port, backend_host="127.0.0.1", routes=(), tls=None, name="nghttpx",
                 max_concurrent_streams=None, window_bits=None, extra_args=(), port=None, cleartext=False):
        self.dir = directory
        self.name = name
        self.backend = (backend_host, backend_port)
        self.routes = list(routes)
        self.max_concurrent_streams = max_concurrent_streams
        self.window_bits = window_bits
        self.extra_args = list(extra_args)
        os.makedirs(directory, exist_ok=True)
        self.tls = tls or registry.make_tls_material(os.path.join(directory, "tls"))
        self.fixed_port = port
        self.cleartext = cleartext
        self.port = None
        self.child = None

    # -- lifecycle ---------------------------------------------------------

    def _argv(self, port, conf):
        host, bport = self.backend
        argv = [nghttpx_binary(), f"--conf={conf}", f"--frontend=127.0.0.1,{port}{';no-tls' if self.cleartext else ''}",
                f"--backend={host},{bport};/"]
        for pattern, route_port in self.routes:
            argv.append(f"--backend=127.0.0.1,{route_port};{pattern}")
        argv += [
            "--workers=1",
            "--no-ocsp",
            "--no-via",              # answers reach the client as the registry wrote them
            "--no-server-rewrite",
            "--errorlog-file=/dev/stderr",
            "--accesslog-file=/dev/stdout",
            f"--accesslog-format={ACCESS_FORMAT}",
            "--backend-keep-alive-timeout=30s",
        ]
        if self.max_concurrent_streams is not None:
            argv.append(f"--frontend-http2-max-concurrent-streams={self.max_concurrent_streams}")
        if self.window_bits is not None:
            argv.append(f"--frontend-http2-window-bits={self.window_bits}")
        argv += self.extra_args
        argv += [self.tls["key"], self.tls["cert"]]
        return argv

    def start(self, timeout=30, attempts=5):
        require_nghttpx()
        conf = os.path.join(self.dir, "nghttpx.conf")
        with open(conf, "w") as f:
            f.write("# empty: every option is on the command line\n")
        last = None
        if self.fixed_port is not None:
            attempts = 1
        for attempt in range(attempts):
            port = self.fixed_port or harness.free_port()
            log = os.path.join(self.dir, f"{self.name}.{attempt}.log")
            child = harness.Child(self.name, self._argv(port, conf), log)

            def listening():
                if not child.alive():
                    return "exited"
                return "up" if re.search(re.escape(_LISTENING) + f"{port}\\b", child.log_text()) else None

            state = harness.wait_until(listening, timeout, f"{self.name} to listen")
            if state == "up":
                self.child, self.port = child, port
                if not self.cleartext:
                    harness.wait_until(lambda: alpn_selected(port) == "h2", timeout, f"{self.name} to negotiate h2")
                self.worker_pids = _children_of(child.pid)
                return self
            last = child.log_tail()
            child.stop(check=False)
        raise RuntimeError(f"{self.name} did not start after {attempts} port(s); log tail:\n{last}")

    def stop(self, timeout=10):
        if self.child is None:
            return
        self.child.stop(sig=signal.SIGQUIT, kill_after=timeout, check=False)
        for pid in self.worker_pids:  # only if the master died without reaping them
            if _alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        harness.wait_until(lambda: not any(_alive(p) for p in self.worker_pids), timeout, f"{self.name} workers to exit")

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- addresses ---------------------------------------------------------

    @property
    def host(self):
        return f"127.0.0.1:{self.port}"

    @property
    def url(self):
        return f"{'http' if self.cleartext else 'https'}://{self.host}"

    @property
    def ca(self):
        return self.tls["ca"]

    @property
    def ca_dir(self):
        return self.tls["ca_dir"]

    def tls_context(self):
        return harness.tls_context(self.ca)

    def access_log(self):
        """The access log lines so far (nghttpx writes `"GET /path HTTP/2" status ...`)."""
        return [line for line in self.child.log_text().splitlines() if '" ' in line and " HTTP/" in line]

    def access_entries(self):
        """The access log parsed: [{client_port, alpn, method, path, version, status, bytes}]."""
        out = []
        for line in self.child.log_text().splitlines():
            m = _ACCESS_LINE.match(line)
            if m:
                out.append({"client_port": int(m["port"]), "alpn": m["alpn"], "method": m["method"],
                            "path": m["path"], "version": m["version"], "status": int(m["status"]),
                            "bytes": int(m["bytes"])})
        return out
