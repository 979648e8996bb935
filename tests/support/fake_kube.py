#!/usr/bin/env python3
"""A faithful fake of kube-apiserver for the two requests the pod watcher makes.

  GET /api/v1/pods?fieldSelector=spec.nodeName%3D<node>
      -> 200 PodList {"kind":"PodList","apiVersion":"v1",
                      "metadata":{"resourceVersion":"N"},"items":[Pod...]}
         (items carry no kind/apiVersion, as the real list does)
  GET /api/v1/pods?fieldSelector=...&watch=1&allowWatchBookmarks=true
                  &resourceVersion=RV&timeoutSeconds=N
      -> 200, Content-Type: application/json, Transfer-Encoding: chunked,
         one JSON object per line: {"type":"ADDED|MODIFIED|DELETED|BOOKMARK|ERROR",
         "object":{...}}.
         * resourceVersion absent or "0": an ADDED for every current pod first.
         * otherwise every change after RV, then live changes.
         * RV older than the last compact(): one ERROR event whose object is a
           Status {"status":"Failure","reason":"Expired","code":410,
           "message":"too old resource version: RV (OLDEST)"}, then the
           stream ends; the same for an open watch when compact() runs.
         * BOOKMARK: a Pod with only metadata.resourceVersion (kind Pod,
           apiVersion v1), when the client allowed bookmarks (bookmark_every()).
         * timeoutSeconds ends the stream cleanly (the last chunk is sent).
         * a pod that stops matching the field selector is DELETED for that
           watch, one that starts matching is ADDED (as the apiserver does).
  Every request needs "Authorization: Bearer <token>" with a token the fake
  accepts (401 Status otherwise; 403 Status when `forbidden` is set).

TLS by default (a throwaway CA and a certificate for 127.0.0.1/localhost, made
by registry.make_tls_material), plain HTTP with tls=False. Threads only,
python3 standard library; listens on 127.0.0.1 port 0.

Python control API (tests import this module):
  add_pod(namespace, name, images, service_account="default", node=None,
          init_images=(), ephemeral_images=(), uid=None) -> uid
  modify_pod(uid, images=..., service_account=..., node=..., ...); delete_pod(uid)
  compact(); drop_watches() (abrupt); end_watches() (clean end); slow(seconds);
  fail_lists(n, status=500); bookmark(); bookmark_every(seconds);
  add_token() / revoke_token(token); forbidden = True
  stats() -> dict(lists, watches, open_watches, events, bookmarks, auth_ok,
          last_token (index into tokens, never the value), requests [(method, target)])
  write_kubeconfig(path, token_file=None, token=None, ...)
A tiny control endpoint for other processes (the e2e test), same bearer token:
  POST /_fake/pods {"namespace","name","images",...} -> {"uid"}; DELETE
  /_fake/pods/<uid>; POST /_fake/compact; POST /_fake/drop-watches; GET /_fake/stats.

By hand: python3 tests/support/fake_kube.py --node n1 --kubeconfig-out F
prints its URL and serves until SIGTERM.

Tokens are random and registered with secret_log (kind "kube-bearer-token");
the fake never prints one.
"""

import json
import os
import queue
import secrets
import socket
import ssl
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import secret_log  # noqa: E402

_DROP = object()  # queue item: close the watch socket abruptly
_END = object()   # queue item: end the watch cleanly (stop())


def _status(code, reason, message, details=None):
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}
    if details:
        body["details"] = details
    return body


def _parse_selector(text):
    """fieldSelector -> {field: value}; None when malformed. Only = and ==."""
    out = {}
    if not text:
        return out
    for term in text.split(","):
        field, sep, value = term.partition("==")
        if not sep:
            field, sep, value = term.partition("=")
        if not sep or "!" in field or not field:
            return None
        out[field.strip()] = value.strip()
    return out


def _matches(selector, pod):
    for field, value in selector.items():
        if field == "spec.nodeName":
            if pod["spec"].get("nodeName", "") != value:
                return False
        elif field == "metadata.namespace":
            if pod["metadata"]["namespace"] != value:
                return False
        elif field == "metadata.name":
            if pod["metadata"]["name"] != value:
                return False
        else:
            return False
    return True


class _Watch:
    def __init__(self, selector, bookmarks):
        self.selector = selector
        self.bookmarks = bookmarks
        self.queue = queue.Queue()
        self.sock = None


class FakeKube:
    def __init__(self, directory, node="node-1", tls=True):
        self.dir = directory
        self.node = node
        os.makedirs(directory, exist_ok=True)
        self.tls = None
        if tls:
            import registry

            self.tls = registry.make_tls_material(os.path.join(directory, "tls"), ("localhost",), ("127.0.0.1",))
        self.tokens = []  # accepted tokens, by index; revoked ones become None
        self.token = self.add_token()
        self.forbidden = False
        self._lock = threading.Lock()
        self._pods = {}        # uid -> pod object (with kind/apiVersion)
        self._history = []     # (rv, old pod or None, new pod or None)
        self._rv = 100         # the current resourceVersion
        self._too_old_upto = 0  # every RV <= this is too old (after compact())
        self._watches = set()
        self._slow = 0.0
        self._fail_lists = []  # statuses of the next lists
        self._bookmark_every = None
        self._stats = {"lists": 0, "watches": 0, "events": 0, "bookmarks": 0, "auth_ok": None,
                       "last_token": None, "requests": [], "rejected": 0}
        self._server = None
        self._thread = None
        self._bookmark_thread = None
        self._stopping = threading.Event()

    # -- lifecycle ---------------------------------------------------------

    @property
    def scheme(self):
        return "https" if self.tls else "http"

    @property
    def url(self):
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def ca(self):
        return self.tls["ca"] if self.tls else None

    def start(self):
        ctx = None
        if self.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self.tls["cert"], self.tls["key"])
        fake = self

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True

            def finish_request(self, request, client_address):
                # TLS handshake in the request's own thread: a slow client never stalls accept().
                if ctx is not None:
                    try:
                        request.settimeout(30)
                        request = ctx.wrap_socket(request, server_side=True)
                        request.settimeout(None)
                    except (ssl.SSLError, OSError):
                        return
                self.RequestHandlerClass(request, client_address, self)

            def handle_error(self, request, client_address):
                pass  # a dropped client is not news

        self._server = Server(("127.0.0.1", 0), _make_handler(fake))
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        daemon=True, name="fake-kube")
        self._thread.start()
        self._bookmark_thread = threading.Thread(target=self._bookmark_loop, daemon=True, name="fake-kube-bookmarks")
        self._bookmark_thread.start()
        return self

    def stop(self):
        """Stops listening and ends every open watch (without the last chunk)."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self.drop_watches()

    # -- tokens ------------------------------------------------------------

    def add_token(self):
        """A new accepted token (random, registered for the secret scan); returns it."""
        token = secret_log.register("kube-bearer-token", "kube-" + secrets.token_urlsafe(24))
        self.tokens.append(token)
        return token

    def revoke_token(self, token):
        self.tokens = [None if t == token else t for t in self.tokens]

    def token_index(self, token):
        return self.tokens.index(token)

    # -- pods --------------------------------------------------------------

    def _pod(self, namespace, name, uid, images, service_account, node, init_images, ephemeral_images, phase,
             labels):
        def containers(prefix, imgs):
            return [{"name": f"{prefix}{i}", "image": img, "imagePullPolicy": "IfNotPresent"}
                    for i, img in enumerate(imgs)]

        spec = {"containers": containers("c", images), "serviceAccountName": service_account,
                "serviceAccount": service_account, "restartPolicy": "Always", "schedulerName": "default-scheduler"}
        if node:
            spec["nodeName"] = node
        if init_images:
            spec["initContainers"] = containers("init", init_images)
        if ephemeral_images:
            spec["ephemeralContainers"] = [dict(c, targetContainerName="c0")
                                           for c in containers("debugger", ephemeral_images)]
        return {
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": {"name": name, "namespace": namespace, "uid": uid, "resourceVersion": "",
                         "creationTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                         "labels": dict(labels or {"app": name})},
            "spec": spec,
            "status": {"phase": phase, "qosClass": "BestEffort"},
        }

    def add_pod(self, namespace, name, images, service_account="default", node=None, init_images=(),
                ephemeral_images=(), uid=None, phase="Pending", labels=None):
        uid = uid or str(uuid.uuid4())
        pod = self._pod(namespace, name, uid, list(images), service_account,
                        self.node if node is None else node, list(init_images), list(ephemeral_images), phase, labels)
        self._change(uid, pod)
        return uid

    def modify_pod(self, uid, images=None, service_account=None, node=None, init_images=None, ephemeral_images=None,
                   phase=None, labels=None):
        with self._lock:
            old = self._pods[uid]
        spec = old["spec"]
        pod = self._pod(
            old["metadata"]["namespace"], old["metadata"]["name"], uid,
            [c["image"] for c in spec["containers"]] if images is None else list(images),
            spec.get("serviceAccountName", "default") if service_account is None else service_account,
            spec.get("nodeName", "") if node is None else node,
            [c["image"] for c in spec.get("initContainers", [])] if init_images is None else list(init_images),
            [c["image"] for c in spec.get("ephemeralContainers", [])] if ephemeral_images is None
            else list(ephemeral_images),
            old["status"]["phase"] if phase is None else phase,
            old["metadata"]["labels"] if labels is None else labels)
        pod["metadata"]["creationTimestamp"] = old["metadata"]["creationTimestamp"]
        self._change(uid, pod)

    def delete_pod(self, uid):
        self._change(uid, None)

    def pods(self):
        with self._lock:
            return [json.loads(json.dumps(p)) for p in self._pods.values()]

    def _change(self, uid, new):
        with self._lock:
            old = self._pods.get(uid)
            if old is None and new is None:
                raise KeyError(uid)
            self._rv += 1
            if new is not None:
                new["metadata"]["resourceVersion"] = str(self._rv)
                self._pods[uid] = new
            else:
                old = json.loads(json.dumps(old))
                old["metadata"]["resourceVersion"] = str(self._rv)
                del self._pods[uid]
            entry = (self._rv, old, new)
            self._history.append(entry)
            for w in list(self._watches):
                ev = _event_for(w.selector, old, new)
                if ev:
                    w.queue.put(ev)

    # -- faults and knobs --------------------------------------------------

    def compact(self):
        """Every resourceVersion so far becomes too old: open watches get the
        410 ERROR and end; a watch from an old RV gets it at once. A list
        after this returns a newer, watchable RV."""
        with self._lock:
            self._too_old_upto = self._rv
            self._rv += 1
            self._history.clear()
            for w in list(self._watches):
                w.queue.put(("expired", None))

    def drop_watches(self):
        """Closes every open watch connection abruptly (no last chunk, no TLS close_notify)."""
        with self._lock:
            watches = list(self._watches)
        for w in watches:
            w.queue.put(_DROP)

    def end_watches(self):
        """Ends every open watch cleanly (the last chunk), as a timeoutSeconds would."""
        with self._lock:
            watches = list(self._watches)
        for w in watches:
            w.queue.put(_END)

    def slow(self, seconds):
        """Delays every event delivery and every list answer by `seconds` (0: off)."""
        self._slow = float(seconds)

    def fail_lists(self, n, status=500):
        with self._lock:
            self._fail_lists = [status] * n

    def bookmark_every(self, seconds):
        self._bookmark_every = seconds

    def bookmark(self):
        """A BOOKMARK now on every open watch that allows them."""
        with self._lock:
            rv = self._rv
            for w in self._watches:
                if w.bookmarks:
                    w.queue.put(("BOOKMARK", {"kind": "Pod", "apiVersion": "v1",
                                              "metadata": {"resourceVersion": str(rv)}}))

    def _bookmark_loop(self):
        last = time.monotonic()
        while not self._stopping.wait(0.05):
            every = self._bookmark_every
            if every and time.monotonic() - last >= every:
                last = time.monotonic()
                self.bookmark()

    def stats(self):
        with self._lock:
            s = dict(self._stats)
            s["requests"] = list(self._stats["requests"])
            s["open_watches"] = len(self._watches)
            s["resource_version"] = self._rv
            return s

    @property
    def resource_version(self):
        with self._lock:
            return self._rv

    # -- kubeconfig --------------------------------------------------------

    def write_kubeconfig(self, path, token_file=None, token=None, context="fake-kube", other_contexts=(),
                         ca_inline=False, set_current=True, user="acp-proxy"):
        """A kubeconfig pointing at this fake. token_file: the user reads the
        token from that file (written with the current token when absent);
        otherwise `token` (default: the current token) inline. other_contexts:
        more contexts (names) pointing at a closed port with no valid token."""
        import base64

        cluster = {"server": self.url}
        if self.tls:
            if ca_inline:
                with open(self.tls["ca"], "rb") as f:
                    cluster["certificate-authority-data"] = base64.b64encode(f.read()).decode()
            else:
                cluster["certificate-authority"] = self.tls["ca"]
        if token_file:
            if not os.path.exists(token_file):
                write_secret_file(token_file, self.token)
            user_body = {"tokenFile": token_file}
        else:
            user_body = {"token": token or self.token}
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": cluster}],
            "contexts": [{"name": context, "context": {"cluster": "fake", "user": user}}],
            "users": [{"name": user, "user": user_body}],
        }
        for name in other_contexts:
            doc["clusters"].append({"name": f"{name}-cluster", "cluster": {"server": "https://127.0.0.1:1"}})
            doc["users"].append({"name": f"{name}-user", "user": {"token": "not-a-valid-token-" + name}})
            doc["contexts"].append({"name": name, "context": {"cluster": f"{name}-cluster", "user": f"{name}-user"}})
        if set_current:
            doc["current-context"] = context
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=1)  # JSON is YAML
        return path

    # -- request handling --------------------------------------------------

    def _authorize(self, header):
        ok = False
        index = None
        if header and header.startswith("Bearer "):
            presented = header[len("Bearer "):]
            for i, t in enumerate(self.tokens):
                if t is not None and secrets.compare_digest(t, presented):
                    ok, index = True, i
        with self._lock:
            self._stats["auth_ok"] = ok
            self._stats["last_token"] = index
            if not ok:
                self._stats["rejected"] += 1
        return ok

    def _list(self, selector):
        with self._lock:
            self._stats["lists"] += 1
            fail = self._fail_lists.pop(0) if self._fail_lists else None
            items = []
            for pod in self._pods.values():
                if _matches(selector, pod):
                    item = json.loads(json.dumps(pod))
                    del item["kind"], item["apiVersion"]
                    items.append(item)
            rv = self._rv
        if fail is not None:
            return fail, _status(fail, {500: "InternalError", 403: "Forbidden", 503: "ServiceUnavailable",
                                        429: "TooManyRequests"}.get(fail, "Unknown"),
                                 f"fake-kube: injected list failure {fail}")
        return 200, {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": str(rv)},
                     "items": items}

    def _open_watch(self, selector, rv_text, bookmarks):
        """Registers a watch; returns (watch, initial events) or (None, error event)."""
        w = _Watch(selector, bookmarks)
        with self._lock:
            self._stats["watches"] += 1
            initial = []
            if rv_text in ("", "0"):
                for pod in self._pods.values():
                    if _matches(selector, pod):
                        initial.append(("ADDED", json.loads(json.dumps(pod))))
            else:
                try:
                    rv = int(rv_text)
                except ValueError:
                    return None, ("ERROR", _status(400, "BadRequest", f"invalid resource version: {rv_text[:40]}"))
                if rv <= self._too_old_upto:
                    return None, ("ERROR", _status(410, "Expired",
                                                   f"too old resource version: {rv} ({self._too_old_upto + 1})"))
                for hrv, old, new in self._history:
                    if hrv > rv:
                        ev = _event_for(selector, old, new)
                        if ev:
                            initial.append(ev)
            self._watches.add(w)
        for ev in initial:
            w.queue.put(ev)
        return w, None

    def _close_watch(self, w):
        with self._lock:
            self._watches.discard(w)

    def _count(self, key):
        with self._lock:
            self._stats[key] += 1

    def _log_request(self, method, target):
        with self._lock:
            self._stats["requests"].append((method, target))


def _event_for(selector, old, new):
    """The watch event one change makes for a watcher with `selector`, or None."""
    was = old is not None and _matches(selector, old)
    now = new is not None and _matches(selector, new)
    if was and now:
        return ("MODIFIED", json.loads(json.dumps(new)))
    if now:
        return ("ADDED", json.loads(json.dumps(new)))
    if was:
        gone = json.loads(json.dumps(new if new is not None else old))
        return ("DELETED", gone)
    return None


def write_secret_file(path, value):
    """Writes a token file (0600) atomically: readers see the old or the new one."""
    tmp = f"{path}.tmp-{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    os.replace(tmp, path)


def _make_handler(fake):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def version_string(self):
            return "fake-kube"

        def log_message(self, *args):
            pass  # requests are in fake.stats()["requests"]; never headers

        def _send_json(self, code, body, extra_headers=()):
            data = (json.dumps(body) + "\n").encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-cache, private")
            for k, v in extra_headers:
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def _read_body(self):
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        def _auth(self):
            if not fake._authorize(self.headers.get("Authorization")):
                self._send_json(401, _status(401, "Unauthorized", "Unauthorized"))
                return False
            return True

        def do_GET(self):
            fake._log_request("GET", self.path)
            if not self._auth():
                return
            url = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
            if url.path.startswith("/_fake/"):
                return self._control("GET", url.path)
            if url.path != "/api/v1/pods":
                return self._send_json(404, _status(404, "NotFound", "the server could not find the requested resource"))
            if fake.forbidden:
                return self._send_json(403, _status(
                    403, "Forbidden",
                    'pods is forbidden: User "system:serviceaccount:kube-system:acr-credential-proxy" cannot '
                    'list resource "pods" in API group "" at the cluster scope', {"kind": "pods"}))
            selector = _parse_selector(query.get("fieldSelector", [""])[0])
            if selector is None:
                return self._send_json(400, _status(400, "BadRequest", "invalid field selector"))
            watch = query.get("watch", ["false"])[0] in ("1", "true", "True")
            if not watch:
                if fake._slow:
                    time.sleep(fake._slow)
                code, body = fake._list(selector)
                return self._send_json(code, body)
            timeout = None
            if "timeoutSeconds" in query:
                try:
                    timeout = int(query["timeoutSeconds"][0])
                except ValueError:
                    return self._send_json(400, _status(400, "BadRequest", "invalid timeoutSeconds"))
            bookmarks = query.get("allowWatchBookmarks", ["false"])[0] in ("1", "true", "True")
            self._watch(selector, query.get("resourceVersion", [""])[0], bookmarks, timeout)

        def _chunk(self, data):
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def _event_line(self, kind, obj):
            return (json.dumps({"type": kind, "object": obj}, separators=(",", ":")) + "\n").encode()

        def _watch(self, selector, rv_text, bookmarks, timeout):
            w, error = fake._open_watch(selector, rv_text, bookmarks)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Cache-Control", "no-cache, private")
            self.end_headers()
            self.wfile.flush()
            if w is None:
                self._chunk(self._event_line(*error))
                fake._count("events")
                self.wfile.write(b"0\r\n\r\n")
                self.close_connection = True
                return
            w.sock = self.connection
            deadline = time.monotonic() + timeout if timeout else None
            try:
                while True:
                    wait = None if deadline is None else max(0.0, deadline - time.monotonic())
                    try:
                        item = w.queue.get(timeout=wait)
                    except queue.Empty:
                        self.wfile.write(b"0\r\n\r\n")  # timeoutSeconds: a clean end
                        self.wfile.flush()
                        return
                    if item is _DROP:
                        self.close_connection = True
                        try:
                            self.connection.shutdown(socket.SHUT_RDWR)
                        except OSError:
                            pass
                        return
                    if item is _END:
                        self.wfile.write(b"0\r\n\r\n")
                        self.wfile.flush()
                        return
                    if fake._slow:
                        time.sleep(fake._slow)
                    kind, obj = item
                    if kind == "expired":
                        with fake._lock:
                            oldest = fake._too_old_upto + 1
                        status = _status(410, "Expired", f"too old resource version: {rv_text} ({oldest})")
                        self._chunk(self._event_line("ERROR", status))
                        fake._count("events")
                        self.wfile.write(b"0\r\n\r\n")
                        self.wfile.flush()
                        self.close_connection = True
                        return
                    self._chunk(self._event_line(kind, obj))
                    fake._count("bookmarks" if kind == "BOOKMARK" else "events")
                    if kind != "BOOKMARK":
                        rv_text = obj["metadata"].get("resourceVersion", rv_text)
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
                self.close_connection = True
            finally:
                fake._close_watch(w)

        def do_POST(self):
            fake._log_request("POST", self.path)
            body = self._read_body()
            if not self._auth():
                return
            self._control("POST", urllib.parse.urlsplit(self.path).path, body)

        def do_DELETE(self):
            fake._log_request("DELETE", self.path)
            if not self._auth():
                return
            self._control("DELETE", urllib.parse.urlsplit(self.path).path)

        def _control(self, method, path, body=b""):
            try:
                if method == "POST" and path == "/_fake/pods":
                    spec = json.loads(body or b"{}")
                    uid = fake.add_pod(spec["namespace"], spec["name"], spec.get("images", []),
                                       spec.get("service_account", "default"), spec.get("node"),
                                       spec.get("init_images", ()), spec.get("ephemeral_images", ()), spec.get("uid"))
                    return self._send_json(201, {"uid": uid})
                if method == "DELETE" and path.startswith("/_fake/pods/"):
                    fake.delete_pod(path[len("/_fake/pods/"):])
                    return self._send_json(200, {})
                if method == "POST" and path == "/_fake/compact":
                    fake.compact()
                    return self._send_json(200, {})
                if method == "POST" and path == "/_fake/drop-watches":
                    fake.drop_watches()
                    return self._send_json(200, {})
                if method == "GET" and path == "/_fake/stats":
                    s = fake.stats()
                    s["requests"] = [list(r) for r in s["requests"]]
                    return self._send_json(200, s)
            except (KeyError, ValueError) as e:
                return self._send_json(400, _status(400, "BadRequest", f"fake-kube control: {type(e).__name__}"))
            return self._send_json(404, _status(404, "NotFound", "no such control"))

    return Handler


def main():
    import argparse
    import signal

    ap = argparse.ArgumentParser(description="fake kube-apiserver (pods list + watch) on 127.0.0.1")
    ap.add_argument("--node", default="node-1", help="default node of added pods")
    ap.add_argument("--dir", help="where TLS material goes (default: a temp dir)")
    ap.add_argument("--plain-http", action="store_true")
    ap.add_argument("--kubeconfig-out", help="write a kubeconfig for it here")
    ap.add_argument("--token-file", help="the kubeconfig user reads its token from this file")
    ap.add_argument("--pod", action="append", default=[],
                    help="NAMESPACE/NAME=IMAGE[,IMAGE...][@SERVICEACCOUNT] (repeatable)")
    ap.add_argument("--bookmark-every", type=float, default=0)
    args = ap.parse_args()
    import tempfile

    directory = args.dir or tempfile.mkdtemp(prefix="fake-kube-")
    fake = FakeKube(directory, node=args.node, tls=not args.plain_http).start()
    for spec in args.pod:
        ref, _, rest = spec.partition("=")
        ns, _, name = ref.partition("/")
        images, _, sa = rest.partition("@")
        fake.add_pod(ns, name, [i for i in images.split(",") if i], sa or "default")
    if args.bookmark_every:
        fake.bookmark_every(args.bookmark_every)
    if args.kubeconfig_out:
        fake.write_kubeconfig(args.kubeconfig_out, token_file=args.token_file)
    print(f"fake-kube listening on {fake.url} (node {args.node})", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    while not done.wait(0.5):
        pass
    fake.stop()


if __name__ == "__main__":
    main()
