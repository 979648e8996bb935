#!/usr/bin/env python3
"""Proves tests/support/nghttpx.py is a faithful HTTP/2 upstream, without the proxy.

nghttpx terminating TLS (throwaway CA) in front of the token-auth docker-registry
(tests/support/token_registry.py):
  * ALPN: offered h2 and http/1.1 it picks h2; offered only http/1.1 it speaks that;
  * `nghttp -v` negotiates h2 and sees the registry's 401 with its Bearer challenge;
  * `curl --http2` gets the same 401 + WWW-Authenticate the registry gives directly;
  * a manifest GET with a realm token returns the registry's bytes over HTTP/2, with
    Docker-Content-Digest; a HEAD has its headers and no body; a ranged blob GET is 206;
  * the same token over HTTP/1.1 through nghttpx gives the same bytes;
  * routes=[("/auth", token server)] serves the realm from the same h2 host;
  * with max_concurrent_streams=1 the peer announces SETTINGS_MAX_CONCURRENT_STREAMS 1;
  * stop() ends nghttpx (and its worker): the port refuses connections.
Exits 77 naming the package when nghttpx (nghttp2-proxy) is missing.

Run: meson test -C <build> --suite integration h2_peer_fixture
 or: python3 tests/integration/h2_peer_fixture_test.py
"""

import hashlib
import os
import socket
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "support"))

import harness  # noqa: E402
import nghttpx  # noqa: E402
import oci_image  # noqa: E402
import token_registry  # noqa: E402

REPO = "team/app"
TAG = "v1"
PASSWORD = "temp:h2-fixture-pw"


class Env:
    tmp = None
    tr = None
    ng = None
    image = None


def setUpModule():
    nghttpx.require_nghttpx()
    harness.require_tools("docker-registry", "skopeo", "openssl", "curl", "nghttp")
    Env.tmp = harness.TempDir("h2-peer")
    t0 = time.monotonic()
    Env.tr = token_registry.start_token_registry(Env.tmp.join("registry"), users={"temp_user": PASSWORD})
    Env.image = oci_image.build_image(Env.tmp.join("layout"), [oci_image.LayerSpec(size=256 << 10, files=3)], tag=TAG)
    auth = Env.tr.authfile(Env.tmp.join("auth.json"))
    env = dict(os.environ, REGISTRY_AUTH_FILE=auth)
    env.setdefault("HOME", "/root")
    harness.run(["skopeo", "--insecure-policy", "copy", "--retry-times", "0", "--quiet", "--dest-tls-verify=false",
                 "--dest-authfile", auth, f"oci:{Env.image.layout}:{TAG}",
                 f"docker://{Env.tr.registry_host}/{REPO}:{TAG}"], env=env, timeout=120)
    Env.ng = nghttpx.Nghttpx(Env.tmp.join("nghttpx"), Env.tr.registry.port).start()
    print(f"token registry + nghttpx on {Env.ng.host} up in {time.monotonic() - t0:.2f}s", flush=True)


def tearDownModule():
    if Env.ng:
        Env.ng.stop()
    if Env.tr:
        Env.tr.stop()


def curl(url, *args, http="--http2", ca=None, auth=None):
    """(status line's version, status, headers [(name, value)], body bytes) of one curl request.

    `auth` (an Authorization value) reaches curl through a config on stdin, never on argv.
    """
    headers_file = Env.tmp.join(f"curl-headers-{time.monotonic_ns()}")
    argv = ["curl", "-sS", http, "--cacert", ca or Env.ng.ca, "-D", headers_file, "-o", "-", "-K", "-", *args, url]
    config = f'header = "Authorization: {auth}"\n' if auth else ""
    proc = subprocess.run(argv, input=config.encode(), capture_output=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"curl failed ({proc.returncode}): {proc.stderr.decode(errors='replace')}")
    with open(headers_file, "rb") as f:
        lines = f.read().decode("latin-1").split("\r\n")
    status_line = lines[0]
    version, status = status_line.split(" ")[0], int(status_line.split(" ")[1])
    headers = []
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers.append((name.strip().lower(), value.strip()))
    return version, status, headers, proc.stdout


def header(headers, name):
    values = [v for n, v in headers if n == name]
    return values[0] if values else None


def token():
    return Env.tr.token([f"repository:{REPO}:pull"])


class AlpnTest(unittest.TestCase):
    def test_offered_h2_and_http11_it_picks_h2(self):
        self.assertEqual(nghttpx.alpn_selected(Env.ng.port, ca_file=Env.ng.ca), "h2")

    def test_offered_only_http11_it_speaks_http11(self):
        self.assertEqual(nghttpx.alpn_selected(Env.ng.port, offer=("http/1.1",), ca_file=Env.ng.ca), "http/1.1")

    def test_nghttp_verbose_negotiates_h2_and_sees_the_challenge(self):
        proc = harness.run(["nghttp", "-v", "-n", f"{Env.ng.url}/v2/"], timeout=60, check=False)
        out = proc.stdout
        self.assertIn("The negotiated protocol: h2", out)
        self.assertIn("recv SETTINGS frame", out)
        self.assertIn(":status: 401", out)
        self.assertIn('www-authenticate: Bearer realm="', out)


class ChallengeTest(unittest.TestCase):
    def test_401_challenge_passes_through_unchanged(self):
        direct = Env.tr.registry_request(f"/v2/{REPO}/manifests/{TAG}")
        self.assertEqual(direct.status, 401)
        version, status, headers, body = curl(f"{Env.ng.url}/v2/{REPO}/manifests/{TAG}")
        self.assertEqual(version, "HTTP/2")
        self.assertEqual(status, 401)
        self.assertEqual(header(headers, "www-authenticate"), direct.header("WWW-Authenticate"))
        self.assertIn(f'scope="repository:{REPO}:pull"', header(headers, "www-authenticate"))
        self.assertEqual(body, direct.body)

    def test_base_endpoint_challenge(self):
        version, status, headers, _ = curl(f"{Env.ng.url}/v2/")
        self.assertEqual((version, status), ("HTTP/2", 401))
        self.assertTrue(header(headers, "www-authenticate").startswith('Bearer realm="'))


class ManifestTest(unittest.TestCase):
    def test_manifest_get_over_h2_returns_the_registry_answer(self):
        tok = token()
        direct = Env.tr.registry_request(f"/v2/{REPO}/manifests/{TAG}", tok,
                                         headers=[("Accept", oci_image.OCI_MANIFEST)])
        self.assertEqual(direct.status, 200)
        version, status, headers, body = curl(f"{Env.ng.url}/v2/{REPO}/manifests/{TAG}",
                                              "-H", f"Accept: {oci_image.OCI_MANIFEST}", auth=f"Bearer {tok}")
        self.assertEqual((version, status), ("HTTP/2", 200))
        self.assertEqual(body, direct.body)
        self.assertEqual("sha256:" + hashlib.sha256(body).hexdigest(), Env.image.manifest.digest)
        self.assertEqual(header(headers, "docker-content-digest"), Env.image.manifest.digest)
        self.assertEqual(header(headers, "content-type"), oci_image.OCI_MANIFEST)
        self.assertIsNone(header(headers, "via"))  # --no-via: the registry's own headers

    def test_head_has_headers_and_no_body(self):
        version, status, headers, body = curl(f"{Env.ng.url}/v2/{REPO}/manifests/{TAG}", "-I",
                                              "-H", f"Accept: {oci_image.OCI_MANIFEST}", auth=f"Bearer {token()}")
        self.assertEqual((version, status), ("HTTP/2", 200))
        self.assertEqual(header(headers, "docker-content-digest"), Env.image.manifest.digest)

    def test_ranged_blob_get_is_206(self):
        layer = Env.image.layers[0]
        version, status, headers, body = curl(f"{Env.ng.url}/v2/{REPO}/blobs/{layer.digest}",
                                              "-H", "Range: bytes=10-1033", auth=f"Bearer {token()}")
        self.assertEqual((version, status), ("HTTP/2", 206))
        self.assertEqual(len(body), 1024)
        self.assertTrue(header(headers, "content-range").startswith("bytes 10-1033/"))

    def test_whole_blob_over_h2_matches_its_digest(self):
        layer = Env.image.layers[0]
        _, status, _, body = curl(f"{Env.ng.url}/v2/{REPO}/blobs/{layer.digest}",
                                  auth=f"Bearer {token()}")
        self.assertEqual(status, 200)
        self.assertEqual("sha256:" + hashlib.sha256(body).hexdigest(), layer.digest)

    def test_same_answer_over_http11_through_nghttpx(self):
        version, status, _, body = curl(f"{Env.ng.url}/v2/{REPO}/manifests/{TAG}",
                                        "-H", f"Accept: {oci_image.OCI_MANIFEST}", http="--http1.1",
                                        auth=f"Bearer {token()}")
        self.assertEqual((version, status), ("HTTP/1.1", 200))
        self.assertEqual("sha256:" + hashlib.sha256(body).hexdigest(), Env.image.manifest.digest)

    def test_access_log_shows_http2_requests(self):
        curl(f"{Env.ng.url}/v2/")
        self.assertTrue(any('"GET /v2/ HTTP/2"' in line for line in Env.ng.access_log()))


class RealmRouteTest(unittest.TestCase):
    def test_realm_routed_through_the_same_h2_host(self):
        ng = nghttpx.Nghttpx(Env.tmp.join("nghttpx-realm"), Env.tr.registry.port, tls=Env.ng.tls, name="nghttpx-realm",
                             routes=[(Env.tr.realm_path, Env.tr.token_port)]).start()
        try:
            import urllib.parse

            query = urllib.parse.urlencode({"service": Env.tr.service, "scope": f"repository:{REPO}:pull"})
            version, status, _, body = curl(f"{ng.url}{Env.tr.realm_path}?{query}", auth=harness.basic_auth("temp_user", PASSWORD))
            self.assertEqual((version, status), ("HTTP/2", 200))
            self.assertIn(b'"token"', body)
            # ... and the registry is still behind "/" on the same connection's host.
            _, status, _, _ = curl(f"{ng.url}/v2/")
            self.assertEqual(status, 401)
        finally:
            ng.stop()


class KnobsTest(unittest.TestCase):
    def test_max_concurrent_streams_is_announced_and_stop_frees_the_port(self):
        ng = nghttpx.Nghttpx(Env.tmp.join("nghttpx-mcs"), Env.tr.registry.port, tls=Env.ng.tls,
                             name="nghttpx-mcs", max_concurrent_streams=1).start()
        try:
            proc = harness.run(["nghttp", "-v", "-n", f"{ng.url}/v2/"], timeout=60, check=False)
            self.assertIn("[SETTINGS_MAX_CONCURRENT_STREAMS(0x03):1]", proc.stdout)
        finally:
            ng.stop()
        self.assertFalse(ng.child.alive())
        self.assertTrue(ng.worker_pids)
        self.assertFalse(any(nghttpx._alive(p) for p in ng.worker_pids))
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", ng.port), timeout=5).close()


if __name__ == "__main__":
    sys.exit(harness.run_tests())
