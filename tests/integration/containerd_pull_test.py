#!/usr/bin/env python3
"""containerd pulls an image through the proxy with no credentials of its own.

A real containerd 1.6 (its own root, state and socket in a temp dir; CRI
disabled; native snapshotter) pulls `registry.test.invalid/test/image:<tag>`
with `ctr images pull --hosts-dir DIR` and no --user. The registry behind it
is a docker-registry with htpasswd auth; only the proxy knows the password.

Why the pull can only succeed through the proxy (what works with containerd
1.6 here, no network namespace needed):
  * the image's registry host is a made-up name under `.invalid` (RFC 6761:
    never resolves). hosts.toml sends pulls to the mirror
    http://127.0.0.1:<proxy port> first and names `server =
    "https://registry.test.invalid"` as the fallback; containerd dials the
    mirror by its IP, so nothing needs resolving on the success path, and
    the fallback fails at DNS whatever happens. The proxy maps the name to
    the loopback registry with endpointOverrides.
  * containerd adds `?ns=registry.test.invalid` to every mirror request
    (the mirror host differs from the image's host), which is how the proxy
    picks the registry and its credentials.
  * a control pull straight from the registry (plain HTTP, no credentials)
    must fail with 401: the registry really enforces auth.

Usage: containerd_pull_test.py --proxy build/proxy/acr-credential-proxy
"""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))

import containerd as containerd_mod  # noqa: E402
import harness  # noqa: E402
import oci_image  # noqa: E402
import proxy as proxy_mod  # noqa: E402
import registry as registry_mod  # noqa: E402
from oci_image import LayerSpec  # noqa: E402

REGISTRY_HOST = "registry.test.invalid"
REPO = "team/app"


class World:
    tmp = None
    reg = None
    proxy = None
    ctd = None
    image = None  # pulled by the tag of its manifest
    image2 = None  # other content, pulled by the tag of its index
    hosts_dir = None


def setUpModule():
    harness.require_tools("docker-registry", "skopeo", "htpasswd", "containerd", "ctr")
    if os.geteuid() != 0:
        print("SKIP: containerd needs root (run as root, as scripts/test does on CI)", flush=True)
        sys.exit(harness.SKIP_EXIT)
    binary = proxy_mod.find_binary()
    World.tmp = tmp = harness.TempDir("containerd")
    World.image = oci_image.build_image(
        tmp.join("layout"), [LayerSpec(2_000_000, 20, gzip_level=1), LayerSpec(300_000, 3), LayerSpec(1000, 1)],
        tag="v1", seed="containerd-pull")
    World.image2 = oci_image.build_image(
        tmp.join("layout2"), [LayerSpec(500_000, 5), LayerSpec(1000, 1)],
        tag="v2", index_tag="v2-index", seed="containerd-pull-2")
    World.reg = registry_mod.Registry(tmp.join("registry"), "registry", users=True).start()
    authfile = World.reg.authfile(tmp.join("push-auth.json"))
    oci_image.push(World.image.layout, "v1", World.reg.host, REPO, authfile=authfile)
    oci_image.push(World.image2.layout, "v2-index", World.reg.host, REPO, authfile=authfile, all_images=True)
    os.remove(authfile)  # nothing left for anyone to find

    entry, overrides, env = proxy_mod.registry_entry(World.reg, tmp.path, host=REGISTRY_HOST)
    World.proxy = proxy_mod.Proxy(binary, tmp.join("proxy"),
                                  {"registries": [entry], "endpointOverrides": overrides}, env=env).start()
    World.hosts_dir = tmp.join("certs.d")
    containerd_mod.write_hosts_toml(World.hosts_dir, REGISTRY_HOST, f"http://127.0.0.1:{World.proxy.port}")
    World.ctd = containerd_mod.Containerd(tmp.join("containerd")).start()


def tearDownModule():
    if World.ctd:
        World.ctd.stop()
    if World.proxy:
        World.proxy.stop()
    if World.reg:
        World.reg.stop()



class Base(harness.TestCaseBase):
    def watched(self):  # after each test: the proxy must still be alive
        return [World.proxy] if World.proxy else []

class ContainerdPull(Base):
    def _pull(self, tag, image, want_digest):
        ref = f"{REGISTRY_HOST}/{REPO}:{tag}"
        before = len(World.reg.access_log())
        proc, seconds = World.ctd.pull(ref, World.hosts_dir, check=False)
        self.assertEqual(proc.returncode, 0, f"ctr pull failed:\n{proc.stdout[-1500:]}\n{proc.stderr[-1500:]}\n"
                         f"proxy log:\n{World.proxy.child.log_tail(20)}")
        digest = World.ctd.image_digest(ref)
        print(f"      pulled {ref} -> {digest} in {seconds:.2f}s", flush=True)
        self.assertEqual(digest, want_digest)
        # The content really came through: the registry served the manifest and every blob.
        served = [(m, uri.split("?")[0], s) for m, uri, s in World.reg.access_log()[before:]]
        for blob in image.blobs():
            self.assertIn(("GET", f"/v2/{REPO}/blobs/{blob.digest}", 200), served)
        # Unpacked with the native snapshotter: the layers are usable.
        check = World.ctd.ctr("images", "check").stdout
        line = next((x for x in check.splitlines() if x.startswith(ref)), "")
        self.assertIn("complete", line, f"ctr images check: {check}")
        # The proxy logged the requests for the registry, never its password, and is still ready.
        log = World.proxy.log_text()
        self.assertIn(REGISTRY_HOST, log, "the proxy logged requests for the registry")
        self.assertNotIn(World.reg.user()[1], log, "the password must never be logged")
        self.assertEqual(World.proxy.admin("/readyz").status, 200)

    def test_control_direct_pull_without_credentials_is_refused(self):
        proc = World.ctd.ctr("images", "pull", "--plain-http", f"{World.reg.host}/{REPO}:v1", check=False, timeout=120)
        self.assertNotEqual(proc.returncode, 0, "the registry must refuse a pull without credentials")
        self.assertRegex(proc.stdout + proc.stderr, r"401|[Uu]nauthorized")

    def test_pull_by_tag_through_proxy_without_credentials(self):
        self._pull("v1", World.image, World.image.manifest.digest)

    def test_pull_index_by_tag_through_proxy(self):
        self._pull("v2-index", World.image2, World.image2.index.digest)


if __name__ == "__main__":
    # The image's registry name is made up: run where not even its lookup can leave the machine.
    harness.enter_private_netns()
    started = time.monotonic()
    status = harness.run_tests()
    print(f"containerd_pull_test: {time.monotonic() - started:.1f}s", flush=True)
    sys.exit(status)
