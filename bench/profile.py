#!/usr/bin/env python3
"""Deterministic cost figures of the proxy's data path, for comparing two builds
on a busy machine where wall-clock figures are noise (bench/RESULTS.md, analysis):

  - system calls per cached-token manifest GET (keep-alive, h2load --h1), by call;
  - system calls per MiB of a relayed blob (plain-HTTP and TLS upstream), by call;
  - with --instructions: instructions per manifest GET and per relayed MiB
    (valgrind --tool=callgrind, counters zeroed after the warm-up).

The world is the fast upstream of workloads 1 and 2 (nginx with a bearer check)
and the proxy, on loopback; no peers. Usage:

  bench/profile.py --proxy build-bench/proxy/acr-credential-proxy [--requests N]
                   [--connections C] [--blob-mib M] [--instructions]
"""

import argparse
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)

import bench  # noqa: E402  (sets sys.path for the test support modules)
import harness  # noqa: E402
import oci_image  # noqa: E402
import peers  # noqa: E402
import proxy as proxy_mod  # noqa: E402
import registry as registry_mod  # noqa: E402
from oci_image import LayerSpec  # noqa: E402


class World(bench.FastWorld):
    """The fast upstream and the proxy only."""

    def start(self, wrapper=()):
        self.image = oci_image.build_image(self.tmp.join("fast-layout"),
                                           [LayerSpec(self.blob_size - 10240, 1, compression="none")],
                                           tag="v1", seed="bench-fast")
        repo = peers.Upstream.REPO
        files = {f"/v2/{repo}/manifests/v1": (self.image.manifest.path, bench.OCI_MANIFEST,
                                              self.image.manifest.digest)}
        for b in self.image.blobs():
            files[f"/v2/{repo}/blobs/{b.digest}"] = (b.path, "application/octet-stream", b.digest)
        self.up = peers.Upstream(self.tmp.join("upstream"), files,
                                 registry_mod.make_tls_material(self.tmp.join("tls"))).start()
        self.acp = proxy_mod.Proxy(self.binary, self.tmp.join("acp"), self.acp_config(), name="acp")
        self.acp.wrapper = list(wrapper)
        self.acp.start(timeout=120)
        for tls in (False, True):  # tokens cached, pooled connections open
            status, n, _ = bench.curl_get(self.acp.port, self.manifest_path(tls))
            if status != 200:
                raise RuntimeError(f"warm-up manifest (tls={tls}): {status}")
            status, n, _ = bench.curl_get(self.acp.port, self.blob_path(tls))
            if status != 200 or n != self.layer.size:
                raise RuntimeError(f"warm-up blob (tls={tls}): {status}, {n} bytes")
        return self

    def stop(self):
        for x in (self.acp, self.up):
            if x is not None:
                x.stop() if not isinstance(x, proxy_mod.Proxy) else x.stop(check=False)


def h2load(port, path, n, conns):
    argv = ["h2load", "--h1", "-n", str(n), "-c", str(conns), "-m", "1", "-H", f"Accept: {bench.OCI_MANIFEST}",
            f"http://127.0.0.1:{port}{path}"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=600).stdout
    m = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded", out)
    ok = int(m.group(1)) if m else 0
    if ok != n:
        raise RuntimeError(f"h2load: {ok}/{n} succeeded:\n{out}")


def proxy_pid(world):
    """The proxy's own pid (the child may be a wrapper such as valgrind, which execs)."""
    return world.acp.child.pid


_STRACE_ROW = re.compile(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$", re.M)


def strace_counts(pid, action):
    """{syscall: calls} made by pid (all threads) while action() runs."""
    out = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"acp-profile-strace.{os.getpid()}")
    st = subprocess.Popen(["strace", "-f", "-c", "-o", out, "-p", str(pid)], stderr=subprocess.PIPE, text=True)
    # strace reports each attached thread on stderr before it traces anything.
    deadline = time.monotonic() + 10
    line = st.stderr.readline()
    if "attached" not in line or time.monotonic() > deadline:
        raise RuntimeError(f"strace did not attach: {line}")
    try:
        action()
    finally:
        st.send_signal(signal.SIGINT)
        st.wait(timeout=30)
    with open(out) as f:
        text = f.read()
    os.remove(out)
    return {name: int(calls) for calls, name in _STRACE_ROW.findall(text) if name != "total"}


def callgrind_ir(pid, out_prefix, action, keep=None):
    """Instructions (Ir) the proxy executed while action() runs; the dump is
    copied to `keep` (for callgrind_annotate) when given."""
    subprocess.run(["callgrind_control", "-z", str(pid)], check=True, capture_output=True)
    action()
    before = set(glob.glob(out_prefix + "*"))
    subprocess.run(["callgrind_control", "-d", str(pid)], check=True, capture_output=True)
    new = sorted(set(glob.glob(out_prefix + "*")) - before, key=os.path.getmtime)
    if keep:
        shutil.copy(new[-1], keep)
    with open(new[-1]) as f:
        m = re.search(r"^(?:totals|summary): (\d+)", f.read(), re.M)
    return int(m.group(1))


def per(counts, n):
    total = sum(counts.values())
    top = sorted(counts.items(), key=lambda kv: -kv[1])
    return total / n, ", ".join(f"{k} {v / n:.2f}" for k, v in top if v / n >= 0.01)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--proxy", required=True)
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--blob-mib", type=int, default=256)
    ap.add_argument("--instructions", action="store_true", help="run the proxy under callgrind (slow)")
    ap.add_argument("--keep-dumps", metavar="DIR", help="with --instructions: keep each callgrind dump there")
    args = ap.parse_args()
    harness.require_tools("nginx", "h2load", "curl", "strace")
    tmp = harness.TempDir("bench-profile")
    bench._TMP[0] = tmp.path
    binary = os.path.abspath(args.proxy)
    mib = args.blob_mib
    wrapper = ()
    cg_prefix = tmp.join("callgrind.out")
    if args.instructions:
        wrapper = ("valgrind", "--tool=callgrind", f"--callgrind-out-file={cg_prefix}.%p", "--dump-instr=no")
    w = World(tmp, binary, mib << 20).start(wrapper)
    try:
        pid = proxy_pid(w)
        n, c = args.requests, args.connections
        mpath = w.manifest_path()

        def manifests():
            h2load(w.acp.port, mpath, n, c)

        def blob(tls):
            def go():
                status, got, _ = bench.curl_get(w.acp.port, w.blob_path(tls))
                if status != 200 or got != w.layer.size:
                    raise RuntimeError(f"blob (tls={tls}): {status}, {got} bytes")
            return go

        blob_mib = w.layer.size / (1 << 20)
        if args.instructions:
            if args.keep_dumps:
                os.makedirs(args.keep_dumps, exist_ok=True)
            dump = (lambda name: os.path.join(args.keep_dumps, name)) if args.keep_dumps else (lambda name: None)
            ir = callgrind_ir(pid, cg_prefix, manifests, dump("manifest.callgrind"))
            print(f"manifest GET ({c} connections, {n} requests): {ir / n:,.0f} instructions per request")
            for tls in (False, True):
                ir = callgrind_ir(pid, cg_prefix, blob(tls), dump(f"blob-{'tls' if tls else 'plain'}.callgrind"))
                print(f"blob relay ({'TLS' if tls else 'plain'} upstream, {blob_mib:.0f} MiB): "
                      f"{ir / blob_mib:,.0f} instructions per MiB")
        else:
            total, detail = per(strace_counts(pid, manifests), n)
            print(f"manifest GET ({c} connections, {n} requests): {total:.2f} system calls per request: {detail}")
            for tls in (False, True):
                total, detail = per(strace_counts(pid, blob(tls)), blob_mib)
                print(f"blob relay ({'TLS' if tls else 'plain'} upstream, {blob_mib:.0f} MiB): "
                      f"{total:.1f} system calls per MiB: {detail}")
    finally:
        w.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
