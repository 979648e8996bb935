#!/usr/bin/env python3
"""The pull scope end to end (issue 10): a real containerd pulls through CRI (as
kubelet does) via the proxy, which gives the node's ACR credentials only to
images that an in-scope pod on this node references.

Set-up, inside a private network namespace holding only loopback: the
ACR-like registry (tests/support/acr_like.py), a fake kube-apiserver
(tests/support/fake_kube.py, TLS, bearer token from a file) that holds the
node's pods, the proxy with

    scope: {namespaces: [default], serviceAccounts: [default], waitForPod: 5s}

and `serve --kubeconfig F --node-name e2e-node`, hosts.toml from `hosts
install`, containerd 1.6 with CRI. containerd never has credentials: a pull
works only when the proxy injects them.

  S1 a pod in a watched namespace with an allowed ServiceAccount: its image pulls.
  S2 a pod in another namespace: the proxy answers 404 at once naming
     watch-namespace; containerd falls back to the registry itself (its error
     names https://DOMAIN/v2/…: unreachable here, a made-up domain) and the
     pull fails; the registry never saw a request for that repository.
  S3 the same for a pod whose ServiceAccount is not allowed (service-account).
  S4 a pod whose watch event arrives 2 s after the pull started: the request
     waits for it and the pull succeeds.
  S5 an image no pod references: 404 after waitForPod, pull fails.
  S6 `all` and `*` (a reload of the config file): S2's and S3's images pull;
     the rule back to [default] denies them again.
  S7 /metrics: pods and references indexed, denials by reason, watch up.

Usage: scope_test.py --proxy build/proxy/acr-credential-proxy
"""

import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import e2e_support as e2e  # noqa: E402
from e2e_support import DOMAIN, CRI_NAMESPACE, acr_like, cri, harness, proxy_mod  # noqa: E402

import fake_kube  # noqa: E402  (tests/support is on sys.path through e2e_support)

NODE = "e2e-node"
IMAGES = {  # repository -> seed
    "scope/app": "scope-app",
    "scope/other-ns": "scope-other-ns",
    "scope/other-sa": "scope-other-sa",
    "scope/late": "scope-late",
    "scope/nobody": "scope-nobody",
}
SCOPE = {"namespaces": ["default"], "serviceAccounts": ["default"], "waitForPod": "5s"}


class World:
    tmp = None
    acr = None
    kube = None
    node = None
    images = {}


def ref(repo):
    return f"{DOMAIN}/{repo}:v1"


def setUpModule():
    e2e.require_everything()
    binary = proxy_mod.find_binary()
    started = time.monotonic()
    World.tmp = tmp = harness.TempDir("e2e-scope")
    World.acr = acr = acr_like.AcrLike(tmp.join("acr")).start()
    for repo, seed in IMAGES.items():
        World.images[repo] = e2e.small(tmp.join(repo.replace("/", "-")), seed=seed)
        acr.push_layout(World.images[repo].layout, "v1", repo)
    World.kube = kube = fake_kube.FakeKube(tmp.join("kube"), node=NODE).start()
    kube.bookmark_every(1)
    kube.add_pod("default", "app", [ref("scope/app")], node=NODE)
    kube.add_pod("team-b", "web", [ref("scope/other-ns")], node=NODE)
    kube.add_pod("default", "builder", [ref("scope/other-sa")], service_account="builder", node=NODE)
    # Another node's pod referencing S5's image: not this node's, so it does not count.
    kube.add_pod("default", "elsewhere", [ref("scope/nobody")], node="another-node")
    kubeconfig = tmp.join("kubeconfig")
    kube.write_kubeconfig(kubeconfig, token_file=tmp.join("kube-token"))
    World.node = e2e.Node(tmp, acr, binary, proxy_extra={"scope": dict(SCOPE)},
                          proxy_args=["--kubeconfig", kubeconfig, "--node-name", NODE]).start()
    print(f"setup: ACR-like registry, {len(IMAGES)} images, fake API server, proxy, containerd+CRI in "
          f"{time.monotonic() - started:.1f}s", flush=True)


def tearDownModule():
    if World.node:
        World.node.stop()
    if World.kube:
        World.kube.stop()
    if World.acr:
        World.acr.stop()


class Base(harness.TestCaseBase):
    def watched(self):
        return [World.node.proxy] if World.node and World.node.proxy else []

    def setUp(self):
        self.assertEqual(World.node.forget(), {}, "containerd still holds content")
        World.acr.reset_stats()
        self.mark = len(World.node.proxy.log_text())

    def access(self, repo):
        return [x for x in World.node.proxy.log_text()[self.mark:].splitlines()
                if " access: " in x and f"repository={repo} " in x]

    def registry_saw(self, repo):
        return [e for e in World.acr.stats()["front"] if f"/v2/{repo}/" in e["p"]]

    def pulls(self, c, repo):
        image = World.images[repo]
        image_ref, seconds = World.node.cri_pull(ref(repo), timeout=120)
        c.eq(image_ref, image.config.digest, f"PullImage {repo}")
        e2e.check_content(c, World.node, CRI_NAMESPACE, [image.manifest] + image.blobs())
        return seconds

    def refused(self, c, repo, rule_text, at_once=True):
        """The pull fails; the proxy answered 404 naming `rule_text`; the registry saw nothing of it."""
        started = time.monotonic()
        with self.assertRaises(cri.CriError) as caught:
            World.node.cri_pull(ref(repo), timeout=120)
        seconds = time.monotonic() - started
        # After the proxy's 404 containerd went on to the registry itself (hosts.toml's server), which
        # is a made-up name here: the pull fails there, where a pod's own imagePullSecrets would apply.
        details = caught.exception.details or ""
        c.check(f'"https://{DOMAIN}/v2/{repo}/manifests/v1"' in details,
                f"containerd did not fall back to the registry itself: {details[:400]}")
        lines = self.access(repo)
        c.check(len(lines) >= 1, f"no access line for {repo}")
        c.check(all("status=404" in x for x in lines), f"the proxy's answers for {repo}: {lines}")
        c.check(all(rule_text in x for x in lines), f"{rule_text!r} not named in {lines}")
        c.check(all("auth_injected=no" in x for x in lines), f"credentials injected for {repo}: {lines}")
        c.eq(self.registry_saw(repo), [], f"requests for {repo} at the registry")
        if at_once:
            c.check(all(float(x.split("duration_ms=")[1].split()[0]) < 1000 for x in lines),
                    f"a 404 was not at once: {lines}")
        return seconds, caught.exception


class S1InScopeTest(Base):
    def test_a_pod_in_a_watched_namespace_pulls(self):
        c = harness.Checks(self)
        seconds = self.pulls(c, "scope/app")
        lines = self.access("scope/app")
        c.check(lines and all("status=200" in x or "status=307" in x for x in lines), f"access lines {lines}")
        c.check(any("auth_injected=yes" in x for x in lines), f"credentials injected: {lines}")
        c.check(seconds < 30, f"pull took {seconds:.1f}s")
        c.done()


class S2OtherNamespaceTest(Base):
    def test_a_pod_in_another_namespace_gets_no_credentials(self):
        c = harness.Checks(self)
        self.refused(c, "scope/other-ns", "namespace team-b (watch-namespace: default)")
        c.done()


class S3OtherServiceAccountTest(Base):
    def test_a_pod_with_another_service_account_gets_no_credentials(self):
        c = harness.Checks(self)
        self.refused(c, "scope/other-sa", "service-account: default")
        c.done()


class S4LatePodTest(Base):
    def test_a_pod_whose_event_arrives_2s_after_the_pull_started_still_pulls(self):
        c = harness.Checks(self)
        timer = threading.Timer(2.0, lambda: World.kube.add_pod("default", "late", [ref("scope/late")], node=NODE))
        started = time.monotonic()
        timer.start()
        try:
            self.pulls(c, "scope/late")
        finally:
            timer.join()
        seconds = time.monotonic() - started
        c.check(2.0 <= seconds < 30, f"the pull took {seconds:.1f}s (the pod came after 2 s)")
        manifests = [x for x in self.access("scope/late") if "kind=manifest" in x]
        c.check(manifests and float(manifests[0].split("duration_ms=")[1].split()[0]) >= 1500,
                f"the first manifest request waited for the pod: {manifests[:1]}")
        c.done()


class S5NobodyTest(Base):
    def test_an_image_no_pod_on_this_node_references_is_refused_after_the_wait(self):
        c = harness.Checks(self)
        seconds, _ = self.refused(c, "scope/nobody", "no pod on this node references", at_once=False)
        c.check(seconds >= 5, f"refused after {seconds:.1f}s, before waitForPod (5 s)")
        c.done()


class S6AllAndStarTest(Base):
    def reload(self, scope):
        proxy = World.node.proxy

        def reloads_ok():
            return [x for x in proxy.metrics().splitlines() if x.startswith('acp_config_reloads_total{result="ok"}')]

        was = reloads_ok()
        proxy.config["scope"] = scope
        proxy.write_config()
        harness.wait_until(lambda: reloads_ok() != was, 15, "the config reload")

    def test_all_and_star_allow_every_namespace_and_service_account(self):
        c = harness.Checks(self)
        try:
            self.reload({"namespaces": "all", "serviceAccounts": "*", "waitForPod": "5s"})
            self.pulls(c, "scope/other-ns")
            self.pulls(c, "scope/other-sa")
            self.reload({"namespaces": ["default"], "serviceAccounts": "*", "waitForPod": "5s"})
            World.node.forget()
            self.pulls(c, "scope/other-sa")
            World.node.forget()
            World.acr.reset_stats()
            self.mark = len(World.node.proxy.log_text())
            self.refused(c, "scope/other-ns", "watch-namespace: default")
        finally:
            self.reload(dict(SCOPE))
        World.node.forget()
        World.acr.reset_stats()
        self.mark = len(World.node.proxy.log_text())
        self.refused(c, "scope/other-sa", "service-account: default")
        c.done()


class S7MetricsTest(Base):
    def test_metrics_count_pods_references_and_denials(self):
        c = harness.Checks(self)
        m = {}
        for line in World.node.proxy.metrics().splitlines():
            if line.startswith("acp_scope_"):
                name, value = line.rsplit(" ", 1)
                m[name] = float(value)
        c.check(m.get("acp_scope_pods_indexed", 0) >= 3, f"pods indexed {m}")
        c.check(m.get("acp_scope_references_indexed", 0) >= 1, f"references indexed {m}")
        c.eq(m.get("acp_scope_watch_up"), 1.0, "watch up")
        c.check(m.get('acp_scope_denied_total{reason="out_of_scope"}', 0) >= 1, f"denials {m}")
        c.check(m.get('acp_scope_denied_total{reason="not_referenced"}', 0) >= 1, f"denials {m}")
        c.done()


class S8DoctorTest(Base):
    def doctor(self, image):
        node = World.node
        proc = harness.run([node.binary, "doctor", "--config", node.proxy.config_path, "--certs-dir", node.certs_dir,
                            "--kubeconfig", World.tmp.join("kubeconfig"), "--node-name", NODE, "--image", image,
                            "--timeout", "5s"], timeout=120, check=False)
        return [x for x in proc.stdout.splitlines() if "scope" in x]

    def test_doctor_reports_the_rule_the_node_and_who_references_an_image(self):
        c = harness.Checks(self)
        lines = self.doctor(ref("scope/other-ns"))
        text = "\n".join(lines)
        c.check(any(x.startswith("\u2713") and "watch-namespace: default; service-account: default" in x
                    for x in lines), f"the rule:\n{text}")
        c.check(any(x.startswith("\u2713") and f"node {NODE} (--node-name)" in x and "pod(s)" in x for x in lines),
                f"the node's pods listed:\n{text}")
        c.check(any(x.startswith("\u2717") and "denied" in x and "team-b/web" in x and "out of scope" in x
                    for x in lines), f"the image's verdict and its pod:\n{text}")
        lines = self.doctor(ref("scope/app"))
        text = "\n".join(lines)
        c.check(any(x.startswith("\u2713") and "allowed" in x and "default/app" in x for x in lines),
                f"an in-scope image:\n{text}")
        c.done()


if __name__ == "__main__":
    # The ACR domain is made up: run where not even its lookup can leave the machine.
    harness.enter_private_netns()
    started = time.monotonic()
    status = harness.run_tests()
    print(f"e2e scope_test: {time.monotonic() - started:.1f}s", flush=True)
    sys.exit(status)
