"""`serve` on a node: --certs-dir keeps hosts.toml in step, systemd notifications.

  python3 tests/integration/serve_node_test.py --proxy BUILD/proxy/acr-credential-proxy

--certs-dir: at start serve writes <dir>/<domain>/hosts.toml for every domain
it serves (proxy first), merging a user's file (original backed up); a reload
that drops a domain restores that user's original byte for byte and one that
adds a domain writes it; files stay after SIGTERM; domains an ACR instance only
discovers (ListInstanceEndpoint on the fake ACR OpenAPI) get their files too,
and a managed file from an earlier run for a domain no longer served is undone.

systemd (sd_notify, Type=notify): with NOTIFY_SOCKET set (a path or an
abstract '@' name) serve sends READY=1 once it accepts connections, WATCHDOG=1
every WATCHDOG_USEC/2 from its event loop (none when WATCHDOG_PID names
another process), and STOPPING=1 on SIGTERM, then exits 0.
"""

import os
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import harness  # noqa: E402
import proxy as proxy_mod  # noqa: E402
from acr_like import FakeAlibaba  # noqa: E402

USER_TOML = b"# the node's own mirror, hand-written\nserver = 'https://mirror-b.example'\n\n[host.'https://cache.internal:5000']\n  capabilities = ['pull']\n"


class World:
    binary = None
    tmp = None


def setUpModule():
    World.binary = proxy_mod.find_binary()
    World.tmp = harness.TempDir("serve-node")


def anonymous(host):
    return {"host": host, "auth": {"type": "anonymous"}}


def read(path):
    with open(path, "rb") as f:
        return f.read()


def start(name, cfg, extra_args=(), env=None):
    p = proxy_mod.Proxy(World.binary, World.tmp.join(name), cfg, env=env, name=name)
    p.extra_args = list(extra_args)
    return p.start()


class CertsDir(harness.TestCaseBase):
    def test_files_follow_the_config_and_stay_after_exit(self):
        c = harness.Checks(self)
        certs = World.tmp.join("certs-static")
        user_dir = os.path.join(certs, "registry-b.example")
        os.makedirs(user_dir)
        with open(os.path.join(user_dir, "hosts.toml"), "wb") as f:
            f.write(USER_TOML)
        p = start("static", {"registries": [anonymous("registry-a.example"), anonymous("registry-b.example")]},
                  ["--certs-dir", certs])
        try:
            a = os.path.join(certs, "registry-a.example", "hosts.toml")
            b = os.path.join(user_dir, "hosts.toml")
            mirror = f'[host."http://127.0.0.1:{p.port}"]'
            harness.wait_until(lambda: os.path.exists(a), 10, "hosts.toml for registry-a")
            text_a = read(a).decode()
            c.check(mirror in text_a, f"registry-a names the proxy first: {text_a!r}")
            c.check('server = "https://registry-a.example"' in text_a, "registry-a's server line")
            c.check('capabilities = ["pull", "resolve"]' in text_a, "pull + resolve")
            text_b = read(b).decode()
            c.check(text_b.find(mirror) >= 0 and text_b.find(mirror) < text_b.find("cache.internal"),
                    f"registry-b: the proxy before the user's own host: {text_b!r}")
            c.eq(read(os.path.join(user_dir, "hosts.toml.acr-credential-proxy.orig")), USER_TOML,
                 "the user's original is backed up byte for byte")

            # Reload: registry-b leaves, registry-c arrives.
            p.config["registries"] = [anonymous("registry-a.example"), anonymous("registry-c.example")]
            p.write_config()
            cfile = os.path.join(certs, "registry-c.example", "hosts.toml")
            backup = os.path.join(user_dir, "hosts.toml.acr-credential-proxy.orig")
            # Restoring is two steps (the original back, then the backup gone): wait for both.
            harness.wait_until(lambda: os.path.exists(cfile) and read(b) == USER_TOML and not os.path.exists(backup),
                               15, "the reload to write registry-c, restore registry-b and drop its backup")
            c.eq(read(a).decode(), text_a, "registry-a untouched by the reload")
            mtime = os.stat(a).st_mtime_ns
            os.kill(p.child.pid, signal.SIGHUP)  # an unchanged config: no rewrite
            harness.wait_until(lambda: p.log_text().count("configuration reloaded") >= 2, 15, "the second reload")
            c.eq(os.stat(a).st_mtime_ns, mtime, "an up-to-date file is not rewritten")
        finally:
            c.eq(p.stop(), 0, "exit status after SIGTERM")
        c.check(os.path.exists(os.path.join(certs, "registry-a.example", "hosts.toml")),
                "files stay after the proxy exits (containerd falls back to the registry itself)")
        log = p.log_text()
        c.check("create " + os.path.join(certs, "registry-c.example", "hosts.toml") in log,
                "the log names each file written")
        c.done()

    def test_discovered_acr_domains_get_files(self):
        c = harness.Checks(self)
        certs = World.tmp.join("certs-acr")
        ak_id, ak_secret = "LTAI" + harness.secrets_token()[:20], harness.secrets_token()
        instance, region = "cri-acpnode00000001", "cn-hangzhou"
        domains = [f"acp-node-{k}.cn-hangzhou.cr.aliyuncs.com" for k in ("internet", "vpc")]
        fake = FakeAlibaba(World.tmp.join("fake-alibaba.log"), {
            "region": region, "static_keys": {ak_id: ak_secret}, "imds": {"role": None},
            "acr": {"instances": {instance: {"endpoints": [
                {"EndpointType": "internet", "Enable": True, "Domains": [{"Domain": domains[0], "Type": "SYSTEM"}]},
                {"EndpointType": "vpc", "Enable": True, "Domains": [{"Domain": domains[1], "Type": "SYSTEM"}]},
            ]}}},
        })
        # A file an earlier run wrote for a domain this config no longer serves.
        old_cfg = World.tmp.join("old.yaml")
        with open(old_cfg, "w") as f:
            f.write('registries:\n  - host: "old-registry.example"\n    auth: {type: anonymous}\n')
        harness.run([World.binary, "hosts", "install", "--config", old_cfg, "--certs-dir", certs])
        old = os.path.join(certs, "old-registry.example", "hosts.toml")
        c.check(os.path.exists(old), "the earlier run's file is there to begin with")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ALIBABA_CLOUD_", "ALICLOUD_"))}
        env.update({"ALIBABA_CLOUD_ACCESS_KEY_ID": ak_id, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": ak_secret,
                    "ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true"})
        cfg = {
            "alibaba": {"regionId": region, "imdsEndpoint": fake.url("imds"), "stsEndpoint": fake.url("sts"),
                        "acrEndpoint": fake.url("acr")},
            "acrInstances": [{"instanceId": instance, "regionId": region}],  # no domains: discovered
        }
        p = None
        try:
            p = start("acr", cfg, ["--certs-dir", certs, "--dial-timeout", "300ms"], env=env)
            files = [os.path.join(certs, d, "hosts.toml") for d in domains]
            harness.wait_until(lambda: all(os.path.exists(f) for f in files), 20, "files for the discovered domains")
            for d, f in zip(domains, files):
                text = read(f).decode()
                c.check(f'[host."http://127.0.0.1:{p.port}"]' in text, f"{d}: proxy first")
                c.check('dial_timeout = "300ms"' in text, f"{d}: --dial-timeout written")
            # The file goes, then the directory install created for it (two steps: wait for both).
            harness.wait_until(lambda: not os.path.exists(os.path.dirname(old)), 10,
                               "the earlier run's file and the directory install created for it to go")
        finally:
            if p:
                c.eq(p.stop(), 0, "exit status")
            fake.stop()
        c.check("waiting for the domains of ACR instance" in p.log_text() if p else False,
                "nothing was written before discovery finished (logged)")
        c.done()


class Hardening(harness.TestCaseBase):
    def test_the_process_is_not_dumpable(self):
        """Run as `nobody`, a dumpable process owns its /proc/PID files; a
        non-dumpable one's belong to root, so no other user (nor a core dump)
        gets at the credentials in its memory."""
        harness.require_tools("setpriv")
        d = World.tmp.join("dumpable")
        os.makedirs(d)
        os.chmod(World.tmp.path, 0o755)
        os.chmod(d, 0o777)
        p = proxy_mod.Proxy(World.binary, d, {"registries": [anonymous("registry-d.example")]}, name="dumpable")
        p.wrapper = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
        p.start()
        try:
            self.assertEqual(os.stat(f"/proc/{p.child.pid}").st_uid, 65534, "it runs as nobody")
            self.assertEqual(os.stat(f"/proc/{p.child.pid}/environ").st_uid, 0,
                             "/proc/PID/environ owned by root: PR_SET_DUMPABLE is 0")
        finally:
            self.assertEqual(p.stop(), 0)


class Notify(harness.TestCaseBase):
    def _socket(self, name, abstract=False):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            address = f"@acp-test-{os.getpid()}-{name}"
            s.bind("\0" + address[1:])
        else:
            address = World.tmp.join(f"{name}.notify")
            s.bind(address)
        self.addCleanup(s.close)
        return s, address

    @staticmethod
    def _messages(s, until, timeout):
        """Datagrams until `until(list)` holds or the timeout; [(monotonic, text)]."""
        got, deadline = [], time.monotonic() + timeout
        while time.monotonic() < deadline and not until(got):
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                got.append((time.monotonic(), s.recv(4096).decode()))
            except socket.timeout:
                break
        return got

    def _run(self, name, abstract, watchdog_env):
        c = harness.Checks(self)
        s, address = self._socket(name, abstract)
        env = {"NOTIFY_SOCKET": address, **watchdog_env}
        p = start(name, {"registries": [anonymous("registry-n.example")]}, env=env)
        first = self._messages(s, lambda g: g, 10)
        c.check(first and "READY=1" in first[0][1].split("\n"), f"first message is READY=1: {first!r}")
        with socket.create_connection(("127.0.0.1", p.port), timeout=5):
            pass  # READY came after the data listener was accepting (start() waited for /healthz)
        return c, s, p

    def test_ready_watchdog_and_stopping_on_a_path_socket(self):
        c, s, p = self._run("notify-path", False, {"WATCHDOG_USEC": "200000"})
        self._messages(s, lambda g: False, 0.15)  # drop pings queued while start() polled /healthz
        pings = self._messages(s, lambda g: False, 1.0)
        texts = [m for _, m in pings]
        c.check(all(m == "WATCHDOG=1" for m in texts), f"only WATCHDOG=1 while serving: {texts}")
        # 100 ms apart: about 10 in a second; bounds wide enough for a loaded machine, tight enough
        # to catch a ping per loop iteration or none at all.
        c.check(4 <= len(texts) <= 20, f"WATCHDOG=1 about every 100 ms: {len(texts)} in 1 s")
        os.kill(p.child.pid, signal.SIGTERM)
        rest = self._messages(s, lambda g: any("STOPPING=1" in m for _, m in g), 10)
        c.check(any("STOPPING=1" in m.split("\n") for _, m in rest), "STOPPING=1 on SIGTERM")
        # Let it finish on that one SIGTERM (slow under sanitizers): stop() would send a second.
        harness.wait_until(lambda: not p.child.alive(), 30, "exit after SIGTERM")
        c.eq(p.stop(), 0, "exit status")
        c.done()

    def test_abstract_socket_and_a_watchdog_meant_for_another_process(self):
        c, s, p = self._run("notify-abstract", True, {"WATCHDOG_USEC": "100000", "WATCHDOG_PID": "1"})
        later = self._messages(s, lambda g: False, 0.6)
        c.eq([m for _, m in later], [], "no WATCHDOG=1 when WATCHDOG_PID is another process")
        c.eq(p.stop(), 0, "exit status")
        c.done()

    def test_no_notify_socket_no_messages_and_no_errors(self):
        p = start("notify-none", {"registries": [anonymous("registry-n.example")]})
        self.assertEqual(p.stop(), 0)
        self.assertNotIn("systemd", p.log_text())


if __name__ == "__main__":
    sys.exit(harness.run_tests())
