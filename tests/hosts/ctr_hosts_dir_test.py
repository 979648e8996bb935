#!/usr/bin/env python3
"""A real containerd 1.6 reads the hosts.toml that `hosts install` writes.

Runs in a private network namespace with only loopback (re-executes itself
under `unshare --net`), starts a private containerd (root, state and socket in
a temp dir, CRI disabled) and two loopback HTTP servers that record every
request and answer 404 (so containerd moves on to the next host):

  proxy  - stands in for acr-credential-proxy (the address given to `hosts install`)
  mirror - a user's own mirror, listed in a hosts.toml that exists before install

`ctr images pull --hosts-dir DIR <made-up domain>/library/busybox:1.0` then
shows what containerd did with each file:

  1. fresh install:         the first request is HEAD /v2/.../manifests/1.0?ns=<domain> to the proxy
                            (also with dial_timeout, which 1.6 ignores)
  2. merged into a user file: proxy first, then the user's mirror (their entry kept, after ours)
  3. after `hosts remove`:  the user's mirror only (their file restored)

The made-up domain never resolves: the namespace has no route off the machine.

Usage: ctr_hosts_dir_test.py HOSTS_TOOL   (exit 77: a needed tool is missing)
"""
import http.server
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

SKIP = 77
DOMAIN = "registry.acp-hosts-test.invalid"
IMAGE = DOMAIN + "/library/busybox:1.0"
MANIFEST_PATH = "/v2/library/busybox/manifests/1.0?ns=" + DOMAIN


def skip(reason):
    print("SKIP: " + reason)
    sys.exit(SKIP)


class Recorder:
    """Loopback HTTP servers that log (server name, method, path) in arrival order."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests = []
        self.servers = []

    def start(self, name):
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def answer(self, with_body):
                with recorder.lock:
                    recorder.requests.append((name, self.command, self.path))
                body = b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"recorded by the test"}]}'
                self.send_response(404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if with_body:
                    self.wfile.write(body)

            def do_HEAD(self):
                self.answer(False)

            def do_GET(self):
                self.answer(True)

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.servers.append(server)
        return server.server_address[1]

    def take(self):
        with self.lock:
            taken, self.requests = self.requests, []
        return taken

    def stop(self):
        for s in self.servers:
            s.shutdown()
            s.server_close()


def start_containerd(tmp):
    sock = os.path.join(tmp, "containerd.sock")
    cfg = os.path.join(tmp, "containerd.toml")
    with open(cfg, "w") as f:
        f.write(
            'version = 2\nroot = "{0}/root"\nstate = "{0}/state"\n'
            'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
            '[grpc]\n  address = "{1}"\n'.format(tmp, sock)
        )
    log = open(os.path.join(tmp, "containerd.log"), "w")
    proc = subprocess.Popen(["containerd", "--config", cfg], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        if subprocess.run(["ctr", "--address", sock, "version"], capture_output=True).returncode == 0:
            return proc, sock
        time.sleep(0.1)
    proc.kill()
    proc.wait()
    with open(os.path.join(tmp, "containerd.log")) as f:
        tail = f.read()[-2000:]
    skip("containerd did not start in this environment:\n" + tail)


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    tool = sys.argv[1]
    for t in ("ctr", "containerd", "unshare", "ip"):
        if shutil.which(t) is None:
            skip(t + " is not installed (scripts/install-deps installs it)")

    if os.environ.get("ACP_HOSTS_NETNS") != "1":
        unshare = ["unshare", "--net"] + ([] if os.geteuid() == 0 else ["--map-root-user"])
        if subprocess.run(unshare + ["true"], capture_output=True).returncode != 0:
            skip("cannot create a private network namespace (unshare --net)")
        env = dict(os.environ, ACP_HOSTS_NETNS="1")
        return subprocess.run(unshare + [sys.executable, os.path.abspath(__file__), tool], env=env).returncode

    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    tmp = tempfile.mkdtemp(prefix="acp-ctr-hosts-")
    recorder = Recorder()
    containerd = None
    failures = []
    passed = 0

    def check(name, ok, detail=""):
        nonlocal passed
        if ok:
            passed += 1
            print("ok - " + name)
        else:
            failures.append(name)
            print("FAIL - " + name + (": " + detail if detail else ""))

    try:
        containerd, sock = start_containerd(tmp)
        proxy_port = recorder.start("proxy")
        mirror_port = recorder.start("mirror")
        certs = os.path.join(tmp, "certs.d")

        def hosts(*args):
            r = subprocess.run(
                [tool, "--listen", "127.0.0.1:%d" % proxy_port, "--domain", DOMAIN, "--", *args, "--certs-dir", certs],
                capture_output=True,
                text=True,
            )
            print(r.stdout + r.stderr, end="")
            return r.returncode

        def pull():
            recorder.take()
            r = subprocess.run(
                ["ctr", "--address", sock, "images", "pull", "--hosts-dir", certs, IMAGE],
                capture_output=True,
                text=True,
                timeout=120,
            )
            return r, recorder.take()

        # 1. A fresh install: containerd's first request goes to the proxy, with ?ns=.
        check("hosts install exits 0", hosts("install") == 0)
        r, seen = pull()
        check("the pull fails (nothing serves the image)", r.returncode != 0, r.stdout + r.stderr)
        check(
            "first request: HEAD %s to the proxy" % MANIFEST_PATH,
            seen[:1] == [("proxy", "HEAD", MANIFEST_PATH)],
            repr(seen),
        )
        # dial_timeout is for containerd >= 2.1; 1.6 ignores the key and still uses the file.
        check("hosts install --dial-timeout exits 0", hosts("install", "--dial-timeout", "200ms") == 0)
        r, seen = pull()
        check(
            "with dial_timeout: first request still to the proxy",
            seen[:1] == [("proxy", "HEAD", MANIFEST_PATH)],
            repr(seen),
        )
        check("hosts remove exits 0", hosts("remove") == 0)
        check("remove leaves the certs dir empty", os.listdir(certs) == [], repr(os.listdir(certs)))

        # 2. A user's file with their own mirror: merged, proxy first, their mirror next.
        user_file = (
            "# team mirror\n"
            "server = 'https://%s'\n\n"
            "[host.'http://127.0.0.1:%d']\n"
            "  capabilities = ['pull', 'resolve']\n"
            "  [host.'http://127.0.0.1:%d'.header]\n"
            "    X-Team = ['a', 'b']\n" % (DOMAIN, mirror_port, mirror_port)
        )
        os.makedirs(os.path.join(certs, DOMAIN))
        hosts_toml = os.path.join(certs, DOMAIN, "hosts.toml")
        with open(hosts_toml, "w") as f:
            f.write(user_file)
        check("hosts install into a user's file exits 0", hosts("install") == 0)
        r, seen = pull()
        check(
            "merged file: the proxy first, then the user's mirror",
            seen[:2] == [("proxy", "HEAD", MANIFEST_PATH), ("mirror", "HEAD", MANIFEST_PATH)],
            repr(seen),
        )

        # 3. remove restores the user's file byte for byte, and containerd goes back to their mirror.
        check("hosts remove exits 0", hosts("remove") == 0)
        with open(hosts_toml) as f:
            check("the user's file is restored byte for byte", f.read() == user_file)
        r, seen = pull()
        check(
            "restored file: the user's mirror only",
            seen[:1] == [("mirror", "HEAD", MANIFEST_PATH)] and all(s[0] == "mirror" for s in seen),
            repr(seen),
        )
    finally:
        recorder.stop()
        if containerd is not None:
            containerd.terminate()
            try:
                containerd.wait(timeout=20)
            except subprocess.TimeoutExpired:
                containerd.kill()
                containerd.wait()
        shutil.rmtree(tmp, ignore_errors=True)

    print("%d passed, %d failed" % (passed, len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
