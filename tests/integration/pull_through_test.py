#!/usr/bin/env python3
"""Pull-through: manifests and blobs from real docker-registry instances
through the proxy, compared byte for byte with what was pushed.

Three registries hold the same image, pushed with skopeo from an OCI layout
this test builds: one with htpasswd auth (the proxy injects Basic; the client
sends no credentials), one anonymous, one over TLS with its own CA (caFile)
and htpasswd auth (password from the environment). Each holds four tags: an
OCI manifest, an OCI index, and skopeo's Docker schema 2 conversions of both
(manifest and manifest list).

A recording fake upstream checks what the proxy sends: repeated Accept lines
in order, a client's own Authorization untouched, no Authorization for an
anonymous registry.

Usage: pull_through_test.py --proxy build/proxy/acr-credential-proxy
"""

import json
import os
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))

import fake_upstream  # noqa: E402
import harness  # noqa: E402
import oci_image  # noqa: E402
import proxy as proxy_mod  # noqa: E402
import registry as registry_mod  # noqa: E402
from oci_image import DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, LayerSpec  # noqa: E402

REPO = "test/image"
ALL_MANIFEST_TYPES = [OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST]
TAG_TYPES = {"oci": OCI_MANIFEST, "oci-index": OCI_INDEX, "docker": DOCKER_MANIFEST, "docker-list": DOCKER_LIST}


def q(ns):
    """The query string containerd sends: ns=<host>, URL-encoded (':' -> %3A)."""
    return "?" + urllib.parse.urlencode({"ns": ns})


def accept_lines_ending_with(media_type):
    """One Accept line per type, the wanted type last: a proxy that keeps only
    the first line would make the registry refuse or convert the manifest."""
    return [("Accept", t) for t in ALL_MANIFEST_TYPES if t != media_type] + [("Accept", media_type)]


class World:
    """Everything the tests share, built once (setUpModule)."""

    tmp = None
    image = None
    regs = {}  # label -> Registry
    refs = {}  # (label, tag) -> (media type, digest, body)
    proxy = None
    fake = None
    fake_password = None
    release_hang = threading.Event()


def _reference_manifests(label, reg):
    for tag, media_type in TAG_TYPES.items():
        r = reg.get(f"/v2/{REPO}/manifests/{tag}", headers=[("Accept", media_type)])
        if r.status != 200:
            raise RuntimeError(f"{label}: direct GET of {tag} failed: {r!r}")
        World.refs[(label, tag)] = (r.header("Content-Type"), r.header("Docker-Content-Digest"), r.body)


def _fake_handler(req):
    """The recording upstream: a manifest for anything under /v2/; `.../manifests/hang`
    sends no answer until the test module ends (an upstream that times out)."""
    body = b'{"schemaVersion":2,"fake":true}'
    if req.path == "/v2/":
        return 200, [("Content-Type", "application/json")], b"{}"
    if req.path.endswith("/manifests/hang"):
        World.release_hang.wait(120)
    return 200, [("Content-Type", OCI_MANIFEST), ("Docker-Content-Digest", "sha256:" + "0" * 64)], body


def setUpModule():
    harness.require_tools("docker-registry", "skopeo", "htpasswd", "openssl")
    binary = proxy_mod.find_binary()
    World.tmp = harness.TempDir("pull-through")
    tmp = World.tmp
    started = time.monotonic()
    World.image = oci_image.build_image(
        tmp.join("layout"),
        [LayerSpec(300_000, 3), LayerSpec(4096, 1), LayerSpec(2_000_000, 2, gzip_level=1)],
        tag="oci", index_tag="oci-index", seed="pull-through")

    World.regs = {
        "htpasswd": registry_mod.Registry(tmp.join("reg-auth"), "registry-htpasswd",
                                          users={"robot": harness.secrets_token(), "alice": harness.secrets_token()}),
        "anonymous": registry_mod.Registry(tmp.join("reg-anon"), "registry-anonymous"),
        "tls": registry_mod.Registry(tmp.join("reg-tls"), "registry-tls", users=True, tls=True),
    }
    for label, reg in World.regs.items():
        reg.start()
        authfile = reg.authfile(tmp.join(f"{label}.auth.json")) if reg.users else None
        ca_dir = reg.tls["ca_dir"] if reg.tls else None
        layout = World.image.layout
        oci_image.push(layout, "oci", reg.host, REPO, authfile=authfile, ca_dir=ca_dir)
        oci_image.push(layout, "oci-index", reg.host, REPO, authfile=authfile, ca_dir=ca_dir, all_images=True)
        oci_image.push(layout, "oci", reg.host, REPO, dest_tag="docker", authfile=authfile, ca_dir=ca_dir, fmt="v2s2")
        oci_image.push(layout, "oci-index", reg.host, REPO, dest_tag="docker-list", authfile=authfile, ca_dir=ca_dir,
                       fmt="v2s2", all_images=True)
        _reference_manifests(label, reg)

    World.fake = fake_upstream.FakeServer(_fake_handler, "fake-upstream").start()
    World.fake_password = harness.secrets_token()
    fake_pw_file = tmp.join("fake.password")
    with open(fake_pw_file, "w") as f:
        f.write(World.fake_password)

    entries, overrides, env = [], {}, {}
    for label, reg in World.regs.items():
        e, o, v = proxy_mod.registry_entry(
            reg, tmp.path, auth="basic" if reg.users else "anonymous",
            password_via="env" if label == "tls" else "file")
        entries.append(e)
        overrides.update(o)
        env.update(v)
    # The TLS registry again under the name its certificate also carries, but without its CA: must fail closed.
    tls = World.regs["tls"]
    entries.append({"host": f"localhost:{tls.port}", "auth": {"type": "anonymous"}})
    entries.append({"host": "fake.test", "auth": {"type": "basic", "username": "robot", "passwordFile": fake_pw_file}})
    entries.append({"host": "fake-anon.test", "auth": {"type": "anonymous"}})
    entries.append({"host": "dead.test", "auth": {"type": "anonymous"}})
    # The htpasswd registry under another name, with a wrong password: the proxy's own credentials refused.
    wrong_pw_file = tmp.join("wrong.password")
    with open(wrong_pw_file, "w") as f:
        f.write("not-the-password")
    entries.append({"host": "refused.test", "auth": {"type": "basic", "username": "robot", "passwordFile": wrong_pw_file}})
    overrides["refused.test"] = f"http://127.0.0.1:{World.regs['htpasswd'].port}"
    overrides["fake.test"] = f"http://127.0.0.1:{World.fake.port}"
    overrides["fake-anon.test"] = f"http://127.0.0.1:{World.fake.port}"
    overrides["dead.test"] = f"http://127.0.0.1:{harness.free_port()}"  # nothing listens there
    World.proxy = proxy_mod.Proxy(binary, tmp.join("proxy"), {
        "registries": entries,
        "endpointOverrides": overrides,
        "defaultRegistry": World.regs["htpasswd"].host,
        "timeouts": {"upstreamConnect": "2s", "upstreamHeaders": "2s"},
    }, env=env).start()
    print(f"setup: 3 registries, 4 tags each, proxy on 127.0.0.1:{World.proxy.port} "
          f"in {time.monotonic() - started:.1f}s", flush=True)


def tearDownModule():
    World.release_hang.set()
    if World.proxy:
        World.proxy.stop()  # asserts exit status 0 after SIGTERM
    for reg in World.regs.values():
        reg.stop()
    if World.fake:
        World.fake.stop()


def log_sizes():
    return {label: len(reg.access_log()) for label, reg in World.regs.items()}



class Base(harness.TestCaseBase):
    def watched(self):  # after each test: the proxy must still be alive
        return [World.proxy] if World.proxy else []

class PingAndPolicy(Base):
    def test_v2_ping_is_200_empty_json_with_and_without_ns(self):
        c = harness.Checks(self)
        for target in ["/v2/", "/v2/" + q(World.regs["htpasswd"].host), "/v2/" + q("unknown.example.com")]:
            r = World.proxy.request("GET", target)
            c.eq(r.status, 200, f"GET {target} status")
            c.check(r.status == 200 and json.loads(r.body or b"null") == {}, f"GET {target} body {r.body[:100]!r} is {{}}")
            r = World.proxy.request("HEAD", target)
            c.eq(r.status, 200, f"HEAD {target} status")
            c.eq(r.body, b"", f"HEAD {target} body")
        c.done()

    def _ns_404_table(self, namespaces):
        c = harness.Checks(self)
        before = log_sizes()
        fake_before = len(World.fake.seen())
        for ns in namespaces:
            for method in ("GET", "HEAD"):
                for kind, ref in (("manifests", "oci"), ("blobs", World.image.config.digest)):
                    t0 = time.monotonic()
                    r = World.proxy.request(method, f"/v2/{REPO}/{kind}/{ref}{q(ns)}")
                    elapsed = time.monotonic() - t0
                    c.eq(r.status, 404, f"{method} {kind} ns={ns!r} status")
                    c.check(elapsed < 1.0, f"{method} {kind} ns={ns!r} took {elapsed:.2f}s (want a fast 404)")
                    if method == "GET" and r.status == 404:
                        c.check(_is_registry_error(r.body), f"GET ns={ns!r} body is registry error JSON: {r.body[:200]!r}")
        c.eq(log_sizes(), before, "registry access log lines (no request may reach a registry)")
        c.eq(len(World.fake.seen()), fake_before, "fake upstream requests")
        c.done()

    def test_unknown_ns_is_fast_404_and_never_forwarded(self):
        reg_port = World.regs["htpasswd"].port
        other_port = reg_port + 1 if reg_port < 65535 else reg_port - 1
        # Not configured: other hosts, another port of a configured IP, a suffix trick.
        self._ns_404_table(["unknown.example.com", "127.0.0.1:1", f"127.0.0.1:{other_port}", "fake.test.evil.com",
                            "fake.tes", "localhost"])

    def test_empty_or_unparsable_ns_is_404_too(self):
        # DESIGN.md: "ns absent or not a configured host -> fast 404". An empty ns or one that
        # is not even a host[:port] is not a configured host either (containerd falls back on
        # 404; the proxy must not be the place a pull dies).
        reg_port = World.regs["htpasswd"].port
        self._ns_404_table(["", "evil.com/fake.test", f"127.0.0.1:{reg_port}0", "fake.test:99999"])

    def test_requests_without_ns_go_to_default_registry(self):
        c = harness.Checks(self)
        reg = World.regs["htpasswd"]
        before = len(reg.access_log())
        media, digest, body = World.refs[("htpasswd", "oci")]
        r = World.proxy.request("GET", f"/v2/{REPO}/manifests/oci", accept_lines_ending_with(media))
        c.eq(r.status, 200, "status")
        c.eq(r.header("Docker-Content-Digest"), digest, "Docker-Content-Digest")
        c.eq(r.body, body, "body")
        blob = World.image.layers[0]
        r = World.proxy.request("GET", f"/v2/{REPO}/blobs/{blob.digest}")
        c.eq((r.status, r.sha256()), (200, blob.digest), "blob without ns")
        c.check(len(reg.access_log()) >= before + 2, "the default registry saw the requests")
        c.done()

    def test_keep_alive_serves_many_requests_on_one_connection(self):
        c = harness.Checks(self)
        reg = World.regs["anonymous"]
        media, digest, body = World.refs[("anonymous", "oci")]
        blob = World.image.layers[1]
        client = World.proxy.client()
        try:
            for i in range(10):
                for method, target, headers, want in (
                    ("GET", "/v2/", [], 200),
                    ("GET", f"/v2/{REPO}/manifests/oci{q(reg.host)}", [("Accept", media)], 200),
                    ("HEAD", f"/v2/{REPO}/manifests/{digest}{q(reg.host)}", [("Accept", media)], 200),
                    ("GET", f"/v2/{REPO}/blobs/{blob.digest}{q(reg.host)}", [], 200),
                    ("GET", f"/v2/{REPO}/blobs/{blob.digest}{q(reg.host)}", [("Range", "bytes=0-9")], 206),
                    ("GET", f"/v2/{REPO}/manifests/oci{q('unknown.example.com')}", [], 404),
                    ("GET", f"/v2/{REPO}/manifests/no-such-tag{q(reg.host)}", [("Accept", media)], 404),
                ):
                    r = client.request(method, target, headers)
                    c.eq(r.status, want, f"round {i}: {method} {target[:60]}")
            c.eq(client.connects, 1, "connections opened for 70 requests (keep-alive)")
        finally:
            client.close()
        c.done()

    def test_push_and_other_methods_are_405_and_not_forwarded(self):
        c = harness.Checks(self)
        before = log_sizes()
        ns = q(World.regs["htpasswd"].host)
        digest = World.image.config.digest
        cases = [
            ("PUT", f"/v2/{REPO}/manifests/pushed{ns}", b'{"schemaVersion":2}'),
            ("POST", f"/v2/{REPO}/blobs/uploads/{ns}", b""),
            ("PATCH", f"/v2/{REPO}/blobs/uploads/0123{ns}", b"x"),
            ("PUT", f"/v2/{REPO}/blobs/uploads/0123{ns}&digest={digest}", b"x"),
            ("DELETE", f"/v2/{REPO}/manifests/oci{ns}", None),
            ("DELETE", f"/v2/{REPO}/blobs/{digest}{ns}", None),
        ]
        for method, target, body in cases:
            r = World.proxy.request(method, target, [("Content-Type", "application/octet-stream")], body)
            c.eq(r.status, 405, f"{method} {target}")
        c.eq(log_sizes(), before, "registry access log lines")
        # Nothing was pushed: the tag is still unknown upstream.
        c.eq(World.regs["htpasswd"].get(f"/v2/{REPO}/manifests/pushed").status, 404, "pushed tag upstream")
        c.done()

    def test_malformed_names_and_references_are_400(self):
        c = harness.Checks(self)
        before = log_sizes()
        ns = q(World.regs["htpasswd"].host)
        for target in [
            f"/v2/Test/Image/manifests/oci{ns}",          # upper case name
            f"/v2/test//image/manifests/oci{ns}",         # empty path component
            f"/v2/test/image/manifests/-oci{ns}",         # tag must start with [A-Za-z0-9_]
            f"/v2/test/image/manifests/{'a' * 129}{ns}",  # tag longer than 128
            f"/v2/test/image/blobs/sha256:xyz{ns}",       # not a digest
            f"/v2/test/../image/manifests/oci{ns}",       # dot segments
        ]:
            r = World.proxy.request("GET", target)
            c.eq(r.status, 400, f"GET {target[:90]}")
        c.eq(log_sizes(), before, "registry access log lines")
        c.done()


def _is_registry_error(body):
    try:
        doc = json.loads(body)
        return isinstance(doc.get("errors"), list) and bool(doc["errors"]) and "code" in doc["errors"][0]
    except (ValueError, AttributeError):
        return False


class Manifests(Base):
    def _check_manifests(self, label):
        c = harness.Checks(self)
        reg = World.regs[label]
        ns = q(reg.host)
        client = World.proxy.client()  # one keep-alive connection for the whole table
        try:
            for tag, media in TAG_TYPES.items():
                ref_media, ref_digest, ref_body = World.refs[(label, tag)]
                c.eq(ref_media, media, f"{label} {tag}: registry's own Content-Type")
                if tag in ("oci", "oci-index"):
                    layout_blob = World.image.tags[tag]
                    c.eq(ref_digest, layout_blob.digest, f"{label} {tag}: pushed digest equals the OCI layout's")
                    c.eq(ref_body, layout_blob.read(), f"{label} {tag}: pushed bytes equal the OCI layout's")
                for ref in (tag, ref_digest):
                    for accept_name, accept in (("all types, wanted last", accept_lines_ending_with(media)),
                                                ("only the wanted type", [("Accept", media)]),
                                                ("one comma-joined line", [("Accept", ", ".join(ALL_MANIFEST_TYPES))])):
                        for method in ("GET", "HEAD"):
                            what = f"{label} {method} manifests/{ref[:19]} [{accept_name}]"
                            r = client.request(method, f"/v2/{REPO}/manifests/{ref}{ns}", accept)
                            if not c.eq(r.status, 200, f"{what}: status"):
                                continue
                            c.eq(r.header("Content-Type"), media, f"{what}: Content-Type")
                            c.eq(r.header("Docker-Content-Digest"), ref_digest, f"{what}: Docker-Content-Digest")
                            c.eq(r.header("Content-Length"), str(len(ref_body)), f"{what}: Content-Length")
                            c.eq(r.header("Docker-Distribution-Api-Version"), "registry/2.0", f"{what}: API version header")
                            c.eq(r.header("ETag"), f'"{ref_digest}"', f"{what}: ETag")
                            if method == "GET":
                                c.eq(r.sha256(), ref_digest, f"{what}: sha256 of body")
                                c.check(r.body == ref_body, f"{what}: body differs from the registry's bytes")
                            else:
                                c.eq(r.body, b"", f"{what}: HEAD body")
            # If-None-Match reaches the registry, and its 304 comes back.
            _, digest, _ = World.refs[(label, "oci")]
            r = client.request("GET", f"/v2/{REPO}/manifests/oci{ns}", [("Accept", OCI_MANIFEST), ("If-None-Match", f'"{digest}"')])
            c.eq((r.status, r.body), (304, b""), f"{label} If-None-Match with the current digest")
            # The registry's own refusal passes through: an OCI manifest asked for with Docker types only.
            r = client.request("GET", f"/v2/{REPO}/manifests/oci{ns}", [("Accept", DOCKER_MANIFEST), ("Accept", DOCKER_LIST)])
            c.eq(r.status, 404, f"{label} OCI manifest with Docker-only Accept: the registry's 404")
            c.check(b"MANIFEST_UNKNOWN" in r.body, f"{label} registry error body passed through: {r.body[:200]!r}")
            # Unknown tag: the registry's 404 with its body.
            r = client.request("GET", f"/v2/{REPO}/manifests/no-such-tag{ns}", [("Accept", OCI_MANIFEST)])
            c.eq(r.status, 404, f"{label} unknown tag")
            c.check(b"MANIFEST_UNKNOWN" in r.body, f"{label} unknown tag body: {r.body[:200]!r}")
        finally:
            client.close()
        c.done()

    def test_manifests_htpasswd_registry_with_injected_basic(self):
        # The registry refuses the client's own (absent) credentials: 200s below prove injection.
        direct = harness.request("127.0.0.1", World.regs["htpasswd"].port, "GET", f"/v2/{REPO}/manifests/oci")
        self.assertEqual(direct.status, 401, "the registry enforces htpasswd auth")
        self._check_manifests("htpasswd")

    def test_manifests_anonymous_registry(self):
        self._check_manifests("anonymous")

    def test_manifests_tls_registry_with_ca_file(self):
        self._check_manifests("tls")


class Blobs(Base):
    def _check_blobs(self, label):
        c = harness.Checks(self)
        reg = World.regs[label]
        ns = q(reg.host)
        client = World.proxy.client()
        try:
            for blob in World.image.blobs():
                target = f"/v2/{REPO}/blobs/{blob.digest}{ns}"
                short = f"{label} blob {blob.digest[7:19]} ({blob.size} B)"
                r = client.request("GET", target)
                if c.eq(r.status, 200, f"{short} GET status"):
                    c.eq(r.sha256(), blob.digest, f"{short} sha256 of body")
                    c.check(r.body == blob.read(), f"{short} body differs from the OCI layout's bytes")
                    c.eq(r.header("Docker-Content-Digest"), blob.digest, f"{short} Docker-Content-Digest")
                    c.eq(r.header("Content-Length"), str(blob.size), f"{short} Content-Length")
                r = client.request("HEAD", target)
                c.eq((r.status, r.header("Content-Length"), r.body), (200, str(blob.size), b""), f"{short} HEAD")
                c.eq(r.header("Docker-Content-Digest"), blob.digest, f"{short} HEAD Docker-Content-Digest")
                ranges = [(0, 0), (1, 99), (blob.size // 2, blob.size - 1), (blob.size - 10, None)]
                for start, end in ranges:
                    spec = f"bytes={start}-{'' if end is None else end}"
                    last = blob.size - 1 if end is None else end
                    r = client.request("GET", target, [("Range", spec)])
                    if c.eq(r.status, 206, f"{short} Range {spec} status"):
                        c.eq(r.header("Content-Range"), f"bytes {start}-{last}/{blob.size}", f"{short} {spec} Content-Range")
                        c.eq(r.header("Content-Length"), str(last - start + 1), f"{short} {spec} Content-Length")
                        c.check(r.body == blob.read(start, last + 1), f"{short} {spec} body differs from the layout's bytes")
            missing = "sha256:" + "ab" * 32
            r = client.request("GET", f"/v2/{REPO}/blobs/{missing}{ns}")
            c.eq(r.status, 404, f"{label} unknown blob")
            c.check(b"BLOB_UNKNOWN" in r.body, f"{label} unknown blob body: {r.body[:200]!r}")
        finally:
            client.close()
        c.done()

    def test_blobs_htpasswd_registry(self):
        self._check_blobs("htpasswd")

    def test_blobs_anonymous_registry(self):
        self._check_blobs("anonymous")

    def test_blobs_tls_registry(self):
        self._check_blobs("tls")


class Upstream(Base):
    def test_client_authorization_is_forwarded_untouched(self):
        c = harness.Checks(self)
        reg = World.regs["htpasswd"]
        ns = q(reg.host)
        # alice's own valid credentials work through the proxy.
        r = World.proxy.request("GET", f"/v2/{REPO}/manifests/oci{ns}",
                                [("Accept", OCI_MANIFEST), ("Authorization", harness.basic_auth("alice", reg.users["alice"]))])
        c.eq(r.status, 200, "alice's own credentials: status")
        # Wrong credentials: the registry refuses them (they were not replaced by the injected ones).
        log_before = len(reg.access_log())
        r = World.proxy.request("GET", f"/v2/{REPO}/manifests/oci{ns}",
                                [("Accept", OCI_MANIFEST), ("Authorization", harness.basic_auth("alice", "wrong"))])
        c.check(r.status in (401, 403), f"wrong client credentials: status {r.status} (want the registry's refusal)")
        c.eq([s for _, _, s in reg.access_log()[log_before:]], [401], "what the registry answered")
        # The same at the recording upstream, byte for byte.
        World.fake.clear()
        token = "Bearer client-own-token.abc.def"
        r = World.proxy.request("GET", f"/v2/{REPO}/manifests/x{q('fake.test')}", [("Authorization", token)])
        c.eq(r.status, 200, "fake upstream status")
        seen = World.fake.seen()
        c.eq(len(seen), 1, "requests at the fake upstream")
        if seen:
            c.secret_eq(seen[-1].header_all("Authorization"), [token], "Authorization at the upstream")
        c.done()

    def test_injected_basic_and_none_for_anonymous(self):
        c = harness.Checks(self)
        World.fake.clear()
        r = World.proxy.request("GET", f"/v2/{REPO}/manifests/x{q('fake.test')}")
        c.eq(r.status, 200, "basic: status")
        r = World.proxy.request("GET", f"/v2/{REPO}/manifests/x{q('fake-anon.test')}")
        c.eq(r.status, 200, "anonymous: status")
        seen = World.fake.seen()
        c.eq(len(seen), 2, "requests at the fake upstream")
        if len(seen) == 2:
            c.secret_eq(seen[0].header_all("Authorization"), [harness.basic_auth("robot", World.fake_password)],
                        "Authorization injected for fake.test")
            c.secret_eq(seen[1].header_all("Authorization"), [], "Authorization for the anonymous registry")
            c.eq(seen[0].path, f"/v2/{REPO}/manifests/x", "upstream path")
            c.check("ns=" not in seen[0].query, f"ns is not sent upstream: {seen[0].query!r}")
        c.done()

    def test_repeated_accept_lines_arrive_in_order(self):
        c = harness.Checks(self)
        World.fake.clear()
        sent = [("Accept", t) for t in ALL_MANIFEST_TYPES] + [("Accept", "*/*")]
        r = World.proxy.request("GET", f"/v2/{REPO}/manifests/x{q('fake.test')}",
                                sent + [("If-None-Match", '"sha256:abc"'), ("Connection", "keep-alive, X-Hop"), ("X-Hop", "1")])
        c.eq(r.status, 200, "status")
        seen = World.fake.seen()
        if c.eq(len(seen), 1, "requests at the fake upstream"):
            got = seen[0].header_all("Accept")
            # One line per type, or the same types comma-joined in the same order: both keep every type.
            flat = [t.strip() for line in got for t in line.split(",")]
            c.eq(flat, [v for _, v in sent], "Accept media types in order")
            c.eq(seen[0].header("If-None-Match"), '"sha256:abc"', "If-None-Match passed through")
            c.eq(seen[0].header("X-Hop"), None, "header named in Connection (hop-by-hop) is stripped")
        c.done()

    def test_tls_upstream_without_its_ca_fails_closed(self):
        tls = World.regs["tls"]
        before = len(tls.access_log())
        r = World.proxy.request("GET", f"/v2/{REPO}/manifests/oci{q(f'localhost:{tls.port}')}", [("Accept", OCI_MANIFEST)])
        self.assertEqual(r.status, 502, f"unverifiable upstream certificate: {r!r}")
        self.assertEqual(len(tls.access_log()), before, "no HTTP request may reach the unverified registry")

    def test_refused_injected_credentials_are_403_denied_never_401(self):
        reg = World.regs["htpasswd"]
        log_before = len(reg.access_log())
        for method in ("GET", "HEAD"):
            r = World.proxy.request(method, f"/v2/{REPO}/manifests/oci{q('refused.test')}", [("Accept", OCI_MANIFEST)])
            self.assertEqual(r.status, 403, f"{method}: {r!r}")
            self.assertIsNone(r.header("WWW-Authenticate"), "no challenge may reach containerd")
            if method == "GET":
                doc = json.loads(r.body)
                self.assertEqual(doc["errors"][0]["code"], "DENIED")
                text = json.dumps(doc)
                self.assertIn("refused.test", text, "the message names the registry")
                self.assertIn(REPO, text, "the message names the repository")
                self.assertNotIn("not-the-password", text)
        self.assertIn(401, [s for _, _, s in reg.access_log()[log_before:]], "the registry refused the credentials")

    def test_upstream_header_timeout_is_504(self):
        t0 = time.monotonic()
        r = World.proxy.request("GET", f"/v2/{REPO}/manifests/hang{q('fake.test')}", [("Accept", OCI_MANIFEST)])
        elapsed = time.monotonic() - t0
        self.assertEqual(r.status, 504, repr(r))
        self.assertLess(elapsed, 10.0, "timeouts.upstreamHeaders is 2s")

    def test_unreachable_upstream_is_fast_502(self):
        t0 = time.monotonic()
        r = World.proxy.request("GET", f"/v2/{REPO}/manifests/oci{q('dead.test')}", [("Accept", OCI_MANIFEST)])
        elapsed = time.monotonic() - t0
        self.assertEqual(r.status, 502, repr(r))
        self.assertLess(elapsed, 3.0, "connection refused must answer fast")

    def test_small_answers_are_not_delayed(self):
        # A relayed manifest costs about what the registry takes, not +40 ms: a proxy that
        # writes the head and the body separately without TCP_NODELAY on the client socket
        # meets the client's delayed ACK (Nagle) on every small answer.
        reg = World.regs["anonymous"]
        media, _, _ = World.refs[("anonymous", "oci")]

        def median_ms(client, target):
            times = []
            for _ in range(15):
                t0 = time.monotonic()
                r = client.request("GET", target, [("Accept", media)])
                times.append((time.monotonic() - t0) * 1000)
                self.assertEqual(r.status, 200)
            return sorted(times)[len(times) // 2]

        direct, via = reg.client(), World.proxy.client()
        try:
            direct_ms = median_ms(direct, f"/v2/{REPO}/manifests/oci")
            proxy_ms = median_ms(via, f"/v2/{REPO}/manifests/oci{q(reg.host)}")
        finally:
            direct.close()
            via.close()
        print(f"      manifest GET median: direct {direct_ms:.1f} ms, through the proxy {proxy_ms:.1f} ms", flush=True)
        self.assertLess(proxy_ms - direct_ms, 25.0, "the proxy adds more than 25 ms to a small answer")

    def test_ns_host_lookup_is_case_insensitive(self):
        World.fake.clear()
        r = World.proxy.request("GET", f"/v2/{REPO}/manifests/x{q('FAKE.Test')}")
        self.assertEqual(r.status, 200, repr(r))
        self.assertEqual(len(World.fake.seen()), 1)

    def test_proxy_answers_a_raw_colon_in_ns(self):
        # containerd URL-encodes ns (127.0.0.1%3A5000); other clients may not.
        reg = World.regs["anonymous"]
        media, digest, _ = World.refs[("anonymous", "oci")]
        r = World.proxy.request("GET", f"/v2/{REPO}/manifests/oci?ns={reg.host}", [("Accept", media)])
        self.assertEqual((r.status, r.header("Docker-Content-Digest")), (200, digest))


class NoDefaultRegistry(Base):
    """A second proxy without defaultRegistry: requests without ns are 404."""

    def test_missing_ns_without_default_registry_is_404(self):
        reg = World.regs["anonymous"]
        e, o, _ = proxy_mod.registry_entry(reg, World.tmp.path, auth="anonymous")
        p = proxy_mod.Proxy(World.proxy.binary, World.tmp.join("proxy-nodefault"),
                            {"registries": [e], "endpointOverrides": o}, name="proxy-nodefault").start()
        try:
            c = harness.Checks(self)
            before = len(reg.access_log())
            for target in (f"/v2/{REPO}/manifests/oci", f"/v2/{REPO}/blobs/{World.image.config.digest}", f"/v2/{REPO}/manifests/oci?ns="):
                r = p.request("GET", target, [("Accept", OCI_MANIFEST)])
                c.eq(r.status, 404, f"GET {target}")
            c.eq(len(reg.access_log()), before, "registry access log lines")
            r = p.request("GET", f"/v2/{REPO}/manifests/oci{q(reg.host)}", [("Accept", OCI_MANIFEST)])
            c.eq(r.status, 200, "with ns it still works")
            c.done()
        finally:
            p.stop()


if __name__ == "__main__":
    sys.exit(harness.run_tests())
