#!/usr/bin/env python3
"""A 1 GiB blob streamed through the proxy keeps its memory flat.

The blob (an uncompressed tar layer built on disk by oci_image, never held in
memory) is uploaded to a docker-registry with htpasswd auth as-is (a
monolithic upload: skopeo would re-compress an uncompressed layer). Then:

  1. fast client: GET through the proxy, read in 64 KiB pieces and hashed,
     while a sampler reads the proxy's VmRSS from /proc every 10 ms;
  2. stalled client: the client reads 1 MiB, then stops reading while the
     sampler watches for 3 s (the registry keeps sending as fast as it can:
     without backpressure the proxy would buffer hundreds of MiB), then reads
     the rest; the digest still matches;
  3. a Range read of the blob's last MiB.

Asserts: status 200, Content-Length, sha256 equals the digest, and the peak
RSS stays under 64 MiB in every phase. Prints the RSS at idle and the peaks,
the duration and the throughput (and the same GET straight from the
registry, for comparison).

Registered in the 'rss' suite too: the ASan build skips it (sanitizer shadow
memory makes RSS meaningless). ACP_BIG_BLOB_MIB overrides the size for local
iteration only.

Usage: big_blob_test.py --proxy build/proxy/acr-credential-proxy
"""

import hashlib
import os
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))

import harness  # noqa: E402
import oci_image  # noqa: E402
import proxy as proxy_mod  # noqa: E402
import registry as registry_mod  # noqa: E402
from proc_stats import RssSampler  # noqa: E402
from oci_image import LayerSpec  # noqa: E402

MIB = 1 << 20
SIZE_MIB = int(os.environ.get("ACP_BIG_BLOB_MIB", "1024"))
RSS_LIMIT_KIB = 64 * 1024
READ_SIZE = 64 * 1024
REPO = "big/blob"


class World:
    tmp = None
    reg = None
    proxy = None
    blob = None
    idle_kib = None
    results = {}


def _ns():
    return "?" + urllib.parse.urlencode({"ns": World.reg.host})


def _stream(client_port, path, stall_after=None, stall_seconds=0.0, sampler=None):
    """GETs path, reads it in READ_SIZE pieces and hashes it.

    With stall_after, stops reading after that many bytes and lets the
    sampler watch for stall_seconds (a measurement window, not synchronisation).
    Returns (status, content_length, digest, bytes, seconds, ttfb, stall_max_kib).
    """
    client = harness.Client("127.0.0.1", client_port, timeout=120)
    try:
        t0 = time.monotonic()
        resp = client.start("GET", path)
        ttfb = time.monotonic() - t0
        h = hashlib.sha256()
        n = 0
        stall_max = None
        while True:
            if stall_after is not None and n >= stall_after and stall_max is None:
                sampler.max_kib = 0  # the peak of the stall window alone
                deadline = time.monotonic() + stall_seconds
                while time.monotonic() < deadline:
                    time.sleep(0.05)
                stall_max = sampler.max_kib
            chunk = resp.read(READ_SIZE)
            if not chunk:
                break
            h.update(chunk)
            n += len(chunk)
        return (resp.status, resp.getheader("Content-Length"), "sha256:" + h.hexdigest(), n,
                time.monotonic() - t0, ttfb, stall_max)
    finally:
        client.close()


def setUpModule():
    harness.require_tools("docker-registry", "htpasswd")
    binary = proxy_mod.find_binary()
    World.tmp = harness.TempDir("big-blob")
    t0 = time.monotonic()
    image = oci_image.build_image(World.tmp.join("layout"), [LayerSpec(SIZE_MIB * MIB, 1, compression="none")],
                                  tag="big", seed="big-blob")
    World.blob = image.layers[0]
    t1 = time.monotonic()
    World.reg = registry_mod.Registry(World.tmp.join("registry"), "registry", users=True).start()
    World.reg.upload_blob(REPO, World.blob.path, World.blob.digest, World.blob.size)
    t2 = time.monotonic()
    print(f"setup: {World.blob.size / MIB:.0f} MiB blob {World.blob.digest[:19]} built in {t1 - t0:.1f}s, "
          f"uploaded in {t2 - t1:.1f}s", flush=True)
    entry, overrides, env = proxy_mod.registry_entry(World.reg, World.tmp.path)
    World.proxy = proxy_mod.Proxy(binary, World.tmp.join("proxy"),
                                  {"registries": [entry], "endpointOverrides": overrides}, env=env).start()
    # Warm up (connection pool, first allocations), then measure idle.
    for path in ("/v2/", f"/v2/{REPO}/manifests/none{_ns()}", f"/v2/{REPO}/blobs/{World.blob.digest}{_ns()}"):
        World.proxy.request("HEAD", path)
    World.idle_kib = World.proxy.rss_kib()


def tearDownModule():
    if World.proxy:
        World.proxy.stop()
    if World.reg:
        World.reg.stop()
    r = World.results
    if World.idle_kib is not None:
        print(f"RSS idle {World.idle_kib / 1024:.1f} MiB; peak while streaming {r.get('stream_peak', 0) / 1024:.1f} MiB; "
              f"peak while the client stalled {r.get('stall_peak', 0) / 1024:.1f} MiB; limit {RSS_LIMIT_KIB / 1024:.0f} MiB",
              flush=True)



class Base(harness.TestCaseBase):
    def watched(self):  # after each test: the proxy must still be alive
        return [World.proxy] if World.proxy else []

class BigBlob(Base):
    def test_1_streams_with_flat_memory(self):
        path = f"/v2/{REPO}/blobs/{World.blob.digest}{_ns()}"
        with RssSampler(World.proxy) as s:
            status, length, digest, n, secs, ttfb, _ = _stream(World.proxy.port, path)
        World.results["stream_peak"] = s.max_kib
        mbps = n / MIB / secs if secs else 0
        print(f"      proxy: {n / MIB:.0f} MiB in {secs:.2f}s ({mbps:.0f} MiB/s), first byte after {ttfb * 1000:.1f} ms, "
              f"RSS idle {World.idle_kib / 1024:.1f} MiB, peak {s.max_kib / 1024:.1f} MiB ({s.samples} samples)", flush=True)
        self.assertEqual(status, 200)
        self.assertEqual(length, str(World.blob.size))
        self.assertEqual(n, World.blob.size)
        self.assertEqual(digest, World.blob.digest)
        self.assertGreater(s.samples, 10, "the sampler ran during the transfer")
        self.assertLess(s.max_kib, RSS_LIMIT_KIB, f"peak RSS {s.max_kib} KiB while streaming")

    def test_2_stalled_client_applies_backpressure(self):
        path = f"/v2/{REPO}/blobs/{World.blob.digest}{_ns()}"
        with RssSampler(World.proxy) as s:
            status, _, digest, n, secs, _, stall_max = _stream(World.proxy.port, path, stall_after=MIB,
                                                                stall_seconds=3.0, sampler=s)
            overall = max(s.max_kib, stall_max or 0)
        World.results["stall_peak"] = stall_max
        print(f"      stalled client: peak RSS during the 3 s stall {stall_max / 1024:.1f} MiB, then "
              f"{n / MIB:.0f} MiB in {secs:.2f}s", flush=True)
        self.assertEqual((status, digest), (200, World.blob.digest))
        self.assertLess(stall_max, RSS_LIMIT_KIB, "the proxy buffered while the client did not read")
        self.assertLess(overall, RSS_LIMIT_KIB)

    def test_3_range_at_the_end_of_the_big_blob(self):
        size = World.blob.size
        start = size - MIB
        r = World.proxy.request("GET", f"/v2/{REPO}/blobs/{World.blob.digest}{_ns()}", [("Range", f"bytes={start}-")])
        self.assertEqual(r.status, 206)
        self.assertEqual(r.header("Content-Range"), f"bytes {start}-{size - 1}/{size}")
        self.assertEqual(r.body, World.blob.read(start))

    def test_4_direct_from_registry_for_comparison(self):
        auth = [("Authorization", harness.basic_auth(*World.reg.user()))]
        client = harness.Client("127.0.0.1", World.reg.port, timeout=120)
        try:
            t0 = time.monotonic()
            resp = client.start("GET", f"/v2/{REPO}/blobs/{World.blob.digest}", auth)
            h, n = hashlib.sha256(), 0
            while True:
                chunk = resp.read(READ_SIZE)
                if not chunk:
                    break
                h.update(chunk)
                n += len(chunk)
            secs = time.monotonic() - t0
        finally:
            client.close()
        print(f"      direct: {n / MIB:.0f} MiB in {secs:.2f}s ({n / MIB / secs:.0f} MiB/s)", flush=True)
        self.assertEqual("sha256:" + h.hexdigest(), World.blob.digest)


if __name__ == "__main__":
    sys.exit(harness.run_tests())
