"""Deterministic OCI image layouts for tests, and pushing them with skopeo.

build_image() writes an OCI image layout (oci-layout, index.json, blobs/sha256/)
holding one image: a config and N layers of generated files. The same
arguments always give the same bytes (fixed tar headers, gzip mtime 0,
seeded pseudo-random file contents), hence the same digests.

Layers are streamed to disk through hashing writers, so a 1 GiB layer never
sits in memory; store big layers uncompressed (`compression="none"`,
media type application/vnd.oci.image.layer.v1.tar) — gzip of random data
runs at ~40 MB/s in Python, the plain tar at disk speed.

push() copies a tag of the layout to a registry with skopeo. Credentials go
through an authfile (mode 0600), never on the command line.
"""

import base64
import hashlib
import json
import os
import platform
import random
import tarfile
import zlib
from dataclasses import dataclass, field

OCI_LAYOUT = "application/vnd.oci.image.layout.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"

CHUNK = 1 << 20


def host_platform():
    """The platform containerd on this machine pulls by default."""
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)
    return {"architecture": arch, "os": "linux"}


@dataclass
class LayerSpec:
    """One layer: `size` bytes of file payload split over `files` files."""

    size: int
    files: int = 1
    compression: str = "gzip"  # "gzip" | "none"
    gzip_level: int = 6


@dataclass
class Blob:
    digest: str  # "sha256:<hex>"
    size: int
    media_type: str
    path: str  # where the bytes are in the layout

    def read(self, start=0, end=None):
        """Bytes [start, end) of the blob (end None: to the end). For small reads."""
        with open(self.path, "rb") as f:
            f.seek(start)
            return f.read((end if end is not None else self.size) - start)

    def descriptor(self, **extra):
        d = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        d.update(extra)
        return d


@dataclass
class OciImage:
    layout: str
    config: Blob
    layers: list
    manifest: Blob  # the OCI image manifest
    index: Blob  # an OCI image index holding the manifest (for the platform)
    tags: dict = field(default_factory=dict)  # tag -> Blob it points at

    def blobs(self):
        return [self.config] + list(self.layers)


class _HashingFile:
    """Writes to a file while hashing and counting what passes."""

    def __init__(self, f):
        self.f = f
        self.h = hashlib.sha256()
        self.n = 0

    def write(self, data):
        self.h.update(data)
        self.n += len(data)
        self.f.write(data)
        return len(data)

    def digest(self):
        return "sha256:" + self.h.hexdigest()


class _GzipWriter:
    """Gzip with a fixed header (mtime 0, no name): deterministic output."""

    def __init__(self, out, level):
        self.out = out
        self.c = zlib.compressobj(level, zlib.DEFLATED, -15)
        self.crc = 0
        self.n = 0
        # magic, deflate, no flags, mtime 0, xfl 0, OS 255 (unknown)
        out.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff")

    def write(self, data):
        self.crc = zlib.crc32(data, self.crc)
        self.n += len(data)
        out = self.c.compress(data)
        if out:
            self.out.write(out)
        return len(data)

    def close(self):
        self.out.write(self.c.flush())
        self.out.write(self.crc.to_bytes(4, "little") + (self.n & 0xFFFFFFFF).to_bytes(4, "little"))


class _RandomReader:
    """`size` seeded pseudo-random bytes, produced on demand."""

    def __init__(self, rng, size):
        self.rng, self.left = rng, size

    def read(self, n=-1):
        if n < 0 or n > self.left:
            n = self.left
        self.left -= n
        return self.rng.randbytes(n) if n else b""


def _write_blob_file(layout, tmp_name, digest):
    final = os.path.join(layout, "blobs", "sha256", digest.split(":", 1)[1])
    os.replace(tmp_name, final)
    return final


def _put_json_blob(layout, obj, media_type):
    data = json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    path = os.path.join(layout, "blobs", "sha256", digest.split(":", 1)[1])
    with open(path, "wb") as f:
        f.write(data)
    return Blob(digest, len(data), media_type, path)


def _build_layer(layout, index, spec, seed):
    """Streams one layer to the layout; returns (Blob, diff_id)."""
    rng = random.Random(f"{seed}/layer{index}")
    tmp = os.path.join(layout, "blobs", "sha256", f".tmp-layer{index}")
    with open(tmp, "wb") as f:
        blob_writer = _HashingFile(f)
        gz = _GzipWriter(blob_writer, spec.gzip_level) if spec.compression == "gzip" else None
        tar_writer = _HashingFile(gz if gz is not None else blob_writer)  # hashes the uncompressed tar
        with tarfile.open(fileobj=tar_writer, mode="w|", format=tarfile.USTAR_FORMAT, bufsize=CHUNK,
                          copybufsize=CHUNK) as tf:
            dir_info = tarfile.TarInfo(f"layer{index}")
            dir_info.type, dir_info.mode, dir_info.mtime = tarfile.DIRTYPE, 0o755, 0
            tf.addfile(dir_info)
            files = max(1, spec.files)
            per_file, extra = divmod(spec.size, files)
            for j in range(files):
                size = per_file + (1 if j < extra else 0)
                info = tarfile.TarInfo(f"layer{index}/file{j}.bin")
                info.size, info.mode, info.mtime = size, 0o644, 0
                tf.addfile(info, _RandomReader(rng, size))
        if gz is not None:
            gz.close()
    media_type = OCI_LAYER_GZIP if spec.compression == "gzip" else OCI_LAYER_TAR
    digest = blob_writer.digest()
    path = _write_blob_file(layout, tmp, digest)
    return Blob(digest, blob_writer.n, media_type, path), tar_writer.digest()


def build_image(layout, layers, tag="latest", seed="acp", index_tag=None, platform_=None):
    """Writes an OCI image layout at `layout` (created) and returns an OciImage.

    `tag` names the image manifest in index.json; `index_tag`, when given,
    names an OCI image index that lists the manifest with its platform.
    """
    plat = platform_ or host_platform()
    os.makedirs(os.path.join(layout, "blobs", "sha256"), exist_ok=True)
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)

    layer_blobs, diff_ids = [], []
    for i, spec in enumerate(layers):
        blob, diff_id = _build_layer(layout, i, spec, seed)
        layer_blobs.append(blob)
        diff_ids.append(diff_id)

    config = _put_json_blob(
        layout,
        {
            "architecture": plat["architecture"],
            "os": plat["os"],
            "created": "2024-01-01T00:00:00Z",
            "config": {"Cmd": ["/layer0/file0.bin"], "Labels": {"acp.test.seed": str(seed)}},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created": "2024-01-01T00:00:00Z", "created_by": f"acp test layer {i}"} for i in range(len(layers))],
        },
        OCI_CONFIG,
    )
    manifest = _put_json_blob(
        layout,
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.descriptor(),
            "layers": [b.descriptor() for b in layer_blobs],
        },
        OCI_MANIFEST,
    )
    index = _put_json_blob(
        layout,
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [manifest.descriptor(platform=plat)],
        },
        OCI_INDEX,
    )
    entries = [manifest.descriptor(annotations={"org.opencontainers.image.ref.name": tag})]
    tags = {tag: manifest}
    if index_tag:
        entries.append(index.descriptor(annotations={"org.opencontainers.image.ref.name": index_tag}))
        tags[index_tag] = index
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}, f, indent=1)
    return OciImage(layout, config, layer_blobs, manifest, index, tags)


def write_authfile(path, registry, username, password):
    """A containers-auth.json (skopeo --authfile) for one registry, mode 0600."""
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"auths": {registry: {"auth": token}}}, f)
    return path


def push(layout, tag, registry, repo, dest_tag=None, authfile=None, ca_dir=None, fmt=None, all_images=False, timeout=600):
    """skopeo copy oci:LAYOUT:TAG docker://REGISTRY/REPO:DEST_TAG.

    `registry` is host:port. `authfile` (from write_authfile) carries the
    credentials; `ca_dir` is a directory with the registry's CA (*.crt) for a
    TLS registry, otherwise TLS verification is off (plain HTTP).
    `fmt` "v2s2" converts to Docker schema 2; `all_images` copies a whole index.
    Returns skopeo's output.
    """
    # Local import: harness is a sibling module of this file.
    import harness

    argv = ["skopeo", "--insecure-policy", "copy", "--retry-times", "0", "--quiet"]
    if ca_dir:
        argv += ["--dest-cert-dir", ca_dir]
    else:
        argv += ["--dest-tls-verify=false"]
    if authfile:
        argv += ["--dest-authfile", authfile]
    else:
        argv += ["--dest-no-creds"]
    if fmt:
        argv += ["--format", fmt]
    if all_images:
        argv += ["--all"]
    argv += [f"oci:{layout}:{tag}", f"docker://{registry}/{repo}:{dest_tag or tag}"]
    env = dict(os.environ)
    env.setdefault("HOME", "/root")
    # Keep skopeo away from any user/system auth or registries config.
    env["REGISTRY_AUTH_FILE"] = authfile or os.devnull
    return harness.run(argv, timeout=timeout, env=env).stdout
