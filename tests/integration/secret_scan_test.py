#!/usr/bin/env python3
"""The end-of-run secret scan (tests/support/secret_log.py) can fail, and sees
what it should.

Every integration/e2e program ends with harness.secret_scan(): no secret the
run registered may appear in a proxy log (debug level by default), /metrics,
a non-2xx answer body or a proxy command's output. This program proves the
scan is not a test that cannot fail:

  - planted secrets are found raw, percent-encoded, JSON-escaped and as the
    Basic credential built from them, named by source, line and kind, and the
    finding never holds the value;
  - a secret registered by another process (as the fakes do) is loaded;
  - a real proxy run at debug level, with a static Basic password, pulls a
    manifest: its log, /metrics and a 404 body reach the scan, hold the
    username (so the log really is the debug log), and none holds the password.

Usage: secret_scan_test.py --proxy build/proxy/acr-credential-proxy
"""

import base64
import io
import json
import os
import subprocess
import sys
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))

import harness  # noqa: E402
import proxy as proxy_mod  # noqa: E402
import registry as registry_mod  # noqa: E402
import secret_log  # noqa: E402


class ScanFindsPlantedSecrets(harness.TestCaseBase):
    def test_each_form_of_a_planted_secret_is_found_and_never_printed(self):
        value = "s3cr/t+" + harness.secrets_token() + "="
        basic = base64.b64encode(f"robot:{value}".encode()).decode()
        cases = {
            "raw": f"line one\nrefresh failed: {value}\n",
            "percent-encoded": "GET /token?password=" + urllib.parse.quote(value, safe="") + "\n",
            "form-encoded": "body: password=" + urllib.parse.quote_plus(value) + "\n",
            "json-escaped": json.dumps({"p": value}).replace("/", "\\/"),
            "basic": f"Authorization: Basic {basic}\n",
        }
        secrets = [("password", value), ("password-basic", basic)]
        checks = harness.Checks(self)
        for name, text in cases.items():
            found = secret_log.scan([(name, text)], secrets)
            checks.eq(len(found), 1, f"{name}: findings")
            checks.check(all(value not in f and basic not in f for f in found), f"{name}: finding holds the value")
        found = secret_log.scan([("two", "a\nb\n" + value)], secrets)
        checks.eq(found, [f"two line 3: a password ({len(value)} chars)"], "finding names source, line and kind")
        checks.eq(secret_log.scan([("clean", "nothing here " * 100)], secrets), [], "clean text")
        checks.done()

    def test_a_secret_registered_by_another_process_is_loaded(self):
        value = "child-" + harness.secrets_token()
        code = ("import sys; sys.path.insert(0, sys.argv[1]); import secret_log; "
                "secret_log.register('sts-token', sys.argv[2])")
        subprocess.run([sys.executable, "-c", code, os.path.dirname(secret_log.__file__), value], check=True,
                       env=dict(os.environ))
        self.assertIn(("sts-token", value), secret_log.load())

    def test_scan_of_the_whole_run_fails_on_a_planted_leak(self):
        value = "planted-" + harness.secrets_token()
        saved = list(harness._scan_sources)
        try:
            harness.scan_source("planted log", "debug: header x-token: " + value)
            out = io.StringIO()
            self.assertFalse(harness.secret_scan(out))
            self.assertIn("planted log line 1: a password", out.getvalue())
            self.assertNotIn(value, out.getvalue())
        finally:
            harness._scan_sources[:] = saved
        self.assertTrue(harness.secret_scan(io.StringIO()))


class RealProxyOutputsReachTheScan(harness.TestCaseBase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = harness.TempDir("acp-secret-scan-")
        cls.reg = registry_mod.Registry(cls.tmp.join("reg"), "registry-scan", users=True)
        cls.reg.start()
        os.makedirs(cls.tmp.join("p"))
        entry, overrides, env = proxy_mod.registry_entry(cls.reg, cls.tmp.join("p"))
        cls.proxy = proxy_mod.Proxy(proxy_mod.find_binary(), cls.tmp.join("p"),
                                    {"registries": [entry], "endpointOverrides": overrides}, env=env)
        cls.proxy.start()

    @classmethod
    def tearDownClass(cls):
        cls.proxy.stop(check=False)
        cls.reg.stop()
        cls.tmp.cleanup()

    def test_log_metrics_and_error_bodies_are_scanned_and_clean(self):
        user, password = self.reg.user()
        ns = urllib.parse.quote(self.reg.host, safe="")
        # The registry answers 404 (unknown repository) with the injected Basic credential: a
        # non-2xx answer whose body joins the scan, and a debug log of the whole exchange.
        r = self.proxy.request("GET", f"/v2/team/absent/manifests/v1?ns={ns}")
        self.assertEqual(r.status, 404, r)
        log_before_stop = self.proxy.log_text()
        self.proxy.stop()
        names = [name for name, _ in harness._scan_sources]
        self.assertTrue(any(n.startswith("proxy log") for n in names), names)
        self.assertTrue(any(n == "proxy /metrics" for n in names), names)
        self.assertTrue(any(n.startswith("proxy answer 404") for n in names), names)
        log = dict(harness._scan_sources)[next(n for n in names if n.startswith("proxy log"))]
        self.assertIn("logLevel=debug", log_before_stop, "the proxy did not run at debug level")
        self.assertIn(self.reg.host, log)
        self.assertNotIn(password, log)
        self.assertIn(("registry-password", password), secret_log.load())
        self.assertTrue(harness.secret_scan(io.StringIO()))
        self.__class__.proxy.start()  # tearDownClass stops it again


if __name__ == "__main__":
    sys.exit(harness.run_tests())
