#!/usr/bin/env python3
"""The benchmarks of issue 7: what putting the proxy in the pull path costs,
against named peers, every workload against every peer in one run,
interleaved (A B C D, then the next round in a rotated order) so machine
noise hits all alike. Medians and ratios; targets marked met / missed.

Run through scripts/bench (it builds the release binary and picks it). This
script re-runs itself in a private network namespace with only loopback up:
every server, load generator and containerd is inside it.

Workloads (bench/README.md explains each and how to read the table):
  1 cached-token manifest GET: req/s, p50/p99 at 1, 16, 64 connections (wrk)
  2 1 GiB blob relay, plain-HTTP and TLS upstream: MB/s, CPU s per GiB (curl)
  3 containerd CRI PullImage of a 512 MiB single-layer image and a 20-layer
    image: proxy vs direct with credentials vs docker-registry pull-through
    (first pull), then with 20 ms RTT on the registry and the realm
  4 cold-scope storm: 500 concurrent first requests for a new repository
  5 RSS idle and peak during 32 concurrent 1 GiB blob streams
  6 start-up: exec to /readyz 200
  7 HTTP/2 vs HTTP/1.1 upstream over TLS (nghttpx ALPN h2 in front of
    docker-registry), proxy `http2: on` vs `http2: off`: upstream connections
    and TLS handshakes made (the proxy's metrics), req/s and p99 of 64
    concurrent manifest GETs (wrk), 64 MiB blob MB/s, 1 and 8 streams

Usage: bench/bench.py --proxy PATH [--quick] [--only 1,2,...] [--results FILE [--merge]]
"""

import argparse
import asyncio
import datetime
import os
import platform
import re
import statistics
import subprocess
import sys
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)
sys.path.insert(0, os.path.join(_ROOT, "tests", "support"))
sys.path.insert(0, os.path.join(_ROOT, "tests", "e2e"))
sys.path.insert(0, _HERE)

import harness  # noqa: E402
import oci_image  # noqa: E402
import proc_stats  # noqa: E402
import proxy as proxy_mod  # noqa: E402
import registry as registry_mod  # noqa: E402
from oci_image import LayerSpec  # noqa: E402
import peers  # noqa: E402

MIB = 1 << 20
GIB = 1 << 30
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def log(msg):
    print(msg, flush=True)


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def rotate(items, n):
    n %= len(items)
    return items[n:] + items[:n]


def mark(ok):
    return "**met**" if ok else "**missed**"


# ---------------------------------------------------------------------------
# the machine


def machine():
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": model, "kernel": platform.release(),
            "mem_gib": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB}


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def versions(binary):
    def first(argv, pattern=None):
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            text = (out.stdout + out.stderr).strip()
        except OSError:
            return "?"
        if pattern:
            m = re.search(pattern, text)
            return m.group(1) if m else text.splitlines()[0]
        return text.splitlines()[0] if text else "?"

    return {
        "proxy": first([binary, "version"]),
        "nginx": first(["nginx", "-v"], r"nginx/(\S+)"),
        "docker-registry": first(["docker-registry", "--version"], r"(v?\d+\.\d+\.\d+\S*)"),
        "containerd": first(["containerd", "--version"], r"containerd \S+ (\S+)"),
        "wrk": first(["wrk", "-v"], r"wrk (\S+)"),
        "curl": first(["curl", "--version"], r"curl (\S+)"),
    }


# ---------------------------------------------------------------------------
# the fast-upstream world of workloads 1, 2, 5, 6


class FastWorld:
    """Upstream nginx + nginx proxy + docker-registry proxies + our proxy."""

    def __init__(self, tmp, binary, blob_size):
        self.tmp, self.binary, self.blob_size = tmp, binary, blob_size
        self.image = None
        self.up = self.nginx = self.regproxy = self.regproxy_tls = self.acp = None

    def start(self):
        t0 = time.monotonic()
        self.image = oci_image.build_image(self.tmp.join("fast-layout"),
                                           [LayerSpec(self.blob_size - 10240, 1, compression="none")],
                                           tag="v1", seed="bench-fast")
        log(f"  image: {self.layer.size / MIB:.0f} MiB layer generated in {time.monotonic() - t0:.1f}s")
        repo = peers.Upstream.REPO
        files = {f"/v2/{repo}/manifests/v1": (self.image.manifest.path, OCI_MANIFEST, self.image.manifest.digest),
                 f"/v2/{repo}/manifests/{self.image.manifest.digest}":
                     (self.image.manifest.path, OCI_MANIFEST, self.image.manifest.digest)}
        for b in self.image.blobs():
            files[f"/v2/{repo}/blobs/{b.digest}"] = (b.path, "application/octet-stream", b.digest)
        tls = registry_mod.make_tls_material(self.tmp.join("tls"))
        self.up = peers.Upstream(self.tmp.join("upstream"), files, tls).start()
        self.nginx = peers.NginxProxy(self.tmp.join("nginx-proxy"), self.up).start()
        self.regproxy = peers.RegistryProxy(self.tmp.join("regproxy"), self.up.url(), self.up.user,
                                            self.up.password).start()
        self.regproxy_tls = peers.RegistryProxy(self.tmp.join("regproxy-tls"), self.up.url(tls=True), self.up.user,
                                                self.up.password, ca_file=tls["ca"],
                                                name="registry-proxy-tls").start()
        self.acp = self.start_acp()
        self.warm()
        return self

    @property
    def layer(self):
        return self.image.layers[0]

    def acp_config(self):
        pw = self.tmp.join("upstream.password")
        fd = os.open(pw, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.up.password)
        auth = {"type": "basic", "username": self.up.user, "passwordFile": pw}
        return {
            "log": {"level": "warn", "format": "text"},
            "registries": [
                {"host": self.up.host(), "auth": auth, "realmHosts": ["127.0.0.1"]},
                {"host": self.up.host(tls=True), "auth": auth, "caFile": self.up.tls["ca"], "realmHosts": ["127.0.0.1"]},
            ],
            "endpointOverrides": {self.up.host(): self.up.url()},
        }

    def start_acp(self):
        return proxy_mod.Proxy(self.binary, self.tmp.join("acp"), self.acp_config(), name="acp").start()

    def manifest_path(self, tls=False):
        return f"/v2/{peers.Upstream.REPO}/manifests/v1?ns={self.up.host(tls)}"

    def blob_path(self, tls=False):
        return f"/v2/{peers.Upstream.REPO}/blobs/{self.layer.digest}?ns={self.up.host(tls)}"

    def targets(self, tls=False):
        """[(name, port, needs the bearer header, process or None)] for a manifest or blob GET."""
        return [
            ("direct", self.up.tls_port if tls else self.up.port, True, None),
            ("nginx", self.nginx.tls_port if tls else self.nginx.port, False, self.nginx),
            ("registry-proxy", (self.regproxy_tls if tls else self.regproxy).port, False,
             self.regproxy_tls if tls else self.regproxy),
            ("acr-credential-proxy", self.acp.port, False, self.acp),
        ]

    def warm(self):
        """One manifest and blob GET through everything: tokens cached, the registry
        proxies' caches filled, connection pools open. Checks every answer."""
        accept = [("Accept", OCI_MANIFEST)]
        for tls in (False, True):
            for name, port, direct, _ in self.targets(tls):
                hdrs = accept + ([("Authorization", self.up.bearer)] if direct else [])
                ctx = harness.tls_context(self.up.tls["ca"]) if (tls and direct) else None
                r = harness.request("127.0.0.1", port, "GET", self.manifest_path(tls), hdrs, tls=ctx)
                if r.status != 200 or r.sha256() != self.image.manifest.digest:
                    raise RuntimeError(f"warm-up manifest via {name} (tls={tls}): {r.status} {r.body[:200]!r}")
                status, n, _ = curl_get(port, self.blob_path(tls), self.up.bearer if direct else None,
                                        self.up.tls["ca"] if (tls and direct) else None)
                if status != 200 or n != self.layer.size:
                    raise RuntimeError(f"warm-up blob via {name} (tls={tls}): {status}, {n} bytes")

    def stop(self):
        for x in (self.acp, self.regproxy_tls, self.regproxy, self.nginx, self.up):
            if x is not None:
                x.stop() if not isinstance(x, proxy_mod.Proxy) else x.stop(check=False)


def curl_get(port, path, bearer=None, ca=None, headers_file=None):
    """GET to /dev/null with curl; returns (status, bytes, seconds)."""
    scheme = "https" if ca else "http"
    argv = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download} %{time_total}",
            "--max-time", "600", f"{scheme}://127.0.0.1:{port}{path}"]
    if ca:
        argv += ["--cacert", ca]
    if bearer:
        # The token goes in a 0600 file (-H @file), never on argv.
        hf = headers_file or os.path.join(_TMP[0], "bearer.headers")
        if not os.path.exists(hf):
            fd = os.open(hf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(f"Authorization: {bearer}\n")
        argv += ["-H", f"@{hf}"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=700)
    parts = out.stdout.split()
    if out.returncode != 0 or len(parts) != 3:
        return 0, 0, 0.0
    return int(parts[0]), int(parts[1]), float(parts[2])


_TMP = [None]
# bench/RESULTS.md from this line on is written by hand (what bounds a missed target) and kept
# when the tables above it are regenerated.
ANALYSIS_MARKER = "<!-- analysis: written by hand, kept by bench.py -->"


# -- workload 1 ----------------------------------------------------------------

_WRK_LAT = re.compile(r"^\s+(50|99)(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", re.M)


def _to_ms(value, unit):
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(port, path, conns, seconds, script):
    threads = 1 if conns == 1 else 2
    argv = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "--latency", "-s", script,
            f"http://127.0.0.1:{port}{path}"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = {p: _to_ms(v, u) for p, v, u in _WRK_LAT.findall(out)}
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "p50": lat.get("50"), "p99": lat.get("99"), "non2xx": int(bad.group(1)) if bad else 0,
            "socket_errors": errors.group(1) if errors else ""}


def workload1(world, rounds, seconds):
    log("workload 1: cached-token manifest GET (wrk)")
    scripts = {}
    for direct in (False, True):
        path = world.tmp.join(f"wrk-{'direct' if direct else 'proxy'}.lua")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f'wrk.headers["Accept"] = "{OCI_MANIFEST}"\n')
            if direct:
                f.write(f'wrk.headers["Authorization"] = "{world.up.bearer}"\n')
        scripts[direct] = path
    targets = world.targets()
    res = {}  # (name, conns) -> [runs]
    for r in range(rounds):
        for conns in (1, 16, 64):
            for name, port, direct, _ in rotate(targets, r):
                x = wrk(port, world.manifest_path(), conns, seconds, scripts[direct])
                if x["non2xx"] or x["socket_errors"]:
                    log(f"    WARNING {name} c={conns}: {x['non2xx']} non-2xx, socket errors {x['socket_errors']}")
                res.setdefault((name, conns), []).append(x)
                log(f"    round {r + 1} c={conns:<3} {name:<21} {x['rps']:9.0f} req/s  p50 {x['p50']:.3f} ms  "
                    f"p99 {x['p99']:.3f} ms")
    return res


# -- workload 2 ----------------------------------------------------------------


def cpu_of(proc):
    """CPU seconds so far of a peer (nginx: master + workers) or of our proxy."""
    if isinstance(proc, proxy_mod.Proxy):
        return proc_stats.cpu_seconds(proc.child.pid)
    return proc.cpu_seconds()


def workload2(world, rounds):
    log("workload 2: 1 GiB blob relay (curl to /dev/null)")
    res = {}  # (tls, name) -> [{"mbps", "cpu_per_gib"}]
    for r in range(rounds):
        for tls in (False, True):
            for name, port, direct, proc in rotate(world.targets(tls), r):
                meter = proc if proc is not None else world.up.nginx
                c0 = cpu_of(meter)
                status, n, secs = curl_get(port, world.blob_path(tls), world.up.bearer if direct else None,
                                           world.up.tls["ca"] if (tls and direct) else None)
                cpu = cpu_of(meter) - c0
                if status != 200 or n != world.layer.size:
                    raise RuntimeError(f"blob via {name} (tls={tls}): {status}, {n} bytes")
                x = {"mbps": n / 1e6 / secs, "cpu_per_gib": cpu / (n / GIB)}
                res.setdefault((tls, name), []).append(x)
                log(f"    round {r + 1} {'tls  ' if tls else 'plain'} {name:<21} {x['mbps']:7.0f} MB/s  "
                    f"{x['cpu_per_gib']:.3f} CPU s/GiB ({'upstream' if proc is None else name})")
    return res


# -- workload 5 ----------------------------------------------------------------


def workload5(world, streams):
    log(f"workload 5: RSS during {streams} concurrent 1 GiB blob streams")
    out = {}
    # A fresh proxy, warmed with one manifest GET (token cached), then idle.
    world.acp.stop(check=False)
    world.acp = world.start_acp()
    r = world.acp.request("GET", world.manifest_path(), [("Accept", OCI_MANIFEST)])
    if r.status != 200:
        raise RuntimeError(f"workload 5 warm-up: {r.status}")
    for name, port, proc in (("acr-credential-proxy", world.acp.port, world.acp),):
        idle = proc.rss_kib()
        idle_parts = rss_parts(proc.child.pid)
        with proc_stats.RssSampler(proc) as s:
            t0 = time.monotonic()
            procs = [subprocess.Popen(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download}",
                                       "--max-time", "900", f"http://127.0.0.1:{port}{world.blob_path()}"],
                                      stdout=subprocess.PIPE, text=True) for _ in range(streams)]
            results = [p.communicate()[0].split() for p in procs]
            secs = time.monotonic() - t0
        ok = sum(1 for x in results if x == ["200", str(world.layer.size)])
        out[name] = {"idle_kib": idle, "peak_kib": s.max_kib, "ok": ok, "seconds": secs,
                     "mbps": ok * world.layer.size / 1e6 / secs, "idle_parts": idle_parts,
                     "after_parts": rss_parts(proc.child.pid)}
        log(f"    {name:<21} idle {idle / 1024:.1f} MiB, peak {s.max_kib / 1024:.1f} MiB, {ok}/{streams} complete "
            f"in {secs:.1f}s ({out[name]['mbps']:.0f} MB/s total)")
    # Context only (not streamed here, to keep the run short): the peers' idle RSS.
    out["peers_idle_kib"] = {"nginx (master + worker)": world.nginx.rss_kib(),
                             "registry-proxy": world.regproxy.rss_kib()}
    return out


def rss_parts(pid):
    """{"anon", "file", "pss"} in KiB: what the RSS is made of (/proc/PID/status, smaps_rollup)."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("RssAnon:", "RssFile:")):
                out[line.split(":")[0][3:].lower()] = int(line.split()[1])
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                out["pss"] = int(line.split()[1])
    return out


# -- workload 6 ----------------------------------------------------------------


def _readyz_once(port):
    import socket
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def workload6(world, runs):
    log("workload 6: start-up, exec to /readyz 200")
    times = []
    d = world.tmp.join("startup")
    os.makedirs(d, exist_ok=True)
    for i in range(runs):
        port, admin = harness.free_port(), harness.free_port()
        cfg = world.acp_config()
        cfg["listen"], cfg["adminListen"] = f"127.0.0.1:{port}", f"127.0.0.1:{admin}"
        path = os.path.join(d, f"run{i}.yaml")
        with open(path, "w") as f:
            f.write(proxy_mod.to_yaml(cfg) + "\n")
        t0 = time.monotonic()
        child = harness.Child(f"startup{i}", [world.binary, "serve", "--config", path], os.path.join(d, f"run{i}.log"))
        deadline = t0 + 10
        while not _readyz_once(admin):
            if time.monotonic() > deadline or not child.alive():
                raise RuntimeError(f"start-up run {i}: no /readyz 200; log: {child.log_tail()}")
        times.append((time.monotonic() - t0) * 1000)
        child.stop(check=False)
    log(f"    runs (ms): {' '.join(f'{t:.1f}' for t in times)}")
    # The floor: exec, dynamic linking and exit of `acr-credential-proxy version`.
    floor = []
    for _ in range(runs):
        t0 = time.monotonic()
        subprocess.run([world.binary, "version"], capture_output=True, check=True)
        floor.append((time.monotonic() - t0) * 1000)
    log(f"    'version' exec to exit (ms): {' '.join(f'{t:.1f}' for t in floor)}")
    return times, floor


# ---------------------------------------------------------------------------
# the ACR-like world of workloads 3 and 4


class LatencyRelay:
    """bench/latency_relay.py as a child with a stdin pipe for the RTT knob."""

    def __init__(self, directory, target_port):
        self.log_path = os.path.join(directory, "latency-relay.log")
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-u", os.path.join(_HERE, "latency_relay.py"),
                                      str(target_port)], stdin=subprocess.PIPE, stdout=self._log,
                                     stderr=subprocess.STDOUT)
        self.port = harness.wait_until(self._port, 20, "the latency relay to listen")
        self._sets = 0

    def _text(self):
        with open(self.log_path) as f:
            return f.read()

    def _port(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"latency relay exited: {self._text()[-500:]}")
        m = re.search(r"latency relay listening: (\d+)", self._text())
        return int(m.group(1)) if m else None

    def set_rtt_ms(self, ms):
        self._sets += 1
        self.proc.stdin.write(f"{ms}\n".encode())
        self.proc.stdin.flush()
        want = self._sets
        harness.wait_until(lambda: self._text().count("rtt ") >= want, 10, "the latency relay to take the RTT")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


class AcrWorld:
    def __init__(self, tmp, binary, big_size, layers):
        self.tmp, self.binary, self.big_size, self.layers = tmp, binary, big_size, layers

    def start(self):
        import e2e_support as e2e
        import acr_like
        self.e2e, self.acr_like = e2e, acr_like
        self.acr = acr_like.AcrLike(self.tmp.join("acr"), token_lifetime_s=3600).start()
        self.relay = LatencyRelay(self.tmp.path, self.acr.ports["front"])
        self.relay_host = f"127.0.0.1:{self.relay.port}"
        t0 = time.monotonic()
        self.images = {
            "big": e2e.big(self.tmp.join("img-big"), seed="bench-big", size=self.big_size),
            "layers": e2e.many_layers(self.tmp.join("img-layers"), seed="bench-layers", layers=self.layers),
        }
        storm = e2e.small(self.tmp.join("img-storm"), seed="bench-storm")
        t1 = time.monotonic()
        for key, img in self.images.items():
            self.acr.upload_image(img, f"bench/{key}", "v1")
        self.acr.upload_image(storm, "bench/storm", "v1")
        self.storm_image = storm
        log(f"  images generated in {t1 - t0:.1f}s, uploaded in {time.monotonic() - t1:.1f}s")
        # The proxy reaches the registry front through the latency relay, like everyone else.
        self.node = e2e.Node(self.tmp, self.acr, self.binary, log_level="warn",
                             proxy_extra={"endpointOverrides": {acr_like.DOMAIN: f"http://{self.relay_host}"}}).start()
        # direct: containerd's own hosts.toml for the relay (plain HTTP), credentials in AuthConfig.
        self.write_hosts(self.relay_host)
        self.user, self.password, _ = self.acr.mint_password()
        self.cache = peers.RegistryProxy(self.tmp.join("cache"), f"http://{self.relay_host}", self.user, self.password,
                                         name="registry-proxy")
        return self

    def write_hosts(self, host):
        d = os.path.join(self.node.certs_dir, host.replace(":", "_") + "_")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "hosts.toml"), "w") as f:
            f.write(f'server = "http://{host}"\n\n[host."http://{host}"]\n  capabilities = ["pull", "resolve"]\n')

    def pull(self, peer, key):
        img = self.images[key]
        repo = f"bench/{key}:v1"
        left = self.node.forget()
        if left:
            raise RuntimeError(f"containerd still holds {sorted(left)}")
        if peer == "acr-credential-proxy":
            image_ref, secs = self.node.cri_pull(f"{self.acr_like.DOMAIN}/{repo}", timeout=900)
        elif peer == "direct":
            image_ref, secs = self.node.cri_pull(f"{self.relay_host}/{repo}", timeout=900, username=self.user,
                                                 password=self.password)
        else:  # the pull-through cache, first pull: a fresh, empty cache every run (not timed)
            self.cache.stop()
            self.cache.start()
            self.write_hosts(self.cache.host)
            image_ref, secs = self.node.cri_pull(f"{self.cache.host}/{repo}", timeout=900)
        if image_ref != img.config.digest:
            raise RuntimeError(f"{peer} {key}: image id {image_ref}, want {img.config.digest}")
        return secs

    def stop(self):
        for f in (lambda: self.cache.stop(), lambda: self.node.stop(), lambda: self.relay.stop(),
                  lambda: self.acr.stop()):
            try:
                f()
            except Exception as e:  # noqa: BLE001 - stop the rest anyway
                log(f"  (stop: {e!r})")


PULL_PEERS = ["direct", "registry-proxy", "acr-credential-proxy"]


def workload3(world, rounds):
    log("workload 3: containerd CRI PullImage")
    res = {}  # (rtt, key, peer) -> [seconds]
    for rtt in (0, 20):
        world.relay.set_rtt_ms(rtt)
        if rtt:
            world.acr.tr.slow(rtt / 1000.0)
        else:
            world.acr.tr.clear_faults()
        for key in ("big", "layers"):
            # Unmeasured first pull through the proxy: the measured ones are repeated pulls
            # (the proxy's token for the repository cached, as on a node after the first pod).
            world.pull("acr-credential-proxy", key)
            # The 20-layer pulls are short and noisy: two more rounds for them.
            for r in range(rounds + (2 if key == "layers" else 0)):
                for peer in rotate(PULL_PEERS, r):
                    secs = world.pull(peer, key)
                    res.setdefault((rtt, key, peer), []).append(secs)
                    log(f"    rtt {rtt:>2} ms {key:<6} round {r + 1} {peer:<21} {secs:6.2f} s")
    world.acr.tr.clear_faults()
    world.relay.set_rtt_ms(0)
    return res


async def _storm(port, path, n):
    """n connections opened first, then one request on each at once; returns seconds to the last answer."""
    conns = []
    for _ in range(n):
        conns.append(await asyncio.open_connection("127.0.0.1", port, limit=1 << 20))
    req = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: {OCI_MANIFEST}\r\n\r\n").encode()

    async def one(reader, writer):
        writer.write(req)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        m = re.search(rb"(?i)content-length:\s*(\d+)", head)
        if m:
            await reader.readexactly(int(m.group(1)))
        writer.close()
        return status

    t0 = time.monotonic()
    statuses = await asyncio.gather(*(one(r, w) for r, w in conns))
    return time.monotonic() - t0, statuses


def workload4(world, n):
    log(f"workload 4: cold-scope storm, {n} concurrent first requests for a new repository")
    acr = world.acr
    calls0 = len(acr.password_calls())
    acr.reset_stats()
    # A fresh proxy straight to the front: nothing cached, not even the ACR password.
    p = proxy_mod.Proxy(world.binary, world.tmp.join("storm-proxy"),
                        acr.proxy_config(log={"level": "warn", "format": "text"}), env=acr.proxy_env(),
                        name="storm-proxy").start()
    try:
        path = f"/v2/bench/storm/manifests/v1?ns={world.acr_like.DOMAIN}"
        secs, statuses = asyncio.run(_storm(p.port, path, n))
        stats = acr.tr.stats()
        calls = len(acr.password_calls()) - calls0
    finally:
        p.stop(check=False)
    ok = sum(1 for s in statuses if s == 200)
    out = {"seconds": secs, "ok": ok, "n": n, "token_fetches": stats["tokens_issued"],
           "realm_requests": stats["requests"], "acr_calls": calls}
    log(f"    {ok}/{n} answered 200 in {secs:.2f}s; realm requests {stats['requests']} "
        f"(tokens issued {stats['tokens_issued']}); GetAuthorizationToken calls {calls}")
    return out



# ---------------------------------------------------------------------------
# workload 7: the HTTP/2 upstream vs HTTP/1.1, over TLS


_METRIC_LINE = re.compile(r"^([a-z_]+)(\{[^}]*\})? ([0-9.eE+-]+)$")


def metric_values(text):
    """{'name{labels}': value} of a Prometheus text page ('name' alone when it has no labels)."""
    out = {}
    for line in text.splitlines():
        m = _METRIC_LINE.match(line.strip())
        if m:
            out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


class H2World:
    """docker-registry (anonymous, plain HTTP) behind nghttpx (TLS with ALPN h2,http/1.1;
    tests/support/nghttpx.py), and one proxy per run pointing at the nghttpx host with
    `http2: on` or `http2: off` (a fresh proxy per run: its connection counters start at 0)."""

    REPO = "bench/h2"
    MODES = ("on", "off")

    def __init__(self, tmp, binary, blob_size):
        self.tmp, self.binary, self.blob_size = tmp, binary, blob_size
        self.reg = self.ng = self.image = None
        self.runs = 0

    def start(self):
        import nghttpx

        nghttpx.require_nghttpx()
        t0 = time.monotonic()
        self.reg = registry_mod.Registry(self.tmp.join("h2-registry")).start()
        self.image = oci_image.build_image(self.tmp.join("h2-layout"), [LayerSpec(self.blob_size, 1, gzip_level=1)],
                                           tag="v1", seed="bench-h2")
        oci_image.push(self.image.layout, "v1", self.reg.host, self.REPO)
        # nghttpx's default of 8 backend connections per host would queue 64 concurrent
        # requests on the HTTP/1.1 backend side, for both modes alike; 128 keeps it out of the way.
        self.ng = nghttpx.Nghttpx(self.tmp.join("h2-nghttpx"), self.reg.port,
                                  extra_args=["--backend-connections-per-host=128"]).start()
        log(f"  h2 world: docker-registry + nghttpx on {self.ng.host}, {self.layer.size / MIB:.0f} MiB blob, "
            f"up in {time.monotonic() - t0:.1f}s")
        return self

    @property
    def layer(self):
        return self.image.layers[0]

    def start_acp(self, mode):
        self.runs += 1
        cfg = {"log": {"level": "warn", "format": "text"},
               "registries": [{"host": self.ng.host, "auth": {"type": "anonymous"}, "caFile": self.ng.ca,
                               "http2": mode}]}
        return proxy_mod.Proxy(self.binary, self.tmp.join(f"acp-h2-{self.runs}"), cfg, name=f"acp-h2-{mode}").start()

    def manifest_path(self):
        return f"/v2/{self.REPO}/manifests/v1?ns={self.ng.host}"

    def blob_path(self):
        return f"/v2/{self.REPO}/blobs/{self.layer.digest}?ns={self.ng.host}"

    def stop(self):
        for x in (self.ng, self.reg):
            if x is not None:
                x.stop()


def workload7(world, rounds, seconds, blob_gets):
    log("workload 7: HTTP/2 vs HTTP/1.1 upstream over TLS (64 concurrent manifests, 64 MiB blob)")
    script = world.tmp.join("wrk-h2.lua")
    with open(script, "w") as f:
        f.write(f'wrk.headers["Accept"] = "{OCI_MANIFEST}"\n')
    res = {}  # mode -> [runs]
    for r in range(rounds):
        for mode in rotate(list(world.MODES), r):
            since = len(world.ng.access_entries())
            p = world.start_acp(mode)
            try:
                warm = p.request("GET", world.manifest_path(), [("Accept", OCI_MANIFEST)])
                if warm.status != 200 or warm.sha256() != world.image.manifest.digest:
                    raise RuntimeError(f"workload 7 warm-up (http2: {mode}): {warm.status} {warm.body[:200]!r}")
                x = wrk(p.port, world.manifest_path(), 64, seconds, script)
                if x["non2xx"] or x["socket_errors"]:
                    log(f"    WARNING http2: {mode}: {x['non2xx']} non-2xx, socket errors {x['socket_errors']}")
                after_manifests = metric_values(p.metrics())
                single = []
                c0 = proc_stats.cpu_seconds(p.child.pid)
                for _ in range(blob_gets):
                    status, n, secs = curl_get(p.port, world.blob_path())
                    if status != 200 or n != world.layer.size:
                        raise RuntimeError(f"workload 7 blob (http2: {mode}): {status}, {n} bytes")
                    single.append(n / 1e6 / secs)
                cpu = proc_stats.cpu_seconds(p.child.pid) - c0
                t0 = time.monotonic()
                procs = [subprocess.Popen(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download}",
                                           "--max-time", "600", f"http://127.0.0.1:{p.port}{world.blob_path()}"],
                                          stdout=subprocess.PIPE, text=True) for _ in range(8)]
                outs = [pr.communicate()[0].split() for pr in procs]
                multi_secs = time.monotonic() - t0
                if any(o != ["200", str(world.layer.size)] for o in outs):
                    raise RuntimeError(f"workload 7 8-stream blob (http2: {mode}): {outs}")
                m = metric_values(p.metrics())
            finally:
                p.stop(check=False)
            alpn = {}
            for e in world.ng.access_entries()[since:]:
                alpn[e["alpn"]] = alpn.get(e["alpn"], 0) + 1
            y = {"rps": x["rps"], "p50": x["p50"], "p99": x["p99"],
                 "conns": after_manifests.get('acp_upstream_connections_total{reused="false"}'),
                 "handshakes": after_manifests.get("acp_upstream_tls_handshakes_total"),
                 "conns_total": m.get('acp_upstream_connections_total{reused="false"}'),
                 "handshakes_total": m.get("acp_upstream_tls_handshakes_total"),
                 "mbps1": median(single), "mbps8": 8 * world.layer.size / 1e6 / multi_secs,
                 "cpu_per_gib": cpu / (blob_gets * world.layer.size / GIB), "alpn": alpn}
            res.setdefault(mode, []).append(y)
            log(f"    round {r + 1} http2: {mode:<3} {y['rps']:8.0f} req/s  p99 {y['p99']:.3f} ms  "
                f"upstream conns {y['conns']} handshakes {y['handshakes']} (after blobs: {y['conns_total']}, "
                f"{y['handshakes_total']})  blob {y['mbps1']:.0f} MB/s, 8 streams {y['mbps8']:.0f} MB/s  "
                f"{y['cpu_per_gib']:.3f} CPU s/GiB  nghttpx saw {alpn}")
    return res


# ---------------------------------------------------------------------------
# the report


def report(args, command, mach, vers, load_start, load_end, started, finished, w):
    L = []
    a = L.append
    a("# Benchmark results")
    a("")
    a(f"Run {started:%Y-%m-%d %H:%M} UTC, {(finished - started).total_seconds() / 60:.1f} min, with")
    a("")
    a("```")
    a(command)
    a("```")
    a("")
    a(f"Machine: {mach['nproc']} CPUs ({mach['cpu']}), {mach['mem_gib']:.0f} GiB RAM, kernel {mach['kernel']}. "
      f"Load average (1/5/15 min) at start **{load_start}**, at end **{load_end}**: other sessions were compiling "
      "and testing on the same cores during the run, so absolute figures are noisy; the peers were interleaved "
      "(A B C D, rotated each round) so the noise hits all alike, and the ratios are what to read.")
    a("")
    a("Versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()) + ".")
    a("")
    a("Every figure is a median over the rounds shown; ratio = proxy / peer (for times: smaller is better; "
      "for rates: larger is better). bench/README.md explains each workload.")
    a("")

    if "1" in w:
        res, rounds, secs = w["1"]
        a(f"## 1. Cached-token manifest GET (wrk, {secs} s per run, {rounds} rounds)")
        a("")
        a("| connections | peer | req/s | p50 ms | p99 ms | acp req/s ÷ peer | acp p99 − peer p99 (ms) |")
        a("|---|---|---|---|---|---|---|")
        for conns in (1, 16, 64):
            acp = res[("acr-credential-proxy", conns)]
            acp_rps = median([x["rps"] for x in acp])
            acp_p99 = median([x["p99"] for x in acp])
            for name in ("direct", "nginx", "registry-proxy", "acr-credential-proxy"):
                xs = res[(name, conns)]
                rps, p50, p99 = (median([x[k] for x in xs]) for k in ("rps", "p50", "p99"))
                label = name + (" (ceiling)" if name == "direct" else "")
                ratio = "—" if name == "acr-credential-proxy" else f"{acp_rps / rps:.2f}×"
                dp = "—" if name == "acr-credential-proxy" else f"{acp_p99 - p99:+.3f}"
                a(f"| {conns} | {label} | {rps:,.0f} | {p50:.3f} | {p99:.3f} | {ratio} | {dp} |")
        a("")
        targets = []
        for conns in (1, 16, 64):
            acp_rps = median([x["rps"] for x in res[("acr-credential-proxy", conns)]])
            ng = median([x["rps"] for x in res[("nginx", conns)]])
            targets.append(f"req/s ≥ 1.0× nginx at {conns} connection{'s' if conns > 1 else ''}: "
                           f"{acp_rps / ng:.2f}× {mark(acp_rps >= ng)}")
        added = median([x["p99"] for x in res[("acr-credential-proxy", 1)]]) - \
            median([x["p99"] for x in res[("direct", 1)]])
        targets.append(f"p99 added latency over direct ≤ 0.3 ms (1 connection): {added:+.3f} ms {mark(added <= 0.3)}")
        a("Targets: " + "; ".join(targets) + ".")
        a("")

    if "2" in w:
        res, rounds, size = w["2"]
        a(f"## 2. Blob relay, {size / GIB:.2f} GiB blob (curl to /dev/null, {rounds} rounds)")
        a("")
        a("| upstream | peer | MB/s | CPU s per GiB (that process) | acp MB/s ÷ peer | acp CPU ÷ peer |")
        a("|---|---|---|---|---|---|")
        targets = []
        for tls in (False, True):
            acp = res[(tls, "acr-credential-proxy")]
            acp_mbps = median([x["mbps"] for x in acp])
            acp_cpu = median([x["cpu_per_gib"] for x in acp])
            for name in ("direct", "nginx", "registry-proxy", "acr-credential-proxy"):
                xs = res[(tls, name)]
                mbps = median([x["mbps"] for x in xs])
                cpu = median([x["cpu_per_gib"] for x in xs])
                label = name + (" (ceiling; CPU = upstream nginx)" if name == "direct" else "")
                r1 = "—" if name == "acr-credential-proxy" else f"{acp_mbps / mbps:.2f}×"
                r2 = "—" if name in ("acr-credential-proxy", "direct") else f"{acp_cpu / cpu:.2f}×"
                a(f"| {'TLS' if tls else 'plain HTTP'} | {label} | {mbps:,.0f} | {cpu:.3f} | {r1} | {r2} |")
            d = median([x["mbps"] for x in res[(tls, "direct")]])
            ng_cpu = median([x["cpu_per_gib"] for x in res[(tls, "nginx")]])
            kind = "TLS" if tls else "plain"
            targets.append(f"{kind}: MB/s ≥ 0.95× direct: {acp_mbps / d:.2f}× {mark(acp_mbps >= 0.95 * d)}")
            targets.append(f"{kind}: CPU per GiB ≤ nginx's: {acp_cpu:.3f} vs {ng_cpu:.3f} s "
                           f"{mark(acp_cpu <= ng_cpu)}")
        a("")
        a("Targets: " + "; ".join(targets) + ".")
        a("")

    if "3" in w:
        res, rounds, big_size, layers = w["3"]
        a(f"## 3. containerd CRI PullImage (fetch + verify + unpack, native snapshotter; {rounds} rounds, "
          f"{rounds + 2} for the {layers}-layer image)")
        a("")
        a("| RTT to registry + realm | image | peer | median s | runs (s) | acp ÷ peer |")
        a("|---|---|---|---|---|---|")
        targets = []
        names = {"big": f"{big_size / MIB:.0f} MiB, 1 layer", "layers": f"{layers} layers"}
        for rtt in (0, 20):
            for key in ("big", "layers"):
                acp = median(res[(rtt, key, "acr-credential-proxy")])
                for peer in PULL_PEERS:
                    xs = res[(rtt, key, peer)]
                    label = {"direct": "direct with credentials", "registry-proxy": "registry-proxy (first pull)",
                             "acr-credential-proxy": "acr-credential-proxy (token cached)"}[peer]
                    ratio = "—" if peer == "acr-credential-proxy" else f"{acp / median(xs):.3f}"
                    a(f"| {rtt} ms | {names[key]} | {label} | {median(xs):.2f} | "
                      f"{' '.join(f'{x:.2f}' for x in xs)} | {ratio} |")
                d = median(res[(rtt, key, "direct")])
                if rtt == 0:
                    targets.append(f"{names[key]}, 0 ms: ≤ 1.03× direct: {acp / d:.3f}× {mark(acp <= 1.03 * d)}")
                else:
                    targets.append(f"{names[key]}, 20 ms: < 1.0× direct: {acp / d:.3f}× {mark(acp < d)}")
        a("")
        a("Targets: " + "; ".join(targets) + ".")
        a("")

    if "4" in w:
        x = w["4"]
        a(f"## 4. Cold-scope storm ({x['n']} concurrent first requests for a new repository, fresh proxy)")
        a("")
        a("| answered 200 | time until all served | realm token fetches | GetAuthorizationToken calls | "
          "direct clients would make |")
        a("|---|---|---|---|---|")
        a(f"| {x['ok']}/{x['n']} | {x['seconds']:.2f} s | {x['token_fetches']} | {x['acr_calls']} | "
          f"{x['n']} token fetches (each client logs in itself) |")
        a("")
        a(f"Target: 1 token fetch: {x['token_fetches']} {mark(x['token_fetches'] == 1 and x['ok'] == x['n'])} "
          f"(and {x['acr_calls']} ACR API call{'s' if x['acr_calls'] != 1 else ''}).")
        a("")

    if "5" in w:
        x, streams = w["5"]
        a(f"## 5. Memory ({streams} concurrent 1 GiB blob streams, plain-HTTP upstream)")
        a("")
        a("| process | RSS idle MiB | RSS peak MiB | streams complete | aggregate MB/s |")
        a("|---|---|---|---|---|")
        y = x["acr-credential-proxy"]
        a(f"| acr-credential-proxy | {y['idle_kib'] / 1024:.1f} | {y['peak_kib'] / 1024:.1f} | {y['ok']}/{streams} | "
          f"{y['mbps']:,.0f} |")
        for name, kib in x["peers_idle_kib"].items():
            a(f"| {name}, for context | {kib / 1024:.1f} | — | — | — |")
        y = x["acr-credential-proxy"]
        a("")
        ip, ap = y["idle_parts"], y["after_parts"]
        a(f"What the proxy's RSS is made of: idle {ip.get('anon', 0) / 1024:.1f} MiB anonymous (heap, stacks) + "
          f"{ip.get('file', 0) / 1024:.1f} MiB file-backed (its binary and shared libraries, mostly shared with other "
          f"processes; PSS {ip.get('pss', 0) / 1024:.1f} MiB); after the streams {ap.get('anon', 0) / 1024:.1f} MiB "
          f"anonymous + {ap.get('file', 0) / 1024:.1f} MiB file-backed.")
        a("")
        a(f"Targets: idle RSS ≤ 8 MiB: {y['idle_kib'] / 1024:.1f} MiB {mark(y['idle_kib'] <= 8 * 1024)}; "
          f"peak ≤ 48 MiB: {y['peak_kib'] / 1024:.1f} MiB {mark(y['peak_kib'] <= 48 * 1024 and y['ok'] == streams)}.")
        a("")

    if "6" in w:
        times, floor = w["6"]
        a(f"## 6. Start-up (exec → /readyz 200, static credentials, {len(times)} runs, interleaved with the others' idle)")
        a("")
        a(f"Median {median(times):.1f} ms, min {min(times):.1f} ms, max {max(times):.1f} ms. For scale: "
          f"`acr-credential-proxy version` (exec, dynamic linking, exit; no config, no sockets) takes "
          f"{median(floor):.1f} ms median, min {min(floor):.1f} ms, on the same machine.")
        a("")
        a(f"Target ≤ 50 ms (median): {median(times):.1f} ms {mark(median(times) <= 50)}.")
        a("")

    if "7" in w:
        res, rounds, secs, size, gets = w["7"]
        a(f"## 7. HTTP/2 vs HTTP/1.1 upstream over TLS (nghttpx ALPN h2 in front of docker-registry; "
          f"{rounds} rounds, a fresh proxy per run)")
        a("")
        a("64 concurrent manifest GETs (wrk, 64 connections, "
          f"{secs} s) then {gets} × the {size / MIB:.0f} MiB blob one at a time and 8 at once, through a proxy with "
          "`http2: on` (ALPN h2 only) and one with `http2: off` (HTTP/1.1). Upstream connections and TLS handshakes "
          "are the proxy's own counters (`acp_upstream_connections_total{reused=\"false\"}`, "
          "`acp_upstream_tls_handshakes_total`) after the manifest burst (warm-up request included); the protocol "
          "column is what nghttpx logged (ALPN per request).")
        a("")
        a("| upstream | upstream connections | TLS handshakes | req/s | p50 ms | p99 ms | blob MB/s (1 stream) | "
          "blob MB/s (8 streams) | CPU s per GiB | nghttpx saw |")
        a("|---|---|---|---|---|---|---|---|---|---|")
        med = {}

        def fmt_count(v):
            return "n/a" if v is None else f"{v:.0f}"

        for mode in H2World.MODES:
            xs = res[mode]
            med[mode] = {k: (median([x[k] for x in xs if x[k] is not None])
                             if any(x[k] is not None for x in xs) else None)
                         for k in ("rps", "p50", "p99", "conns", "handshakes", "mbps1", "mbps8", "cpu_per_gib")}
            alpn = {}
            for x in xs:
                for k, v in x["alpn"].items():
                    alpn[k] = alpn.get(k, 0) + v
            m = med[mode]
            label = "h2 (`http2: on`)" if mode == "on" else "HTTP/1.1 (`http2: off`)"
            a(f"| {label} | {fmt_count(m['conns'])} | {fmt_count(m['handshakes'])} | {m['rps']:,.0f} | "
              f"{m['p50']:.3f} | {m['p99']:.3f} | {m['mbps1']:,.0f} | {m['mbps8']:,.0f} | {m['cpu_per_gib']:.3f} | "
              f"{', '.join(f'{k} {v}' for k, v in sorted(alpn.items()))} |")
        h2, h1 = med["on"], med["off"]

        def ratio(k):
            return "—" if not h2[k] or not h1[k] else f"{h2[k] / h1[k]:.2f}×"

        a(f"| h2 ÷ HTTP/1.1 | {ratio('conns')} | {ratio('handshakes')} | {ratio('rps')} | {ratio('p50')} | "
          f"{ratio('p99')} | {ratio('mbps1')} | {ratio('mbps8')} | {ratio('cpu_per_gib')} | |")
        a("")
        one = h2["conns"] is not None and h2["conns"] <= 1
        a(f"Targets: h2 upstream uses one connection for the 64 concurrent requests: {fmt_count(h2['conns'])} "
          f"{mark(one)}; req/s ≥ 1.0× HTTP/1.1: {ratio('rps')} {mark(bool(h2['rps'] and h1['rps'] and h2['rps'] >= h1['rps']))}"
          f"; blob MB/s (1 stream) ≥ 0.95× HTTP/1.1: {ratio('mbps1')} "
          f"{mark(bool(h2['mbps1'] and h1['mbps1'] and h2['mbps1'] >= 0.95 * h1['mbps1']))}.")
        a("")
    return "\n".join(L)


def merge_sections(old, new, only, how=""):
    """The old tables with the sections of the workloads in `only` replaced by (or, when
    absent, appended from) the new run's; a note under each replaced section says when."""
    def split(text):
        parts = re.split(r"(?m)^(?=## \d+\. )", text)
        head, secs = parts[0], {}
        for p in parts[1:]:
            secs[p.split(".", 1)[0][3:]] = p
        return head, secs

    old_head, old_secs = split(old)
    _, new_secs = split(new)
    stamp = re.search(r"^Run (.*?) UTC", new, re.M)
    for n in sorted(only):
        if n in new_secs:
            note = f"(Section {n} from a later run, {stamp.group(1)} UTC{': ' + how if how else ''}.)\n\n" \
                if stamp else ""
            old_secs[n] = new_secs[n].rstrip("\n") + "\n\n" + note
    return old_head + "".join(old_secs[k] for k in sorted(old_secs, key=int))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--proxy", required=True, help="the acr-credential-proxy binary (release build)")
    ap.add_argument("--quick", action="store_true", help="small sizes and short runs (to try the script)")
    ap.add_argument("--only", default="1,2,3,4,5,6,7", help="comma-separated workloads")
    ap.add_argument("--results", default=None, help="write the Markdown here too (scripts/bench: bench/RESULTS.md)")
    ap.add_argument("--merge", action="store_true",
                    help="with --results: replace only the sections of the workloads run, keep the others")
    ap.add_argument("--command", default=None, help="the command line to record (scripts/bench passes its own)")
    args = ap.parse_args()
    command = args.command or " ".join(sys.argv)
    harness.require_tools("nginx", "wrk", "curl", "docker-registry", "unshare", "ip")
    harness.enter_private_netns()

    started = datetime.datetime.now(datetime.timezone.utc)
    load_start = loadavg()
    binary = os.path.abspath(args.proxy)
    only = set(args.only.split(","))
    q = args.quick
    blob = (64 if q else 1024) * MIB
    big = (64 if q else 512) * MIB
    mach, vers = machine(), versions(binary)
    log(f"$ {command}")
    log(f"machine: {mach}; load {load_start}; {vers}")
    tmp = harness.TempDir("bench")
    _TMP[0] = tmp.path
    w = {}
    if only & {"1", "2", "5", "6"}:
        log("fast-upstream world: nginx upstream, nginx proxy, registry proxies, acr-credential-proxy")
        fw = FastWorld(tmp, binary, blob).start()
        try:
            if "1" in only:
                rounds, secs = (1, 1) if q else (3, 2)
                w["1"] = (workload1(fw, rounds, secs), rounds, secs)
            if "2" in only:
                rounds = 1 if q else 3
                w["2"] = (workload2(fw, rounds), rounds, fw.layer.size)
            if "6" in only:
                w["6"] = workload6(fw, 5 if q else 15)
            if "5" in only:
                streams = 4 if q else 32
                w["5"] = (workload5(fw, streams), streams)
        finally:
            fw.stop()
            os.remove(fw.layer.path)  # 1 GiB of disk back before the containerd world
    if only & {"3", "4"}:
        import e2e_support as e2e
        e2e.require_everything()
        log("ACR-like world: fake IMDS/STS/ACR, realm, registry front (+ latency relay), OSS stand-in, containerd")
        layers = 20
        aw = AcrWorld(tmp, binary, big, layers).start()
        try:
            if "3" in only:
                rounds = 1 if q else 3
                w["3"] = (workload3(aw, rounds), rounds, aw.images["big"].layers[0].size, layers)
            if "4" in only:
                w["4"] = workload4(aw, 50 if q else 500)
        finally:
            aw.stop()
    if "7" in only:
        log("h2 world: docker-registry behind nghttpx (TLS, ALPN h2), proxies with http2: on / off")
        hw = H2World(tmp, binary, 64 * MIB).start()
        try:
            rounds, secs, gets = (1, 1, 1) if q else (3, 2, 3)
            w["7"] = (workload7(hw, rounds, secs, gets), rounds, secs, hw.layer.size, gets)
        finally:
            hw.stop()
    finished = datetime.datetime.now(datetime.timezone.utc)
    load_end = loadavg()
    text = report(args, command, mach, vers, load_start, load_end, started, finished, w)
    log("")
    log(text)
    if args.results:
        kept = ""
        old = ""
        if os.path.exists(args.results):
            with open(args.results) as f:
                old = f.read()
            if ANALYSIS_MARKER in old:
                kept = "\n" + old[old.index(ANALYSIS_MARKER):]
        if args.merge and old:
            text = merge_sections(old[:old.index(ANALYSIS_MARKER)] if ANALYSIS_MARKER in old else old, text, only,
                                  f"`{command}`, load average {load_start} at start, {load_end} at end")
        with open(args.results, "w") as f:
            f.write(text.rstrip("\n") + "\n" + kept)
        log(f"wrote {args.results}")
    log(f"bench total: {(finished - started).total_seconds():.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
