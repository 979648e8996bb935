"""A private containerd (1.6) for tests and the demo, and hosts.toml files.

Containerd(dir).start() writes a config with its own root, state, temp dir
and gRPC socket under `dir`, the CRI plugin disabled (nothing Kubernetes here)
and the native snapshotter as default (no overlay or other mounts needed
beyond bind mounts); plugins it cannot load (btrfs, zfs, devmapper, aufs)
just log and are skipped. It polls `ctr version` until the daemon answers.

ctr(...) runs `ctr -a SOCKET -n NAMESPACE ...` with an environment that holds
no registry credentials. pull() is `ctr images pull --hosts-dir DIR` with no
--user: any credential upstream must come from the proxy.

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
    def __init__(self, directory, namespace="acp-test", name="containerd"):
        self.dir = directory
        self.namespace = namespace
        self.name = name
        self.socket = os.path.join(directory, "containerd.sock")
        self.child = None
        os.makedirs(directory, exist_ok=True)

    def _write_config(self):
        path = os.path.join(self.dir, "config.toml")
        j = lambda *p: os.path.join(self.dir, *p)  # noqa: E731
        for p in ("root", "state", "tmp", "opt"):
            os.makedirs(j(p), exist_ok=True)
        with open(path, "w") as f:
            f.write(
                "version = 2\n"
                f'root = "{j("root")}"\n'
                f'state = "{j("state")}"\n'
                f'temp = "{j("tmp")}"\n'
                'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
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
