"""Shared plumbing for the integration tests and the demo (python3 stdlib only).

Owns: child processes (started with logs in a temp dir, stopped by pid at
exit even when a test fails), free loopback ports, polling with a deadline,
a small HTTP client that keeps repeated request headers as separate lines,
and a unittest runner that prints one line per test case.

Nothing here sleeps to synchronise: readiness is polled with a deadline.
"""

import atexit
import hashlib
import http.client
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

import secret_log

SKIP_EXIT = 77  # meson: test skipped

# One secrets file per test program (see secret_log.py); children, and the
# re-exec inside a private netns, inherit it through the environment.
_secrets_file_owner = False
if not os.environ.get(secret_log.ENV):
    _fd, _path = tempfile.mkstemp(prefix="acp-test-secrets-")
    os.close(_fd)
    os.environ[secret_log.ENV] = _path
    _secrets_file_owner = True

# What the proxy produced, for the secret scan at the end of run_tests():
# [(source name, text)], plus the proxy children whose logs are read then.
_scan_sources = []
_proxy_children = []


def scan_source(name, text):
    """Adds text the proxy produced (a log, /metrics, an answer body, command
    output) to what run_tests() checks for secrets at the end."""
    if text:
        _scan_sources.append((name, text))


def is_proxy_argv(argv):
    return any(os.path.basename(str(a)) == "acr-credential-proxy" for a in argv)


def secrets_token():
    """A random password for a test user (never printed, never on argv);
    registered for the end-of-run secret scan."""
    return secret_log.register("password", secrets.token_urlsafe(18))


class TestCaseBase(unittest.TestCase):
    """unittest.TestCase that, after each test, checks every process listed by
    `watched()` is still alive (a crash is blamed on the test that caused it)."""

    maxDiff = None

    def watched(self):
        return []

    def tearDown(self):
        for p in self.watched():
            p.check_alive()


def require_tools(*names):
    """Exits 77 naming the first tool that is not installed."""
    for name in names:
        if shutil.which(name) is None:
            print(f"SKIP: '{name}' is not installed (scripts/install-deps installs it)", flush=True)
            sys.exit(SKIP_EXIT)


def enter_private_netns(marker="ACP_PRIVATE_NETNS"):
    """Re-runs this script inside a new network namespace with only loopback up.

    For anything that lets a client see a made-up registry name: even a
    fallback lookup of it then cannot leave the machine (no DNS query, no
    connection). Every server the script starts is inside the namespace too.
    Returns only in the child; the parent exits with the child's status.
    """
    if os.environ.get(marker) == "1":
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        return
    require_tools("unshare", "ip")
    if subprocess.run(["unshare", "--net", "true"], capture_output=True).returncode != 0:
        print("SKIP: cannot create a private network namespace (unshare --net needs root)", flush=True)
        sys.exit(SKIP_EXIT)
    env = dict(os.environ, **{marker: "1"})
    sys.stdout.flush()
    # unshare execs the interpreter (no fork): the child's pid is the script's.
    child = subprocess.Popen(["unshare", "--net", sys.executable, os.path.abspath(sys.argv[0])] + sys.argv[1:],
                             env=env)

    got = []

    def forward(signum, _frame):
        # meson's timeout SIGTERM: the child stops what it started and exits; the
        # wait below (resumed after this handler) then returns. No wait in here:
        # Popen.wait is not re-entrant (its lock is held by the outer wait).
        got.append(signum)
        try:
            child.send_signal(signum)
        except ProcessLookupError:
            pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status = child.wait()
    sys.exit(128 + got[0] if got else status)


def free_port():
    """A TCP port that was free on 127.0.0.1 a moment ago (bind port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout, what, interval=0.02):
    """Polls predicate() until it returns a truthy value or the deadline passes.

    Returns that value; raises TimeoutError naming `what` otherwise. The poll
    interval grows from 20 ms to 200 ms: this is polling with a deadline, not
    a sleep used as synchronisation.
    """
    deadline = time.monotonic() + timeout
    last_error = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - keep polling, report the last one
            last_error = e
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}{detail}")
        time.sleep(interval)
        interval = min(interval * 1.5, 0.2)


class TempDir:
    """A mkdtemp directory removed at exit (kept when ACP_KEEP_TMP=1)."""

    def __init__(self, prefix):
        self.path = tempfile.mkdtemp(prefix=f"acp-{prefix}-")
        atexit.register(self.cleanup)

    def join(self, *parts):
        return os.path.join(self.path, *parts)

    def cleanup(self):
        if os.environ.get("ACP_KEEP_TMP") == "1":
            print(f"kept temp dir {self.path}", flush=True)
            return
        shutil.rmtree(self.path, ignore_errors=True)


_children = []


def _stop_all_children(timeout=30.0):
    for child in reversed(_children):
        child.stop(check=False, timeout=timeout)


def _remove_secrets_file():
    if _secrets_file_owner:
        try:
            os.unlink(os.environ[secret_log.ENV])
        except OSError:
            pass


atexit.register(_remove_secrets_file)
atexit.register(_stop_all_children)  # atexit runs in reverse: children stop first


def _on_signal(signum, _frame):
    # meson sends SIGTERM on timeout: still stop every child we started, quickly,
    # then leave at once. (sys.exit would raise SystemExit inside whatever test
    # is running; unittest records it as an error and goes on to the next test.)
    _stop_all_children(timeout=5.0)
    sys.stdout.flush()
    os._exit(128 + signum)


signal.signal(signal.SIGTERM, _on_signal)


class Child:
    """A process we started. stdout+stderr go to `log_path`.

    stop() sends SIGTERM to this pid only, waits, then SIGKILL after
    `kill_after` seconds. Every Child is also stopped at interpreter exit.
    """

    def __init__(self, name, argv, log_path, env=None, cwd=None, stdin_data=None, pass_fds=()):
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE if stdin_data is not None else subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            pass_fds=tuple(pass_fds),
        )
        if stdin_data is not None:
            self.proc.stdin.write(stdin_data)
            self.proc.stdin.close()
        self.pid = self.proc.pid
        self.returncode = None
        self.scanned = False
        _children.append(self)
        if is_proxy_argv(self.argv):
            _proxy_children.append(self)

    def alive(self):
        return self.proc.poll() is None

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, lines=30):
        return "\n".join(self.log_text().splitlines()[-lines:])

    def ensure_alive(self):
        if not self.alive():
            raise RuntimeError(
                f"{self.name} (pid {self.pid}) exited with {self.proc.returncode}; log tail:\n{self.log_tail()}"
            )

    def stop(self, sig=signal.SIGTERM, timeout=30.0, kill_after=None, check=True):
        """Stops the child; returns its exit status (negative: killed by signal)."""
        if self.returncode is None:
            if self.proc.poll() is None:
                try:
                    os.kill(self.pid, sig)
                except ProcessLookupError:
                    pass
                try:
                    self.proc.wait(timeout=kill_after if kill_after is not None else timeout)
                except subprocess.TimeoutExpired:
                    os.kill(self.pid, signal.SIGKILL)
                    self.proc.wait()
            self.returncode = self.proc.returncode
            self._log.close()
            if self in _proxy_children and not self.scanned:
                self.scanned = True  # read now: tests may delete their temp dirs before the scan
                scan_source(f"{self.name} log ({self.log_path})", self.log_text())
        if check and self.returncode != 0:
            raise RuntimeError(f"{self.name} (pid {self.pid}) exited with {self.returncode}; log tail:\n{self.log_tail()}")
        return self.returncode


def run(argv, timeout=300, input_data=None, env=None, check=True):
    """Runs a short-lived command; returns CompletedProcess (text output)."""
    proc = subprocess.run(
        argv, input=input_data, capture_output=True, timeout=timeout, env=env, text=True
    )
    if is_proxy_argv(argv):
        scan_source(f"output of {' '.join(os.path.basename(str(a)) for a in argv[:3])}",
                    (proc.stdout or "") + (proc.stderr or ""))
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} exited with {proc.returncode}\nstdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-2000:]}"
        )
    return proc


# ---------------------------------------------------------------------------
# HTTP client


class Response:
    def __init__(self, status, reason, headers, body):
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value) in arrival order
        self.body = body

    def header(self, name):
        """The first value of a header (case-insensitive), or None."""
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def header_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def sha256(self):
        return "sha256:" + hashlib.sha256(self.body).hexdigest()

    def __repr__(self):
        return f"<{self.status} {self.reason} {self.headers!r} body={self.body[:200]!r}>"


def tls_context(ca_file=None):
    ctx = ssl.create_default_context(cafile=ca_file)
    return ctx


class Client:
    """One keep-alive HTTP/1.1 connection to host:port (reconnects if closed).

    Headers are given as a list of (name, value) pairs and sent in order, one
    line each (repeated Accept lines stay separate).
    """

    def __init__(self, host, port, tls=None, timeout=60, scan_name=None):
        self.host, self.port, self.tls, self.timeout = host, port, tls, timeout
        self.scan_name = scan_name  # set for the proxy's clients: non-2xx answers join the secret scan
        self.conn = None
        self.connects = 0  # connections opened: 1 after any number of keep-alive requests

    def _connect(self):
        self.connects += 1
        if self.tls is not None:
            self.conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout, context=self.tls)
        else:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def start(self, method, path, headers=(), body=None):
        """Sends a request and returns the http.client response (body unread)."""
        for attempt in (0, 1):
            if self.conn is None:
                self._connect()
            try:
                self.conn.putrequest(method, path, skip_accept_encoding=True)
                for k, v in headers:
                    self.conn.putheader(k, v)
                if body is not None:
                    self.conn.putheader("Content-Length", str(len(body)))
                self.conn.endheaders(body)
                return self.conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # The server closed an idle keep-alive connection: retry once on a new one.
                self.close()
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")

    def request(self, method, path, headers=(), body=None):
        resp = self.start(method, path, headers, body)
        data = resp.read()
        result = Response(resp.status, resp.reason, list(resp.getheaders()), data)
        if self.scan_name and not 200 <= resp.status < 300:
            scan_source(f"{self.scan_name} answer {resp.status} to {method} {path[:80]}",
                        "\n".join(f"{k}: {v}" for k, v in result.headers) + "\n"
                        + data[:65536].decode("utf-8", "replace"))
        if resp.will_close:
            self.close()
        return result


def request(host, port, method, path, headers=(), body=None, tls=None, timeout=60, scan_name=None):
    """One request on a fresh connection."""
    c = Client(host, port, tls=tls, timeout=timeout, scan_name=scan_name)
    try:
        return c.request(method, path, headers, body)
    finally:
        c.close()


def basic_auth(username, password):
    import base64

    secret_log.register_basic("password", username, password)
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


# ---------------------------------------------------------------------------
# unittest runner: one line per test case


class _LineResult(unittest.TestResult):
    def __init__(self, stream):
        super().__init__()
        self.stream = stream
        self._start = {}

    def _line(self, status, test, detail=""):
        elapsed = time.monotonic() - self._start.get(test.id(), time.monotonic())
        name = test.id().split(".", 1)[-1] if isinstance(test, unittest.TestCase) else str(test)
        self.stream.write(f"{status:<5} {name} ({elapsed:.2f}s){(': ' + detail) if detail else ''}\n")
        self.stream.flush()

    def startTest(self, test):
        self._start[test.id()] = time.monotonic()
        super().startTest(test)

    passed = 0

    def addSuccess(self, test):
        super().addSuccess(test)
        self.passed += 1
        self._line("ok", test)

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._line("FAIL", test, str(err[1]).splitlines()[0] if str(err[1]) else err[0].__name__)

    def addError(self, test, err):
        super().addError(test, err)
        self._line("ERROR", test, f"{err[0].__name__}: {str(err[1]).splitlines()[0] if str(err[1]) else ''}")

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            self._line("FAIL", subtest, str(err[1]).splitlines()[0] if str(err[1]) else err[0].__name__)

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._line("skip", test, reason)

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self._line("xfail", test)

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._line("XPASS", test)


def redact(value):
    """Authorization values (alone, or in lists) reduced to scheme + length."""
    if isinstance(value, (list, tuple)):
        return type(value)(redact(v) for v in value)
    if isinstance(value, str) and " " in value:
        scheme, _, rest = value.partition(" ")
        return f"{scheme} <{len(rest)} chars>"
    if isinstance(value, str):
        return f"<{len(value)} chars>"
    return value


class Checks:
    """Collects every mismatch of a table-driven test instead of stopping at
    the first, so one run shows the whole picture. done() fails the test with
    all of them (the first one is the summary line)."""

    def __init__(self, test):
        self.test = test
        self.problems = []
        self.count = 0

    def check(self, ok, what):
        self.count += 1
        if not ok:
            self.problems.append(what)
        return ok

    def eq(self, actual, expected, what):
        return self.check(actual == expected, f"{what}: got {actual!r}, want {expected!r}")

    def secret_eq(self, actual, expected, what):
        """eq() for values holding credentials: the message shows only their shape."""
        return self.check(actual == expected, f"{what}: got {redact(actual)!r}, want {redact(expected)!r}")

    def done(self):
        if self.problems:
            shown = self.problems[:40]
            more = f"\n... and {len(self.problems) - 40} more" if len(self.problems) > 40 else ""
            self.test.fail(f"{len(self.problems)} of {self.count} checks failed; first: {shown[0]}\n"
                           + "\n".join(shown) + more)


def secret_scan(out=None):
    """Issue 8: no secret the run registered may appear in anything the proxy
    produced (logs, /metrics, error answers, command output). Prints one line;
    False on any finding (named by source, line and kind, never the value)."""
    sources = list(_scan_sources)
    for child in _proxy_children:
        if not child.scanned:
            sources.append((f"{child.name} log ({child.log_path})", child.log_text()))
    secrets_used = secret_log.load()
    findings = secret_log.scan(sources, secrets_used)
    size = sum(len(t) for _, t in sources)
    out = out or sys.stdout
    if findings:
        print(f"FAIL secret scan: {len(findings)} finding(s) in {len(sources)} proxy outputs:", file=out, flush=True)
        for f in findings[:40]:
            print(f"  {f}", file=out, flush=True)
        return False
    print(f"secret scan: {len(secrets_used)} secrets, {len(sources)} proxy outputs ({size} bytes): none found",
          file=out, flush=True)
    return True


def run_tests(module_name="__main__"):
    """Runs every TestCase in the module; prints one line per case, then the
    tracebacks of failures. Returns the process exit status (0 or 1)."""
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[module_name])
    result = _LineResult(sys.stdout)
    started = time.monotonic()
    suite.run(result)
    for test, tb in result.failures + result.errors:
        print("=" * 70)
        print(f"{test}")
        print(tb)
    total = result.testsRun
    bad = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    bad += 0 if secret_scan() else 1
    print(f"{result.passed} passed, {bad} failed, {len(result.skipped)} skipped "
          f"in {time.monotonic() - started:.1f}s", flush=True)
    if total == 0:
        print("no test ran", flush=True)
        return 1
    return 1 if bad else 0
