"""The systemd unit for bare nodes: valid, sandboxed, and true to the binary.

  python3 tests/systemd/unit_test.py --proxy BUILD/proxy/acr-credential-proxy --unit BUILD/systemd/acr-credential-proxy.service

- `systemd-analyze verify` accepts the installed unit (binary path rewritten
  to the built one, since verify checks that ExecStart= is executable), and
  prints nothing about it: verify exits 0 even after "Failed to parse ...,
  ignoring", so any line naming the unit fails the test;
- `systemd-analyze security --offline=true` rates it at 2.5 or below;
- the settings issue 6 names are there (Type=notify, WatchdogSec, Restart=always,
  a privileged ExecStartPre running `hosts install`, DynamicUser, no capabilities,
  ProtectSystem=strict, NoNewPrivileges, PrivateTmp, RestrictAddressFamilies);
- the socket unit (socket activation) verifies together with the service and
  listens where the proxy does by default (listen 127.0.0.1:5005, adminListen
  127.0.0.1:5006, as `check-config` prints them);
- the ExecStartPre command line works: run as written, with the config and
  certs dir moved into a temp dir, it writes hosts.toml; the ExecStart line's
  options are accepted (`check-config` with the same options).
"""

import os
import re
import shlex
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import harness  # noqa: E402
import proxy as proxy_mod  # noqa: E402

MAX_EXPOSURE = 2.5
INSTALLED_BINARY = re.compile(r"/[^\s]*/bin/acr-credential-proxy")


def arg(name):
    for i, a in enumerate(sys.argv):
        if a == name and i + 1 < len(sys.argv):
            return sys.argv[i + 1]
    return None


def parse_unit(text):
    """{section: [(key, value), ...]} keeping repeated keys and their order."""
    sections, current = {}, None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        key, _, value = line.partition("=")
        current.append((key.strip(), value.strip()))
    return sections


class Unit(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.require_tools("systemd-analyze")
        cls.binary = proxy_mod.find_binary()
        cls.unit_path = arg("--unit")
        if not cls.unit_path or not os.path.exists(cls.unit_path):
            raise SystemExit(f"--unit {cls.unit_path!r}: no such file (build the project first)")
        with open(cls.unit_path) as f:
            cls.text = f.read()
        cls.unit = parse_unit(cls.text)
        cls.service = cls.unit.get("Service", [])
        cls.tmp = harness.TempDir("systemd-unit")
        # The same unit, pointing at the built binary (verify insists that it exists).
        cls.local_unit = cls.tmp.join("acr-credential-proxy.service")
        with open(cls.local_unit, "w") as f:
            f.write(INSTALLED_BINARY.sub(cls.binary, cls.text))

    def values(self, key):
        return [v for k, v in self.service if k == key]

    def value(self, key):
        vs = self.values(key)
        self.assertTrue(vs, f"[Service] has no {key}=")
        return vs[-1]

    def test_systemd_analyze_verify_accepts_it_without_a_word(self):
        proc = subprocess.run(["systemd-analyze", "verify", "--man=no", self.local_unit],
                              capture_output=True, text=True, timeout=60)
        about_us = [l for l in (proc.stdout + proc.stderr).splitlines() if "acr-credential-proxy" in l]
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        self.assertEqual(about_us, [], "systemd-analyze verify complained")

    def test_security_exposure_at_most_2_5(self):
        proc = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager", self.local_unit],
                              capture_output=True, text=True, timeout=60)
        m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", proc.stdout)
        self.assertIsNotNone(m, f"no exposure line in:\n{proc.stdout}\n{proc.stderr}")
        exposure = float(m.group(1))
        print(f"systemd-analyze security --offline=true: exposure {exposure}", flush=True)
        self.assertLessEqual(exposure, MAX_EXPOSURE, proc.stdout)

    def test_socket_unit_verifies_and_matches_the_default_listeners(self):
        socket_unit = os.path.join(os.path.dirname(self.unit_path), "acr-credential-proxy.socket")
        self.assertTrue(os.path.exists(socket_unit), f"{socket_unit} is built beside the service")
        local_socket = self.tmp.join("acr-credential-proxy.socket")
        with open(socket_unit) as src, open(local_socket, "w") as dst:
            text = src.read()
            dst.write(text)
        proc = subprocess.run(["systemd-analyze", "verify", "--man=no", local_socket, self.local_unit],
                              capture_output=True, text=True, timeout=60)
        about_us = [l for l in (proc.stdout + proc.stderr).splitlines() if "acr-credential-proxy" in l]
        self.assertEqual((proc.returncode, about_us), (0, []), proc.stdout + proc.stderr)
        listens = [v for k, v in parse_unit(text)["Socket"] if k == "ListenStream"]
        config = self.tmp.join("defaults.yaml")
        with open(config, "w") as f:
            f.write("registries: []\n")
        shown = subprocess.run([self.binary, "check-config", "--config", config], capture_output=True, text=True,
                               timeout=60, check=True).stdout
        defaults = re.findall(r"^(?:listen|adminListen):\s*\"?([0-9.:\[\]]+)\"?\s*$", shown, re.M)
        self.assertEqual(len(defaults), 2, f"listen and adminListen in check-config output:\n{shown}")
        self.assertEqual(listens, defaults, "ListenStream= lines are the default listen and adminListen")

    def test_the_settings_the_issue_names(self):
        self.assertEqual(self.value("Type"), "notify")
        self.assertRegex(self.value("WatchdogSec"), r"^[1-9][0-9]*s?$")
        self.assertEqual(self.value("Restart"), "always")
        self.assertEqual(self.value("DynamicUser"), "yes")
        self.assertEqual(self.value("CapabilityBoundingSet"), "")
        self.assertEqual(self.value("AmbientCapabilities"), "")
        self.assertEqual(self.value("NoNewPrivileges"), "yes")
        self.assertEqual(self.value("ProtectSystem"), "strict")
        self.assertEqual(self.value("PrivateTmp"), "yes")
        self.assertEqual(set(self.value("RestrictAddressFamilies").split()), {"AF_INET", "AF_INET6", "AF_UNIX"})
        self.assertNotIn("User", dict(self.service), "DynamicUser picks the user")
        pre = self.value("ExecStartPre")
        self.assertTrue(pre.startswith("+"), "hosts install is the privileged step ('+')")
        self.assertEqual(shlex.split(pre[1:])[1:3], ["hosts", "install"])
        self.assertEqual(shlex.split(self.value("ExecStart"))[1], "serve")

    def test_exec_lines_work_with_the_built_binary(self):
        config = self.tmp.join("config.yaml")
        with open(config, "w") as f:
            f.write('registries:\n  - host: "registry.unit-test.example"\n    auth: {type: anonymous}\n')
        certs = self.tmp.join("certs.d")

        def local(line):
            words = shlex.split(line.lstrip("+"))
            words[0] = self.binary
            out = []
            for w in words:
                out.append(config if w.endswith("/config.yaml") else certs if w.endswith("/certs.d") else w)
            return out

        pre = local(self.value("ExecStartPre"))
        self.assertIn(certs, pre, "ExecStartPre names a certs dir")
        proc = subprocess.run(pre, capture_output=True, text=True, timeout=60)
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        with open(os.path.join(certs, "registry.unit-test.example", "hosts.toml")) as f:
            self.assertIn('capabilities = ["pull", "resolve"]', f.read())
        start = local(self.value("ExecStart"))
        self.assertEqual(start[1], "serve")
        proc = subprocess.run([self.binary, "check-config", *start[2:]], capture_output=True, text=True, timeout=60)
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0]], verbosity=2)
