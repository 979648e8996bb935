"""A local registry that behaves like an Alibaba Cloud ACR Enterprise Edition instance.

AcrLike(dir).start() runs, all on 127.0.0.1 with ports picked at run time:

  * fake Alibaba Cloud control plane (fake_alibaba.py, a child): ECS
    instance metadata with a RAM role, STS and the ACR OpenAPI
    (GetAuthorizationToken / ListInstanceEndpoint for INSTANCE, signatures
    verified). Temporary passwords live `password_lifetime_s`.
  * the token realm (token_registry.py's token server) in ACR's `dockerauth`
    role: it accepts exactly the temporary passwords the fake ACR issued and
    that are still valid (its `password_check_url` points at this module's
    spy, which asks the fake), and signs JWTs the registry verifies;
  * docker-registry 2.8 with `auth: token` and the `redirect` storage
    middleware, so a blob GET is answered `307 Temporary Redirect` after the
    registry checked the bearer token, as ACR does;
  * a front (this file as a child, `serve`) standing in for ACR's registry
    endpoint: a streaming HTTP/1.1 relay to the registry (bodies pass through
    in 64 KiB pieces, never buffered) that only signs the `Location` of
    those 307s the way an OSS pre-signed URL looks
        http://127.0.0.1:<oss>/docker/registry/v2/blobs/sha256/ab/<hex>/data
            ?Expires=<unix s>&OSSAccessKeyId=<id>&Signature=<base64 HMAC-SHA1>
    (facts §3.2; StringToSign "VERB\\n\\n\\n<Expires>\\n/<bucket>/<object>");
  * an OSS stand-in (same child): serves GET/HEAD of those objects straight
    from the registry's storage with sendfile (a 512 MiB blob never sits in
    Python memory), checks the signature, the key id and the expiry (403 XML
    errors as OSS words them), honours single `Range`s, and counts what it
    served per digest and whether a request carried `Authorization`.

The proxy is configured with `proxy_config()`: one `acrInstances` entry for
DOMAIN (made up; `endpointOverrides` sends it to the front, so it is never
resolved), `realmHosts: [127.0.0.1]` and every Alibaba endpoint pointing at
the fakes. Its credential source is the fake ECS RAM role (`proxy_env()`
removes any AccessKey from the environment), the default on a real node.

Pushes go straight to the registry (not through the front) as the realm's
`pusher` user: `with acr.pushing(): ...` lets the realm accept that user
for a while (otherwise only temporary passwords pass); push_layout() (skopeo)
and upload_image() (monolithic uploads streamed from disk, for layers skopeo
would re-compress) do that themselves.

stats() returns the front's and the OSS stand-in's counters; reset_stats()
clears them. mint_password() calls GetAuthorizationToken itself (ACS3
signature with a test AccessKey the fake knows), for a direct pull "with
credentials" to compare against. No secret is ever printed or put on argv.

Run as a script (`acr_like.py serve`, config JSON on stdin) it is the front
+ OSS + control child; nothing else in this file runs in that child.
"""

import base64
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import select
import signal
import subprocess
import sys
import threading
import time
import urllib.parse

import secret_log

_HERE = os.path.dirname(os.path.realpath(__file__))

REGION = "cn-hangzhou"
INSTANCE = "cri-acpe2e0000000001"
DOMAIN = "acp-e2e-registry.cn-hangzhou.cr.aliyuncs.com"  # made up: only the proxy knows where it is
SERVICE = f"registry.aliyuncs.com:{REGION}:china:{INSTANCE}"  # the EE realm's service string
TEMP_USER = "cr_temp_user"  # what the fake ACR's GetAuthorizationToken answers
ECS_ROLE = "acp-e2e-node-role"
BUCKET = f"{INSTANCE}-registry"  # EE blobs live in cri-<id>-registry.oss-<region>.aliyuncs.com
_LISTENING_PREFIX = "acr-like front listening: "
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
               "trailers", "transfer-encoding", "upgrade", "proxy-connection"}
_CHUNK = 64 * 1024


def oss_signature(secret, verb, expires, bucket, obj):
    """OSS V1 query-string signature: base64(HMAC-SHA1(secret, VERB\\n\\n\\nExpires\\n/bucket/object))."""
    string_to_sign = f"{verb}\n\n\n{expires}\n/{bucket}/{obj}"
    return base64.b64encode(hmac.new(secret.encode(), string_to_sign.encode(), hashlib.sha1).digest()).decode()


def _rfc3986(s):
    return urllib.parse.quote(s, safe="-_.~")


# ===========================================================================
# The child: front (relay to the registry), OSS stand-in, control


class _ServeState:
    def __init__(self, cfg):
        self.lock = threading.Lock()
        self.storage_root = os.path.realpath(cfg["storage_root"])
        self.bucket = cfg["bucket"]
        self.key_id = cfg["oss_key_id"]
        self.secret = cfg["oss_secret"]
        self.url_ttl_s = int(cfg.get("url_ttl_s", 600))
        self.check_target = cfg["check_target"]  # the fake ACR's control /check_password
        self.upstream_port = None
        self.oss_base = None  # "http://127.0.0.1:<oss port>", set once the OSS listener is up
        self.corrupt = {}  # digest -> how many more GETs of it get one byte flipped
        self.passwords = set()  # seen by the password-check spy (memory only, never logged)
        self.reset()

    def reset(self):
        self.front = []  # {"m", "p", "s"} per relayed request
        self.oss = []  # {"m", "digest", "s", "bytes", "auth", "range"} per OSS request
        self.password_checks = 0

    def stats(self):
        with self.lock:
            return {"front": list(self.front), "oss": list(self.oss), "password_checks": self.password_checks}


def _json_bytes(obj):
    return json.dumps(obj).encode()


def _digest_of_object(obj):
    # docker/registry/v2/blobs/sha256/ab/<hex>/data -> sha256:<hex>
    parts = obj.split("/")
    if len(parts) >= 5 and parts[-1] == "data" and parts[-5] == "blobs":
        return f"{parts[-4]}:{parts[-2]}"
    return None


def _make_handlers(state):
    import http.client
    from http.server import BaseHTTPRequestHandler

    class Quiet(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            pass

        def _reply(self, status, body, content_type, headers=()):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for k, v in headers:
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

    # -- the registry front ---------------------------------------------------

    class Front(Quiet):
        server_version = "acp-e2e-registry-front/1.0"
        _up = None

        def finish(self):
            if self._up is not None:
                self._up.close()
            super().finish()

        def _sign_location(self, value):
            base = state.oss_base
            if not base or not value.startswith(base + "/"):
                return value
            obj = urllib.parse.unquote(urllib.parse.urlsplit(value).path.lstrip("/"))
            expires = int(time.time()) + state.url_ttl_s
            # The registry redirects HEAD and GET alike; OSS signs the verb.
            sig = oss_signature(state.secret, self.command, expires, state.bucket, obj)
            query = urllib.parse.urlencode([("Expires", str(expires)), ("OSSAccessKeyId", state.key_id),
                                            ("Signature", sig)])
            return value.split("?", 1)[0] + "?" + query

        def _relay(self):
            entry = {"m": self.command, "p": self.path.split("?", 1)[0], "s": None}
            with state.lock:
                state.front.append(entry)
                del state.front[:-20000]
            if self.headers.get("Transfer-Encoding"):
                # Pulls carry no body; pushes go to the registry directly.
                entry["s"] = 411
                self.close_connection = True
                return self._reply(411, _json_bytes({"errors": [{"code": "UNSUPPORTED", "message": "chunked "
                                                                 "request bodies are not relayed"}]}),
                                   "application/json", [("Connection", "close")])
            length = int(self.headers.get("Content-Length") or 0)
            headers = [(k, v) for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP]
            resp = None
            for attempt in (0, 1):
                if self._up is None:
                    if state.upstream_port is None:
                        break
                    self._up = http.client.HTTPConnection("127.0.0.1", state.upstream_port, timeout=300)
                try:
                    self._up.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                    for k, v in headers:
                        self._up.putheader(k, v)
                    self._up.endheaders()
                    left = length
                    while left > 0:
                        piece = self.rfile.read(min(_CHUNK, left))
                        if not piece:
                            raise ConnectionResetError("client closed mid-body")
                        self._up.send(piece)
                        left -= len(piece)
                    resp = self._up.getresponse()
                    break
                except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                    # An idle keep-alive connection the registry closed: once more on a new one.
                    self._up.close()
                    self._up = None
                    if attempt == 1 or length:
                        break
                except OSError:
                    self._up.close()
                    self._up = None
                    break
            if resp is None:
                entry["s"] = 502
                return self._reply(502, _json_bytes({"errors": [{"code": "UNAVAILABLE",
                                                                 "message": "registry unreachable"}]}),
                                   "application/json")
            status = resp.status
            entry["s"] = status
            self.send_response_only(status, resp.reason)
            content_length = None
            for k, v in resp.getheaders():
                lk = k.lower()
                if lk in _HOP_BY_HOP:
                    continue
                if lk == "location" and 300 <= status < 400:
                    v = self._sign_location(v)
                if lk == "content-length":
                    content_length = v
                self.send_header(k, v)
            no_body = self.command == "HEAD" or status in (204, 304) or 100 <= status < 200
            chunked = not no_body and content_length is None
            if chunked:
                self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                if not no_body:
                    while True:
                        piece = resp.read(_CHUNK)
                        if not piece:
                            break
                        if chunked:
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                        else:
                            self.wfile.write(piece)
                    if chunked:
                        self.wfile.write(b"0\r\n\r\n")
                else:
                    resp.read()
            finally:
                if resp.will_close:
                    self._up.close()
                    self._up = None

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _relay

    # -- the OSS stand-in -----------------------------------------------------

    def oss_error(code, message):
        rid = secrets.token_hex(12).upper()
        return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error>\n  <Code>{code}</Code>\n'
                f"  <Message>{message}</Message>\n  <RequestId>{rid}</RequestId>\n"
                f"  <HostId>{state.bucket}.oss-{REGION}.aliyuncs.com</HostId>\n</Error>\n").encode(), rid

    class Oss(Quiet):
        server_version = "AliyunOSS"

        def _fail(self, entry, status, code, message):
            body, rid = oss_error(code, message)
            entry["s"] = status
            entry["code"] = code
            return self._reply(status, body, "application/xml", [("x-oss-request-id", rid)])

        def _serve(self):
            parts = urllib.parse.urlsplit(self.path)
            obj = urllib.parse.unquote(parts.path.lstrip("/"))
            query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
            entry = {"m": self.command, "digest": _digest_of_object(obj), "s": None, "bytes": 0,
                     "auth": self.headers.get("Authorization") is not None, "range": self.headers.get("Range"),
                     "ua": self.headers.get("User-Agent")}
            with state.lock:
                state.oss.append(entry)
                del state.oss[:-20000]
            if not all(k in query for k in ("Expires", "OSSAccessKeyId", "Signature")):
                return self._fail(entry, 403, "AccessDenied", "Anonymous access is forbidden for this operation.")
            if query["OSSAccessKeyId"] != state.key_id:
                return self._fail(entry, 403, "InvalidAccessKeyId",
                                  "The OSS Access Key Id you provided does not exist in our records.")
            want = oss_signature(state.secret, self.command, query["Expires"], state.bucket, obj)
            if not hmac.compare_digest(want, query["Signature"]):
                return self._fail(entry, 403, "SignatureDoesNotMatch",
                                  "The request signature we calculated does not match the signature you "
                                  "provided. Check your key and signing method.")
            try:
                expires = int(query["Expires"])
            except ValueError:
                expires = 0
            if expires < time.time():
                return self._fail(entry, 403, "AccessDenied", "Request has expired.")
            path = os.path.realpath(os.path.join(state.storage_root, obj))
            if not path.startswith(state.storage_root + os.sep) or not os.path.isfile(path):
                return self._fail(entry, 404, "NoSuchKey", "The specified key does not exist.")
            size = os.path.getsize(path)
            start, end, status = 0, size - 1, 200
            rng = self.headers.get("Range")
            if rng and rng.startswith("bytes=") and "," not in rng:
                a, _, b = rng[6:].partition("-")
                try:
                    if a:
                        start, end = int(a), (int(b) if b else size - 1)
                    else:
                        start, end = max(0, size - int(b)), size - 1
                except ValueError:
                    start, end = 0, size - 1
                else:
                    if start >= size or start > end:
                        return self._fail(entry, 416, "InvalidRange", "The requested range cannot be satisfied.")
                    end = min(end, size - 1)
                    status = 206
            count = end - start + 1
            digest = entry["digest"]
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(count))
            self.send_header("Accept-Ranges", "bytes")
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.send_header("ETag", '"%s"' % (digest or "").split(":")[-1][:32].upper())
            self.send_header("x-oss-object-type", "Normal")
            self.send_header("x-oss-request-id", secrets.token_hex(12).upper())
            self.end_headers()
            entry["s"] = status
            if self.command == "HEAD":
                return
            corrupt = False
            with state.lock:
                if digest and state.corrupt.get(digest, 0) > 0:
                    state.corrupt[digest] -= 1
                    corrupt = True
            with open(path, "rb") as f:
                if corrupt:
                    # The same length, one byte different: only the digest check can tell.
                    f.seek(start)
                    data = bytearray(f.read(count))
                    if data:
                        data[-1] ^= 0xFF
                    self.wfile.write(bytes(data))
                    entry["bytes"] = len(data)
                    entry["corrupted"] = True
                    return
                sent, offset = 0, start
                sock = self.connection.fileno()
                while sent < count:
                    n = os.sendfile(sock, f.fileno(), offset, min(count - sent, 8 << 20))
                    if n == 0:
                        break
                    sent += n
                    offset += n
                entry["bytes"] = sent

        do_GET = do_HEAD = _serve

    # -- control --------------------------------------------------------------

    class Control(Quiet):
        def _body(self):
            n = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(n) or b"{}") if n else {}

        def do_GET(self):
            if self.path == "/stats":
                return self._reply(200, _json_bytes(state.stats()), "application/json")
            if self.path == "/passwords":  # test-side leak checks only; never logged
                with state.lock:
                    return self._reply(200, _json_bytes(sorted(state.passwords)), "application/json")
            return self._reply(404, b"{}", "application/json")

        def do_POST(self):
            import urllib.request

            req = self._body()
            if self.path == "/config":
                with state.lock:
                    if "upstream_port" in req:
                        state.upstream_port = int(req["upstream_port"])
                    if "url_ttl_s" in req:
                        state.url_ttl_s = int(req["url_ttl_s"])
                    if "corrupt" in req:
                        state.corrupt[req["corrupt"]["digest"]] = int(req["corrupt"]["count"])
                return self._reply(200, b"{}", "application/json")
            if self.path == "/reset":
                with state.lock:
                    state.reset()
                return self._reply(200, b"{}", "application/json")
            if self.path == "/check_password":
                # The realm's password_check_url: remember the password, ask the fake ACR.
                with state.lock:
                    state.password_checks += 1
                    if req.get("password"):
                        state.passwords.add(req["password"])
                fwd = urllib.request.Request(state.check_target, data=_json_bytes(req),
                                             headers={"Content-Type": "application/json"}, method="POST")
                try:
                    with urllib.request.urlopen(fwd, timeout=10) as r:
                        answer = r.read()
                except OSError:
                    answer = _json_bytes({"valid": False})
                return self._reply(200, answer, "application/json")
            return self._reply(404, b"{}", "application/json")

    return Front, Oss, Control


def _serve(cfg):
    import socket
    from http.server import ThreadingHTTPServer

    state = _ServeState(cfg)
    front_h, oss_h, control_h = _make_handlers(state)

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 1024

    servers = {}
    for name, handler in (("front", front_h), ("oss", oss_h), ("control", control_h)):
        s = Server(("127.0.0.1", 0), handler)
        s.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        servers[name] = s
    state.oss_base = f"http://127.0.0.1:{servers['oss'].server_address[1]}"
    for s in servers.values():
        threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
    print(_LISTENING_PREFIX + json.dumps({k: s.server_address[1] for k, s in servers.items()}), flush=True)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    while True:
        signal.pause()


# ===========================================================================
# The test side


def _import_siblings():
    if _HERE not in sys.path:
        sys.path.insert(0, _HERE)
    import harness
    import oci_image
    import token_registry

    return harness, oci_image, token_registry


class FakeAlibaba:
    """fake_alibaba.py as a child: its ports come as one JSON line on stdout; it
    exits when its stdin closes (so also when the test dies) or on SIGTERM."""

    def __init__(self, log_path, knobs):
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-u", os.path.join(_HERE, "fake_alibaba.py"),
                                      json.dumps(knobs)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._log)
        ready, _, _ = select.select([self.proc.stdout], [], [], 20)
        if not ready:
            self.stop()
            raise RuntimeError("fake_alibaba.py did not announce its ports within 20 s")
        self.ports = json.loads(self.proc.stdout.readline())

    def url(self, service):
        return f"http://127.0.0.1:{self.ports[service]}"

    def control(self, method, path, body=None):
        import harness

        data = json.dumps(body).encode() if body is not None else None
        resp = harness.request("127.0.0.1", self.ports["control"], method, path,
                               [("Content-Type", "application/json")] if data else [], body=data, timeout=10)
        if resp.status != 200:
            raise RuntimeError(f"fake control {method} {path}: {resp.status}")
        return json.loads(resp.body)

    def configure(self, patch):
        self.control("POST", "/config", patch)

    def reset(self):
        self.control("POST", "/reset", {})

    def requests(self):
        """The fake's request records (service, action, status, ...; no secrets)."""
        return self.control("GET", "/stats")["requests"]

    def token_calls(self):
        """GetAuthorizationToken records of the fake's ACR (status, expire_time ms for successes)."""
        return [r for r in self.requests() if r.get("service") == "acr" and r.get("action") == "GetAuthorizationToken"]

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self._log):
            try:
                f.close()
            except OSError:
                pass


class AcrLike:
    """The ACR-like registry side; see the module docstring.

    Attributes after start(): fake (FakeAlibaba), tr (token_registry.TokenRegistry),
    front_url, oss_url, registry_host (the registry itself, for pushes).
    """

    def __init__(self, directory, password_lifetime_s=3600, url_ttl_s=600, token_lifetime_s=300):
        self.harness, self.oci_image, self.token_registry = _import_siblings()
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.password_lifetime_s = password_lifetime_s
        self.url_ttl_s = url_ttl_s
        self.token_lifetime_s = token_lifetime_s
        self._push_password = secret_log.register("password", secrets.token_urlsafe(18))
        self._oss_key_id = "LTAI" + secrets.token_hex(8)
        self._oss_secret = secret_log.register("oss-secret", secrets.token_urlsafe(24))
        self._ak_id = "LTAI" + secrets.token_hex(10)  # a test AccessKey only mint_password() uses
        self._ak_secret = secret_log.register("ak-secret", secrets.token_urlsafe(24))
        self.fake = None
        self.tr = None
        self.child = None
        self.ports = None
        self._pushing = 0
        self._lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------

    def start(self, timeout=30):
        h = self.harness
        h.require_tools("docker-registry")
        self.fake = FakeAlibaba(os.path.join(self.dir, "fake-alibaba.log"), {
            "region": REGION,
            "static_keys": {self._ak_id: self._ak_secret},
            "imds": {"mode": "optional", "role": ECS_ROLE},
            "acr": {"password_lifetime_s": self.password_lifetime_s, "instances": {INSTANCE: {"endpoints": [
                {"EndpointType": "internet", "Enable": True, "Status": "RUNNING", "AclEnable": False,
                 "Domains": [{"Domain": DOMAIN, "Type": "SYSTEM"}]}]}}},
        })
        self.tr = self.token_registry.TokenRegistry(os.path.join(self.dir, "tr"), users={"pusher": self._push_password},
                                                    lifetime=self.token_lifetime_s, service=SERVICE)
        storage_root = os.path.join(self.tr.registry.dir, "storage")
        os.makedirs(storage_root, exist_ok=True)
        cfg = {"storage_root": storage_root, "bucket": BUCKET, "oss_key_id": self._oss_key_id,
               "oss_secret": self._oss_secret, "url_ttl_s": self.url_ttl_s,
               "check_target": self.fake.url("control") + "/check_password"}
        # The OSS signing secret travels on stdin: nothing secret on argv or disk.
        self.child = h.Child("acr-like-front", [sys.executable, os.path.abspath(__file__), "serve"],
                             os.path.join(self.dir, "front.log"), stdin_data=json.dumps(cfg).encode())

        def ports_from_log():
            self.child.ensure_alive()
            for line in self.child.log_text().splitlines():
                if line.startswith(_LISTENING_PREFIX):
                    return json.loads(line[len(_LISTENING_PREFIX):])
            return None

        self.ports = h.wait_until(ports_from_log, timeout, "the ACR-like front to listen")

        # The registry answers blob GETs with 307 to the OSS stand-in (distribution's
        # redirect middleware: <baseurl><storage path>); the front signs the URL.
        registry = self.tr.registry
        write_config = registry._write_config
        oss_url = self.oss_url

        def write_config_with_redirect():
            path = write_config()
            with open(path, "a") as f:
                f.write("middleware:\n  storage:\n    - name: redirect\n      options:\n"
                        f"        baseurl: {oss_url}/\n")
            return path

        registry._write_config = write_config_with_redirect
        self.tr.start(timeout)
        self._control("POST", "/config", {"upstream_port": registry.port})
        self.tr.configure(password_check_url=self._control_url("/check_password"))
        return self

    def stop(self):
        if self.tr is not None:
            self.tr.stop()
        if self.child is not None:
            self.child.stop(check=False)
        if self.fake is not None:
            self.fake.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- addresses -----------------------------------------------------------

    @property
    def front_url(self):
        return f"http://127.0.0.1:{self.ports['front']}"

    @property
    def front_host(self):
        return f"127.0.0.1:{self.ports['front']}"

    @property
    def oss_url(self):
        return f"http://127.0.0.1:{self.ports['oss']}"

    @property
    def registry_host(self):
        return self.tr.registry_host

    def _control_url(self, path):
        return f"http://127.0.0.1:{self.ports['control']}{path}"

    def _control(self, method, path, body=None):
        h = self.harness
        data = json.dumps(body).encode() if body is not None else None
        resp = h.request("127.0.0.1", self.ports["control"], method, path,
                         [("Content-Type", "application/json")] if data else [], body=data, timeout=10)
        if resp.status != 200:
            raise RuntimeError(f"acr-like control {method} {path}: {resp.status}")
        return json.loads(resp.body)

    # -- the proxy's side -------------------------------------------------------

    def proxy_config(self, **extra):
        """The proxy's config dict (camelCase YAML keys) for proxy.Proxy."""
        cfg = {
            "alibaba": {"regionId": REGION, "imdsEndpoint": self.fake.url("imds"),
                        "stsEndpoint": self.fake.url("sts"), "acrEndpoint": self.fake.url("acr")},
            "acrInstances": [{"instanceId": INSTANCE, "regionId": REGION, "domains": [DOMAIN],
                              "realmHosts": ["127.0.0.1"]}],
            "endpointOverrides": {DOMAIN: self.front_url},
        }
        cfg.update(extra)
        return cfg

    @staticmethod
    def proxy_env():
        """The environment for the proxy: no AccessKey, so the ECS RAM role (fake IMDS) is used."""
        return {k: v for k, v in os.environ.items()
                if not k.startswith(("ALIBABA_CLOUD_", "ALICLOUD_", "ALIBABACLOUD_"))}

    # -- pushing -------------------------------------------------------------

    @contextlib.contextmanager
    def pushing(self):
        """While inside, the realm also accepts the `pusher` user (for pushes); outside it
        accepts only the fake ACR's temporary passwords."""
        with self._lock:
            self._pushing += 1
            if self._pushing == 1:
                self.tr.configure(password_check_url=None)
        try:
            yield
        finally:
            with self._lock:
                self._pushing -= 1
                if self._pushing == 0:
                    self.tr.configure(password_check_url=self._control_url("/check_password"))

    def _push_token(self, repo):
        return self.tr.token([f"repository:{repo}:pull,push"], user="pusher", password=self._push_password)

    def push_layout(self, layout, tag, repo, dest_tag=None, all_images=False):
        """skopeo copy oci:LAYOUT:TAG docker://<registry>/REPO:DEST_TAG as the pusher.
        Every blob must be new to the repository (skopeo's HEAD of an existing blob
        would follow the registry's 307 to an unsigned URL)."""
        authfile = os.path.join(self.dir, f"push-auth-{secrets.token_hex(4)}.json")
        with self.pushing():
            self.oci_image.write_authfile(authfile, self.registry_host, "pusher", self._push_password)
            try:
                return self.oci_image.push(layout, tag, self.registry_host, repo, dest_tag=dest_tag,
                                           authfile=authfile, all_images=all_images)
            finally:
                os.remove(authfile)

    def _request(self, method, path, token, headers=(), body=None, timeout=60):
        hdrs = list(headers) + [("Authorization", f"Bearer {token}")]
        return self.harness.request("127.0.0.1", self.tr.registry.port, method, path, hdrs, body=body,
                                    timeout=timeout)

    def _upload_blob(self, repo, blob, token):
        started = self._request("POST", f"/v2/{repo}/blobs/uploads/", token, [("Content-Length", "0")])
        if started.status != 202:
            raise RuntimeError(f"blob upload start: {started.status} {started.body[:200]!r}")
        loc = urllib.parse.urlsplit(started.header("Location"))
        query = (loc.query + "&" if loc.query else "") + "digest=" + urllib.parse.quote(blob.digest)
        c = self.harness.Client("127.0.0.1", self.tr.registry.port, timeout=600)
        try:
            c._connect()
            conn = c.conn
            conn.putrequest("PUT", f"{loc.path}?{query}", skip_accept_encoding=True)
            for k, v in (("Authorization", f"Bearer {token}"), ("Content-Type", "application/octet-stream"),
                         ("Content-Length", str(blob.size))):
                conn.putheader(k, v)
            conn.endheaders()
            with open(blob.path, "rb") as f:
                while True:
                    piece = f.read(1 << 20)
                    if not piece:
                        break
                    conn.sock.sendall(piece)
            resp = conn.getresponse()
            body = resp.read()
        finally:
            c.close()
        if resp.status != 201:
            raise RuntimeError(f"blob upload {blob.digest[:19]}: {resp.status} {body[:200]!r}")

    def upload_image(self, image, repo, tag):
        """Pushes an oci_image.OciImage byte for byte (blobs streamed from disk, then the
        manifest): uncompressed layers stay uncompressed, unlike with skopeo."""
        with self.pushing():
            token = self._push_token(repo)
            for blob in image.blobs():
                self._upload_blob(repo, blob, token)
            self.put_manifest(repo, tag, image.manifest, token)

    def put_manifest(self, repo, ref, blob, token=None):
        """PUT a manifest (an oci_image.Blob) under a tag: how a second tag of the same
        image is made without touching its blobs."""
        with self.pushing():
            token = token or self._push_token(repo)
            r = self._request("PUT", f"/v2/{repo}/manifests/{ref}", token, [("Content-Type", blob.media_type)],
                              body=blob.read())
        if r.status != 201:
            raise RuntimeError(f"manifest PUT {repo}:{ref}: {r.status} {r.body[:200]!r}")

    # -- what happened -----------------------------------------------------------

    def stats(self):
        """{"front": [{"m", "p", "s"}...], "oss": [{"m", "digest", "s", "bytes", "auth", "range", "ua"}...],
        "password_checks": n}"""
        return self._control("GET", "/stats")

    def reset_stats(self):
        self._control("POST", "/reset", {})
        self.tr.reset_stats()

    def front_rss_kib(self):
        """VmRSS of the front + OSS stand-in child (it must stay small whatever it relays)."""
        with open(f"/proc/{self.child.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS in /proc status")

    def corrupt_next(self, digest, count=1):
        """The OSS stand-in flips one byte of the next `count` GETs of blob `digest`."""
        self._control("POST", "/config", {"corrupt": {"digest": digest, "count": count}})

    def seen_passwords(self):
        """Every password the realm was asked to check (test-side leak checks; never print them)."""
        return set(self._control("GET", "/passwords"))

    def password_calls(self):
        """The fake ACR's GetAuthorizationToken records (status, expire_time; no secrets)."""
        return [r for r in self.fake.requests() if r.get("service") == "acr" and r.get("action") ==
                "GetAuthorizationToken"]

    # -- a pull "with credentials", without the proxy ---------------------------

    def mint_password(self):
        """(TempUsername, AuthorizationToken, ExpireTime ms) from GetAuthorizationToken,
        signed ACS3-HMAC-SHA256 with a test AccessKey: what `aliyun cr GetAuthorizationToken`
        does before a `docker login` with a temporary password."""
        h = self.harness
        host = f"127.0.0.1:{self.fake.ports['acr']}"
        empty = hashlib.sha256(b"").hexdigest()
        headers = {"host": host, "x-acs-action": "GetAuthorizationToken", "x-acs-version": "2018-12-01",
                   "x-acs-date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   "x-acs-signature-nonce": secrets.token_hex(16), "x-acs-content-sha256": empty}
        signed = sorted(headers)
        query = [("InstanceId", INSTANCE)]
        canonical_query = "&".join(f"{_rfc3986(k)}={_rfc3986(v)}" for k, v in sorted(query))
        canonical_request = "\n".join(["POST", "/", canonical_query,
                                       "".join(f"{k}:{headers[k].strip()}\n" for k in signed),
                                       ";".join(signed), empty])
        to_sign = "ACS3-HMAC-SHA256\n" + hashlib.sha256(canonical_request.encode()).hexdigest()
        sig = hmac.new(self._ak_secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
        hdrs = [(k, v) for k, v in headers.items() if k != "host"]
        hdrs.append(("Authorization", f"ACS3-HMAC-SHA256 Credential={self._ak_id},SignedHeaders={';'.join(signed)},"
                                      f"Signature={sig}"))
        r = h.request("127.0.0.1", self.fake.ports["acr"], "POST", "/?" + canonical_query, hdrs, body=b"",
                      timeout=10)
        doc = json.loads(r.body) if r.body else {}
        if r.status != 200 or doc.get("IsSuccess") is not True:
            raise RuntimeError(f"GetAuthorizationToken: {r.status} {doc.get('Code')}")
        return doc["TempUsername"], doc["AuthorizationToken"], doc["ExpireTime"]


if __name__ == "__main__":
    if sys.argv[1:] != ["serve"]:
        sys.exit("usage: acr_like.py serve   (config JSON on stdin)")
    _serve(json.load(sys.stdin))
