#!/usr/bin/env python3
"""The demo scripts/demo runs after building: a real containerd pulls a private
image from an ACR-like registry through the proxy, as kubelet would (CRI
PullImage), with no credentials anywhere on containerd's side.

  1. the bundled ACR-like registry on loopback (tests/support/acr_like.py):
     fake ECS instance metadata with a RAM role, fake STS and ACR OpenAPI,
     a token realm that accepts only the fake ACR's temporary passwords,
     docker-registry with `auth: token` whose blob GETs answer 307 to a
     signed URL on an OSS stand-in;
  2. a small image pushed to it (skopeo);
  3. the proxy with a demo config (one ACR instance, its domain made up);
     where its credentials come from, the temporary password it obtained
     (never its value);
  4. hosts.toml written by `acr-credential-proxy hosts install` into a temp
     certs dir, containerd 1.6 with CRI reading it;
  5. CRI PullImage with no AuthConfig: the token the proxy fetched, the
     proxy's access log, the layers the OSS stand-in served after the 307s,
     the digests containerd stored against what was pushed;
  6. everything stopped (also on Ctrl-C or an error).

Everything runs inside a private network namespace with only loopback: the
made-up registry name cannot even be looked up outside the machine.
Usage: /usr/bin/python3 tests/support/demo.py --proxy build/proxy/acr-credential-proxy
"""

import os
import signal
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import acr_like  # noqa: E402
import containerd as containerd_mod  # noqa: E402
import cri  # noqa: E402
import harness  # noqa: E402
import oci_image  # noqa: E402
import proxy as proxy_mod  # noqa: E402
from oci_image import LayerSpec  # noqa: E402

DOMAIN = acr_like.DOMAIN
REPO = "demo/hello"
TAG = "v1"

_t0 = time.monotonic()


def step(text):
    print(f"\n==> [{time.monotonic() - _t0:5.1f}s] {text}", flush=True)


def show(text, prefix="    | "):
    for line in text.rstrip("\n").splitlines():
        print(prefix + line, flush=True)


def say(text):
    print("    " + text, flush=True)


def mark(ok):
    return "ok" if ok else "MISMATCH"


def stop_stray_children(grace=5.0):
    """SIGTERM (then SIGKILL) any process this one started that is still running: a
    signal that arrived while a command was being started can leave one behind."""
    me = str(os.getpid())

    def children():
        out = []
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    with open(f"/proc/{pid}/stat") as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if fields[1] == me and fields[0] != "Z":
                    out.append(int(pid))
        return out

    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = children()
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while pids and time.monotonic() < deadline:
            for pid in list(pids):
                try:
                    if os.waitpid(pid, os.WNOHANG)[0] == pid:
                        pids.remove(pid)
                except ChildProcessError:
                    pids.remove(pid)
            time.sleep(0.05)  # polling with a deadline
        if not pids:
            return


def main():
    harness.require_tools("docker-registry", "skopeo", "containerd", "ctr")
    ok, reason = cri.available()
    if not ok:
        print(f"demo: {reason} (python: {sys.executable})", file=sys.stderr)
        return 1
    harness.enter_private_netns()
    binary = proxy_mod.find_binary()
    tmp = harness.TempDir("demo")
    print(f"demo: working in {tmp.path} inside a private network namespace (loopback only; "
          f"ACP_KEEP_TMP=1 keeps the dir)", flush=True)
    acr = proxy = ctd = client = None
    try:
        step("starting the bundled ACR-like registry on loopback")
        acr = acr_like.AcrLike(tmp.join("acr")).start()
        say(f"fake ECS metadata   {acr.fake.url('imds')}  (RAM role '{acr_like.ECS_ROLE}')")
        say(f"fake STS            {acr.fake.url('sts')}")
        say(f"fake ACR OpenAPI    {acr.fake.url('acr')}  (instance {acr_like.INSTANCE}, "
            f"GetAuthorizationToken signature checked)")
        say(f"token realm         {acr.tr.realm}  (accepts only the fake ACR's temporary passwords)")
        say(f"registry endpoint   {acr.front_url}  (in front of docker-registry {acr.tr.registry_url}: "
            f"auth: token, blob GET -> 307)")
        say(f"OSS stand-in        {acr.oss_url}  (signed URLs: Expires, OSSAccessKeyId, Signature)")
        say(f"made-up domain      {DOMAIN}  (only the proxy knows where it is)")
        r = harness.request("127.0.0.1", acr.ports["front"], "GET", f"/v2/{REPO}/manifests/{TAG}")
        say(f"anonymous GET /v2/{REPO}/manifests/{TAG} -> {r.status}, "
            f"WWW-Authenticate: {r.header('WWW-Authenticate')}")

        step("building a small image and pushing it")
        image = oci_image.build_image(tmp.join("layout"), [LayerSpec(300_000, 3), LayerSpec(4096, 1)],
                                      tag=TAG, seed="demo")
        acr.push_layout(image.layout, TAG, REPO)
        say(f"pushed {REPO}:{TAG}  manifest {image.manifest.digest}")
        for b in image.blobs():
            say(f"  {b.media_type:45} {b.digest[:19]}  {b.size:>8} B")

        step("starting the proxy with the demo config (no credentials in it)")
        proxy = proxy_mod.Proxy(binary, tmp.join("proxy"), acr.proxy_config(log={"level": "info", "format": "text"}),
                                env=acr.proxy_env()).start()
        say(f"$ {binary} serve --config {proxy.config_path}")
        with open(proxy.config_path) as f:
            show(f.read())
        harness.wait_until(lambda: proxy.admin("/readyz").status == 200, 30, "the proxy to be ready")
        say(f"ready: data 127.0.0.1:{proxy.port}, admin 127.0.0.1:{proxy.admin_port} (/readyz 200)")

        step("where the proxy's credentials came from (no AccessKey in its environment: the ECS RAM role)")
        for rec in acr.fake.requests():
            what = rec.get("action") or rec.get("path") or ""
            if rec.get("service") == "imds":
                what = f"{rec.get('method', '')} {rec.get('path', '')}"
            extra = ""
            if rec.get("service") == "acr":
                extra = (f"  instance {rec.get('instance')}, signed with "
                         f"{'STS credentials (security token)' if rec.get('sts') else 'an AccessKey'}")
            say(f"{rec.get('service', '?'):5} {what:55} -> {rec.get('status')}{extra}")
        for line in proxy.log_text().splitlines():
            if "temporary password" in line or "credential" in line.lower():
                show(line, "    proxy: ")

        step("hosts.toml for containerd, written by `hosts install`")
        certs = tmp.join("certs.d")
        argv = [binary, "hosts", "install", "--config", proxy.config_path, "--certs-dir", certs]
        say("$ " + " ".join(argv))
        show(harness.run(argv, timeout=60).stdout)
        hosts = os.path.join(certs, DOMAIN, "hosts.toml")
        say(f"{hosts}:")
        with open(hosts) as f:
            show(f.read())

        step("starting containerd 1.6 with CRI (registry config_path = the certs dir, no credentials)")
        ctd = containerd_mod.Containerd(tmp.join("containerd"), namespace="demo", cri_config_path=certs).start()
        client = ctd.cri()
        v = harness.wait_until(lambda: client.version(), 30, "containerd's CRI")
        say(f"containerd {v['runtime_version']}, CRI {v['runtime_api_version']}, socket {ctd.socket}")
        with open(os.path.join(ctd.dir, "config.toml")) as f:
            show("\n".join(x for x in f.read().splitlines() if "registry" in x or "config_path" in x))

        ref = f"{DOMAIN}/{REPO}:{TAG}"
        step(f"CRI PullImage {ref}  (as kubelet does; no AuthConfig, no pull secret)")
        acr.reset_stats()
        log_mark = len(proxy.log_text())
        started = time.monotonic()
        try:
            image_ref = client.pull_image(ref, timeout=120)
        except cri.CriError as e:
            say(f"PullImage FAILED after {time.monotonic() - started:.2f}s: {e.details}")
            show(proxy.log_text()[log_mark:][-3000:], "    proxy: ")
            return 1
        say(f"PullImage -> image_ref {image_ref}  in {time.monotonic() - started:.2f}s")

        st = acr.tr.stats()
        for scope, n in st["tokens_by_scope"].items():
            say(f"token realm: {n} bearer token(s) for {scope}, issued to "
                f"{', '.join(sorted(st['by_user']))} (the temporary user; password checked with the fake ACR)")
        say("proxy access log:")
        show("\n".join(x for x in proxy.log_text()[log_mark:].splitlines() if " access: " in x or "token for" in x),
             "    proxy: ")
        stats = acr.stats()
        say("registry front (what the proxy asked the registry):")
        for e in stats["front"]:
            say(f"  {e['m']:4} {e['p'][:90]:90} -> {e['s']}")
        say("OSS stand-in (what containerd fetched after the 307s, straight from 'OSS'):")
        for e in stats["oss"]:
            say(f"  {e['m']:4} {e['digest']}  {e['bytes']:>8} B -> {e['s']}"
                f"{'  (carried Authorization!)' if e['auth'] else ''}")

        step("what containerd stored, against what was pushed")
        status = client.image_status(ref)
        listed = ctd.content(containerd_mod.Containerd.CRI_NAMESPACE)
        all_ok = image_ref == image.config.digest
        say(f"image id      {image_ref}  {mark(image_ref == image.config.digest)}")
        want_digest = f"{DOMAIN}/{REPO}@{image.manifest.digest}"
        ok = bool(status) and status["repo_digests"] == [want_digest]
        all_ok = all_ok and ok
        say(f"repo digest   {status['repo_digests'][0] if status and status['repo_digests'] else None}  {mark(ok)}")
        for b in [image.manifest] + image.blobs():
            ok = b.digest in listed
            all_ok = all_ok and ok
            say(f"  {b.media_type:45} {b.digest}  {mark(ok)}")
        served = {e["digest"] for e in stats["oss"] if e["s"] == 200}
        ok = served == {b.digest for b in image.blobs()}
        all_ok = all_ok and ok
        say(f"every blob came from the OSS stand-in after a 307, the proxy carried no layer byte: {mark(ok)}")

        step("the proxy's own endpoints")
        r = proxy.request("GET", "/v2/")
        say(f"GET /v2/ -> {r.status} {r.body.decode(errors='replace')}  (never a 401: no pod secret is ever asked for)")
        r = proxy.request("GET", f"/v2/{REPO}/manifests/{TAG}?" + urllib.parse.urlencode({"ns": "docker.io"}))
        say(f"GET /v2/{REPO}/manifests/{TAG}?ns=docker.io -> {r.status} (not a configured registry: "
            f"containerd falls back at once)")
        metrics = [x for x in proxy.metrics().splitlines()
                   if x.startswith(("acp_acr_", "acp_token_fetches_total", "acp_token_cache_"))][:8]
        show("\n".join(metrics), "    metrics: ")
        print(f"\ndemo {'OK' if all_ok else 'FAILED'} in {time.monotonic() - _t0:.1f}s", flush=True)
        return 0 if all_ok else 1
    finally:
        step("stopping everything this demo started")
        if client is not None:
            client.close()
        if ctd is not None:
            ctd.stop()
            say("containerd stopped")
        if proxy is not None:
            say(f"proxy exited {proxy.stop(check=False)} after SIGTERM")
        if acr is not None:
            acr.stop()
            say("registry, token realm, OSS stand-in and fake Alibaba Cloud APIs stopped")
        stop_stray_children()


if __name__ == "__main__":
    sys.exit(main())
