"""Shared pieces of the end-to-end tests (tests/e2e/*_test.py) and pull_timing.py.

A "node" here is what a Kubernetes node runs: the proxy (with the ACR-like
registry's config, credentials from the fake ECS RAM role), hosts.toml
written by `acr-credential-proxy hosts install` into a certs dir, and a real
containerd 1.6 with the CRI plugin whose registry `config_path` is that certs
dir. Nothing in containerd's config, environment or hosts.toml holds a
credential.

Images (tests/support/oci_image.py layouts, deterministic per seed):
  multiarch()    an OCI index of three platforms (the host's first), two layers each;
  many_layers()  one image with N gzip layers;
  big()          one uncompressed single-layer image of SIZE random bytes.

check_content() verifies what containerd stored against what was pushed: the
digests `ctr content ls` lists for the namespace, and for each expected blob
the file in containerd's content store: its size and its sha256 recomputed
here (containerd already refused anything whose digest did not match when it
committed it; this is an independent look).
"""

import hashlib
import json
import os
import shutil
import sys
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(_HERE, "..", "support"))

import acr_like  # noqa: E402
import containerd as containerd_mod  # noqa: E402
import cri  # noqa: E402
import harness  # noqa: E402
import oci_image  # noqa: E402
import proxy as proxy_mod  # noqa: E402
from oci_image import LayerSpec  # noqa: E402

DOMAIN = acr_like.DOMAIN
CTR_NAMESPACE = "e2e-ctr"
CRI_NAMESPACE = containerd_mod.Containerd.CRI_NAMESPACE


def require_everything():
    """Exits 77 (skip) naming what is missing: root, tools, python3-grpcio."""
    harness.require_tools("docker-registry", "skopeo", "containerd", "ctr", "unshare", "ip")
    if os.geteuid() != 0:
        print("SKIP: containerd needs root (run as root, as scripts/test does on CI)", flush=True)
        sys.exit(harness.SKIP_EXIT)
    ok, reason = cri.available()
    if not ok:
        print(f"SKIP: {reason} (for {sys.executable})", flush=True)
        sys.exit(harness.SKIP_EXIT)


# ---------------------------------------------------------------------------
# images


class MultiArch:
    """An OCI image index over per-platform images; `host` is the one containerd picks."""

    def __init__(self, layout, index, images, platforms):
        self.layout, self.index, self.images, self.platforms = layout, index, images, platforms

    @property
    def host(self):
        return self.images[0]

    def other_blobs(self):
        return [b for img in self.images[1:] for b in [img.manifest] + img.blobs()]


def _platforms():
    host = oci_image.host_platform()
    others = [p for p in ({"architecture": "arm64", "os": "linux", "variant": "v8"},
                          {"architecture": "amd64", "os": "linux"},
                          {"architecture": "ppc64le", "os": "linux"}) if p["architecture"] != host["architecture"]]
    return [host] + others[:2]


def multiarch(layout, seed, tag="v1"):
    """An OCI layout whose `tag` names an index of 3 platforms (2 gzip layers each)."""
    os.makedirs(os.path.join(layout, "blobs", "sha256"), exist_ok=True)
    images, platforms = [], _platforms()
    for i, plat in enumerate(platforms):
        img = oci_image.build_image(f"{layout}.{i}", [LayerSpec(400_000, 4), LayerSpec(30_000, 2)], tag="p",
                                    seed=f"{seed}/{plat['architecture']}", platform_=plat)
        for b in [img.manifest] + img.blobs():
            dest = os.path.join(layout, "blobs", "sha256", b.digest.split(":", 1)[1])
            shutil.copyfile(b.path, dest)
            b.path = dest
        shutil.rmtree(f"{layout}.{i}")
        images.append(img)
    data = json.dumps({"schemaVersion": 2, "mediaType": oci_image.OCI_INDEX,
                       "manifests": [img.manifest.descriptor(platform=plat) for img, plat in zip(images, platforms)]},
                      separators=(",", ":")).encode()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    path = os.path.join(layout, "blobs", "sha256", digest.split(":", 1)[1])
    with open(path, "wb") as f:
        f.write(data)
    index = oci_image.Blob(digest, len(data), oci_image.OCI_INDEX, path)
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "mediaType": oci_image.OCI_INDEX, "manifests": [
            index.descriptor(annotations={"org.opencontainers.image.ref.name": tag})]}, f)
    return MultiArch(layout, index, images, platforms)


def many_layers(layout, seed, layers=20, tag="v1"):
    """One image with `layers` gzip layers of ~150 kB each (distinct contents)."""
    return oci_image.build_image(layout, [LayerSpec(150_000 + 1000 * i, 3, gzip_level=1) for i in range(layers)],
                                 tag=tag, seed=seed)


def small(layout, seed, tag="v1"):
    return oci_image.build_image(layout, [LayerSpec(200_000, 2), LayerSpec(20_000, 1)], tag=tag, seed=seed)


def big(layout, seed, size=512 << 20, tag="v1"):
    """One uncompressed layer holding one file of `size` seeded random bytes."""
    return oci_image.build_image(layout, [LayerSpec(size, 1, compression="none")], tag=tag, seed=seed)


# ---------------------------------------------------------------------------
# the node


class Node:
    """The proxy + hosts.toml (from `hosts install`) + containerd with CRI."""

    def __init__(self, tmp, acr, binary, proxy_extra=None, log_level="debug", proxy_args=()):
        self.tmp, self.acr, self.binary = tmp, acr, binary
        self.proxy_extra = dict(proxy_extra or {})
        self.proxy_args = list(proxy_args)  # after `serve --config FILE` (e.g. --kubeconfig F --node-name N)
        self.log_level = log_level
        self.certs_dir = tmp.join("certs.d")
        os.makedirs(self.certs_dir, exist_ok=True)
        self.proxy = None
        self.proxies = []  # every proxy started, for the log checks
        self.ctd = None
        self.cri = None
        self.hosts_install_output = None

    def start(self):
        self.start_proxy()
        self.ctd = containerd_mod.Containerd(self.tmp.join("containerd"), namespace=CTR_NAMESPACE,
                                             cri_config_path=self.certs_dir).start()
        self.cri = self.ctd.cri()
        harness.wait_until(lambda: self.cri.version(), 30, "containerd's CRI image service")
        return self

    def start_proxy(self):
        """A proxy on new ports, then `hosts install` so hosts.toml points at it."""
        n = len(self.proxies)
        cfg = self.acr.proxy_config(log={"level": self.log_level, "format": "text"}, **self.proxy_extra)
        self.proxy = proxy_mod.Proxy(self.binary, self.tmp.join(f"proxy{n}"), cfg, env=self.acr.proxy_env(),
                                     name=f"proxy{n}")
        self.proxy.extra_args = list(self.proxy_args)
        self.proxy.start()
        self.proxies.append(self.proxy)
        self.hosts_install_output = self.hosts_install()
        return self.proxy

    def hosts_install(self):
        """acr-credential-proxy hosts install --config <the proxy's> --certs-dir <certs.d>."""
        return harness.run([self.binary, "hosts", "install", "--config", self.proxy.config_path,
                            "--certs-dir", self.certs_dir], timeout=60).stdout

    def hosts_toml(self):
        with open(os.path.join(self.certs_dir, DOMAIN, "hosts.toml")) as f:
            return f.read()

    def stop(self):
        if self.cri is not None:
            self.cri.close()
        if self.ctd is not None:
            self.ctd.stop()
        for p in self.proxies:
            p.stop(check=False)

    # -- pulls -----------------------------------------------------------------

    def cri_pull(self, ref, timeout=300, **auth):
        """PullImage through CRI (no AuthConfig unless given); returns (image_ref, seconds)."""
        started = time.monotonic()
        image_ref = self.cri.pull_image(ref, timeout=timeout, **auth)
        return image_ref, time.monotonic() - started

    def ctr_pull(self, ref, check=False, timeout=300):
        """ctr images pull --hosts-dir <certs.d> (no --user); returns (CompletedProcess, seconds)."""
        return self.ctd.pull(ref, self.certs_dir, check=check, timeout=timeout)

    def forget(self):
        """Every image, blob and snapshot in both namespaces gone: the next pull fetches all."""
        left = {}
        for ns in (CRI_NAMESPACE, CTR_NAMESPACE):
            left.update(self.ctd.forget_everything(ns))
        return left

    def ingests(self):
        """Unfinished downloads in containerd's content store (one directory each)."""
        d = os.path.join(self.ctd.dir, "root", "io.containerd.content.v1.content", "ingest")
        return os.listdir(d) if os.path.isdir(d) else []

    def content_path(self, digest):
        return os.path.join(self.ctd.dir, "root", "io.containerd.content.v1.content", "blobs",
                            *digest.split(":", 1))


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            piece = f.read(4 << 20)
            if not piece:
                break
            h.update(piece)
    return "sha256:" + h.hexdigest()


def check_content(checks, node, namespace, blobs, absent=()):
    """Records in `checks` (harness.Checks) whether every blob in `blobs` (oci_image.Blob)
    is in containerd's content store for `namespace` with its exact size and digest,
    and none of `absent` is."""
    listed = node.ctd.content(namespace)
    for b in blobs:
        path = node.content_path(b.digest)
        ok = checks.check(b.digest in listed, f"{namespace}: {b.media_type} {b.digest[:19]} listed by ctr content ls")
        if ok and checks.check(os.path.exists(path), f"{b.digest[:19]} in the content store"):
            checks.eq(os.path.getsize(path), b.size, f"{b.digest[:19]} size")
            checks.eq(sha256_file(path), b.digest, f"{b.digest[:19]} sha256 recomputed")
    for b in absent:
        checks.check(b.digest not in listed, f"{namespace}: {b.digest[:19]} ({b.media_type}) must not be fetched")


def oss_gets(stats):
    """{digest: [(status, bytes, had Authorization)]} of the OSS stand-in's GETs."""
    out = {}
    for e in stats["oss"]:
        if e["m"] == "GET":
            out.setdefault(e["digest"], []).append((e["s"], e["bytes"], e["auth"]))
    return out


def check_redirect_path(checks, acr, blobs, stats=None):
    """Every blob went registry -> 307 -> OSS stand-in: one 307 for its GET at the
    registry front, one full 200 GET at the OSS stand-in, never with Authorization."""
    stats = stats or acr.stats()
    gets = oss_gets(stats)
    front = [(e["m"], e["p"], e["s"]) for e in stats["front"]]
    for b in blobs:
        checks.eq(gets.get(b.digest), [(200, b.size, False)], f"OSS GETs of {b.media_type} {b.digest[:19]}")
        redirects = [x for x in front if x[1].endswith(f"/blobs/{b.digest}") and x[2] == 307]
        checks.check(len(redirects) >= 1, f"no 307 at the registry front for {b.digest[:19]}: "
                     f"{[x for x in front if b.digest in x[1]]}")
    checks.check(not any(e["auth"] for e in stats["oss"]), "a request to the OSS stand-in carried Authorization")
    return gets
