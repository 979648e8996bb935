"""A private containerd (1.6) for tests and the demo, and hosts.toml files.

Containerd(dir).start() writes a config with its own root, state, temp dir
and gRPC socket under `dir`, the CRI plugin disabled (nothing Kubernetes here)
and the native snapshotter as default (no overlay or other mounts needed
beyond bind mounts); plugins it cannot load (btrfs, zfs, devmapper, aufs)
just log and are skipped. It polls `ctr version` until the daemon answers.

Containerd(dir, cri_config_path=CERTS_DIR) enables the CRI plugin instead
(the image service kubelet pulls through; tests/support/cri.py talks to it on
the same socket, namespace k8s.io) with the registry `config_path` = CERTS_DIR
(containerd 1.x: [plugins."io.containerd.grpc.v1.cri".registry]), the native
snapshotter, CNI directories inside `dir` (nothing is created under /etc or
/opt) and a sandbox image under `.invalid` that is never pulled: only
RunPodSandbox would, and no test calls it. No registry credentials, mirrors,
auths or headers are configured: hosts.toml is the only registry config.

ctr(...) runs `ctr -a SOCKET -n NAMESPACE ...` with an environment that holds
no registry credentials. pull() is `ctr images pull --hosts-dir DIR` with no
--user: any credential upstream must come from the proxy.

content(ns) lists the blobs `ctr content ls` shows for a namespace;
forget_everything(ns) removes its images (GC synced), blobs and snapshots, so
the next pull fetches every byte again (containerd shares content across
namespaces: forget every namespace that pulled it).

write_hosts_toml() writes <hosts_dir>/<registry host>/hosts.toml as the proxy
will on a node: `server` the registry itself, one mirror host with
capabilities pull + resolve (resolve: tag lookups skip mirrors without it).
"""

import os
import time

import harness


def write_hosts_toml(hosts_dir, registry_host, mirror_url, server=None):
    """<hosts_dir>/<registry_host>/hosts.toml sending pulls to `mirror_url` first."""
    d = os.path.join(hosts_dir, registry_host)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "hosts.toml")
    with open(path, "w") as f:
        f.write(
            f'server = "{server or "https://" + registry_host}"\n'
            "\n"
            f'[host."{mirror_url}"]\n'
            '  capabilities = ["pull", "resolve"]\n'
        )
    return path


def clean_env():
    """The environment for ctr: no proxy variables, no docker/registry auth files."""
    env = {k: v for k, v in os.environ.items()
           if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
           and k not in ("REGISTRY_AUTH_FILE", "DOCKER_CONFIG")}
    env["HOME"] = "/nonexistent"
    return env


class Containerd:
    CRI_NAMESPACE = "k8s.io"  # where the CRI plugin keeps kubelet's images
    SANDBOX_IMAGE = "sandbox.never-pulled.invalid/pause:never"

    def __init__(self, directory, namespace="acp-test", name="containerd", cri_config_path=None):
        self.dir = directory
        self.namespace = namespace
        self.name = name
        self.cri_config_path = cri_config_path  # None: CRI plugin disabled
        self.socket = os.path.join(directory, "containerd.sock")
        self.child = None
        os.makedirs(directory, exist_ok=True)

    def _write_config(self):
        path = os.path.join(self.dir, "config.toml")
        j = lambda *p: os.path.join(self.dir, *p)  # noqa: E731
        for p in ("root", "state", "tmp", "opt"):
            os.makedirs(j(p), exist_ok=True)
        disabled = "[]" if self.cri_config_path else '["io.containerd.grpc.v1.cri"]'
        with open(path, "w") as f:
            f.write(
                "version = 2\n"
                f'root = "{j("root")}"\n'
                f'state = "{j("state")}"\n'
                f'temp = "{j("tmp")}"\n'
                f"disabled_plugins = {disabled}\n"
                "oom_score = 0\n"
                "[grpc]\n"
                f'  address = "{self.socket}"\n'
                "[ttrpc]\n"
                f'  address = "{self.socket}.ttrpc"\n'
                "[debug]\n"
                '  address = ""\n'
                '  level = "info"\n'
                "[metrics]\n"
                '  address = ""\n'
                '[plugins."io.containerd.service.v1.diff-service"]\n'
                '  default = ["walking"]\n'
                '[plugins."io.containerd.internal.v1.opt"]\n'  # default /opt/containerd: keep it in our dir
                f'  path = "{j("opt")}"\n'
            )
            if self.cri_config_path:
                for p in ("cni-conf", "cni-bin"):
                    os.makedirs(j(p), exist_ok=True)
                f.write(
                    '[plugins."io.containerd.grpc.v1.cri"]\n'
                    f'  sandbox_image = "{self.SANDBOX_IMAGE}"\n'
                    '  disable_tcp_service = true\n'
                    '  stream_server_address = "127.0.0.1"\n'
                    '  stream_server_port = "0"\n'
                    '  enable_selinux = false\n'
                    '  disable_apparmor = true\n'
                    '[plugins."io.containerd.grpc.v1.cri".containerd]\n'
                    '  snapshotter = "native"\n'
                    '  discard_unpacked_layers = false\n'
                    '[plugins."io.containerd.grpc.v1.cri".cni]\n'
                    f'  bin_dir = "{j("cni-bin")}"\n'
                    f'  conf_dir = "{j("cni-conf")}"\n'
                    '[plugins."io.containerd.grpc.v1.cri".registry]\n'
                    f'  config_path = "{self.cri_config_path}"\n'
                )
        return path

    def start(self, timeout=60):
        harness.require_tools("containerd", "ctr")
        if len(self.socket) > 100:
            raise RuntimeError(f"socket path too long for AF_UNIX: {self.socket}")
        config = self._write_config()
        self.child = harness.Child(self.name, ["containerd", "--config", config],
                                   os.path.join(self.dir, "containerd.log"), env=clean_env())

        def answers():
            self.child.ensure_alive()
            return os.path.exists(self.socket) and self.ctr("version", check=False, timeout=10).returncode == 0

        harness.wait_until(answers, timeout, f"{self.name} to answer on {self.socket}")
        return self

    def stop(self):
        if self.child is not None:
            self.child.stop(check=False, timeout=20)

    def ctr(self, *args, check=True, timeout=300):
        return harness.run(["ctr", "-a", self.socket, "-n", self.namespace, *args],
                           timeout=timeout, env=clean_env(), check=check)

    def pull(self, ref, hosts_dir, snapshotter="native", check=True, timeout=300):
        """ctr images pull --hosts-dir DIR REF (no credentials). Returns (CompletedProcess, seconds)."""
        started = time.monotonic()
        proc = self.ctr("images", "pull", "--hosts-dir", hosts_dir, "--snapshotter", snapshotter, ref,
                        check=check, timeout=timeout)
        return proc, time.monotonic() - started

    def image_digest(self, ref):
        """The target digest `ctr images ls` shows for ref, or None."""
        out = self.ctr("images", "ls").stdout
        for line in out.splitlines()[1:]:
            cols = line.split()
            if cols and cols[0] == ref:
                return next((c for c in cols if c.startswith("sha256:")), None)
        return None

    # -- CRI and the content store ----------------------------------------

    def cri(self, timeout=300):
        """A cri.CriClient on this containerd's socket (the CRI plugin must be enabled)."""
        import cri

        if not self.cri_config_path:
            raise RuntimeError("the CRI plugin is disabled: pass cri_config_path")
        return cri.CriClient(self.socket, timeout=timeout)

    def content(self, namespace=None):
        """{digest: size} of every blob in the content store of `namespace` (`ctr content ls`)."""
        out = harness.run(["ctr", "-a", self.socket, "-n", namespace or self.namespace, "content", "ls", "-q"],
                          timeout=60, env=clean_env()).stdout
        digests = [x.strip() for x in out.splitlines() if x.strip().startswith("sha256:")]
        sizes = {}
        if digests:
            out = harness.run(["ctr", "-a", self.socket, "-n", namespace or self.namespace, "content", "ls"],
                              timeout=60, env=clean_env()).stdout
            for line in out.splitlines()[1:]:
                cols = line.split()
                if len(cols) >= 2 and cols[0].startswith("sha256:"):
                    sizes[cols[0]] = cols[1]
        return {d: sizes.get(d) for d in digests}

    def forget_everything(self, namespace=None):
        """Removes every image and every blob of `namespace` (then waits for the garbage
        collector), so the next pull of anything fetches every byte again."""
        ns = namespace or self.namespace
        base = ["ctr", "-a", self.socket, "-n", ns]
        refs = [x for x in harness.run(base + ["images", "ls", "-q"], timeout=60, env=clean_env()).stdout.split() if x]
        if refs:
            harness.run(base + ["images", "rm", "--sync"] + refs, timeout=120, env=clean_env())
        left = [x for x in harness.run(base + ["content", "ls", "-q"], timeout=60, env=clean_env()).stdout.split()
                if x.startswith("sha256:")]
        if left:
            harness.run(base + ["content", "rm"] + left, timeout=120, env=clean_env(), check=False)
        snaps = harness.run(base + ["snapshots", "--snapshotter", "native", "ls"], timeout=60, env=clean_env(),
                            check=False).stdout.splitlines()[1:]
        # Unpacked layers: children first (a parent cannot go while a child exists).
        keys = [line.split()[0] for line in snaps if line.split()]
        for _ in range(len(keys) + 1):
            if not keys:
                break
            keys = [k for k in keys if harness.run(base + ["snapshots", "--snapshotter", "native", "rm", k],
                                                    timeout=60, env=clean_env(), check=False).returncode != 0]
        return self.content(ns)
