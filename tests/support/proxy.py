"""The acr-credential-proxy binary, started for a test on free loopback ports.

Proxy(binary, dir, config).start() writes `config` (a dict in our YAML
format's camelCase keys) as YAML, picks free ports for `listen` and
`adminListen` (bound with port 0 a moment before; on a lost race the start is
retried on new ports), starts `acr-credential-proxy serve --config FILE` and
polls the admin /healthz until it answers 200.

stop() sends SIGTERM and checks the exit status is 0 (the issue's contract).
rss_kib() reads VmRSS from /proc/PID/status.

registry_entry() turns a support.registry.Registry into a `registries[]`
entry, writing its password to a 0600 file (or naming an environment variable)
so no secret is ever on a command line.
"""

import json
import sys
import os
import re

import harness


def find_binary(argv=None):
    """The proxy binary: --proxy PATH on the command line, else $ACP_PROXY_BIN,
    else build*/proxy/acr-credential-proxy under $ACP_BUILD_ROOT."""
    argv = argv if argv is not None else sys.argv
    for i, a in enumerate(argv):
        if a == "--proxy" and i + 1 < len(argv):
            return os.path.abspath(argv[i + 1])
        if a.startswith("--proxy="):
            return os.path.abspath(a.split("=", 1)[1])
    if os.environ.get("ACP_PROXY_BIN"):
        return os.environ["ACP_PROXY_BIN"]
    build_root = os.environ.get("ACP_BUILD_ROOT")
    if build_root:
        return os.path.join(build_root, "proxy", "acr-credential-proxy")
    raise SystemExit("no proxy binary: pass --proxy PATH or set ACP_PROXY_BIN")


def _key(k):
    k = str(k)
    return k if re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", k) else json.dumps(k)


def to_yaml(value, indent=0):
    """A small YAML emitter for dicts/lists/scalars (strings JSON-quoted, which is valid YAML)."""
    pad = "  " * indent
    if isinstance(value, dict):
        if not value:
            return "{}"
        lines = []
        for k, v in value.items():
            if isinstance(v, (dict, list)) and v:
                lines.append(f"{pad}{_key(k)}:\n{to_yaml(v, indent + 1)}")
            else:
                lines.append(f"{pad}{_key(k)}: {to_yaml(v, 0)}")
        return "\n".join(lines)
    if isinstance(value, list):
        if not value:
            return "[]"
        lines = []
        for v in value:
            if isinstance(v, dict) and v:
                body = to_yaml(v, indent + 1).lstrip()
                lines.append(f"{pad}- {body}")
            else:
                lines.append(f"{pad}- {to_yaml(v, 0)}")
        return "\n".join(lines)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(str(value))


def registry_entry(reg, directory, auth="basic", password_via="file", ca=True, override=None, host=None):
    """A `registries[]` entry for Registry `reg` and its endpointOverrides pair.

    auth: "basic" (the registry's first user) or "anonymous".
    password_via: "file" (written 0600 in `directory`) or "env" (returns the
    variable to set in `env`). override: None = http registries get
    http://127.0.0.1:PORT, TLS ones none (the proxy dials https://host itself).
    host: the name clients use (default the registry's 127.0.0.1:PORT).
    Returns (entry, overrides dict, env dict).
    """
    host = host or reg.host
    entry = {"host": host}
    env = {}
    if auth == "basic":
        user, password = reg.user()
        a = {"type": "basic", "username": user}
        if password_via == "env":
            var = "ACP_TEST_PW_" + re.sub(r"[^A-Za-z0-9]", "_", host).upper()
            env[var] = password
            a["passwordEnv"] = var
        else:
            path = os.path.join(directory, re.sub(r"[^A-Za-z0-9.-]", "_", host) + ".password")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(password)
            a["passwordFile"] = path
        entry["auth"] = a
    else:
        entry["auth"] = {"type": "anonymous"}
    if reg.tls and ca:
        entry["caFile"] = reg.tls["ca"]
    overrides = {}
    if override is not None:
        overrides[host] = override
    elif not reg.tls or host != reg.host:
        overrides[host] = f"{reg.scheme}://127.0.0.1:{reg.port}"
    return entry, overrides, env


class Proxy:
    def __init__(self, binary, directory, config, env=None, name="proxy"):
        self.binary = binary
        self.dir = directory
        self.config = dict(config)
        self.env = dict(env or {})
        self.name = name
        self.child = None
        self.port = None
        self.admin_port = None
        self.extra_args = []  # appended to `serve --config FILE` (e.g. --certs-dir DIR)
        self.wrapper = []  # put before the binary (e.g. strace -f -o FILE --)
        os.makedirs(directory, exist_ok=True)
        self.config_path = os.path.join(directory, f"{name}.yaml")
        self.log_path = os.path.join(directory, f"{name}.log")

    def write_config(self):
        with open(self.config_path, "w") as f:
            f.write("# generated by tests/support/proxy.py\n" + to_yaml(self.config) + "\n")

    def start(self, timeout=30, attempts=3):
        if not os.access(self.binary, os.X_OK):
            raise RuntimeError(f"proxy binary {self.binary} is missing or not executable (build it first)")
        for attempt in range(attempts):
            self.port, self.admin_port = harness.free_port(), harness.free_port()
            # debug by default: the end-of-run secret scan (harness.secret_scan)
            # then covers every line the proxy can write.
            self.config.setdefault("log", {"level": "debug", "format": "text"})
            self.config["listen"] = f"127.0.0.1:{self.port}"
            self.config["adminListen"] = f"127.0.0.1:{self.admin_port}"
            self.write_config()
            env = dict(os.environ)
            env.update(self.env)
            self.child = harness.Child(self.name, [*self.wrapper, self.binary, "serve", "--config", self.config_path, *self.extra_args],
                                       self.log_path, env=env)
            try:
                harness.wait_until(self._healthy, timeout, f"{self.name} /healthz")
                return self
            except (RuntimeError, TimeoutError):
                if self.child.alive() or attempt == attempts - 1:
                    raise
                # exited during startup: most likely a port taken between free_port() and bind; retry
        return self

    def _healthy(self):
        self.child.ensure_alive()
        return self.admin("/healthz").status == 200

    def check_alive(self):
        """Raises if the proxy died: a /healthz round trip first, so that on its
        single event loop whatever the last request left behind has run."""
        try:
            self.admin("/healthz")
        except OSError:
            pass
        if self.child.alive():
            return
        dead = self.child
        dead.stop(check=False)  # reaps it
        # Start a fresh one (new ports) so the tests after this one still mean something.
        self.start()
        raise RuntimeError(f"{self.name} (pid {dead.pid}) died with status {dead.returncode} "
                           f"(restarted as pid {self.child.pid}); log tail:\n{dead.log_tail(15)}")

    def stop(self, check=True, timeout=60):
        """SIGTERM; returns the exit status (asserted 0 when check)."""
        if self.child is None:
            return None
        if self.child.alive():
            try:  # what /metrics shows joins the secret scan
                harness.scan_source(f"{self.name} /metrics", self.admin("/metrics").body.decode("utf-8", "replace"))
            except OSError:
                pass
        return self.child.stop(timeout=timeout, check=check)

    # -- talking to it -----------------------------------------------------

    def client(self, timeout=60):
        return harness.Client("127.0.0.1", self.port, timeout=timeout, scan_name=self.name)

    def request(self, method, path, headers=(), body=None):
        return harness.request("127.0.0.1", self.port, method, path, headers, body, scan_name=self.name)

    def admin(self, path, method="GET"):
        return harness.request("127.0.0.1", self.admin_port, method, path, timeout=10, scan_name=self.name + " admin")

    def metrics(self):
        return self.admin("/metrics").body.decode()

    def rss_kib(self):
        """VmRSS of the proxy process in KiB."""
        with open(f"/proc/{self.child.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS in /proc status")

    def log_text(self):
        return self.child.log_text() if self.child else ""
