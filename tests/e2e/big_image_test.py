#!/usr/bin/env python3
"""A real containerd pulls a 512 MiB single-layer private image through the proxy.

Same world as pull_test.py (ACR-like registry, proxy from `hosts install`,
containerd with CRI, private network namespace). The layer is 512 MiB of
seeded random bytes in one uncompressed tar, generated once per run into the
temp dir and uploaded byte for byte (monolithic upload streamed from disk).

  T1 through CRI: image id, repo digest; the content store holds the layer
     with its exact size and a sha256 recomputed here; the layer went
     registry -> 307 -> OSS stand-in in one GET of every byte, without
     Authorization; the proxy answered it with the 307 and carried none of
     the 512 MiB (access log bytes=0); the OSS stand-in's RSS stayed small.
  T2 the same with `ctr images pull --hosts-dir`, after containerd forgot
     everything.

Usage: big_image_test.py --proxy build/proxy/acr-credential-proxy
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import e2e_support as e2e  # noqa: E402
from e2e_support import DOMAIN, CRI_NAMESPACE, CTR_NAMESPACE, acr_like, harness, proxy_mod  # noqa: E402

REPO = "e2e/big"
SIZE = 512 << 20


class World:
    tmp = None
    acr = None
    node = None
    image = None
    timings = []


def note(line):
    World.timings.append(line)
    print(f"      {line}", flush=True)


def setUpModule():
    e2e.require_everything()
    binary = proxy_mod.find_binary()
    World.tmp = tmp = harness.TempDir("e2e-big")
    started = time.monotonic()
    World.acr = acr = acr_like.AcrLike(tmp.join("acr")).start()
    World.image = e2e.big(tmp.join("big"), seed="e2e-big", size=SIZE)
    built = time.monotonic()
    acr.upload_image(World.image, REPO, "v1")
    note(f"setup: 512 MiB layer generated in {built - started:.1f}s, uploaded in {time.monotonic() - built:.1f}s")
    World.node = e2e.Node(tmp, acr, binary).start()


def tearDownModule():
    if World.node:
        World.node.stop()
    if World.acr:
        World.acr.stop()
    if World.timings:
        print("timings:\n  " + "\n  ".join(World.timings), flush=True)


class Base(harness.TestCaseBase):
    def watched(self):
        return [World.node.proxy] if World.node and World.node.proxy else []

    def setUp(self):
        self.assertEqual(World.node.forget(), {}, "containerd still holds content")
        World.acr.reset_stats()
        self.mark = len(World.node.proxy.log_text())

    def common_checks(self, c, namespace, seconds, how):
        img = World.image
        layer = img.layers[0]
        c.eq(layer.size > SIZE, True, "layer size (512 MiB of payload plus tar headers)")
        e2e.check_content(c, World.node, namespace, [img.manifest] + img.blobs())
        e2e.check_redirect_path(c, World.acr, img.blobs())
        lines = [x for x in World.node.proxy.log_text()[self.mark:].splitlines()
                 if " access: " in x and "kind=blob" in x]
        c.eq(len(lines), len(img.blobs()), "blob requests in the proxy's access log")
        c.check(all("status=307" in x and "bytes=0" in x for x in lines),
                f"the proxy answered blobs with 307 and no body: {lines}")
        # The OSS stand-in streamed the layer (sendfile); it never held it in memory.
        rss = World.acr.front_rss_kib()
        c.check(rss < 128 * 1024, f"the front/OSS stand-in's RSS is {rss} KiB after serving 512 MiB")
        note(f"{how} pull of {layer.size / (1 << 20):.1f} MiB: {seconds:.2f}s "
             f"({layer.size / (1 << 20) / seconds:.0f} MiB/s end to end incl. unpack)")


class T1CriBigPullTest(Base):
    def test_512mib_single_layer_image_through_cri(self):
        ref = f"{DOMAIN}/{REPO}:v1"
        image_ref, seconds = World.node.cri_pull(ref, timeout=600)
        c = harness.Checks(self)
        c.eq(image_ref, World.image.config.digest, "PullImage image_ref")
        status = World.node.cri.image_status(ref)
        c.eq(status and status["repo_digests"], [f"{DOMAIN}/{REPO}@{World.image.manifest.digest}"], "repo digests")
        self.common_checks(c, CRI_NAMESPACE, seconds, "CRI")
        c.done()


class T2CtrBigPullTest(Base):
    def test_512mib_single_layer_image_with_ctr(self):
        ref = f"{DOMAIN}/{REPO}:v1"
        proc, seconds = World.node.ctr_pull(ref, timeout=600)
        self.assertEqual(proc.returncode, 0, f"ctr pull: {proc.stdout[-800:]} {proc.stderr[-800:]}")
        c = harness.Checks(self)
        c.eq(World.node.ctd.image_digest(ref), World.image.manifest.digest, "target digest")
        self.common_checks(c, CTR_NAMESPACE, seconds, "ctr")
        c.done()


if __name__ == "__main__":
    harness.enter_private_netns()
    started = time.monotonic()
    status = harness.run_tests()
    print(f"e2e big_image_test: {time.monotonic() - started:.1f}s", flush=True)
    sys.exit(status)
