#!/usr/bin/env python3
"""scripts/build-image: the proxy's own container image, deterministic, pulled through
the proxy by a real containerd and run from the unpacked root.

  T1 determinism: two builds into different directories give byte-identical layouts
     (index.json, manifest, config, layers); a third with another SOURCE_DATE_EPOCH,
     tag and --source changes only the config (labels, created) and keeps every layer.
  T2 what is inside: tar entries sorted, uid/gid 0, no user/group names, mtime 0; gzip
     headers with mtime 0 and no file name; diff_ids match the layers; the config's
     entrypoint, cmd, user 65532 and org.opencontainers.image.* labels (revision = git
     HEAD, version = the binary's); exactly the binary's ldd closure plus the loader,
     each library's Debian package with its copyright file and dpkg status stanza; CA
     bundle, passwd/group with nonroot, /tmp 1777.
  T3 through the proxy: the layout is pushed (skopeo) to the ACR-like registry; a real
     containerd with CRI pulls it through the proxy (hosts.toml from `hosts install`,
     no credentials on containerd's side, blobs 307 to the OSS stand-in); containerd
     unpacks it (native snapshotter) and a snapshot of it is the root for chroot:
     `version` (as root and as 65532) and `check-config` on config/example.yaml succeed,
     `serve` as 65532 answers /healthz and exits 0 on SIGTERM; with one library hidden
     the binary no longer starts (the root really is self-contained).
  T4 the DaemonSet (deploy/kubernetes) and the image agree: no `command`, so the
     Entrypoint runs its args; uid 0 set explicitly over the image's 65532; its
     --config and --acr-configuration, given to `check-config` in the chroot, load its
     ConfigMaps laid out in the root where it mounts them.
  T5 preloading instead: the layout as a tar, `ctr images import --base-name`, names
     the image <base>:<tag> with the same digest.

The binary is the one given (--proxy): from build/ it is the release-like image; from
build-asan/ the closure brings libasan and libubsan (with their copyright files) and
the image still runs. Each chroot gets its own mount namespace with /proc mounted
(sanitizers read /proc/self/maps; nothing is mounted in the host's namespace). It
runs in a private network namespace (loopback only, like tests/e2e) and exits 77 when
it cannot: not root, a missing tool or python3-grpcio.

  meson test -C BUILD --suite image --print-errorlogs
  /usr/bin/python3 tests/image/image_test.py --proxy BUILD/proxy/acr-credential-proxy
"""

import gzip
import hashlib
import json
import os
import re
import shutil
import signal
import sys
import tarfile
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(_HERE, "..", "e2e"))

import e2e_support as e2e  # noqa: E402
from e2e_support import DOMAIN, CRI_NAMESPACE, acr_like, harness, proxy_mod  # noqa: E402

SOURCE_ROOT = os.environ.get("ACP_SOURCE_ROOT") or os.path.normpath(os.path.join(_HERE, "..", ".."))
BUILD_IMAGE = os.path.join(SOURCE_ROOT, "scripts", "build-image")
REPO = "tools/acr-credential-proxy"
IN_IMAGE = "/usr/local/bin/acr-credential-proxy"
NONROOT = 65532


class World:
    head = None  # (revision, commit time) of HEAD during the builds
    tmp = None
    binary = None
    version = None
    builds = {}  # name -> Build
    acr = None
    node = None
    pulled_root = None
    notes = []


def note(line):
    World.notes.append(line)
    print(f"      {line}", flush=True)


class Build:
    """One run of scripts/build-image and the layout it wrote."""

    def __init__(self, name, extra_args=(), env=None):
        self.out = World.tmp.join(name)
        started = time.monotonic()
        # Without SOURCE_DATE_EPOCH unless given: the default is the commit time of HEAD.
        run_env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
        run_env.update(env or {})
        self.stdout = harness.run([BUILD_IMAGE, "--binary", World.binary, "--out", self.out, *extra_args],
                                  timeout=300, env=run_env).stdout
        self.seconds = time.monotonic() - started
        with open(os.path.join(self.out, "index.json"), "rb") as f:
            self.index_bytes = f.read()
        self.index = json.loads(self.index_bytes)
        self.manifest_desc = self.index["manifests"][0]
        self.tag = self.manifest_desc["annotations"]["org.opencontainers.image.ref.name"]
        self.manifest = json.loads(self.blob(self.manifest_desc["digest"]))
        self.config = json.loads(self.blob(self.manifest["config"]["digest"]))

    def blob_path(self, digest):
        return os.path.join(self.out, "blobs", "sha256", digest.split(":", 1)[1])

    def blob(self, digest):
        with open(self.blob_path(digest), "rb") as f:
            return f.read()

    def blob_files(self):
        d = os.path.join(self.out, "blobs", "sha256")
        return {name: e2e.sha256_file(os.path.join(d, name)) for name in sorted(os.listdir(d))}

    def layers(self):
        return self.manifest["layers"]

    def members(self, layer):
        with tarfile.open(self.blob_path(layer["digest"]), "r:gz") as tar:
            return tar.getmembers()

    def printed(self, key):
        m = re.search(rf"^{key}\s+(\S+)", self.stdout, re.M)
        return m.group(1) if m else None


def git_head():
    out = harness.run(["git", "-C", SOURCE_ROOT, "log", "-1", "--format=%H %ct"]).stdout.split()
    return out[0], int(out[1])


def setUpModule():
    e2e.require_everything()
    harness.require_tools("chroot", "strip", "ldd", "dpkg", "git", "mount")
    World.binary = proxy_mod.find_binary()
    World.version = harness.run([World.binary, "version"], timeout=60).stdout.split()[-1]
    World.tmp = harness.TempDir("image")
    started = time.monotonic()
    # Both builds from one commit: in a tree where others commit meanwhile, build again.
    for _ in range(3):
        World.head = git_head()
        World.builds["a"] = Build("a")
        World.builds["b"] = Build("b")
        if git_head() == World.head:
            break
    World.builds["c"] = Build("c", ["--tag", "other", "--source", "https://example.invalid/acp.git"],
                              env={"SOURCE_DATE_EPOCH": "1"})
    a = World.builds["a"]
    note(f"build-image: {', '.join(f'{b.seconds:.1f}s' for b in World.builds.values())} "
         f"({os.path.basename(os.path.dirname(os.path.dirname(World.binary)))}); digest {a.manifest_desc['digest']}")
    for line in a.stdout.splitlines():
        if line.startswith(("layer", "size")):
            note(line)
    World.acr = acr_like.AcrLike(World.tmp.join("acr")).start()
    pushed = time.monotonic()
    World.acr.push_layout(a.out, a.tag, REPO)
    note(f"skopeo push to the ACR-like registry: {time.monotonic() - pushed:.1f}s")
    World.node = e2e.Node(World.tmp, World.acr, World.binary).start()
    print(f"setup: 3 builds, ACR-like registry, push, proxy, containerd+CRI in {time.monotonic() - started:.1f}s",
          flush=True)


def tearDownModule():
    if World.node:
        World.node.stop()
    if World.acr:
        World.acr.stop()
    if World.notes:
        print("notes:\n  " + "\n  ".join(World.notes), flush=True)


# ---------------------------------------------------------------------------


class T1DeterminismTest(harness.TestCaseBase):
    def test_two_builds_are_byte_identical_and_time_changes_only_the_config(self):
        a, b, c = World.builds["a"], World.builds["b"], World.builds["c"]
        checks = harness.Checks(self)
        checks.eq(b.manifest_desc["digest"], a.manifest_desc["digest"], "manifest digest of the second build")
        checks.eq(b.index_bytes, a.index_bytes, "index.json bytes")
        checks.eq(b.blob_files(), a.blob_files(), "blob files (name -> sha256 of the content)")
        for name, digest in a.blob_files().items():
            checks.eq(digest, "sha256:" + name, f"blob {name[:12]} is named by its digest")
        checks.eq(a.printed("digest"), a.manifest_desc["digest"], "the digest build-image prints")
        # Another time, tag and source: the same layers, another config.
        checks.eq([x["digest"] for x in c.layers()], [x["digest"] for x in a.layers()], "layers with another time")
        checks.check(c.manifest["config"]["digest"] != a.manifest["config"]["digest"], "config with another time")
        checks.eq(c.config["created"], "1970-01-01T00:00:01Z", "created from SOURCE_DATE_EPOCH")
        labels = c.config["config"]["Labels"]
        checks.eq(labels.get("org.opencontainers.image.created"), "1970-01-01T00:00:01Z", "created label")
        checks.eq(labels.get("org.opencontainers.image.source"), "https://example.invalid/acp.git", "source label")
        checks.eq(c.tag, "other", "--tag")
        checks.done()


class T2ContentTest(harness.TestCaseBase):
    def test_tar_and_gzip_carry_no_time_owner_or_order_of_the_build_machine(self):
        a = World.builds["a"]
        checks = harness.Checks(self)
        for layer, diff_id in zip(a.layers(), a.config["rootfs"]["diff_ids"]):
            raw = a.blob(layer["digest"])
            checks.eq(layer["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip", "layer media type")
            checks.eq(raw[:3], b"\x1f\x8b\x08", "gzip magic + deflate")
            checks.eq(raw[3] & 0x08, 0, "gzip FNAME flag (a file name in the header)")
            checks.eq(raw[4:8], b"\0\0\0\0", "gzip header mtime")
            checks.eq("sha256:" + hashlib.sha256(gzip.decompress(raw)).hexdigest(), diff_id, "diff_id")
            members = a.members(layer)
            names = [m.name for m in members]
            checks.eq(names, sorted(names), f"entries sorted in {layer['digest'][:19]}")
            checks.eq(len(names), len(set(names)), "no entry twice")
            for m in members:
                where = f"{m.name} in {layer['digest'][:19]}"
                checks.check(not m.name.startswith(("/", "./")), f"{where}: relative name")
                checks.eq((m.uid, m.gid, m.uname, m.gname, m.mtime), (0, 0, "", "", 0), f"{where}: owner, mtime")
                checks.check(m.isdir() or m.isfile() or m.issym(), f"{where}: type {m.type!r}")
                checks.eq(m.pax_headers, {}, f"{where}: pax headers")
        checks.done()

    def test_config_entrypoint_user_and_labels(self):
        a = World.builds["a"]
        cfg = a.config
        checks = harness.Checks(self)
        head, when = World.head
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))
        checks.eq(cfg["architecture"], e2e.oci_image.host_platform()["architecture"], "architecture")
        checks.eq(cfg["os"], "linux", "os")
        checks.eq(cfg["created"], created, "created (the commit time of HEAD)")
        checks.eq(cfg["config"]["Entrypoint"], [IN_IMAGE], "Entrypoint")
        checks.eq(cfg["config"]["Cmd"], ["--help"], "Cmd")
        checks.eq(cfg["config"]["User"], f"{NONROOT}:{NONROOT}", "User")
        labels = cfg["config"]["Labels"]
        for key, want in (("version", World.version), ("revision", head), ("created", created),
                          ("title", "acr-credential-proxy"), ("licenses", "Apache-2.0")):
            checks.eq(labels.get(f"org.opencontainers.image.{key}"), want, f"label {key}")
        checks.eq(a.tag, World.version, "default tag (the binary's version)")
        checks.eq(len(cfg["rootfs"]["diff_ids"]), len(a.layers()), "one diff_id per layer")
        checks.eq(len(cfg["history"]), len(a.layers()), "one history entry per layer")
        checks.done()

    def test_exactly_the_linked_libraries_with_their_debian_copyrights(self):
        a = World.builds["a"]
        files, links, modes = {}, {}, {}
        for layer in a.layers():
            for m in a.members(layer):
                modes["/" + m.name] = m.mode
                if m.issym():
                    links["/" + m.name] = m.linkname
                elif m.isfile():
                    files["/" + m.name] = m.size

        def resolve(path, depth=0):  # inside the image
            parts = path.strip("/").split("/")
            for i in range(len(parts)):
                p = "/" + "/".join(parts[:i + 1])
                if p in links and depth < 40:
                    t = links[p]
                    t = t if t.startswith("/") else os.path.join(os.path.dirname(p), t)
                    return resolve(os.path.normpath(os.path.join(t, *parts[i + 1:])), depth + 1)
            return path

        ldd = harness.run(["ldd", World.binary]).stdout
        linked = sorted(set(re.findall(r"=> (/\S+) \(", ldd) + re.findall(r"^\s*(/\S+) \(", ldd, re.M)))
        checks = harness.Checks(self)
        checks.check(len(linked) >= 10, f"ldd found {len(linked)} libraries")
        reached = set()
        for lib in linked:
            target = resolve(lib)
            if checks.check(target in files, f"{lib} (-> {target}) is not a file in the image"):
                reached.add(target)
                with open(lib, "rb") as f:
                    checks.eq(files[target], len(f.read()), f"{lib} size")
        libraries = {p for p in files if re.search(r"\.so(\.|$)", p)}
        checks.eq(sorted(libraries - reached), [], "shared libraries in the image that the binary does not link")
        # Each library's Debian package: its copyright file and a dpkg status stanza.
        owners = {}
        out = harness.run(["dpkg", "-S"] + sorted({os.path.realpath(x) for x in linked} | set(linked)),
                          check=False).stdout
        for line in out.splitlines():
            m = re.match(r"^([^:,\s]+)(?::[a-z0-9]+)?: (/.*)$", line)
            if m:
                owners[m.group(2)] = m.group(1)
        for lib in linked:
            pkg = owners.get(lib) or owners.get(os.path.realpath(lib))
            if checks.check(pkg is not None, f"dpkg -S finds no package for {lib}"):
                checks.check(f"/usr/share/doc/{pkg}/copyright" in files, f"copyright of {pkg} ({lib})")
                checks.check(f"/var/lib/dpkg/status.d/{pkg}" in files, f"dpkg status of {pkg} ({lib})")
        if "libasan" in ldd:
            checks.check("/usr/share/doc/libasan8/copyright" in files, "libasan8's copyright (ASan build)")
        for path in ("/usr/share/doc/ca-certificates/copyright", "/etc/ssl/certs/ca-certificates.crt",
                     "/etc/passwd", "/etc/group", "/etc/nsswitch.conf", IN_IMAGE):
            checks.check(path in files, f"{path} in the image")
        checks.eq(resolve("/usr/lib/ssl/cert.pem"), "/etc/ssl/certs/ca-certificates.crt", "OpenSSL's default CA file")
        checks.eq(modes.get("/tmp"), 0o1777, "/tmp mode")
        checks.eq(modes.get(IN_IMAGE), 0o755, "binary mode")
        checks.done()


# ---------------------------------------------------------------------------


def chain_ids(diff_ids):
    out = [diff_ids[0]]
    for d in diff_ids[1:]:
        out.append("sha256:" + hashlib.sha256(f"{out[-1]} {d}".encode()).hexdigest())
    return out


def chroot_argv(root, argv, user=None):
    """argv run with `root` as /, in a mount namespace of its own with /proc mounted there
    (what a container has; sanitizer runtimes need it). `exec` keeps the pid, so a signal
    to the returned process reaches the binary itself."""
    spec = [f"--userspec={user}:{user}"] if user is not None else []
    script = 'root=$1; chroot=$2; shift 2; mount -t proc proc "$root/proc" && exec "$chroot" "$@"'
    return [shutil.which("unshare"), "--mount", "--propagation", "private", "/bin/sh", "-c", script, "sh", root,
            shutil.which("chroot"), *spec, root, *argv]


def chroot_env(**extra):
    keep = ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS")
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"}  # the host's mount, then the image's
    env.update({k: os.environ[k] for k in keep if k in os.environ})
    env.update(extra)
    return env


def run_in_root(root, argv, user=None, env=None, check=False):
    return harness.run(chroot_argv(root, argv, user), timeout=120, env=env or chroot_env(), check=check)


class T3PulledThroughTheProxyTest(harness.TestCaseBase):
    def watched(self):
        return [World.node.proxy] if World.node and World.node.proxy else []

    def test_containerd_pulls_it_through_the_proxy_and_the_unpacked_root_runs(self):
        a, node = World.builds["a"], World.node
        ref = f"{DOMAIN}/{REPO}:{a.tag}"
        World.acr.reset_stats()
        mark = len(node.proxy.log_text())
        image_ref, seconds = node.cri_pull(ref)
        note(f"CRI pull {ref} through the proxy: {seconds:.2f}s")
        checks = harness.Checks(self)
        checks.eq(image_ref, a.manifest["config"]["digest"], "PullImage image_ref (the config digest)")
        status = node.cri.image_status(ref)
        checks.eq(status and status["repo_digests"], [f"{DOMAIN}/{REPO}@{a.manifest_desc['digest']}"],
                  "repo digests (the manifest build-image printed)")
        blobs = [e2e.oci_image.Blob(d["digest"], d["size"], d["mediaType"], a.blob_path(d["digest"]))
                 for d in [a.manifest_desc, a.manifest["config"]] + a.layers()]
        e2e.check_content(checks, node, CRI_NAMESPACE, blobs)
        e2e.check_redirect_path(checks, World.acr, blobs[2:])
        access = [x for x in node.proxy.log_text()[mark:].splitlines() if " access: " in x]
        checks.check(any("kind=manifest" in x and "status=200" in x for x in access),
                     f"the manifest went through the proxy: {access[:3]}")
        checks.done()

        root = self.unpacked_root(a)
        checks = harness.Checks(self)
        st = os.lstat(os.path.join(root, "tmp"))
        checks.eq((oct(st.st_mode & 0o7777), st.st_uid, st.st_gid), (oct(0o1777), 0, 0), "/tmp as unpacked")
        st = os.stat(os.path.join(root, IN_IMAGE.lstrip("/")))
        checks.eq((oct(st.st_mode & 0o7777), st.st_uid), (oct(0o755), 0), "the binary as unpacked")
        os.makedirs(os.path.join(root, "proc"), exist_ok=True)

        for user in (None, NONROOT):
            proc = run_in_root(root, [IN_IMAGE, "version"], user=user)
            checks.eq((proc.returncode, proc.stdout.strip()), (0, f"acr-credential-proxy {World.version}"),
                      f"chroot version as {user or 'root'} (stderr {proc.stderr[-600:]!r})")

        secret = harness.secrets_token()
        etc = os.path.join(root, "etc", "acr-credential-proxy")
        os.makedirs(etc, exist_ok=True)
        shutil.copyfile(os.path.join(SOURCE_ROOT, "config", "example.yaml"), os.path.join(etc, "config.yaml"))
        # The files example.yaml names, as the node would mount them.
        with open(os.path.join(etc, "registry.example.com.password"), "w") as f:
            f.write(secret + "\n")
        shutil.copyfile(os.path.join(root, "etc", "ssl", "certs", "ca-certificates.crt"),
                        os.path.join(etc, "private-ca.pem"))
        with open(os.path.join(etc, "docker-config.json"), "w") as f:
            json.dump({"auths": {"mirror.example.com:5000": {"auth": "dTpw"}}}, f)
        proc = run_in_root(root, [IN_IMAGE, "check-config", "--config", "/etc/acr-credential-proxy/config.yaml"],
                           env=chroot_env(GHCR_EXAMPLE_PASSWORD=secret))
        if not checks.eq(proc.returncode, 0, "chroot check-config --config <example.yaml> exit status"):
            checks.check(False, f"check-config said: {proc.stdout[-1500:]} {proc.stderr[-1500:]}".replace(secret, "*"))
        checks.check("cri-example0000000001" in proc.stdout, "check-config prints the normalized config")
        checks.check(secret not in proc.stdout + proc.stderr, "check-config printed a password")

        self.serve_as_nonroot(checks, root)
        self.without_a_library_it_does_not_start(checks, root)
        checks.done()

    def unpacked_root(self, build):
        """containerd's own unpack of the pulled layers (native snapshotter): a writable
        snapshot on top of the image's chain, as a container would get."""
        ctr = ["ctr", "-a", World.node.ctd.socket, "-n", CRI_NAMESPACE, "snapshots", "--snapshotter", "native"]
        parent = chain_ids(build.config["rootfs"]["diff_ids"])[-1]
        env = e2e.containerd_mod.clean_env()
        harness.run(ctr + ["prepare", "acp-image-root", parent], timeout=120, env=env)
        out = harness.run(ctr + ["mounts", "/mnt", "acp-image-root"], timeout=60, env=env).stdout
        m = re.search(r"mount -t bind (\S+) /mnt", out)
        self.assertIsNotNone(m, f"ctr snapshots mounts: {out!r}")
        World.pulled_root = m.group(1)
        return m.group(1)

    def serve_as_nonroot(self, checks, root):
        port, admin = harness.free_port(), harness.free_port()
        with open(os.path.join(root, "etc", "acr-credential-proxy", "serve.yaml"), "w") as f:
            f.write(f'listen: "127.0.0.1:{port}"\nadminListen: "127.0.0.1:{admin}"\n'
                    "registries:\n  - host: public.example.com\n    auth: {type: anonymous}\n")
        child = harness.Child("serve-in-image", chroot_argv(root, [IN_IMAGE, "serve", "--config",
                                                                    "/etc/acr-credential-proxy/serve.yaml"],
                                                            user=NONROOT),
                              World.tmp.join("serve-in-image.log"), env=chroot_env())

        def healthy_or_gone():  # an exit ends the wait at once
            return not child.alive() or harness.request("127.0.0.1", admin, "GET", "/healthz",
                                                        timeout=5).status == 200

        try:
            harness.wait_until(healthy_or_gone, 30, "/healthz of serve in the image")
            child.ensure_alive()
            uid = None
            with open(f"/proc/{child.pid}/status") as f:
                for line in f:
                    if line.startswith("Uid:"):
                        uid = int(line.split()[1])
            checks.eq(uid, NONROOT, "uid of serve in the image")
        except (TimeoutError, RuntimeError) as e:
            checks.check(False, f"serve in the image: {e}; log: {child.log_tail(20)}")
        status = child.stop(sig=signal.SIGTERM, timeout=40, check=False)
        checks.eq(status, 0, f"serve in the image: exit status after SIGTERM (log: {child.log_tail(5)!r})")

    def without_a_library_it_does_not_start(self, checks, root):
        linked = re.search(r"=> (/\S*/libyaml-cpp\.so\.[0-9.]+) \(", harness.run(["ldd", World.binary]).stdout)
        if not checks.check(linked is not None, "the binary links libyaml-cpp"):
            return
        name = os.path.basename(linked.group(1))
        lib = os.path.join(root, os.path.relpath(os.path.realpath(os.path.dirname(linked.group(1))), "/"), name)
        if not checks.check(os.path.lexists(lib), f"{lib} in the unpacked root"):
            return
        hidden = lib + ".hidden"
        os.rename(lib, hidden)
        try:
            proc = run_in_root(root, [IN_IMAGE, "version"])
        finally:
            os.rename(hidden, lib)
        checks.check(proc.returncode != 0 and name in proc.stderr,
                     f"with {name} hidden the binary still ran: {proc.returncode} {proc.stderr[-300:]!r}")


class T4DaemonSetAgreesTest(harness.TestCaseBase):
    """deploy/kubernetes runs this image: no `command` (the image's Entrypoint is the
    binary), uid 0 set explicitly (the image's user is 65532; certs.d is root's), and
    the DaemonSet's configuration args load its ConfigMaps inside the unpacked root."""

    def test_the_daemonset_args_work_with_the_image_entrypoint_and_user(self):
        manifest = os.path.join(SOURCE_ROOT, "deploy", "kubernetes", "acr-credential-proxy.yaml")
        example = os.path.join(SOURCE_ROOT, "deploy", "kubernetes", "examples", "acr-configuration.yaml")
        try:
            import yaml
        except ImportError:
            self.skipTest(f"python3-yaml is not installed for {sys.executable}")
        if not os.path.exists(manifest):
            self.skipTest(f"{manifest} does not exist")
        if World.pulled_root is None:
            self.skipTest("no unpacked root (T3 failed)")
        with open(manifest) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        daemonset = next(d for d in docs if d["kind"] == "DaemonSet")
        configmap = next(d for d in docs
                         if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "acr-credential-proxy")
        with open(example) as f:
            acr_configuration = next(d for d in yaml.safe_load_all(f) if d)
        container = daemonset["spec"]["template"]["spec"]["containers"][0]
        config = World.builds["a"].config["config"]
        checks = harness.Checks(self)
        checks.check("command" not in container, "the DaemonSet sets `command`: the image's Entrypoint would not run")
        checks.eq(config["Entrypoint"], [IN_IMAGE], "the image's Entrypoint")
        sc = container.get("securityContext", {})
        checks.eq((sc.get("runAsUser"), sc.get("runAsNonRoot")), (0, False),
                  "the DaemonSet's user (it writes root-owned certs.d; the image's default is 65532)")
        checks.eq(sc.get("capabilities", {}).get("drop"), ["ALL"], "capabilities dropped")
        # Lay out the ConfigMaps where the DaemonSet mounts them, inside the unpacked root.
        root = World.pulled_root
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in daemonset["spec"]["template"]["spec"]["volumes"]}
        data_of = {"acr-credential-proxy": configmap["data"], "acr-configuration": acr_configuration["data"]}
        for name, path in mounts.items():
            cm = volumes[name].get("configMap")
            if cm is None:
                os.makedirs(os.path.join(root, path.lstrip("/")), exist_ok=True)
                continue
            d = os.path.join(root, path.lstrip("/"))
            os.makedirs(d, exist_ok=True)
            for key, value in data_of[cm["name"]].items():
                with open(os.path.join(d, key), "w") as f:
                    f.write(value)
        args = list(container["args"])
        checks.eq(args[:1], ["serve"], "the DaemonSet's first arg")
        # The configuration sources (paths inside the container); serve's own flags stay
        # with tests/deploy, which runs `serve` with all of them.
        args = ["check-config"] + [a for a in args[1:] if a.split("=", 1)[0] in ("--config", "--acr-configuration")]
        checks.eq(len(args), 3, f"--config and --acr-configuration in the DaemonSet's args {container['args']}")
        proc = run_in_root(root, [IN_IMAGE] + args, user=sc.get("runAsUser"))
        checks.eq(proc.returncode, 0, f"chroot {' '.join(args)} (stdout {proc.stdout[-600:]!r} "
                                      f"stderr {proc.stderr[-600:]!r})")
        checks.check("cri-xxxxxxxxxxxxxxxx" in proc.stdout, "the add-on's ConfigMap was read")
        checks.done()


class T5PreloadTest(harness.TestCaseBase):
    """The other way round the chicken-and-egg (docs/image.md): the layout, as a tar,
    imported into a node's containerd without any registry."""

    def test_ctr_images_import_of_the_layout_tar(self):
        a = World.builds["a"]
        archive = World.tmp.join("image.tar")
        with tarfile.open(archive, "w") as tar:
            for name in ("oci-layout", "index.json", "blobs"):
                tar.add(os.path.join(a.out, name), arcname=name)
        base = "registry.example.invalid/acr-credential-proxy"
        started = time.monotonic()
        proc = World.node.ctd.ctr("images", "import", "--base-name", base, "--snapshotter", "native", archive,
                                  check=False)
        note(f"ctr images import of the layout tar: {time.monotonic() - started:.2f}s")
        checks = harness.Checks(self)
        checks.eq(proc.returncode, 0, f"ctr images import ({proc.stdout[-300:]} {proc.stderr[-300:]})")
        checks.eq(World.node.ctd.image_digest(f"{base}:{a.tag}"), a.manifest_desc["digest"],
                  "the imported image's digest")
        checks.done()


if __name__ == "__main__":
    # The ACR domain is made up: run where not even its lookup can leave the machine.
    harness.enter_private_netns()
    started = time.monotonic()
    status = harness.run_tests()
    print(f"image_test: {time.monotonic() - started:.1f}s", flush=True)
    sys.exit(status)
