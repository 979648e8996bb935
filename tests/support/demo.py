#!/usr/bin/env python3
"""The demo scripts/demo runs after building: containerd pulls a private image
through the proxy with no credentials of its own.

  1. a docker-registry with htpasswd auth on a free loopback port;
  2. a small image built here (OCI layout) and pushed to it with skopeo;
  3. the proxy with a generated config that holds the registry's credentials
     (password in a 0600 file);
  4. containerd (own root/state/socket) and a hosts.toml that sends pulls for
     the registry's name to the proxy first;
  5. `ctr images pull` with no --user, the proxy's access log lines, the
     pulled digest, `curl` of /v2/ and /metrics;
  6. everything stopped (also on Ctrl-C or an error).

It shares its code with the integration tests (tests/support/*.py).
Usage: python3 tests/support/demo.py --proxy build/proxy/acr-credential-proxy
"""

import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import containerd as containerd_mod  # noqa: E402
import harness  # noqa: E402
import oci_image  # noqa: E402
import proxy as proxy_mod  # noqa: E402
import registry as registry_mod  # noqa: E402
from oci_image import LayerSpec  # noqa: E402

REGISTRY_HOST = "registry.demo.invalid"  # made up: only the proxy knows where it is
REPO = "demo/hello"
TAG = "v1"

_t0 = time.monotonic()


def step(text):
    print(f"\n==> [{time.monotonic() - _t0:5.1f}s] {text}", flush=True)


def show(text, prefix="    "):
    for line in text.rstrip("\n").splitlines():
        print(prefix + line, flush=True)


def curl(url, max_lines=None):
    argv = ["curl", "-sS", "-i", "--max-time", "10", url]
    print("    $ " + " ".join(argv), flush=True)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    lines = (out.stdout + out.stderr).splitlines()
    if max_lines and len(lines) > max_lines:
        lines = lines[:max_lines] + [f"... ({len(lines) - max_lines} more lines)"]
    show("\n".join(lines), "    | ")
    return out.stdout


def main():
    harness.require_tools("docker-registry", "skopeo", "htpasswd", "containerd", "ctr", "curl")
    # registry.demo.invalid is made up: run where not even its lookup can leave the machine.
    harness.enter_private_netns()
    binary = proxy_mod.find_binary()
    tmp = harness.TempDir("demo")
    print(f"demo: working in {tmp.path} (ACP_KEEP_TMP=1 keeps it)", flush=True)

    step("starting a private registry (docker-registry, htpasswd auth)")
    reg = registry_mod.Registry(tmp.join("registry"), "registry", users=True).start()
    user = reg.user()[0]
    print(f"    registry on {reg.url}, user '{user}' with a random password (never printed)")
    r = harness.request("127.0.0.1", reg.port, "GET", f"/v2/{REPO}/manifests/{TAG}")
    print(f"    anonymous GET /v2/{REPO}/manifests/{TAG} -> {r.status} (it needs credentials)")

    step("building a small demo image and pushing it with skopeo")
    image = oci_image.build_image(tmp.join("layout"), [LayerSpec(256 * 1024, 4), LayerSpec(2048, 1)],
                                  tag=TAG, seed="demo")
    authfile = reg.authfile(tmp.join("push-auth.json"))
    oci_image.push(image.layout, TAG, reg.host, REPO, authfile=authfile)
    os.remove(authfile)
    print(f"    pushed {reg.host}/{REPO}:{TAG}  manifest {image.manifest.digest}")
    for b in image.blobs():
        print(f"      {b.media_type:45} {b.digest[:19]}  {b.size:>8} B")

    step("starting the proxy with the registry's credentials")
    entry, overrides, env = proxy_mod.registry_entry(reg, tmp.path, host=REGISTRY_HOST)
    proxy = proxy_mod.Proxy(binary, tmp.join("proxy"), {
        "log": {"level": "info", "format": "text"},
        "registries": [entry],
        "endpointOverrides": overrides,
    }, env=env).start()
    print(f"    {binary} serve --config {proxy.config_path}")
    show(open(proxy.config_path).read(), "    | ")
    print(f"    data 127.0.0.1:{proxy.port}  admin 127.0.0.1:{proxy.admin_port}  pid {proxy.child.pid}")

    step("starting containerd and writing hosts.toml (mirror: the proxy)")
    ctd = containerd_mod.Containerd(tmp.join("containerd"), namespace="demo").start()
    hosts_dir = tmp.join("certs.d")
    hosts = containerd_mod.write_hosts_toml(hosts_dir, REGISTRY_HOST, f"http://127.0.0.1:{proxy.port}")
    print(f"    containerd socket {ctd.socket}")
    print(f"    {hosts}:")
    show(open(hosts).read(), "    | ")

    step(f"ctr images pull {REGISTRY_HOST}/{REPO}:{TAG}   (no credentials given to containerd)")
    log_mark = len(proxy.log_text())
    ref = f"{REGISTRY_HOST}/{REPO}:{TAG}"
    print(f"    $ ctr -a {ctd.socket} -n demo images pull --hosts-dir {hosts_dir} --snapshotter native {ref}")
    proc, seconds = ctd.pull(ref, hosts_dir, check=False)
    ok = proc.returncode == 0
    print(f"    ctr exited {proc.returncode} after {seconds:.2f}s")
    if not ok:
        show(proc.stdout[-2000:] + proc.stderr[-2000:], "    ! ")

    step("the proxy's access log for that pull")
    lines = [x for x in proxy.log_text()[log_mark:].splitlines() if x.strip()]
    show("\n".join(lines[-20:]) if lines else "(no lines)", "    | ")

    if ok:
        step("pulled image")
        show(ctd.ctr("images", "ls").stdout, "    | ")
        digest = ctd.image_digest(ref)
        print(f"    digest {digest}  ({'matches' if digest == image.manifest.digest else 'DIFFERS from'} what was pushed)")
        ok = digest == image.manifest.digest

    step("the proxy's own endpoints")
    curl(f"http://127.0.0.1:{proxy.port}/v2/")
    curl(f"http://127.0.0.1:{proxy.admin_port}/metrics", max_lines=60)

    step("stopping everything")
    ctd.stop()
    status = proxy.stop(check=False)
    print(f"    proxy exited {status} after SIGTERM")
    reg.stop()
    print(f"\ndemo {'OK' if ok and status == 0 else 'FAILED'} in {time.monotonic() - _t0:.1f}s", flush=True)
    return 0 if ok and status == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
