"""The unit's SystemCallFilter= lets the proxy do its whole job.

  python3 tests/systemd/syscalls_test.py --proxy BUILD/proxy/acr-credential-proxy --unit BUILD/systemd/acr-credential-proxy.service

CI has no systemd as PID 1, so the filter cannot be tried live. Instead the
proxy runs its whole life under `strace -f` (every thread): start with
NOTIFY_SOCKET and a watchdog, ACR temporary credentials from the fake ECS role
/ STS / ACR OpenAPI on the control thread, a pull of manifest and blob (a 307
to the OSS stand-in) through the token realm, a reload by SIGHUP and by file
change (inotify), SIGTERM and drain. Every system call it made must be in the
unit's allow list (SystemCallFilter= lines, groups expanded with
`systemd-analyze syscall-filter`, deny lines `~...` applied after), or the
test names the calls systemd would refuse with EPERM.

Suite 'nosan': under ASan/UBSan the runtime makes calls the real binary never
does, so scripts/test runs it in the plain build only.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import acr_like  # noqa: E402
import harness  # noqa: E402
import oci_image  # noqa: E402
import proxy as proxy_mod  # noqa: E402
from oci_image import OCI_INDEX, OCI_MANIFEST, LayerSpec  # noqa: E402

REPO = "syscalls/app"


def arg(name):
    for i, a in enumerate(sys.argv):
        if a == name and i + 1 < len(sys.argv):
            return sys.argv[i + 1]
    return None


def expand(group, cache={}):  # noqa: B006 - memo
    """The system calls in `group` ("@system-service", or a plain name), nested groups expanded."""
    if not group.startswith("@"):
        return {group}
    if group not in cache:
        out = subprocess.run(["systemd-analyze", "syscall-filter", group], capture_output=True, text=True,
                             check=True).stdout
        names = set()
        for line in out.splitlines()[1:]:
            word = line.strip()
            if not word or word.startswith("#"):
                continue
            names |= expand(word.split()[0])
        cache[group] = names
    return cache[group]


def unit_filter(unit_text):
    """The allow set the unit's SystemCallFilter= lines define (systemd.exec(5): the first
    line without '~' makes an allow list; '~' lines remove from it)."""
    allowed = None
    for line in unit_text.splitlines():
        m = re.match(r"\s*SystemCallFilter=(.*)$", line)
        if not m:
            continue
        spec = m.group(1).strip()
        deny = spec.startswith("~")
        names = set()
        for word in spec.lstrip("~").split():
            names |= expand(word)
        if deny:
            allowed = (allowed or set()) - names
        else:
            allowed = (allowed or set()) | names
    return allowed


class Syscalls(harness.TestCaseBase):
    def test_every_call_the_proxy_makes_is_allowed_by_the_unit(self):
        harness.require_tools("strace", "systemd-analyze", "docker-registry", "skopeo")
        with open(arg("--unit")) as f:
            allowed = unit_filter(f.read())
        self.assertTrue(allowed and "read" in allowed and "reboot" not in allowed, "the unit's filter parsed")
        binary = proxy_mod.find_binary()
        tmp = harness.TempDir("syscalls")
        acr = acr_like.AcrLike(tmp.join("acr")).start()
        self.addCleanup(acr.stop)
        image = oci_image.build_image(tmp.join("layout"), [LayerSpec(200_000, 1)], tag="v1", seed="syscalls")
        acr.push_layout(image.layout, "v1", REPO)

        notify = tmp.join("notify.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(notify)
        self.addCleanup(sock.close)
        trace = tmp.join("strace.out")
        p = proxy_mod.Proxy(binary, tmp.join("proxy"), acr.proxy_config(followRedirects=False))
        p.env = {**acr.proxy_env(), "NOTIFY_SOCKET": notify, "WATCHDOG_USEC": "200000"}
        # strace -f: every thread; -qq: no attach chatter; names only, summarised below.
        p.wrapper = ["strace", "-f", "-qq", "-o", trace, "--"]
        p.start(timeout=60)
        with open(f"/proc/{p.child.pid}/task/{p.child.pid}/children") as f:
            proxy_pid = int(f.read().split()[0])  # strace's one child: the proxy itself
        c = harness.Checks(self)
        accept = [("Accept", OCI_MANIFEST), ("Accept", OCI_INDEX)]
        ns = f"?ns={acr_like.DOMAIN}"
        r = p.request("GET", f"/v2/{REPO}/manifests/v1{ns}", accept)
        c.eq(r.status, 200, "manifest through the proxy")
        layer = json.loads(r.body)["layers"][0]["digest"] if r.status == 200 else None
        if layer:
            b = p.request("GET", f"/v2/{REPO}/blobs/{layer}{ns}")
            c.check(b.status in (200, 307), f"blob through the proxy: {b.status}")
        os.kill(proxy_pid, signal.SIGHUP)
        harness.wait_until(lambda: p.log_text().count("configuration reloaded") >= 1, 20, "the SIGHUP reload")
        p.config["log"] = {"level": "debug", "format": "text"}
        p.write_config()
        harness.wait_until(lambda: p.log_text().count("configuration reloaded") >= 2, 20, "two reloads")
        os.kill(proxy_pid, signal.SIGTERM)  # strace exits with its tracee's status
        harness.wait_until(lambda: not p.child.alive(), 60, "the proxy to drain and exit")
        c.eq(p.stop(), 0, "exit status under strace")

        used = set()
        with open(trace) as f:
            for line in f:
                m = re.match(r"\d+\s+([a-z0-9_]+)\(", line)
                if m:
                    used.add(m.group(1))
        c.check(len(used) > 20, f"strace saw the proxy's calls ({len(used)})")
        refused = sorted(used - allowed)
        print(f"{len(used)} distinct system calls; outside the unit's filter: {refused or 'none'}", flush=True)
        c.eq(refused, [], "system calls the unit's SystemCallFilter= would refuse")
        c.done()


if __name__ == "__main__":
    sys.exit(harness.run_tests())
