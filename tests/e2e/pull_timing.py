#!/usr/bin/env python3
"""How long a real containerd takes to pull a 512 MiB image through the proxy,
against the same pull straight from the registry with credentials.

A measurement for the closing note of the end-to-end issue, not a test (not
in scripts/test). Same world as tests/e2e (private network namespace, the
ACR-like registry with blob 307s to the OSS stand-in, proxy + `hosts
install`, containerd 1.6 with CRI and the native snapshotter):

  through the proxy        CRI PullImage <ACR domain>/e2e/timing:v1, no AuthConfig:
                           containerd -> proxy (manifest; blob 307 passed through)
                           -> OSS stand-in for the bytes
  direct with credentials  CRI PullImage 127.0.0.1:<registry front>/e2e/timing:v1 with an
                           AuthConfig holding a temporary password from
                           GetAuthorizationToken (what a pod's pull secret gives kubelet):
                           containerd -> registry front (401, realm, bearer token)
                           -> OSS stand-in for the bytes

Both pull one single-layer image of SIZE random bytes (uncompressed tar),
generated once into the temp dir. Runs alternate (proxy, direct, proxy, ...)
and before each one containerd forgets every image, blob and snapshot, so
every run fetches and unpacks every byte. Prints the command, every run and
a table with the medians. Each run's time is PullImage's wall time (fetch,
digest check, unpack).

Usage: /usr/bin/python3 tests/e2e/pull_timing.py --proxy build/proxy/acr-credential-proxy
       [--runs 5] [--size-mib 512]
"""

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import e2e_support as e2e  # noqa: E402
from e2e_support import DOMAIN, acr_like, harness, proxy_mod  # noqa: E402

REPO = "e2e/timing"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--proxy", help="the proxy binary (default $ACP_PROXY_BIN or build/)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--size-mib", type=int, default=512)
    args = ap.parse_args()
    command = " ".join(["/usr/bin/python3", "tests/e2e/pull_timing.py"] + sys.argv[1:])
    e2e.require_everything()
    harness.enter_private_netns()
    binary = proxy_mod.find_binary(["--proxy", args.proxy] if args.proxy else [])
    tmp = harness.TempDir("pull-timing")
    acr = acr_like.AcrLike(tmp.join("acr")).start()
    image = e2e.big(tmp.join("image"), seed="pull-timing", size=args.size_mib << 20)
    acr.upload_image(image, REPO, "v1")
    node = e2e.Node(tmp, acr, binary).start()
    # The direct path: containerd's own hosts.toml for the registry front (plain HTTP).
    direct_dir = os.path.join(node.certs_dir, acr.front_host.replace(":", "_") + "_")
    os.makedirs(direct_dir, exist_ok=True)
    with open(os.path.join(direct_dir, "hosts.toml"), "w") as f:
        f.write(f'server = "{acr.front_url}"\n\n[host."{acr.front_url}"]\n  capabilities = ["pull", "resolve"]\n')
    user, password, _expires = acr.mint_password()
    via_proxy = f"{DOMAIN}/{REPO}:v1"
    direct = f"{acr.front_host}/{REPO}:v1"
    layer = image.layers[0]
    print(f"$ {command}", flush=True)
    print(f"proxy {binary} ({harness.run([binary, 'version']).stdout.strip()}); "
          f"containerd {harness.run(['containerd', '--version']).stdout.split()[2]}; "
          f"layer {layer.size:,} B ({layer.size / (1 << 20):.1f} MiB, {layer.digest[:19]})", flush=True)

    times = {"proxy": [], "direct": []}
    try:
        for i in range(args.runs):
            for path in ("proxy", "direct"):
                left = node.forget()
                if left:
                    raise RuntimeError(f"containerd still holds {sorted(left)}")
                acr.reset_stats()
                if path == "proxy":
                    image_ref, seconds = node.cri_pull(via_proxy, timeout=600)
                else:
                    image_ref, seconds = node.cri_pull(direct, timeout=600, username=user, password=password)
                if image_ref != image.config.digest:
                    raise RuntimeError(f"{path}: image id {image_ref}, want {image.config.digest}")
                gets = e2e.oss_gets(acr.stats())
                if gets.get(layer.digest) != [(200, layer.size, False)]:
                    raise RuntimeError(f"{path}: the layer did not come from the OSS stand-in in one GET: "
                                       f"{gets.get(layer.digest)}")
                times[path].append(seconds)
                print(f"  run {i + 1} {path:<6} {seconds:6.2f} s", flush=True)
    finally:
        node.stop()
        acr.stop()

    mib = layer.size / (1 << 20)
    print(f"\n{args.size_mib} MiB single-layer image, CRI PullImage (fetch + digest check + unpack, native "
          f"snapshotter), fresh content every run, {args.runs} runs each, alternating")
    print(f"{'path':<26} {'runs (s)':<{7 * args.runs}} {'median s':>9} {'MiB/s':>7}")
    for path, label in (("proxy", "through the proxy"), ("direct", "direct with credentials")):
        runs = " ".join(f"{t:6.2f}" for t in times[path])
        med = statistics.median(times[path])
        print(f"{label:<26} {runs:<{7 * args.runs}} {med:9.2f} {mib / med:7.0f}")
    ratio = statistics.median(times["proxy"]) / statistics.median(times["direct"])
    print(f"median through the proxy / median direct = {ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
