#!/usr/bin/env python3
"""`acr-credential-proxy doctor`: the checklist on a healthy node, then each failure.

Set-up, all inside a private network namespace holding only loopback (the ACR
domain is made up: not even a DNS query for it may leave the machine, and the
proxy's endpointOverrides maps it to the loopback front, so doctor must never
look it up):
  * the ACR-like registry (tests/support/acr_like.py): fake IMDS (ECS RAM
    role) + STS + ACR OpenAPI, the token realm, docker-registry with
    `auth: token` behind an ACR-like front; one small image pushed;
  * the proxy with acr_like's config (its credentials from the fake ECS role);
  * hosts.toml written by `acr-credential-proxy hosts install` into a temp
    certs dir; a containerd config.toml (version 2) whose config_path is it.

  healthy: every line ✓ (the credential source, GetAuthorizationToken with the
    temporary user, configured = discovered domains, the domain reached
    through endpointOverrides without a lookup, its realm, hosts.toml,
    config_path, /readyz, the image's manifest HEAD with the pushed digest),
    exit 0, and no secret in the output.
  then one failure at a time, each with its ✗, a `fix:` line and exit 1:
    hosts.toml missing; containerd config without config_path; a version 3
    config with a colon-separated config_path (transfer service);
    --image on a host the proxy does not serve; an image tag that does not
    exist; the proxy stopped (/readyz and the HEAD unreachable); the fake ACR
    denying GetAuthorizationToken to the node's role; a slow ACR OpenAPI cut
    off at --timeout; a configured registry whose name does not resolve; a
    TLS registry verified with its caFile and refused with another CA; a
    discovered domain (no domains configured) without hosts.toml, whose fix
    is serve --certs-dir.
  an invalid configuration: its ✗ and exit 2; a bad --timeout: usage error 2.

Usage: doctor_test.py --proxy build/proxy/acr-credential-proxy
"""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))

import acr_like  # noqa: E402
import harness  # noqa: E402
import oci_image  # noqa: E402
import proxy as proxy_mod  # noqa: E402
import registry as registry_mod  # noqa: E402
from oci_image import LayerSpec  # noqa: E402

REPO = "doctor/app"
TAG = "v1"
CHECK, CROSS = "\u2713", "\u2717"


class World:
    binary = None
    tmp = None
    acr = None
    proxy = None
    image = None
    certs = None
    ctd_v2 = None


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def containerd_v2(path, config_path):
    return write(path, f'version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\n'
                       f'  config_path = "{config_path}"\n')


def setUpModule():
    harness.require_tools("docker-registry", "skopeo")
    World.binary = proxy_mod.find_binary()
    World.tmp = tmp = harness.TempDir("doctor")
    World.acr = acr = acr_like.AcrLike(tmp.join("acr")).start()
    World.image = oci_image.build_image(tmp.join("layout"), [LayerSpec(50_000, 2)], tag=TAG, seed="doctor")
    acr.push_layout(World.image.layout, TAG, REPO)
    World.proxy = proxy_mod.Proxy(World.binary, tmp.join("proxy"), acr.proxy_config(), env=acr.proxy_env()).start()
    harness.wait_until(lambda: World.proxy.admin("/readyz").status == 200, 30, "the proxy's first ACR password")
    World.certs = tmp.join("certs.d")
    harness.run([World.binary, "hosts", "install", "--config", World.proxy.config_path, "--certs-dir", World.certs],
                env=acr.proxy_env())
    World.ctd_v2 = containerd_v2(tmp.join("containerd-v2.toml"), World.certs)


def tearDownModule():
    if World.proxy:
        World.proxy.stop()
    if World.acr:
        World.acr.stop()


def doctor(config_path=None, certs=None, containerd=None, image=f"{acr_like.DOMAIN}/{REPO}:{TAG}", extra=()):
    argv = [World.binary, "doctor", "--config", config_path or World.proxy.config_path,
            "--certs-dir", certs or World.certs, "--containerd-config", containerd or World.ctd_v2,
            "--timeout", "5s"]
    if image:
        argv += ["--image", image]
    started = time.monotonic()
    proc = harness.run(argv + list(extra), env=World.acr.proxy_env(), check=False, timeout=120)
    if "Sanitizer" in proc.stderr or "runtime error:" in proc.stderr:
        raise AssertionError(f"doctor hit a sanitizer report:\n{proc.stderr[-3000:]}")
    return proc, time.monotonic() - started


def lines(out, mark):
    return [x for x in out.splitlines() if x.startswith(mark + " ")]


def fix_after(out, line):
    """The `fix:` line right after a ✗ line ("" when missing)."""
    rows = out.splitlines()
    i = rows.index(line)
    return rows[i + 1].strip() if i + 1 < len(rows) and rows[i + 1].startswith("    fix: ") else ""


class Base(harness.TestCaseBase):
    def watched(self):
        return [World.proxy] if World.proxy and World.proxy.child and World.proxy.child.alive() else []

    def expect_failure(self, proc, want_failed, phrase, fix_phrase):
        """Exit 1; exactly `want_failed` ✗ lines; one names `phrase`, followed by a fix naming `fix_phrase`."""
        c = harness.Checks(self)
        out = proc.stdout
        c.eq(proc.returncode, 1, f"exit status\n{out}\n{proc.stderr}")
        failed = lines(out, CROSS)
        c.eq(len(failed), want_failed, f"number of \u2717 lines in\n{out}")
        hit = [x for x in failed if phrase in x]
        c.check(hit, f"a \u2717 line naming {phrase!r} in\n{out}")
        if hit:
            fix = fix_after(out, hit[0])
            c.check(fix_phrase in fix, f"its fix names {fix_phrase!r}: {fix!r}")
        for x in failed:
            c.check(fix_after(out, x).startswith("fix: "), f"every \u2717 is followed by a fix: {x!r}")
        c.check(out.rstrip().endswith("warning") or out.rstrip().endswith("warnings"), "the summary line ends it")
        for x in failed:
            print(f"        {x}\n          {fix_after(out, x)}", flush=True)
        return c, out


class T1Healthy(Base):
    def test_every_check_passes_and_nothing_secret_is_printed(self):
        proc, seconds = doctor()
        out = proc.stdout
        print(f"      doctor on a healthy node: {seconds:.2f}s\n" + "\n".join("        " + x for x in out.splitlines()),
              flush=True)
        c = harness.Checks(self)
        c.eq(proc.returncode, 0, f"exit status\n{out}\n{proc.stderr}")
        c.eq(lines(out, CROSS), [], "no \u2717")
        c.eq(lines(out, "!"), [], "no warning")
        ok = "\n".join(lines(out, CHECK))
        domain, digest = acr_like.DOMAIN, World.image.manifest.digest
        for want in ["configuration " + World.proxy.config_path + " is valid",
                     "credential source: ECS RAM role (instance metadata)",
                     f"ecs_ram_role/{acr_like.ECS_ROLE}",
                     f"ACR instance {acr_like.INSTANCE} (region {acr_like.REGION}",
                     f"GetAuthorizationToken at {World.acr.fake.url('acr')}: temporary user {acr_like.TEMP_USER}",
                     "configured domains match ListInstanceEndpoint",
                     f"{domain} (endpointOverrides \u2192 {World.acr.front_url}): IP address, no lookup, connected, "
                     "plain http",
                     f"{domain}: GET /v2/ \u2192 401, token realm http://127.0.0.1:",
                     f"(service {acr_like.SERVICE})",
                     os.path.join(World.certs, domain, "hosts.toml") + ": first [host] is this proxy "
                     f"(http://127.0.0.1:{World.proxy.port}), capabilities pull, resolve",
                     f'config_path = "{World.certs}" includes {World.certs}',
                     f"http://127.0.0.1:{World.proxy.admin_port}/readyz \u2192 200 ready",
                     f"image {domain}/{REPO}:{TAG}: {domain} is served (ACR instance {acr_like.INSTANCE})",
                     f"manifest HEAD through the proxy (http://127.0.0.1:{World.proxy.port}/v2/{REPO}/manifests/"
                     f"{TAG}?ns={domain}) \u2192 200, {digest}, application/vnd.oci.image.manifest.v1+json"]:
            c.check(want in ok, f"a \u2713 line with {want!r} in\n{out}")
        c.check("0 failed, 0 warnings" in out, "summary")
        # Secrets: the temporary passwords the realm has seen, and any bearer token, never appear.
        for pw in World.acr.seen_passwords():
            c.check(pw not in out and pw not in proc.stderr, "a temporary password was printed")
        c.check("Bearer " not in out, "no bearer value printed")
        c.check("password expires" in out and "AuthorizationToken=" not in out, "expiry shown, password not")
        c.done()


class T2Failures(Base):
    def test_hosts_toml_missing(self):
        empty = World.tmp.join("certs-empty")
        os.makedirs(empty, exist_ok=True)
        proc, _ = doctor(certs=empty, containerd=containerd_v2(World.tmp.join("ctd-empty.toml"), empty))
        c, _ = self.expect_failure(proc, 1, os.path.join(empty, acr_like.DOMAIN, "hosts.toml") + " is missing",
                                   f"hosts install --config {World.proxy.config_path} --certs-dir {empty}")
        c.done()

    def test_containerd_config_without_config_path(self):
        path = write(World.tmp.join("ctd-no-path.toml"),
                     'version = 2\n[plugins."io.containerd.grpc.v1.cri"]\n  sandbox_image = "pause:3.9"\n')
        proc, _ = doctor(containerd=path)
        c, _ = self.expect_failure(proc, 1, "config_path is not set",
                                   f'add config_path = "{World.certs}" under '
                                   '[plugins."io.containerd.grpc.v1.cri".registry]')
        c.done()

    def test_version_3_colon_list_with_the_transfer_service(self):
        path = write(World.tmp.join("ctd-v3-colon.toml"),
                     f'version = 3\n[plugins."io.containerd.cri.v1.images".registry]\n'
                     f'  config_path = "{World.certs}:/etc/docker/certs.d"\n')
        proc, _ = doctor(containerd=path)
        c, _ = self.expect_failure(proc, 1, "colon-separated list, and CRI pulls go through the transfer service",
                                   "use_local_image_pull = true")
        c.done()

    def test_image_on_a_host_the_proxy_does_not_serve(self):
        proc, _ = doctor(image=f"other-registry.cn-hangzhou.cr.aliyuncs.com/{REPO}:{TAG}")
        c, out = self.expect_failure(proc, 1, "is not a domain this proxy serves",
                                     f"pull it by a served domain (e.g. {acr_like.DOMAIN}/{REPO}:{TAG})")
        c.check(f"served: {acr_like.DOMAIN}" in out, "the served domains are listed")
        c.check("image address does not match the domain" in out, "named as the add-on's failure")
        c.done()

    def test_image_tag_that_does_not_exist(self):
        proc, _ = doctor(image=f"{acr_like.DOMAIN}/{REPO}:no-such-tag")
        c, out = self.expect_failure(proc, 1, "\u2192 404", "does not exist on " + acr_like.DOMAIN)
        c.check("MANIFEST_UNKNOWN" in out, f"the registry's error code is shown:\n{out}")
        c.done()

    def test_proxy_stopped(self):
        # A second proxy, stopped: the shared one keeps serving the other tests.
        p = proxy_mod.Proxy(World.binary, World.tmp.join("proxy-stopped"), World.acr.proxy_config(),
                            env=World.acr.proxy_env(), name="stopped").start()
        harness.run([World.binary, "hosts", "install", "--config", p.config_path, "--certs-dir",
                     World.tmp.join("certs-stopped")], env=World.acr.proxy_env())
        p.stop()
        certs = World.tmp.join("certs-stopped")
        proc, _ = doctor(config_path=p.config_path, certs=certs,
                         containerd=containerd_v2(World.tmp.join("ctd-stopped.toml"), certs))
        c, out = self.expect_failure(proc, 2, f"http://127.0.0.1:{p.admin_port}/readyz",
                                     "start the proxy")
        c.check(any("manifest HEAD through the proxy" in x for x in lines(out, CROSS)), "the HEAD fails too")
        c.done()

    def test_fake_acr_denies_get_authorization_token(self):
        World.acr.fake.configure({"acr": {"deny_principals": [f"ecs-role:{acr_like.ECS_ROLE}"]}})
        try:
            proc, _ = doctor()
        finally:
            World.acr.fake.configure({"acr": {"deny_principals": []}})
        c, out = self.expect_failure(proc, 1, "GetAuthorizationToken", "cr:GetAuthorizationToken")
        bad = [x for x in lines(out, CROSS) if "GetAuthorizationToken" in x]
        if bad:
            for want in [f"ACR instance {acr_like.INSTANCE}", f"(region {acr_like.REGION})", "Code=Forbidden.RAM",
                         "RAM permission cr:GetAuthorizationToken"]:
                c.check(want in bad[0], f"{want!r} in {bad[0]!r}")
        # ListInstanceEndpoint is denied too; the domains are configured, so that is a warning.
        c.check(any("ListInstanceEndpoint" in x for x in lines(out, "!")), f"a ListInstanceEndpoint warning:\n{out}")
        c.done()

    def test_slow_acr_openapi_is_cut_off_at_the_timeout(self):
        World.acr.fake.configure({"delay_ms": {"acr": 4000}})
        try:
            proc, seconds = doctor(extra=["--timeout", "500ms"])
        finally:
            World.acr.fake.configure({"delay_ms": {"acr": 0}})
        c, out = self.expect_failure(proc, 1, "GetAuthorizationToken", "reachable from this node")
        # Two OpenAPI calls at most 0.5 s each, nothing else slow: far below the fake's 4 s.
        c.check(seconds < 3.5, f"doctor took {seconds:.1f}s with --timeout 500ms")
        c.check(any("ListInstanceEndpoint" in x for x in lines(out, "!")), "ListInstanceEndpoint timed out too (!)")
        c.done()

    def test_configured_registry_that_does_not_resolve(self):
        # No endpointOverrides entry: doctor looks the name up, as the proxy would
        # (`.invalid` never resolves, and this namespace has no DNS anyway).
        cfg = dict(World.proxy.config)
        cfg["registries"] = [{"host": "registry.doctor.invalid", "auth": {"type": "anonymous"}}]
        path = write(World.tmp.join("unresolvable.yaml"), proxy_mod.to_yaml(cfg) + "\n")
        proc, _ = doctor(config_path=path)
        # Its hosts.toml was never installed either: two ✗.
        c, out = self.expect_failure(proc, 2, "registry.doctor.invalid (https://registry.doctor.invalid): cannot "
                                     "resolve registry.doctor.invalid", "make registry.doctor.invalid resolvable")
        c.check(f"{acr_like.DOMAIN} (endpointOverrides" in out, "the overridden ACR domain is still checked")
        c.done()

    def test_tls_upstream_verified_with_its_ca_and_refused_with_another(self):
        reg = registry_mod.Registry(World.tmp.join("tls-registry"), "tls-registry", users=True, tls=True).start()
        try:
            other_ca = registry_mod.make_tls_material(World.tmp.join("other-ca"))["ca"]
            good, bad = "tls-good.doctor.invalid", "tls-bad.doctor.invalid"
            cfg = dict(World.proxy.config)
            cfg["registries"] = [
                {"host": good, "auth": {"type": "anonymous"}, "caFile": reg.tls["ca"]},
                {"host": bad, "auth": {"type": "anonymous"}, "caFile": other_ca},
            ]
            cfg["endpointOverrides"] = dict(cfg["endpointOverrides"], **{good: reg.url, bad: reg.url})
            path = write(World.tmp.join("tls.yaml"), proxy_mod.to_yaml(cfg) + "\n")
            certs = World.tmp.join("certs-tls")
            harness.run([World.binary, "hosts", "install", "--config", path, "--certs-dir", certs],
                        env=World.acr.proxy_env())
            proc, _ = doctor(config_path=path, certs=certs, containerd=containerd_v2(World.tmp.join("ctd-tls.toml"),
                                                                                      certs))
        finally:
            reg.stop()
        c, out = self.expect_failure(proc, 1, f"{bad} (endpointOverrides \u2192 {reg.url}",
                                     f"set caFile of registries[] {bad} to the CA")
        ok = "\n".join(lines(out, CHECK))
        c.check(f"{good} (endpointOverrides \u2192 {reg.url}): IP address, no lookup, connected, TLS handshake ok, "
                "certificate valid for 127.0.0.1" in ok, f"the good CA verifies:\n{out}")
        c.check(f"{good}: GET /v2/ \u2192 401 with a Basic challenge" in ok, "htpasswd registry: Basic")
        c.check(any("certificate verify failed" in x for x in lines(out, CROSS)), "the wrong CA is named")
        c.done()

    def test_discovered_domain_without_hosts_toml(self):
        # No domains configured: the proxy serves what ListInstanceEndpoint lists. An
        # endpointOverrides entry may only name configured hosts, so doctor looks the
        # made-up name up (inside this namespace no query leaves the machine).
        cfg = dict(World.proxy.config)
        cfg["acrInstances"] = [dict(cfg["acrInstances"][0])]
        del cfg["acrInstances"][0]["domains"]
        del cfg["endpointOverrides"]
        path = write(World.tmp.join("discovered.yaml"), proxy_mod.to_yaml(cfg) + "\n")
        empty = World.tmp.join("certs-discovered")
        os.makedirs(empty, exist_ok=True)
        proc, _ = doctor(config_path=path, certs=empty,
                         containerd=containerd_v2(World.tmp.join("ctd-discovered.toml"), empty))
        # `hosts install` writes configured domains only: the fix points at serve --certs-dir.
        c, out = self.expect_failure(proc, 1, os.path.join(empty, acr_like.DOMAIN, "hosts.toml") + " is missing",
                                     f"run serve with --certs-dir {empty}")
        c.check(f"serving the domains ListInstanceEndpoint lists: {acr_like.DOMAIN} (internet)" in out,
                f"the discovered domain is served:\n{out}")
        # Not reaching a discovered domain is a warning (a -vpc name outside its VPC is expected to fail).
        c.check(any("cannot resolve" in x and "a discovered domain" in x for x in lines(out, "!")),
                f"the lookup failure is a warning:\n{out}")
        c.done()


class T3Usage(Base):
    def test_invalid_configuration_exits_2(self):
        path = write(World.tmp.join("bad.yaml"), 'listen: "not an address"\n')
        proc, _ = doctor(config_path=path)
        c = harness.Checks(self)
        c.eq(proc.returncode, 2, f"exit status\n{proc.stdout}\n{proc.stderr}")
        c.check(any("listen" in x for x in lines(proc.stdout, CROSS)), f"a \u2717 naming the key:\n{proc.stdout}")
        c.done()

    def test_bad_timeout_is_a_usage_error(self):
        proc, _ = doctor(extra=["--timeout", "soon"])
        self.assertEqual(proc.returncode, 2, proc.stderr)
        self.assertIn("--timeout", proc.stderr)


if __name__ == "__main__":
    # The ACR domain is made up: run where not even its lookup can leave the machine.
    harness.enter_private_netns()
    sys.exit(harness.run_tests())
