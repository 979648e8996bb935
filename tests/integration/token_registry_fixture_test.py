#!/usr/bin/env python3
"""Proves tests/support/token_registry.py is a faithful peer, without the proxy.

A real docker-registry 2.8 with `auth: token` and our ACR-like realm:
  * unauthenticated requests get 401 + `WWW-Authenticate: Bearer realm,service[,scope]`;
  * the realm refuses missing/wrong credentials (401 JSON) and answers the
    right ones with {token, access_token, expires_in, issued_at};
  * skopeo pushes an image by running the token flow itself (credentials in
    a 0600 authfile), then plain HTTP + Bearer pulls the manifest and a blob;
  * the registry itself refuses a token for another repository, a pull-only
    token for a push, a token signed by an untrusted key and an expired one;
  * knobs (response fields, lifetime, password rotation, allowed repositories,
    OAuth2 POST) and faults (status, garbage, dropped connection, delay)
    behave as documented, and /_stats counts them;
  * the same over https with an RS256 key named by `kid`.

Run: meson test -C <build> --suite integration token_registry_fixture
 or: python3 tests/integration/token_registry_fixture_test.py
"""

import concurrent.futures
import hashlib
import json
import os
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "support"))

import harness  # noqa: E402
import oci_image  # noqa: E402
import token_registry  # noqa: E402

REPO = "team/app"
OTHER = "team/other"
TAG = "v1"
PASSWORD = "temp:pa55-with-colon"  # ACR temporary passwords may contain ':'

_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


def bearer_params(header):
    """Parameters of a single `Bearer k="v",...` challenge (the registry's own format)."""
    assert header and header.startswith("Bearer "), header
    return dict(_CHALLENGE_PARAM.findall(header[len("Bearer "):]))


def raw_realm_get(tr, scope):
    """Everything the realm sends back to one plain GET, until it closes (no retry)."""
    import base64
    import socket
    import urllib.parse

    query = urllib.parse.urlencode({"service": tr.service, "scope": scope})
    creds = base64.b64encode(f"{tr.user()[0]}:{tr.user()[1]}".encode()).decode()
    with socket.create_connection(("127.0.0.1", tr.token_port), timeout=10) as s:
        s.sendall(f"GET {tr.realm_path}?{query} HTTP/1.1\r\nHost: {tr.realm_host}\r\n"
                  f"Authorization: Basic {creds}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data
            data += chunk


def error_codes(resp):
    return [e["code"] for e in json.loads(resp.body)["errors"]]


class Env:
    tmp = None
    plain = None  # http, ES256, x5c
    image = None


def setUpModule():
    harness.require_tools("docker-registry", "skopeo", "openssl")
    Env.tmp = harness.TempDir("token-registry")
    started = time.monotonic()
    Env.plain = token_registry.start_token_registry(Env.tmp.join("plain"), users={"temp_user": PASSWORD, "bob": "bob-pw"})
    print(f"token registry (http, ES256, x5c) up in {time.monotonic() - started:.2f}s", flush=True)
    Env.image = oci_image.build_image(Env.tmp.join("layout"), [oci_image.LayerSpec(size=64 << 10, files=3)], tag=TAG)


def tearDownModule():
    if Env.plain:
        Env.plain.stop()


def skopeo_push(tr, authfile, repo=REPO, check=True):
    argv = ["skopeo", "--insecure-policy", "copy", "--retry-times", "0", "--quiet"]
    argv += ["--dest-cert-dir", tr.ca_dir] if tr.tls else ["--dest-tls-verify=false"]
    argv += ["--dest-authfile", authfile, f"oci:{Env.image.layout}:{TAG}", f"docker://{tr.registry_host}/{repo}:{TAG}"]
    env = dict(os.environ, REGISTRY_AUTH_FILE=authfile)
    env.setdefault("HOME", "/root")
    return harness.run(argv, env=env, timeout=120, check=check)


class Base(unittest.TestCase):
    tr = None

    def setUp(self):
        self.tr = Env.plain
        # Every test starts from the defaults, whatever the previous one changed.
        self.tr.clear_faults()
        self.tr.configure(**token_registry._KNOBS)
        self.tr.set_password("temp_user", PASSWORD)
        self.tr.reset_stats()


class ChallengeTest(Base):
    def test_unauthenticated_base_gets_bearer_challenge_with_realm_and_service(self):
        resp = self.tr.registry_request("/v2/")
        self.assertEqual(resp.status, 401)
        p = bearer_params(resp.header("WWW-Authenticate"))
        # /v2/ asks for no resource, so distribution sends no scope there.
        self.assertEqual(p, {"realm": self.tr.realm, "service": self.tr.service})

    def test_unauthenticated_manifest_and_blob_get_challenge_with_pull_scope(self):
        for method, path in [("GET", f"/v2/{REPO}/manifests/{TAG}"), ("HEAD", f"/v2/{REPO}/manifests/{TAG}"),
                             ("GET", f"/v2/{REPO}/blobs/{Env.image.config.digest}")]:
            with self.subTest(method=method, path=path):
                resp = self.tr.registry_request(path, method=method)
                self.assertEqual(resp.status, 401)
                p = bearer_params(resp.header("WWW-Authenticate"))
                self.assertEqual(p["realm"], self.tr.realm)
                self.assertEqual(p["service"], self.tr.service)
                self.assertEqual(p["scope"], f"repository:{REPO}:pull")
                if method == "GET":
                    self.assertEqual(error_codes(resp), ["UNAUTHORIZED"])


class RealmTest(Base):
    def test_missing_credentials_get_401_json(self):
        resp = self.tr.fetch_token([f"repository:{REPO}:pull"], auth=False)
        self.assertEqual(resp.status, 401)
        self.assertEqual(error_codes(resp), ["UNAUTHORIZED"])
        self.assertTrue(resp.header("WWW-Authenticate").startswith("Basic "))

    def test_wrong_password_and_unknown_user_get_401_json(self):
        for user, pw in [("temp_user", "wrong"), ("temp_user", PASSWORD.split(":")[0]), ("nobody", PASSWORD)]:
            with self.subTest(user=user):
                resp = self.tr.fetch_token([f"repository:{REPO}:pull"], user=user, password=pw)
                self.assertEqual(resp.status, 401)
                self.assertEqual(error_codes(resp), ["UNAUTHORIZED"])
                self.assertNotIn(b"token", resp.body)
        self.assertEqual(self.tr.stats()["tokens_issued"], 0)

    def test_right_credentials_get_token_access_token_expires_in_issued_at(self):
        scope = f"repository:{REPO}:pull"
        resp = self.tr.fetch_token([scope])
        self.assertEqual(resp.status, 200)
        self.assertEqual(resp.header("Content-Type"), "application/json")
        body = json.loads(resp.body)
        self.assertEqual(set(body), {"token", "access_token", "expires_in", "issued_at"})
        self.assertEqual(body["token"], body["access_token"])
        self.assertEqual(body["expires_in"], 300)
        self.assertRegex(body["issued_at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
        header, claims = token_registry.decode_jwt(body["token"])
        self.assertEqual(header["alg"], "ES256")
        with open(os.path.join(self.tr.dir, "token-signer.crt")) as f:
            bundle_der = "".join(line for line in f.read().splitlines() if "CERTIFICATE" not in line)
        self.assertEqual(header["x5c"], [bundle_der])
        self.assertEqual(claims["iss"], self.tr.issuer)
        self.assertEqual(claims["sub"], "temp_user")
        self.assertEqual(claims["aud"], self.tr.service)
        # exp is backdated by the registry's 60 s leeway: the registry's deadline is iat + lifetime.
        self.assertIn(claims["exp"] + token_registry.REGISTRY_LEEWAY - claims["iat"], (300, 301))
        self.assertEqual(claims["access"], [{"type": "repository", "name": REPO, "actions": ["pull"]}])
        st = self.tr.stats()
        self.assertEqual(st["by_scope"], {scope: 1})
        self.assertEqual(st["tokens_by_scope"], {scope: 1})
        self.assertEqual(st["by_status"], {"200": 1})
        self.assertNotIn(PASSWORD, json.dumps(st))
        self.assertNotIn(body["token"], json.dumps(st))

    def test_several_scopes_in_one_request_are_granted_together(self):
        scopes = [f"repository:{REPO}:pull", f"repository:{OTHER}:pull,push"]
        tok = self.tr.token(scopes)
        _, claims = token_registry.decode_jwt(tok)
        self.assertEqual(claims["access"], [{"type": "repository", "name": REPO, "actions": ["pull"]},
                                            {"type": "repository", "name": OTHER, "actions": ["pull", "push"]}])
        self.assertEqual(self.tr.stats()["by_scope"], {scopes[0]: 1, scopes[1]: 1})

    def test_repository_the_user_may_not_access_is_left_out_of_the_token(self):
        self.tr.configure(allowed={"temp_user": {"team/*": ["pull"]}, "bob": {"bob/*": ["pull", "push"]}})
        tok = self.tr.token([f"repository:{REPO}:pull,push", "repository:bob/x:pull"])
        _, claims = token_registry.decode_jwt(tok)
        self.assertEqual(claims["access"], [{"type": "repository", "name": REPO, "actions": ["pull"]}])

    def test_wrong_service_gets_400(self):
        resp = self.tr.fetch_token([f"repository:{REPO}:pull"], service="registry.aliyuncs.com:cn-other:1")
        self.assertEqual(resp.status, 400)

    def test_password_rotation_takes_effect_at_once(self):
        scope = f"repository:{REPO}:pull"
        self.assertEqual(self.tr.fetch_token([scope]).status, 200)
        self.tr.set_password("temp_user", "rotated:pw")
        self.assertEqual(self.tr.fetch_token([scope], password=PASSWORD).status, 401)
        tok = self.tr.token([scope])
        self.assertEqual(self.tr.registry_request("/v2/", tok).status, 200)

    def test_response_shape_knobs(self):
        scope = [f"repository:{REPO}:pull"]
        cases = [
            (dict(fields="token"), {"token", "expires_in", "issued_at"}),
            (dict(fields="access_token"), {"access_token", "expires_in", "issued_at"}),
            (dict(send_expires_in=False), {"token", "access_token", "issued_at"}),
            (dict(fields="token", send_expires_in=False, send_issued_at=False), {"token"}),
        ]
        for knobs, keys in cases:
            with self.subTest(**knobs):
                self.tr.configure(**token_registry._KNOBS)
                self.tr.configure(**knobs)
                self.assertEqual(set(json.loads(self.tr.fetch_token(scope).body)), keys)
        self.tr.configure(**token_registry._KNOBS)
        self.tr.configure(lifetime=30, expires_in=600)
        body = json.loads(self.tr.fetch_token(scope).body)
        self.assertEqual(body["expires_in"], 600)
        _, claims = token_registry.decode_jwt(body["token"])
        self.assertIn(claims["exp"] + token_registry.REGISTRY_LEEWAY - claims["iat"], (30, 31))

    def test_injected_faults_then_recovery(self):
        scope = [f"repository:{REPO}:pull"]
        self.tr.fail(2, status=500)
        self.tr.inject("garbage")
        self.tr.inject("status", status=503)
        self.tr.inject("no_token")
        statuses = [self.tr.fetch_token(scope).status for _ in range(4)]
        self.assertEqual(statuses, [500, 500, 200, 503])
        no_token = json.loads(self.tr.fetch_token(scope).body)
        self.assertNotIn("token", no_token)
        self.assertNotIn("access_token", no_token)
        self.assertEqual(self.tr.fetch_token(scope).status, 200)

        self.tr.inject("close")
        self.assertEqual(raw_realm_get(self.tr, scope[0]), b"")  # closed with no answer at all

        self.tr.inject("garbage")
        resp = self.tr.fetch_token(scope)
        self.assertEqual(resp.header("Content-Type"), "text/html")
        with self.assertRaises(ValueError):
            json.loads(resp.body)

        self.tr.slow(0.5, count=1)
        t0 = time.monotonic()
        self.assertEqual(self.tr.fetch_token(scope).status, 200)
        self.assertGreaterEqual(time.monotonic() - t0, 0.5)

        # A fault aimed at one scope leaves the others alone.
        self.tr.inject("status", status=500, count=None, scope=f"repository:{OTHER}:pull")
        self.assertEqual(self.tr.fetch_token([f"repository:{OTHER}:pull"]).status, 500)
        self.assertEqual(self.tr.fetch_token(scope).status, 200)
        self.assertEqual(self.tr.fetch_token([f"repository:{OTHER}:pull"]).status, 500)
        self.tr.clear_faults()
        self.assertEqual(self.tr.fetch_token([f"repository:{OTHER}:pull"]).status, 200)

        st = self.tr.stats()
        self.assertEqual(st["by_status"], {"500": 4, "200": 7, "503": 1, "0": 1})
        self.assertEqual([e["fault"] for e in st["log"][:6]], ["status", "status", "garbage", "status", "no_token", None])

    def test_concurrent_requests_are_counted_and_peak_in_flight_is_seen(self):
        scope = f"repository:{REPO}:pull"
        self.tr.slow(0.4, count=None)
        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            statuses = list(pool.map(lambda _: self.tr.fetch_token([scope]).status, range(20)))
        self.assertEqual(statuses, [200] * 20)
        st = self.tr.stats()
        self.assertEqual(st["by_scope"], {scope: 20})
        self.assertEqual(st["in_flight"], 0)
        self.assertGreaterEqual(st["max_in_flight"], 10)

    def test_oauth2_post_is_404_by_default_and_configurable(self):
        scope = [f"repository:{REPO}:pull"]
        self.assertEqual(self.tr.fetch_token(scope, method="POST").status, 404)
        self.tr.configure(oauth="405")
        resp = self.tr.fetch_token(scope, method="POST")
        self.assertEqual((resp.status, resp.header("Allow")), (405, "GET"))
        self.tr.configure(oauth="token")
        self.assertEqual(self.tr.fetch_token(scope, method="POST", password="wrong").status, 401)
        body = json.loads(self.tr.fetch_token(scope, method="POST").body)
        self.assertEqual(set(body), {"access_token", "scope", "expires_in", "issued_at"})
        self.assertEqual(body["scope"], scope[0])
        # Authorised: 200 once pushed, 404 NAME_UNKNOWN before; never 401.
        resp = self.tr.registry_request(f"/v2/{REPO}/tags/list", body["access_token"])
        self.assertIn(resp.status, (200, 404), resp)
        # access_type=offline gives a refresh token; grant_type=refresh_token redeems it.
        body = json.loads(self.tr.fetch_token(scope, method="POST", form={"access_type": "offline"}).body)
        refreshed = self.tr.fetch_token(scope, method="POST", form={
            "grant_type": "refresh_token", "refresh_token": body["refresh_token"], "username": "", "password": ""})
        self.assertEqual(refreshed.status, 200)
        self.assertEqual(self.tr.registry_request("/v2/", json.loads(refreshed.body)["access_token"]).status, 200)
        self.assertEqual(self.tr.stats()["by_method"], {"POST": 6})


class RegistryEnforcementTest(Base):
    pushed = False

    def setUp(self):
        super().setUp()
        if not RegistryEnforcementTest.pushed:
            # skopeo runs the whole token flow itself (GET /v2/ -> 401 -> realm with Basic -> Bearer).
            t0 = time.monotonic()
            skopeo_push(self.tr, self.tr.authfile(Env.tmp.join("auth.json"), user="temp_user"))
            print(f"  skopeo push through the token flow: {time.monotonic() - t0:.2f}s", flush=True)
            RegistryEnforcementTest.push_stats = self.tr.stats()
            RegistryEnforcementTest.pushed = True
            self.tr.reset_stats()

    def test_skopeo_push_ran_the_token_flow_with_basic_credentials(self):
        st = RegistryEnforcementTest.push_stats
        # The action order in a scope is the client's choice (push,pull or pull,push).
        push_scopes = [k for k in st["by_scope"] if k.startswith(f"repository:{REPO}:")
                       and set(k.rsplit(":", 1)[1].split(",")) == {"pull", "push"}]
        self.assertTrue(push_scopes, st["by_scope"])
        self.assertEqual(set(st["by_status"]), {"200"})
        self.assertEqual(set(st["by_user"]), {"temp_user"})
        self.assertTrue(all("skopeo" in (e["user_agent"] or "") or "containers" in (e["user_agent"] or "")
                            for e in st["log"]), [e["user_agent"] for e in st["log"]])
        # The registry saw the token's subject on the authorised requests.
        self.assertIn("temp_user", self.tr.registry.users_seen())

    def test_pull_manifest_and_blobs_with_bearer_over_plain_http(self):
        tok = self.tr.token([f"repository:{REPO}:pull"])
        accept = [("Accept", oci_image.OCI_MANIFEST), ("Accept", oci_image.DOCKER_MANIFEST)]
        for method in ("HEAD", "GET"):
            resp = self.tr.registry_request(f"/v2/{REPO}/manifests/{TAG}", tok, method=method, headers=accept)
            self.assertEqual(resp.status, 200, resp)
            self.assertEqual(resp.header("Docker-Content-Digest"), Env.image.manifest.digest)
        self.assertEqual(resp.sha256(), Env.image.manifest.digest)
        for blob in Env.image.blobs():
            resp = self.tr.registry_request(f"/v2/{REPO}/blobs/{blob.digest}", tok)
            self.assertEqual(resp.status, 200)
            self.assertEqual(resp.sha256(), blob.digest)
            self.assertEqual(resp.body, blob.read())

    def test_token_for_another_repository_is_refused_by_the_registry(self):
        tok = self.tr.token([f"repository:{OTHER}:pull"])
        resp = self.tr.registry_request(f"/v2/{REPO}/manifests/{TAG}", tok)
        self.assertEqual(resp.status, 401)
        p = bearer_params(resp.header("WWW-Authenticate"))
        self.assertEqual((p["scope"], p["error"]), (f"repository:{REPO}:pull", "insufficient_scope"))

    def test_user_not_allowed_on_the_repository_gets_a_token_the_registry_refuses(self):
        self.tr.configure(allowed={"temp_user": {"team/other": ["pull"]}})
        tok = self.tr.token([f"repository:{REPO}:pull"])
        self.assertEqual(token_registry.decode_jwt(tok)[1]["access"], [])
        resp = self.tr.registry_request(f"/v2/{REPO}/manifests/{TAG}", tok)
        self.assertEqual((resp.status, bearer_params(resp.header("WWW-Authenticate"))["error"]), (401, "insufficient_scope"))

    def test_pull_only_token_cannot_start_an_upload(self):
        tok = self.tr.token([f"repository:{REPO}:pull"])
        resp = self.tr.registry_request(f"/v2/{REPO}/blobs/uploads/", tok, method="POST", headers=[("Content-Length", "0")])
        self.assertEqual(resp.status, 401)
        # docker-registry lists the actions in no fixed order (seen: pull,push and push,pull).
        scope = bearer_params(resp.header("WWW-Authenticate"))["scope"]
        self.assertEqual(scope.rsplit(":", 1)[0], f"repository:{REPO}")
        self.assertEqual(set(scope.rsplit(":", 1)[1].split(",")), {"pull", "push"})

    def test_token_signed_by_an_untrusted_key_is_refused(self):
        self.tr.inject("untrusted_key")
        tok = self.tr.token([f"repository:{REPO}:pull"])
        resp = self.tr.registry_request(f"/v2/{REPO}/manifests/{TAG}", tok)
        self.assertEqual((resp.status, bearer_params(resp.header("WWW-Authenticate"))["error"]), (401, "invalid_token"))

    def test_wrong_password_push_is_refused(self):
        authfile = self.tr.authfile(Env.tmp.join("wrong-auth.json"), user="temp_user", password="wrong")
        proc = skopeo_push(self.tr, authfile, repo="team/denied", check=False)
        self.assertNotEqual(proc.returncode, 0)
        self.assertRegex(proc.stderr, r"(?i)401|unauthori[sz]ed|authentication required")
        self.assertNotIn("wrong", proc.stderr.replace("wrong-auth", ""))
        st = self.tr.stats()
        self.assertEqual(st["by_status"].get("200", 0), 0)
        self.assertGreaterEqual(st["by_status"].get("401", 0), 1, "skopeo never asked the realm")

    def test_expiry_is_honoured_by_the_registry(self):
        lifetime = 2
        path = f"/v2/{REPO}/manifests/{TAG}"
        get = lambda t: self.tr.registry_request(path, t, headers=[("Accept", oci_image.OCI_MANIFEST)])  # noqa: E731
        self.tr.configure(lifetime=lifetime)
        issued = time.monotonic()
        tok = self.tr.token([f"repository:{REPO}:pull"])
        # Without the compensation the registry's 60 s leeway would keep this one alive.
        self.tr.configure(leeway_compensation=False)
        lenient = self.tr.token([f"repository:{REPO}:pull"])
        self.assertEqual(get(tok).status, 200)
        harness.wait_until(lambda: time.monotonic() - issued >= lifetime - 0.5, 5, "most of the lifetime to pass")
        self.assertEqual(get(tok).status, 200, "refused before expires_in")
        harness.wait_until(lambda: get(tok).status == 401, lifetime + 3, "expiry")
        refused_after = time.monotonic() - issued
        self.assertGreaterEqual(refused_after, lifetime - 0.1)
        self.assertLess(refused_after, lifetime + 1.5)
        resp = get(tok)
        self.assertEqual(bearer_params(resp.header("WWW-Authenticate"))["error"], "invalid_token")
        self.assertEqual(get(lenient).status, 200)
        print(f"  {lifetime}s token refused {refused_after:.2f}s after issue", flush=True)


class SecretsInLogsTest(Base):
    def test_fixture_logs_hold_no_password_or_token(self):
        tokens = [self.tr.token([f"repository:{REPO}:pull"]) for _ in range(3)]
        self.tr.configure(oauth="token")
        self.tr.fetch_token([f"repository:{REPO}:pull"], method="POST")
        for t in tokens:
            self.tr.registry_request(f"/v2/{REPO}/manifests/{TAG}", t)
        self.tr.fetch_token([f"repository:{REPO}:pull"], password="wrong-secret-xyz")
        logs = {name: open(path, errors="replace").read() for name, path in [
            ("token server", self.tr.token_child.log_path), ("registry", self.tr.registry.child.log_path)]}
        secrets_used = [PASSWORD, "bob-pw", "rotated:pw", "wrong-secret-xyz"] + tokens + [t.split(".")[2] for t in tokens]
        for name, text in logs.items():
            self.assertIn("/auth" if name == "token server" else "response completed", text)
            for secret in secrets_used:
                self.assertNotIn(secret, text, f"a secret reached the {name} log")


class TlsKidTest(unittest.TestCase):
    """https realm and registry (one test CA), RS256 key named by its libtrust kid."""

    tr = None

    @classmethod
    def setUpClass(cls):
        t0 = time.monotonic()
        cls.tr = token_registry.start_token_registry(Env.tmp.join("tls"), users={"temp_user": PASSWORD}, tls=True,
                                                     alg="RS256", key_header="kid", lifetime=60)
        print(f"token registry (https, RS256, kid) up in {time.monotonic() - t0:.2f}s", flush=True)

    @classmethod
    def tearDownClass(cls):
        cls.tr.stop()

    def test_https_realm_push_and_pull_with_kid_token(self):
        self.assertTrue(self.tr.realm.startswith("https://127.0.0.1:"))
        resp = self.tr.registry_request("/v2/")
        self.assertEqual(bearer_params(resp.header("WWW-Authenticate"))["realm"], self.tr.realm)
        skopeo_push(self.tr, self.tr.authfile(Env.tmp.join("tls-auth.json")))
        tok = self.tr.token([f"repository:{REPO}:pull"])
        header, _ = token_registry.decode_jwt(tok)
        self.assertEqual(header["alg"], "RS256")
        self.assertNotIn("x5c", header)
        self.assertRegex(header["kid"], r"^([A-Z2-7]{4}:){11}[A-Z2-7]{4}$")
        resp = self.tr.registry_request(f"/v2/{REPO}/manifests/{TAG}", tok, headers=[("Accept", oci_image.OCI_MANIFEST)])
        self.assertEqual(resp.status, 200)
        self.assertEqual(resp.sha256(), Env.image.manifest.digest)
        layer = Env.image.layers[0]
        resp = self.tr.registry_request(f"/v2/{REPO}/blobs/{layer.digest}", tok)
        self.assertEqual(hashlib.sha256(resp.body).hexdigest(), layer.digest.split(":")[1])
        self.assertEqual(self.tr.registry_request(f"/v2/{REPO}/manifests/{TAG}", self.tr.token([f"repository:{OTHER}:pull"])).status, 401)


if __name__ == "__main__":
    sys.exit(harness.run_tests())
