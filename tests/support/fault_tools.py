"""Shared pieces of the fault and hostile-input tests (python3 stdlib only).

Owns:
  * RawUpstream: a loopback TCP (or TLS) server whose every connection runs a
    Python function with the raw socket, so a test can misbehave exactly
    (reset after N body bytes, stall before the head, trickle a body, never
    send the last chunk). It records each connection (request heads, when
    the peer closed it) so a test can assert what the proxy did or did not
    send.
  * ProcBudget: the fd-count and RSS baseline of a process, taken after
    warm-up and re-checked after each case (fds back to baseline within a
    deadline, RSS growth bounded; the RSS half is skipped for a sanitizer
    build, where shadow memory makes RSS meaningless).
  * make_certs(): a CA and leaf certificates (good, expired, wrong name,
    signed by an unknown CA) made with the openssl command line.
  * raw_exchange(): one request written as raw bytes, the answer read until
    the server closes or a deadline passes (for malformed requests that no
    HTTP client library would send).

Nothing here sleeps to synchronise: waiting is polling with a deadline.
"""

import os
import re
import socket
import ssl
import subprocess
import threading
import time

import harness

# ---------------------------------------------------------------------------
# A raw, scriptable upstream


class RawConn:
    """One accepted connection, handed to the script."""

    def __init__(self, server, sock, index):
        self.server = server
        self.sock = sock
        self.index = index  # 0-based, in accept order
        self.heads = []  # raw request heads read on this connection (bytes)
        self.peer_closed_at = None  # monotonic time the proxy closed it (EOF/reset seen), or None
        self.closed_by_us = False
        self._buf = b""

    def read_head(self, timeout=30):
        """Reads one request head (through the blank line); None at EOF."""
        self.sock.settimeout(timeout)
        while b"\r\n\r\n" not in self._buf:
            try:
                data = self.sock.recv(65536)
            except (ConnectionResetError, socket.timeout, OSError):
                data = b""
            if not data:
                self.peer_closed_at = time.monotonic()
                return None
            self._buf += data
        head, _, self._buf = self._buf.partition(b"\r\n\r\n")
        head += b"\r\n\r\n"
        self.heads.append(head)
        with self.server.lock:
            self.server.heads.append((self.index, head))
        return head

    def send(self, data):
        """True if the bytes were handed to the kernel; False once the peer is gone."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError, OSError):
            if self.peer_closed_at is None:
                self.peer_closed_at = time.monotonic()
            return False

    def wait_peer_close(self, timeout):
        """Waits until the proxy closes its end (EOF or reset); True if it did."""
        if self.peer_closed_at is not None:
            return True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # The connection's script thread may be waiting too, and close the socket once
            # it saw the proxy's close (it records peer_closed_at first): no recv on a closed fd.
            if self.peer_closed_at is not None:
                return True
            if self.closed_by_us:
                return False
            try:
                self.sock.settimeout(max(0.01, min(0.2, deadline - time.monotonic())))
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except (ConnectionResetError, OSError):
                if self.closed_by_us:  # closed under us by the script thread, not by the proxy
                    return self.peer_closed_at is not None
                data = b""
            if not data:
                self.peer_closed_at = time.monotonic()
                return True
            self._buf += data
        return False

    def reset(self):
        """Closes with RST (SO_LINGER 0): what a crashed or killed upstream looks like."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        except OSError:
            pass
        self.close()

    def close(self):
        self.closed_by_us = True
        try:
            self.sock.close()
        except OSError:
            pass


class RawUpstream:
    """Listens on `host` (127.0.0.1 unless a test inside a private network
    namespace gives another local address) port 0; each connection runs
    `script(conn)` in its own thread. `script` may be replaced between cases
    (set_script). tls: (certfile, keyfile) to serve TLS."""

    def __init__(self, script, host="127.0.0.1", tls=None, name="raw-upstream"):
        self.script = script
        self.name = name
        self.lock = threading.Lock()
        self.conns = []
        self.all_conns = []  # never cleared (bounded by the test's own traffic)
        self.heads = []  # (connection index, head bytes) in arrival order
        self.accepted = 0
        self._ctx = None
        if tls is not None:
            self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._ctx.load_cert_chain(tls[0], tls[1])
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, 0))
        self._sock.listen(512)
        self.host, self.port = self._sock.getsockname()
        self._stopped = False
        self._thread = threading.Thread(target=self._accept_loop, name=name, daemon=True)
        self._thread.start()

    @property
    def authority(self):
        return f"{self.host}:{self.port}"

    def set_script(self, script):
        with self.lock:
            self.script = script

    def clear(self):
        with self.lock:
            self.conns = []
            self.heads = []
            self.accepted = 0

    def seen(self):
        """Request heads received since the last clear(), as bytes."""
        with self.lock:
            return [h for _, h in self.heads]

    def connections(self):
        with self.lock:
            return list(self.conns)

    def conn_for(self, needle):
        """The latest connection (since start, clear() or not: a pooled one may
        predate it) whose request heads contain `needle` (bytes), or None."""
        with self.lock:
            for conn in reversed(self.all_conns):
                if any(needle in h for h in conn.heads):
                    return conn
        return None

    def _accept_loop(self):
        while not self._stopped:
            try:
                sock, _ = self._sock.accept()
            except OSError:
                return
            with self.lock:
                index = self.accepted
                self.accepted += 1
                script = self.script
            threading.Thread(target=self._run, args=(sock, index, script), daemon=True).start()

    def _run(self, sock, index, script):
        if self._ctx is not None:
            try:
                sock.settimeout(10)
                sock = self._ctx.wrap_socket(sock, server_side=True)
            except (ssl.SSLError, OSError):
                # The proxy refused our certificate: what the TLS cases expect.
                with self.lock:
                    self.conns.append(None)
                sock.close()
                return
        conn = RawConn(self, sock, index)
        with self.lock:
            self.conns.append(conn)
            self.all_conns.append(conn)
        try:
            script(conn)
        except Exception as e:  # noqa: BLE001 - a script error must not kill the server
            print(f"{self.name}: script raised {e!r}", flush=True)
        finally:
            if not conn.closed_by_us:
                conn.close()

    def stop(self):
        self._stopped = True
        try:
            self._sock.close()
        except OSError:
            pass


def http_head(status, headers=(), reason=None):
    reason = reason or {200: "OK", 206: "Partial Content", 307: "Temporary Redirect", 404: "Not Found",
                        500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}.get(status, "X")
    lines = [f"HTTP/1.1 {status} {reason}"] + [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def serve_keepalive(body, content_type="application/octet-stream", extra=()):
    """A script answering every request on the connection with `body` (200, keep-alive)."""

    def script(conn):
        while conn.read_head() is not None:
            if not conn.send(http_head(200, [("Content-Type", content_type), ("Content-Length", len(body)),
                                             *extra]) + body):
                return

    return script


# ---------------------------------------------------------------------------
# Raw downstream requests


def raw_exchange(port, data, timeout=10, host="127.0.0.1", half_close=False):
    """Writes `data` on a new connection and reads until the server closes it
    or `timeout` passes. Returns (bytes read, closed_by_server)."""
    s = socket.create_connection((host, port), timeout=timeout)
    out = b""
    closed = False
    try:
        try:
            s.sendall(data)
            if half_close:
                s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s.settimeout(max(0.01, deadline - time.monotonic()))
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
            out += chunk
    finally:
        s.close()
    return out, closed


def statuses(raw):
    """Status codes of every response in a raw byte stream (heads only)."""
    return [int(m.group(1)) for m in re.finditer(rb"HTTP/1\.[01] (\d{3}) ", raw)]


# ---------------------------------------------------------------------------
# fd and RSS budget


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def _tcp_table():
    """inode -> (local port, remote port, state hex) for IPv4 and IPv6 sockets in this netns."""
    out = {}
    for name in ("tcp", "tcp6"):
        try:
            with open(f"/proc/net/{name}") as f:
                next(f)
                for line in f:
                    parts = line.split()
                    local, remote, state, inode = parts[1], parts[2], parts[3], parts[9]
                    out[inode] = (int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16), state)
        except OSError:
            pass
    return out


def fd_kinds(pid, downstream_ports):
    """Counts the process's fds: ('downstream', 'upstream', 'listen', 'other')."""
    table = _tcp_table()
    counts = {"downstream": 0, "upstream": 0, "listen": 0, "other": 0}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue  # closed meanwhile
        m = re.fullmatch(r"socket:\[(\d+)\]", target)
        entry = table.get(m.group(1)) if m else None
        if entry is None:
            counts["other"] += 1
        elif entry[2] == "0A":
            counts["listen"] += 1
        elif entry[0] in downstream_ports:
            counts["downstream"] += 1
        else:
            counts["upstream"] += 1
    return counts


def is_sanitized(binary):
    """True for an ASan/UBSan build (its RSS means nothing): the runtime's symbols are in the file."""
    if os.environ.get("ACP_SANITIZED") in ("1", "true", "yes"):
        return True
    try:
        with open(binary, "rb") as f:
            data = f.read()
    except OSError:
        return False
    return b"__asan_init" in data or b"__ubsan_handle" in data


class ProcBudget:
    """fd and RSS baseline of a proxy (support.proxy.Proxy), checked after each case.

    check(): waits (up to `deadline` s) until the proxy holds no downstream
    connection, the same number of listeners and other fds as at baseline and
    at most `pool_allowance` upstream sockets (idle keep-alive connections the
    pool may keep); RSS may have grown at most `rss_slack_kib` over baseline.
    Returns a list of problems (empty when fine).
    """

    def __init__(self, proxy, binary, pool_allowance, rss_slack_kib=16 * 1024):
        self.proxy = proxy
        self.pool_allowance = pool_allowance
        self.rss_slack_kib = rss_slack_kib
        self.check_rss = not is_sanitized(binary)
        self.base = None
        self.base_rss = None

    def _kinds(self):
        return fd_kinds(self.proxy.child.pid, {self.proxy.port, self.proxy.admin_port})

    def take(self):
        harness.wait_until(lambda: self._kinds()["downstream"] == 0, 10, "no downstream connection before baseline")
        self.base = self._kinds()
        self.base_rss = self.proxy.rss_kib()
        return self.base

    def check(self, what, deadline=10):
        problems = []
        last = {}

        def settled():
            k = self._kinds()
            last.clear()
            last.update(k)
            return (k["downstream"] == 0 and k["listen"] == self.base["listen"] and k["other"] == self.base["other"]
                    and k["upstream"] <= self.pool_allowance)

        try:
            harness.wait_until(settled, deadline, f"fds back to baseline after {what}")
        except TimeoutError:
            problems.append(f"{what}: fds not back to baseline within {deadline}s: {last} "
                            f"(baseline {self.base}, upstream allowance {self.pool_allowance})")
        if self.check_rss:
            rss = self.proxy.rss_kib()
            if rss - self.base_rss > self.rss_slack_kib:
                problems.append(f"{what}: RSS grew {rss - self.base_rss} KiB over the baseline {self.base_rss} KiB "
                                f"(bound {self.rss_slack_kib} KiB)")
        return problems


# ---------------------------------------------------------------------------
# Certificates


def _openssl(args, cwd):
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)}: {proc.stderr.decode(errors='replace')[-500:]}")


def make_certs(directory):
    """Writes, with the openssl command line, into `directory`:
      ca.pem / ca.key            the CA the proxy trusts (caFile)
      good.pem / good.key        leaf for localhost + 127.0.0.1, signed by ca
      expired.pem / expired.key  the same names, signed by ca, notAfter before notBefore (expired)
      wrongname.pem / .key       signed by ca, for other.example only
      unknown.pem / .key         localhost + 127.0.0.1, signed by a CA nobody trusts
    Returns a dict name -> (cert path, key path), plus "ca" -> ca.pem.
    """
    os.makedirs(directory, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    for ca in ("ca", "otherca"):
        _openssl(["req", "-x509", *ec, "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-subj", f"/CN=acp test {ca}",
                  "-days", "3", "-addext", "basicConstraints=critical,CA:TRUE",
                  "-addext", "keyUsage=critical,keyCertSign,cRLSign"], directory)
    leaves = {
        "good": ("ca", "DNS:localhost,IP:127.0.0.1", "3"),
        "expired": ("ca", "DNS:localhost,IP:127.0.0.1", "-1"),
        "wrongname": ("ca", "DNS:other.example", "3"),
        "unknown": ("otherca", "DNS:localhost,IP:127.0.0.1", "3"),
    }
    out = {"ca": os.path.join(directory, "ca.pem")}
    for name, (ca, san, days) in leaves.items():
        with open(os.path.join(directory, f"{name}.ext"), "w") as f:
            f.write(f"subjectAltName={san}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
        _openssl(["req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", "/CN=acp test leaf"], directory)
        _openssl(["x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
                  "-days", days, "-extfile", f"{name}.ext", "-out", f"{name}.pem"], directory)
        out[name] = (os.path.join(directory, f"{name}.pem"), os.path.join(directory, f"{name}.key"))
    return out


# ---------------------------------------------------------------------------
# Private network namespace helpers


def add_local_address(address):
    """Adds `address`/32 to lo. Only inside harness.enter_private_netns (asserted):
    lets a test listen on, or prove nothing dials, an address such as the
    metadata service without any packet able to leave the machine."""
    if os.environ.get("ACP_PRIVATE_NETNS") != "1":
        raise RuntimeError("add_local_address outside a private network namespace")
    subprocess.run(["ip", "addr", "add", f"{address}/32", "dev", "lo"], check=True, capture_output=True)


class Tripwire:
    """Listens on address:port (a local address of the private netns) and counts
    every connection attempt: proof that nothing dialled it."""

    def __init__(self, address, port):
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((address, port))
        self._sock.listen(64)
        self.address, self.port = self._sock.getsockname()
        self.hits = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        while True:
            try:
                s, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self.hits += 1
            s.close()

    def count(self):
        with self._lock:
            return self.hits

    def stop(self):
        try:
            self._sock.close()
        except OSError:
            pass
