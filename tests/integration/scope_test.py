"""The pull scope (issue 10): the proxy against a fake kube-apiserver.

  python3 tests/integration/scope_test.py --proxy BUILD/proxy/acr-credential-proxy

Real sockets and real TLS: tests/support/fake_kube.py serves the node's pods
(list + chunked watch, bookmarks, 410 Gone, dropped connections, a slow watch)
behind a bearer token; the proxy reaches it through a kubeconfig
(--kubeconfig, --node-name). The upstream is a recording fake registry that
wants Basic credentials, so every case can say whether the proxy went
upstream at all and whether it sent credentials.

Cases: a pod in a watched namespace pulls (200, upstream saw the credentials);
another namespace or ServiceAccount gets a 404 at once naming the rule, the
upstream never contacted; a pod whose event arrives 2 s after the pull starts
still pulls; no pod at all -> 404 after waitForPod; `all` and `*`; init and
ephemeral containers; docker.io familiar names; a deleted pod; 410 after a
compaction (re-list); dropped watches (reconnect, pods added in the gap seen);
a slow watch; a bookmark moving the resourceVersion the next watch resumes
from; a rotated token file; a reload that changes namespaces; no scope
section (unscoped, said once); the add-on's ConfigMap form (default scope);
list failures at start retried; a scope without a reachable API server or
with a 403 (exit 1, never listens, no hosts.toml); /metrics; /v2/ never gated. The fake itself is checked first with plain
HTTP requests (list, watch events, bookmark, 410 after compact, 401).
"""

import base64
import http.client
import json
import os
import re
import signal
import socket
import ssl
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import fake_upstream  # noqa: E402
import harness  # noqa: E402
import proxy as proxy_mod  # noqa: E402
import secret_log  # noqa: E402
from fake_kube import FakeKube, write_secret_file  # noqa: E402

NODE = "n1"
REG = "reg.test"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MANIFEST = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","fake":true}'
WAIT_FOR_POD = 5.0


class World:
    binary = None
    tmp = None
    kube = None
    upstream = None
    password = None
    password_file = None
    token_file = None
    kubeconfig = None


def _upstream_handler(req):
    """A registry that wants Basic credentials for everything under /v2/ but the ping."""
    expected = "Basic " + base64.b64encode(f"robot:{World.password}".encode()).decode()
    challenge = [("WWW-Authenticate", 'Basic realm="fake-registry"'), ("Content-Type", "application/json")]
    if req.path == "/v2/":
        return 401, challenge, b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}'
    if req.header("Authorization") != expected:
        return 401, challenge, b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}'
    digest = "sha256:" + "ab" * 32
    return 200, [("Content-Type", OCI_MANIFEST), ("Docker-Content-Digest", digest)], MANIFEST


def setUpModule():
    harness.require_tools("openssl")
    World.binary = proxy_mod.find_binary()
    World.tmp = harness.TempDir("scope")
    World.kube = FakeKube(World.tmp.join("kube"), node=NODE).start()
    World.upstream = fake_upstream.FakeServer(_upstream_handler, "fake-registry").start()
    World.password = harness.secrets_token()
    secret_log.register_basic("registry-password", "robot", World.password)  # the header the proxy builds
    World.password_file = World.tmp.join("robot.password")
    write_secret_file(World.password_file, World.password)
    World.token_file = World.tmp.join("kube-token")
    World.kubeconfig = World.kube.write_kubeconfig(World.tmp.join("kubeconfig"), token_file=World.token_file)


def tearDownModule():
    if World.kube is not None:
        World.kube.stop()


def registries():
    return {
        "registries": [
            {"host": REG, "auth": {"type": "basic", "username": "robot", "passwordFile": World.password_file}},
            {"host": "docker.io", "auth": {"type": "basic", "username": "robot", "passwordFile": World.password_file}},
        ],
        "endpointOverrides": {REG: f"http://127.0.0.1:{World.upstream.port}",
                              "docker.io": f"http://127.0.0.1:{World.upstream.port}"},
    }


def scoped(namespaces, service_accounts, wait="5s"):
    cfg = registries()
    cfg["scope"] = {"namespaces": namespaces, "serviceAccounts": service_accounts, "waitForPod": wait}
    return cfg


def start_proxy(name, cfg, extra=(), kubeconfig=True):
    p = proxy_mod.Proxy(World.binary, World.tmp.join(name), cfg, name=name)
    p.extra_args = (["--kubeconfig", World.kubeconfig, "--node-name", NODE] if kubeconfig else []) + list(extra)
    return p.start()


def manifest_path(repo, host=REG, ref="v1"):
    return f"/v2/{repo}/manifests/{ref}?ns={host}"


def pull(p, repo, host=REG, ref="v1"):
    """GET the manifest through the proxy: (response, seconds taken)."""
    started = time.monotonic()
    r = p.request("GET", manifest_path(repo, host, ref), [("Accept", OCI_MANIFEST)])
    return r, time.monotonic() - started


def upstream_hits(repo):
    """Requests the fake registry saw for this repository, and how many carried credentials."""
    seen = [r for r in World.upstream.seen() if r.path.startswith(f"/v2/{repo}/")]
    return len(seen), sum(1 for r in seen if r.header("Authorization"))


def error_message(r):
    try:
        errors = json.loads(r.body)["errors"]
        return errors[0]["code"], errors[0]["message"]
    except (ValueError, KeyError, IndexError, TypeError):
        return None, r.body[:200]


def metric(text, name, labels=None):
    pattern = re.escape(name) + (re.escape("{" + labels + "}") if labels else "") + r" (\S+)$"
    for line in text.splitlines():
        m = re.match(pattern, line)
        if m:
            return float(m.group(1))
    return None


def wait_indexed(p, count, what):
    """Polls /metrics until acp_scope_pods_indexed == count (the proxy has seen the events)."""
    harness.wait_until(lambda: metric(p.metrics(), "acp_scope_pods_indexed") == count, 15, what)


def node_pods():
    return sum(1 for pod in World.kube.pods() if pod["spec"].get("nodeName") == NODE)


# ---------------------------------------------------------------------------


class FakeApiServer(harness.TestCaseBase):
    """fake_kube itself, with plain HTTP requests over its TLS: faithful enough to test against."""

    def _get(self, path, token=None, timeout=10):
        ctx = ssl.create_default_context(cafile=World.kube.ca)
        conn = http.client.HTTPSConnection("127.0.0.1", World.kube.port, timeout=timeout, context=ctx)
        conn.request("GET", path, headers={"Authorization": f"Bearer {token or World.kube.token}",
                                           "Accept": "application/json"})
        return conn, conn.getresponse()

    def test_list_watch_bookmark_and_410(self):
        c = harness.Checks(self)
        k = World.kube
        sel = f"fieldSelector=spec.nodeName%3D{NODE}"
        uid = k.add_pod("selftest", "a", ["reg.test/selftest/a:v1"])
        k.add_pod("selftest", "elsewhere", ["reg.test/selftest/b:v1"], node="n2")
        conn, r = self._get(f"/api/v1/pods?{sel}")
        body = json.loads(r.read())
        conn.close()
        c.eq((r.status, body["kind"]), (200, "PodList"), "list answer")
        names = [i["metadata"]["name"] for i in body["items"] if i["metadata"]["namespace"] == "selftest"]
        c.eq(names, ["a"], "the field selector keeps the other node's pod out")
        c.check("kind" not in body["items"][0], "list items carry no kind (as the apiserver's)")
        rv = body["metadata"]["resourceVersion"]

        conn, r = self._get(f"/api/v1/pods?{sel}&watch=1&allowWatchBookmarks=true&resourceVersion={rv}"
                            "&timeoutSeconds=10")
        c.eq((r.status, r.getheader("Transfer-Encoding")), (200, "chunked"), "watch answer head")
        k.modify_pod(uid, images=["reg.test/selftest/a:v2"])
        k.bookmark()
        k.delete_pod(uid)
        events = [json.loads(r.readline()) for _ in range(3)]
        c.eq([e["type"] for e in events], ["MODIFIED", "BOOKMARK", "DELETED"], "events in order")
        c.eq(events[1]["object"], {"kind": "Pod", "apiVersion": "v1",
                                   "metadata": {"resourceVersion": events[0]["object"]["metadata"]["resourceVersion"]}},
             "a bookmark is a Pod with only its resourceVersion")
        k.compact()
        err = json.loads(r.readline())
        c.eq((err["type"], err["object"]["code"], err["object"]["reason"]), ("ERROR", 410, "Expired"),
             "an open watch gets 410 Expired when the history is compacted")
        c.check(err["object"]["message"].startswith("too old resource version: "), "the apiserver's message")
        c.eq(r.read(), b"", "then the stream ends")
        conn.close()

        conn, r = self._get(f"/api/v1/pods?{sel}&watch=1&resourceVersion={rv}&timeoutSeconds=5")
        err = json.loads(r.readline())
        c.eq(err["object"]["code"], 410, "a watch from a compacted resourceVersion: 410 at once")
        conn.close()

        conn, r = self._get(f"/api/v1/pods?{sel}&watch=1&timeoutSeconds=1")
        started = time.monotonic()
        rest = r.read()
        c.check(time.monotonic() - started < 3, "timeoutSeconds ends the stream")
        c.check(all(json.loads(l)["type"] == "ADDED" for l in rest.splitlines() if l.strip()),
                "a watch without resourceVersion starts with ADDED for every pod")
        conn.close()

        conn, r = self._get(f"/api/v1/pods?{sel}", token="not-the-token")
        c.eq((r.status, json.loads(r.read())["reason"]), (401, "Unauthorized"), "a wrong token: 401 Status")
        conn.close()
        c.done()

    def test_drop_closes_without_the_last_chunk(self):
        k = World.kube
        conn, r = self._get(f"/api/v1/pods?fieldSelector=spec.nodeName%3D{NODE}&watch=1"
                            f"&resourceVersion={k.resource_version}&timeoutSeconds=30")
        harness.wait_until(lambda: k.stats()["open_watches"] >= 1, 5, "the watch to open")
        k.drop_watches()
        with self.assertRaises(http.client.IncompleteRead):
            r.read()
        conn.close()


class Scoped(harness.TestCaseBase):
    """namespaces [default, team-a], serviceAccounts [default, puller], waitForPod 5s."""

    proxy = None

    @classmethod
    def setUpClass(cls):
        k = World.kube
        k.add_pod("default", "web", [f"{REG}/team/web:v1"])
        k.add_pod("team-a", "api", [f"{REG}/team-a/api@sha256:" + "cd" * 32], service_account="puller")
        k.add_pod("other", "intruder", [f"{REG}/other/app:v1"])
        k.add_pod("default", "builder", [f"{REG}/ci/builder:v1"], service_account="builder")
        k.add_pod("default", "initdemo", [f"{REG}/main/app:v1"], init_images=[f"{REG}/init/tool:v1"],
                  ephemeral_images=[f"{REG}/debug/shell:v1"])
        k.add_pod("default", "hub", ["alpine", "nginx:1.25"])
        k.add_pod("default", "far-away", [f"{REG}/other-node/app:v1"], node="n2")
        cls.proxy = start_proxy("scoped", scoped(["default", "team-a"], ["default", "puller"]))
        wait_indexed(cls.proxy, node_pods(), "the proxy to index the node's pods")

    @classmethod
    def tearDownClass(cls):
        if cls.proxy is not None:
            cls.proxy.stop()

    def watched(self):
        return [self.proxy]

    def test_a_v2_ping_is_never_gated(self):
        for ns in (REG, "docker.io", "unknown.example"):
            r = self.proxy.request("GET", f"/v2/?ns={ns}")
            self.assertIn(r.status, (200, 401), f"/v2/?ns={ns}: {r!r}")

    def test_in_scope_pods_pull_with_credentials(self):
        c = harness.Checks(self)
        for repo, ref in (("team/web", "v1"), ("team-a/api", "sha256:" + "cd" * 32)):
            r, took = pull(self.proxy, repo, ref=ref)
            c.eq(r.status, 200, f"{repo}: status")
            c.eq(r.body, MANIFEST, f"{repo}: the upstream's manifest")
            hits, with_auth = upstream_hits(repo)
            c.check(with_auth >= 1, f"{repo}: the upstream saw credentials ({hits} requests, {with_auth} with)")
        c.done()

    def _denied_at_once(self, c, repo, phrases):
        r, took = pull(self.proxy, repo)
        code, message = error_message(r)
        c.eq((r.status, code), (404, "NAME_UNKNOWN"), f"{repo}: 404 NAME_UNKNOWN")
        c.check(took < 1.0, f"{repo}: answered at once ({took:.2f}s)")
        for phrase in phrases:
            c.check(phrase in message, f"{repo}: the message names {phrase!r}: {message!r}")
        c.eq(upstream_hits(repo), (0, 0), f"{repo}: the upstream was never contacted")
        return message

    def test_other_namespace_is_refused_at_once_naming_the_rule(self):
        c = harness.Checks(self)
        self._denied_at_once(c, "other/app", ["namespace other", "watch-namespace: default,team-a"])
        c.done()

    def test_other_service_account_is_refused_naming_it(self):
        c = harness.Checks(self)
        self._denied_at_once(c, "ci/builder", ["builder", "service-account: default,puller"])
        c.done()

    def test_init_and_ephemeral_container_images_count(self):
        c = harness.Checks(self)
        for repo in ("main/app", "init/tool", "debug/shell"):
            r, _ = pull(self.proxy, repo)
            c.eq(r.status, 200, f"{repo}: status")
        c.done()

    def test_docker_hub_familiar_names_normalise(self):
        c = harness.Checks(self)
        for repo, ref in (("library/alpine", "latest"), ("library/nginx", "1.25")):
            r, _ = pull(self.proxy, repo, host="docker.io", ref=ref)
            c.eq(r.status, 200, f"docker.io/{repo}: status ({error_message(r)[1]!r})")
        c.done()  # an unreferenced docker.io name: test_no_pod_at_all_is_404_after_wait_for_pod

    def test_a_pod_that_arrives_2s_later_still_pulls(self):
        result = {}

        def request():
            result["r"], result["took"] = pull(self.proxy, "late/app")

        t = threading.Thread(target=request)
        started = time.monotonic()
        t.start()
        harness.wait_until(lambda: time.monotonic() - started >= 2.0, 5, "2 s to pass", interval=0.05)
        World.kube.add_pod("default", "late", [f"{REG}/late/app:v1"])
        t.join(30)
        c = harness.Checks(self)
        c.eq(result["r"].status, 200, f"the late pod's pull: {error_message(result['r'])}")
        c.check(2.0 <= result["took"] < WAIT_FOR_POD, f"answered once the pod was seen ({result['took']:.2f}s)")
        c.done()

    def test_no_pod_at_all_is_404_after_wait_for_pod(self):
        c = harness.Checks(self)
        # Concurrently (each waits waitForPod on its own): no pod, another node's pod, a docker.io name.
        cases = (("nobody/app", REG), ("other-node/app", REG), ("library/busybox", "docker.io"))
        results = {}

        def request(repo, host):
            results[repo] = pull(self.proxy, repo, host=host, ref="latest" if host == "docker.io" else "v1")

        threads = [threading.Thread(target=request, args=case) for case in cases]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        for repo, host in cases:
            r, took = results[repo]
            code, message = error_message(r)
            c.eq((r.status, code), (404, "NAME_UNKNOWN"), f"{repo}: 404")
            c.check(WAIT_FOR_POD - 0.2 <= took < WAIT_FOR_POD + 3, f"{repo}: after waitForPod ({took:.2f}s)")
            c.check(f"no pod on this node references {host}/{repo}" in message, f"{repo}: message {message!r}")
            c.eq(upstream_hits(repo), (0, 0), f"{repo}: the upstream was never contacted")
        c.done()

    def test_a_deleted_pod_no_longer_pulls(self):
        c = harness.Checks(self)
        k = World.kube
        uid = k.add_pod("default", "short-lived", [f"{REG}/short/lived:v1"])
        r, _ = pull(self.proxy, "short/lived")
        c.eq(r.status, 200, "while the pod exists")
        k.delete_pod(uid)
        wait_indexed(self.proxy, node_pods(), "the deletion to reach the proxy")
        r, took = pull(self.proxy, "short/lived")
        c.eq(r.status, 404, f"after the pod is gone ({took:.2f}s): {error_message(r)}")
        c.done()

    def test_x_relist_after_410(self):
        c = harness.Checks(self)
        k = World.kube
        lists = k.stats()["lists"]
        relists = metric(self.proxy.metrics(), "acp_scope_relists_total")
        k.compact()
        harness.wait_until(lambda: k.stats()["lists"] > lists, 15, "the proxy to list again after 410")
        harness.wait_until(lambda: metric(self.proxy.metrics(), "acp_scope_relists_total") > relists, 10,
                           "acp_scope_relists_total to grow")
        k.add_pod("team-a", "after-compact", [f"{REG}/compact/after:v1"])
        r, took = pull(self.proxy, "compact/after")
        c.eq(r.status, 200, f"a pod added after the re-list pulls ({took:.2f}s)")
        r, took = pull(self.proxy, "other/app")
        c.eq(r.status, 404, "and the out-of-scope pod is still refused")
        c.check(took < 1.0, f"at once ({took:.2f}s)")
        c.done()

    def test_y_bookmark_moves_the_resource_version(self):
        c = harness.Checks(self)
        k = World.kube
        harness.wait_until(lambda: k.stats()["open_watches"] >= 1, 15, "the proxy's watch to be open")
        k.add_pod("default", "on-n2", [f"{REG}/n2/app:v1"], node="n2")  # a newer RV, no event for node n1
        sent = k.stats()["bookmarks"]
        k.bookmark()
        harness.wait_until(lambda: k.stats()["bookmarks"] > sent, 10, "the bookmark to be sent")
        bookmark_rv = k.resource_version
        watches = k.stats()["watches"]
        k.end_watches()  # a clean end: the proxy reads everything before it, the bookmark included
        harness.wait_until(lambda: k.stats()["watches"] > watches, 15, "the proxy to watch again")
        target = [t for m, t in k.stats()["requests"] if "watch=" in t][-1]
        query = dict(kv.split("=", 1) for kv in target.split("?", 1)[1].split("&"))
        c.eq(query.get("resourceVersion"), str(bookmark_rv), f"the next watch resumes from the bookmark ({target})")
        c.eq(query.get("allowWatchBookmarks"), "true", "bookmarks asked for")
        c.eq(query.get("fieldSelector"), f"spec.nodeName%3D{NODE}", "only this node's pods")
        c.done()

    def test_y_reconnect_after_dropped_watches(self):
        c = harness.Checks(self)
        k = World.kube
        before = metric(self.proxy.metrics(), "acp_scope_watch_reconnects_total")
        k.drop_watches()
        k.add_pod("default", "in-the-gap", [f"{REG}/gap/app:v1"])  # while no watch is open
        harness.wait_until(lambda: metric(self.proxy.metrics(), "acp_scope_watch_reconnects_total") > before, 15,
                           "acp_scope_watch_reconnects_total to grow")
        r, took = pull(self.proxy, "gap/app")
        c.eq(r.status, 200, f"the pod added during the gap is seen ({took:.2f}s): {error_message(r)}")
        harness.wait_until(lambda: metric(self.proxy.metrics(), "acp_scope_watch_up") == 1, 15, "the watch up again")
        c.done()

    def test_z_slow_watch(self):
        c = harness.Checks(self)
        k = World.kube
        k.slow(1.5)
        try:
            started = time.monotonic()
            k.add_pod("default", "slow", [f"{REG}/slow/app:v1"])
            r, took = pull(self.proxy, "slow/app")
            c.eq(r.status, 200, f"the slowly delivered pod pulls: {error_message(r)}")
            c.check(time.monotonic() - started >= 1.4, "after the delay")
        finally:
            k.slow(0)
        c.done()

    def test_zz_metrics_and_access_log(self):
        c = harness.Checks(self)
        text = self.proxy.metrics()
        c.eq(metric(text, "acp_scope_pods_indexed"), float(node_pods()), "acp_scope_pods_indexed")
        c.check((metric(text, "acp_scope_references_indexed") or 0) >= 8, "acp_scope_references_indexed")
        c.check((metric(text, "acp_scope_denied_total", 'reason="out_of_scope"') or 0) >= 2, "denied out_of_scope")
        c.check((metric(text, "acp_scope_denied_total", 'reason="not_referenced"') or 0) >= 1, "denied not_referenced")
        c.eq(metric(text, "acp_scope_watch_up"), 1.0, "acp_scope_watch_up")
        log = self.proxy.log_text()
        c.check('error="scope: ' in log, "a scope 404's access log line carries error=\"scope: …\"")
        c.check(World.kube.stats()["auth_ok"] is True, "the API server saw a valid bearer token")
        c.done()


class Words(harness.TestCaseBase):
    """`all` namespaces and `*` ServiceAccounts, as the add-on documents them."""

    def test_all_and_star_allow_every_namespace_and_service_account(self):
        c = harness.Checks(self)
        k = World.kube
        k.add_pod("words-ns", "any", [f"{REG}/words/any:v1"], service_account="whoever")
        k.add_pod("kube-system", "sys", [f"{REG}/words/sys:v1"], service_account="node-agent")
        for ns_form, sa_form in (("all", "*"), (["all"], ["*"]), ("*", "*")):
            p = start_proxy("words", scoped(ns_form, sa_form))
            try:
                for repo in ("words/any", "words/sys"):
                    r, _ = pull(p, repo)
                    c.eq(r.status, 200, f"namespaces {ns_form!r}, serviceAccounts {sa_form!r}: {repo}")
            finally:
                p.stop()
        # "all" as a ServiceAccount is a name (the add-on's words): pods running as "whoever" are refused.
        p = start_proxy("words-sa-all", scoped("all", ["all"]))
        try:
            r, took = pull(p, "words/any")
            c.eq(r.status, 404, "serviceAccounts [all] is the ServiceAccount named all")
            c.check(took < 1.0, "refused at once")
        finally:
            p.stop()
        c.done()


class LiveChanges(harness.TestCaseBase):
    def test_reload_changes_namespaces_live(self):
        c = harness.Checks(self)
        World.kube.add_pod("reload-ns", "app", [f"{REG}/reload/app:v1"])
        p = start_proxy("reload", scoped(["default"], ["default"]))
        try:
            r, _ = pull(p, "reload/app")
            c.eq(r.status, 404, "before the reload: namespace reload-ns is not watched")
            p.config["scope"]["namespaces"] = ["default", "reload-ns"]
            p.write_config()
            os.kill(p.child.pid, signal.SIGHUP)
            harness.wait_until(lambda: "configuration reloaded" in p.log_text(), 15, "the reload")
            r, _ = pull(p, "reload/app")
            c.eq(r.status, 200, "after the reload the same pod pulls (no restart)")
        finally:
            c.eq(p.stop(), 0, "exit status")
        c.done()

    def test_rotated_token_file_is_used_on_the_next_connect(self):
        c = harness.Checks(self)
        k = World.kube
        token_file = World.tmp.join("rotating-token")
        kubeconfig = k.write_kubeconfig(World.tmp.join("kubeconfig-rotating"), token_file=token_file)
        old = k.token
        p = proxy_mod.Proxy(World.binary, World.tmp.join("rotate"), scoped(["default"], ["default"]), name="rotate")
        p.extra_args = ["--kubeconfig", kubeconfig, "--node-name", NODE]
        p.start()
        try:
            new = k.add_token()
            write_secret_file(token_file, new)
            k.revoke_token(old)  # only the new token works from now on
            k.drop_watches()
            k.add_pod("default", "after-rotation", [f"{REG}/rotation/app:v1"])
            harness.wait_until(lambda: k.stats()["auth_ok"] and k.stats()["last_token"] == k.token_index(new), 20,
                               "a request with the new token")
            r, took = pull(p, "rotation/app")
            c.eq(r.status, 200, f"pods are still seen with the rotated token ({took:.2f}s)")
        finally:
            # The other proxies of this run read World.token_file, which still holds the old token.
            k.tokens[k.tokens.index(None)] = old
            c.eq(p.stop(), 0, "exit status")
        c.done()


class Forms(harness.TestCaseBase):
    def test_yaml_without_scope_serves_every_pod_and_says_so_once(self):
        c = harness.Checks(self)
        requests = len(World.kube.stats()["requests"])
        p = start_proxy("unscoped", registries(), kubeconfig=False)
        try:
            r, _ = pull(p, "unscoped/anything")
            c.eq(r.status, 200, "no scope: any repository")
            log = p.log_text()
            c.eq(log.count("no `scope` section"), 1, "the unscoped line, once")
            c.check(p.config_path in log and "serving every pod on this node (unscoped)" in log,
                    "it names the file and says unscoped")
            c.eq(metric(p.metrics(), "acp_scope_pods_indexed"), None, "no scope metrics without a scope")
        finally:
            c.eq(p.stop(), 0, "exit status")
        c.eq(len(World.kube.stats()["requests"]), requests, "the API server was not asked")
        c.done()

    def test_a_node_with_no_pods_warns_that_the_node_name_may_be_wrong(self):
        c = harness.Checks(self)
        p = start_proxy("wrong-node", scoped(["default"], ["default"]), extra=["--node-name", "no-such-node"])
        try:
            log = p.log_text()
            c.check("no pod is bound to node no-such-node" in log and "it came from --node-name" in log,
                    f"the warning names the node and where its name came from: {log[-800:]!r}")
            c.eq(metric(p.metrics(), "acp_scope_pods_indexed"), 0.0, "pods indexed")
        finally:
            c.eq(p.stop(), 0, "exit status")
        c.done()

    def test_configmap_form_applies_the_add_on_defaults(self):
        c = harness.Checks(self)
        k = World.kube
        k.add_pod("cm-ns", "app", [f"{REG}/cm/other-ns:v1"])
        k.add_pod("default", "cm-app", [f"{REG}/cm/default-ns:v1"])
        k.add_pod("cm-ns", "cm-sa", [f"{REG}/cm/other-sa:v1"], service_account="robot")
        cases = (
            # the add-on's keys left out: namespace default, ServiceAccount default
            ("cm-defaults", {"expiring-threshold": "15m"},
             {"cm/default-ns": 200, "cm/other-ns": 404, "cm/other-sa": 404}),
            # the doc's cross-region example's scope keys: watch-namespace "all", service-account "default"
            ("cm-doc-example", {"service-account": "default", "watch-namespace": "all", "expiring-threshold": "15m",
                                "notify-email": "c*@aliyuncs.com"},
             {"cm/default-ns": 200, "cm/other-ns": 200, "cm/other-sa": 404}),
        )
        for name, data, want in cases:
            d = World.tmp.join(name + "-configmap")
            os.makedirs(d, exist_ok=True)
            for key, value in data.items():
                with open(os.path.join(d, key), "w") as f:
                    f.write(value)
            p = start_proxy(name, registries(), ["--acr-configuration", d])
            try:
                for repo, status in want.items():
                    r, _ = pull(p, repo)
                    c.eq(r.status, status, f"{name}: {repo} ({error_message(r)[1]!r})")
                c.check("no `scope` section" not in p.log_text(), f"{name}: never unscoped")
            finally:
                c.eq(p.stop(), 0, f"{name}: exit status")
        c.done()


class Refusals(harness.TestCaseBase):
    """A scope with no API server: exit 1 with the reason, never listening."""

    def _run(self, name, extra, env=None, timeout=40):
        d = World.tmp.join(name)
        os.makedirs(d, exist_ok=True)
        port = harness.free_port()
        cfg = scoped(["default"], ["default"])
        cfg["listen"] = f"127.0.0.1:{port}"
        cfg["adminListen"] = f"127.0.0.1:{harness.free_port()}"
        cfg["log"] = {"level": "debug", "format": "text"}
        path = os.path.join(d, "config.yaml")
        with open(path, "w") as f:
            f.write(proxy_mod.to_yaml(cfg) + "\n")
        child = harness.Child(name, [World.binary, "serve", "--config", path, *extra], os.path.join(d, "log"),
                              env=dict(os.environ, **(env or {})))
        listened = []

        def exited():
            with socket.socket() as s:
                s.settimeout(0.2)
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    listened.append(True)
            return not child.alive()

        started = time.monotonic()
        harness.wait_until(exited, timeout, f"{name} to exit")
        took = time.monotonic() - started
        return child.stop(check=False), child.log_text(), listened, took

    def test_api_server_down_or_forbidden_at_start(self):
        # Both proxies retry for their whole start budget (10 s) before refusing: run them side by side.
        c = harness.Checks(self)
        dead = harness.free_port()
        kc = World.tmp.join("kubeconfig-dead")
        with open(World.kubeconfig) as f:
            doc = json.load(f)
        doc["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{dead}"
        with open(kc, "w") as f:
            json.dump(doc, f)
        certs = World.tmp.join("refuse-down-certs")
        os.makedirs(certs, exist_ok=True)
        results = {}

        def run(name, extra):
            try:
                results[name] = self._run(name, extra)
            except Exception as e:  # noqa: BLE001 — reported below
                results[name] = e

        World.kube.forbidden = True
        try:
            threads = [threading.Thread(target=run, args=("refuse-down", ["--kubeconfig", kc, "--node-name", NODE,
                                                                         "--certs-dir", certs])),
                       threading.Thread(target=run, args=("refuse-403", ["--kubeconfig", World.kubeconfig,
                                                                        "--node-name", NODE]))]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
        finally:
            World.kube.forbidden = False
        for name in ("refuse-down", "refuse-403"):
            if isinstance(results.get(name), Exception) or name not in results:
                c.check(False, f"{name}: {results.get(name)!r}")
                c.done()
        status, log, listened, took = results["refuse-down"]
        c.eq(status, 1, "API server down: exit status")
        c.eq(os.listdir(certs), [], "no hosts.toml written (containerd is never pointed at a proxy that refused)")
        c.check(f"cannot list the pods of node {NODE} from https://127.0.0.1:{dead}" in log,
                f"the message names the node and the server: {log[-600:]!r}")
        c.eq(listened, [], "API server down: never listened")
        c.check(took < 30, f"gave up within the start budget ({took:.1f}s)")
        status, log, listened, _ = results["refuse-403"]
        c.eq(status, 1, "403: exit status")
        c.check(f"cannot list the pods of node {NODE} from {World.kube.url}" in log and "403" in log,
                f"the message names the node, the server and the 403: {log[-600:]!r}")
        c.eq(listened, [], "403: never listened")
        c.done()

    def test_transient_list_failures_at_start_are_retried(self):
        c = harness.Checks(self)
        k = World.kube
        lists = k.stats()["lists"]
        k.fail_lists(2, status=500)
        p = start_proxy("retry-start", scoped(["default"], ["default"]))
        try:
            c.eq(k.stats()["lists"] - lists, 3, "two failed lists, then the one that worked")
            c.check("failed (attempt 1)" in p.log_text() and "500" in p.log_text(), "each failure is logged")
        finally:
            c.eq(p.stop(), 0, "exit status")
        c.done()

    def test_no_kubeconfig_outside_a_pod(self):
        c = harness.Checks(self)
        env = {k: "" for k in ("KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT")}
        status, log, listened, took = self._run("refuse-no-api", ["--node-name", NODE], env=env)
        c.eq(status, 1, "exit status")
        c.check("KUBERNETES_SERVICE_HOST is not set" in log, f"the message says why: {log[-600:]!r}")
        c.check(took < 5, f"at once ({took:.1f}s)")
        c.eq(listened, [], "never listened")
        c.done()


if __name__ == "__main__":
    sys.exit(harness.run_tests())
