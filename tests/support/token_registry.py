"""A real docker-registry behind token auth, plus a token server that acts like ACR's realm.

start_token_registry(dir, users={...}) starts two children on 127.0.0.1 with
ports they pick themselves:

  * a token server (this file run as a script: `python3 token_registry.py serve`,
    its config and signing key arrive on stdin, so no secret is on argv or on
    disk) that answers the realm the way ACR's `dockerauth` does:
        GET <realm>?service=S&scope=repository:<name>:pull[&scope=...]
        Authorization: Basic base64(user:password)
    -> 401 + JSON error for missing or wrong credentials,
    -> 200 {"token", "access_token", "expires_in", "issued_at"} otherwise,
    and the OAuth2 form POST (grant_type=password|refresh_token) that
    containerd tries first: 404 by default (the spec says a client then falls
    back to GET), or 400/401/405, or a real token answer;
  * docker-registry 2.8 (distribution) configured with `auth: token:` (realm,
    service, issuer, rootcertbundle), so the registry itself verifies the
    JWTs and enforces their scopes.

Tokens are JWS (ES256 or RS256) whose header names the signing key by `x5c`
(the DER certificate, which is also the registry's rootcertbundle) or by `kid`
(its libtrust fingerprint). Claims: iss, sub, aud (= service, a string: 2.8
rejects a list), exp, nbf, iat, jti and `access` granting only the requested
actions the user is allowed.

Expiry: distribution 2.8 accepts a token for 60 s after `exp` (clock-skew
leeway, registry/auth/token/token.go). With `leeway_compensation` on (the
default) the JWT's exp is backdated by those 60 s, so the registry refuses a
token in [lifetime, lifetime + 1) s after it was issued — what the expires_in
the client sees promises. Clients must treat tokens as opaque (the spec says
so); one that decodes exp would see it in the past.

Knobs (constructor, and at runtime through configure()): lifetime,
expires_in advertised separately from the real lifetime, which JSON fields to
send (token / access_token / both, with or without expires_in / issued_at),
users and their passwords (set_password() simulates a rotation), which
repositories each user may access, the OAuth2 POST answer, and faults
(inject(): status codes, delays, garbage bodies, dropped connections, tokens
signed by an untrusted key, answers with no token) for the next N realm
requests or until cleared.
Opt-in `password_check_url` knob: the realm asks that URL (fake_alibaba.py's
control POST /check_password) whether a Basic login is valid instead of
looking at `users`, so it accepts exactly the fake ACR's temporary passwords;
stats()["password_checks"] lists the answers (user, valid, expires_ms).

stats() (also GET <token server>/_stats) counts realm requests per scope, per
status and per user, the tokens issued per scope, requests in flight and
their peak, and keeps a log of the last requests. Nothing a client sends as a
secret (password, token) is ever logged or returned by /_stats.

The token server uses python3-cryptography; the rest is the standard library
and the sibling modules harness.py, registry.py and oci_image.py.
"""

import base64
import fnmatch
import json
import os
import secrets
import sys
import threading
import time
import urllib.parse

import secret_log

_HERE = os.path.dirname(os.path.realpath(__file__))

DEFAULT_SERVICE = "registry.aliyuncs.com:cn-hangzhou:china:cri-acptest0000"  # the EE service format
DEFAULT_ISSUER = "acp-test-dockerauth"
DEFAULT_REALM_PATH = "/auth"  # https://dockerauth*.<region>.aliyuncs.com/auth
DEFAULT_ACTIONS = ["pull", "push"]
REGISTRY_LEEWAY = 60  # seconds distribution 2.8 adds to exp and subtracts from nbf
_LISTENING_PREFIX = "token server listening on 127.0.0.1:"


# ---------------------------------------------------------------------------
# JOSE pieces (used by the server, and by tests that decode what they got)


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def decode_jwt(token):
    """(header, claims) of a compact JWS, unverified. For assertions only."""
    header, claims, _sig = token.split(".")
    return json.loads(b64url_decode(header)), json.loads(b64url_decode(claims))


def libtrust_key_id(public_key):
    """The `kid` distribution looks a key up by: libtrust's fingerprint of it.

    base32(sha256(DER SubjectPublicKeyInfo)[:30]) without padding, in groups
    of four characters joined by ':' (github.com/docker/libtrust util.go).
    """
    from cryptography.hazmat.primitives import hashes, serialization

    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    h = hashes.Hash(hashes.SHA256())
    h.update(der)
    s = base64.b32encode(h.finalize()[:30]).decode().rstrip("=")
    return ":".join(s[i:i + 4] for i in range(0, len(s), 4))


class SigningKey:
    """A private key with a self-signed certificate, for ES256 or RS256 JWS."""

    def __init__(self, alg="ES256", private_pem=None, cert_pem=None, cn="acp test token signer"):
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec, rsa
        from cryptography.x509.oid import NameOID
        import datetime

        if alg not in ("ES256", "RS256"):
            raise ValueError(f"unsupported alg {alg!r} (ES256 or RS256)")
        self.alg = alg
        if private_pem is not None:
            self.key = serialization.load_pem_private_key(private_pem.encode(), password=None)
        elif alg == "ES256":
            self.key = ec.generate_private_key(ec.SECP256R1())
        else:
            self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        # The certificate travels with the key: the registry trusts these exact bytes.
        self._cert = x509.load_pem_x509_certificate(cert_pem.encode()) if cert_pem else None
        self._cn = cn
        self._x509, self._hashes, self._serialization, self._NameOID, self._dt = (
            x509, hashes, serialization, NameOID, datetime)

    def private_pem(self):
        s = self._serialization
        return self.key.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption()).decode()

    def certificate(self):
        if self._cert is None:
            x509, dt = self._x509, self._dt
            name = x509.Name([x509.NameAttribute(self._NameOID.COMMON_NAME, self._cn)])
            now = dt.datetime.now(dt.timezone.utc)
            self._cert = (
                x509.CertificateBuilder()
                .subject_name(name)
                .issuer_name(name)
                .public_key(self.key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(hours=1))
                .not_valid_after(now + dt.timedelta(days=2))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(True, False, False, False, False, True, False, False, False), critical=True)
                .sign(self.key, self._hashes.SHA256())
            )
        return self._cert

    def cert_pem(self):
        return self.certificate().public_bytes(self._serialization.Encoding.PEM).decode()

    def x5c(self):
        """Standard (not URL-safe) base64 of the DER certificate, as RFC 7515 §4.1.6 wants."""
        return base64.b64encode(self.certificate().public_bytes(self._serialization.Encoding.DER)).decode()

    def kid(self):
        return libtrust_key_id(self.key.public_key())

    def sign(self, header, claims):
        from cryptography.hazmat.primitives.asymmetric import ec, padding
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        signing_input = (b64url(json.dumps(header, separators=(",", ":")).encode()) + "." +
                         b64url(json.dumps(claims, separators=(",", ":")).encode()))
        data = signing_input.encode()
        if self.alg == "ES256":
            # JWS wants r || s (32 bytes each), not the DER that cryptography returns.
            r, s = decode_dss_signature(self.key.sign(data, ec.ECDSA(self._hashes.SHA256())))
            sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        else:
            sig = self.key.sign(data, padding.PKCS1v15(), self._hashes.SHA256())
        return signing_input + "." + b64url(sig)


# ---------------------------------------------------------------------------
# Scopes


def parse_scope(scope):
    """'repository:team/app:pull,push' -> ('repository', 'team/app', ['pull', 'push']).

    The name may itself hold ':' (a host:port prefix), so type is up to the
    first ':' and actions after the last one. None when malformed.
    """
    first, last = scope.find(":"), scope.rfind(":")
    if first <= 0 or last == first:
        return None
    rtype, name, actions = scope[:first], scope[first + 1:last], scope[last + 1:]
    if not name:
        return None
    return rtype, name, [a for a in actions.split(",") if a]


def split_scopes(values):
    """Every scope in repeated `scope` parameters, each possibly space-separated."""
    out = []
    for v in values:
        out.extend(s for s in v.split(" ") if s)
    return out


def granted_access(user, scopes, allowed):
    """The `access` claim: per requested resource, the requested actions the user may do.

    allowed: None (every user may pull and push every repository), or
    {user: {repository glob: [actions]}}; a user absent from it gets nothing.
    Resources with no granted action are left out, as docker_auth and Docker
    Hub do: the registry then answers 401 insufficient_scope.
    """
    merged = {}
    for scope in scopes:
        parsed = parse_scope(scope)
        if parsed is None or parsed[0] != "repository":
            continue
        _, name, actions = parsed
        if allowed is None:
            may = set(DEFAULT_ACTIONS)
        else:
            may = set()
            for pattern, acts in (allowed.get(user) or {}).items():
                if fnmatch.fnmatchcase(name, pattern):
                    may.update(acts)
        if "*" in may:
            ok = list(actions)
        else:
            ok = [a for a in actions if a in may]
        if ok:
            have = merged.setdefault(name, [])
            have.extend(a for a in ok if a not in have)
    return [{"type": "repository", "name": n, "actions": a} for n, a in merged.items()]


def rfc3339(t):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1e6):06d}Z"


# ---------------------------------------------------------------------------
# The token server (runs in the child process)

_KNOBS = {
    # name: default
    "lifetime": 300,  # seconds a token really lives (the registry's view)
    "expires_in": None,  # advertised expires_in; None: = lifetime
    "send_expires_in": True,
    "send_issued_at": True,
    "fields": "both",  # "both" | "token" | "access_token"
    "leeway_compensation": True,
    "oauth": "404",  # POST answer: "404" | "405" | "400" | "401" | "token"
    "allowed": None,  # {user: {glob: [actions]}} or None (everyone: pull,push everywhere)
    "require_service": True,  # 400 when ?service= is not ours
    # Opt-in: a URL (e.g. fake_alibaba.py's control /check_password) the realm
    # POSTs {"username", "password"} to instead of looking at `users`; it accepts
    # the login iff the answer is {"valid": true}. None: `users` decide.
    "password_check_url": None,
}
_FAULT_KINDS = ("ok", "status", "garbage", "close", "untrusted_key", "no_token")
_LOG_KEEP = 20000


class _State:
    def __init__(self, cfg):
        self.lock = threading.Lock()
        self.service = cfg["service"]
        self.issuer = cfg["issuer"]
        self.realm_path = cfg["realm_path"]
        self.key = SigningKey(cfg["alg"], cfg["private_pem"], cfg["cert_pem"])
        self.key_header = cfg["key_header"]
        self.header = {"typ": "JWT", "alg": self.key.alg}
        if self.key_header == "x5c":
            self.header["x5c"] = [self.key.x5c()]
        else:
            self.header["kid"] = self.key.kid()
        self._untrusted = None
        self.users = dict(cfg["users"])
        for u, pw in self.users.items():
            secret_log.register_basic("realm-password", u, pw)
        self.knobs = dict(_KNOBS)
        self.set_knobs(cfg.get("knobs") or {})
        self.faults = []
        self.refresh_tokens = {}  # refresh token -> user
        self.reset_stats()

    def set_knobs(self, knobs):
        for k, v in knobs.items():
            if k not in _KNOBS:
                raise ValueError(f"unknown knob {k!r}")
            self.knobs[k] = v

    def untrusted_key(self):
        if self._untrusted is None:
            self._untrusted = SigningKey(self.key.alg, cn="acp untrusted signer")
        return self._untrusted

    def reset_stats(self):
        self.seq = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.by_scope = {}
        self.tokens_by_scope = {}
        self.by_status = {}
        self.by_user = {}
        self.by_method = {}
        self.tokens_issued = 0
        self.log = []
        self.password_checks = []  # password_check_url answers: {t, user, valid, expires_ms}; no secret

    def stats(self):
        return {
            "requests": self.seq,
            "by_scope": dict(self.by_scope),
            "tokens_by_scope": dict(self.tokens_by_scope),
            "by_status": dict(self.by_status),
            "by_user": dict(self.by_user),
            "by_method": dict(self.by_method),
            "tokens_issued": self.tokens_issued,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "pending_faults": [dict(f) for f in self.faults],
            "log": list(self.log),
            "password_checks": list(self.password_checks),
        }

    def take_fault(self, scopes):
        for i, f in enumerate(self.faults):
            if f.get("scope") and f["scope"] not in scopes:
                continue
            if f["count"] is not None:
                f["count"] -= 1
                if f["count"] <= 0:
                    del self.faults[i]
            return dict(f)
        return None

    def issue(self, user, scopes, key=None):
        now = time.time()
        k = self.knobs
        lifetime = float(k["lifetime"])
        # Ceil: a token never dies before the expires_in the client was told.
        exp = int(-(-(now + lifetime) // 1))
        if k["leeway_compensation"]:
            exp -= REGISTRY_LEEWAY
        claims = {
            "iss": self.issuer,
            "sub": user,
            "aud": self.service,
            "exp": exp,
            "nbf": int(now),
            "iat": int(now),
            "jti": secrets.token_hex(16),
            "access": granted_access(user, scopes, k["allowed"]),
        }
        token = secret_log.register("bearer-token",
                                    (key or self.key).sign(self.header if key is None else self._header_for(key), claims))
        body = {}
        if k["fields"] in ("both", "token"):
            body["token"] = token
        if k["fields"] in ("both", "access_token"):
            body["access_token"] = token
        if k["send_expires_in"]:
            adv = k["expires_in"] if k["expires_in"] is not None else lifetime
            body["expires_in"] = int(adv) if float(adv).is_integer() else adv
        if k["send_issued_at"]:
            body["issued_at"] = rfc3339(now)
        return body

    def _header_for(self, key):
        h = {"typ": "JWT", "alg": key.alg}
        if self.key_header == "x5c":
            h["x5c"] = [key.x5c()]
        else:
            h["kid"] = key.kid()
        return h


def _error_body(code, message):
    return json.dumps({"errors": [{"code": code, "message": message, "detail": None}]}).encode()


def _password_check(state, url, creds):
    """Asks the password_check_url whether (user, password) is a valid login; records the answer."""
    import urllib.request

    req = urllib.request.Request(url, data=json.dumps({"username": creds[0], "password": creds[1]}).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            answer = json.loads(resp.read())
    except (OSError, ValueError) as e:
        sys.stderr.write(f"password check at {url} failed: {type(e).__name__}\n")
        return False
    valid = answer.get("valid") is True
    with state.lock:
        state.password_checks.append({"t": time.time(), "user": creds[0], "valid": valid,
                                      "expires_ms": answer.get("expires_ms")})
        del state.password_checks[:-_LOG_KEEP]
    return valid


def _make_handler(state):
    from http.server import BaseHTTPRequestHandler

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "acp-test-dockerauth/1.0"

        def log_message(self, fmt, *args):  # one line per request, no headers, no bodies
            sys.stderr.write("%s %s\n" % (time.strftime("%H:%M:%S"), fmt % args))

        def _send(self, status, body=b"", content_type="application/json", headers=()):
            # Count the status before the client can see it: a test reading stats()
            # right after its answer must find it there.
            entry = getattr(self, "_entry", None)
            if entry is not None and entry.get("status") is None:
                with state.lock:
                    entry["status"] = status
                    state.by_status[str(status)] = state.by_status.get(str(status), 0) + 1
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for k, v in headers:
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, status, obj, headers=()):
            self._send(status, json.dumps(obj).encode(), headers=headers)

        def _read_body(self):
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        # -- routes ----------------------------------------------------------

        def do_GET(self):
            url = urllib.parse.urlsplit(self.path)
            if url.path == "/_stats":
                with state.lock:
                    return self._json(200, state.stats())
            if url.path == state.realm_path:
                q = urllib.parse.parse_qs(url.query, keep_blank_values=True)
                return self._token_request("GET", q, self._basic_credentials())
            self._send(404, _error_body("NOT_FOUND", "no such endpoint"))

        def do_POST(self):
            url = urllib.parse.urlsplit(self.path)
            body = self._read_body()
            if url.path == "/_control":
                return self._control(body)
            if url.path == state.realm_path:
                form = urllib.parse.parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
                return self._token_request("POST", form, None)
            self._send(404, _error_body("NOT_FOUND", "no such endpoint"))

        def do_PUT(self):
            self._read_body()
            self._send(405, _error_body("UNSUPPORTED", "method not allowed"), headers=[("Allow", "GET, POST")])

        do_DELETE = do_PUT

        # -- realm -------------------------------------------------------------

        def _basic_credentials(self):
            value = self.headers.get("Authorization")
            if not value:
                return None
            scheme, _, rest = value.partition(" ")
            if scheme.lower() != "basic":
                return ("", None)
            try:
                decoded = base64.b64decode(rest.strip(), validate=True).decode()
            except Exception:  # noqa: BLE001 - malformed: treated as wrong credentials
                return ("", None)
            user, sep, password = decoded.partition(":")  # the password may hold ':'
            return (user, password if sep else None)

        def _token_request(self, method, params, creds):
            scopes = split_scopes(params.get("scope", []))
            grant_type = params.get("grant_type", [None])[0] if method == "POST" else None
            if method == "POST" and grant_type == "password":
                creds = (params.get("username", [""])[0], params.get("password", [None])[0])
            claimed_user = creds[0] if creds else None
            with state.lock:
                state.seq += 1
                entry = {"seq": state.seq, "t": time.time(), "method": method, "scopes": scopes,
                         "service": params.get("service", [None])[0], "user": claimed_user,
                         "grant_type": grant_type, "user_agent": self.headers.get("User-Agent"),
                         "status": None, "fault": None}
                state.log.append(entry)
                del state.log[:-_LOG_KEEP]
                state.by_method[method] = state.by_method.get(method, 0) + 1
                for s in scopes:
                    state.by_scope[s] = state.by_scope.get(s, 0) + 1
                if claimed_user is not None:
                    state.by_user[claimed_user] = state.by_user.get(claimed_user, 0) + 1
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
                fault = state.take_fault(scopes)
                entry["fault"] = fault["kind"] if fault else None
            self._entry = entry
            status = 0
            try:
                status = self._answer(method, params, creds, scopes, grant_type, fault)
            finally:
                self._entry = None
                with state.lock:
                    state.in_flight -= 1
                    entry["t_end"] = time.time()
                    if entry["status"] is None:  # nothing was sent (a dropped connection: 0)
                        entry["status"] = status
                        state.by_status[str(status)] = state.by_status.get(str(status), 0) + 1

        def _answer(self, method, params, creds, scopes, grant_type, fault):
            """Writes the realm's answer; returns its status (0: connection dropped)."""
            if fault and fault.get("delay"):
                time.sleep(float(fault["delay"]))
            if fault:
                kind = fault["kind"]
                if kind == "close":
                    self.close_connection = True
                    return 0
                if kind == "status":
                    st = int(fault.get("status", 500))
                    self._send(st, _error_body("UNKNOWN", f"injected failure {st}"))
                    return st
                if kind == "garbage":
                    self._send(200, b"<html><body>502 Bad Gateway</body></html>\x00\xff{", content_type="text/html")
                    return 200
            if method == "POST":
                mode = str(state.knobs["oauth"])
                if mode != "token":
                    st = int(mode)
                    hdrs = [("Allow", "GET")] if st == 405 else []
                    self._send(st, _error_body("UNSUPPORTED", "use GET for tokens"), headers=hdrs)
                    return st
                if grant_type == "refresh_token":
                    with state.lock:
                        user = state.refresh_tokens.get(params.get("refresh_token", [""])[0])
                    if user is None:
                        self._json(401, {"error": "invalid_grant", "error_description": "unknown refresh token"})
                        return 401
                    creds = (user, state.users.get(user))
                elif grant_type != "password":
                    self._json(400, {"error": "unsupported_grant_type"})
                    return 400
            service = params.get("service", [None])[0]
            if state.knobs["require_service"] and service != state.service:
                self._send(400, _error_body("INVALID_REQUEST", "unknown or missing service"))
                return 400
            with state.lock:
                expected = state.users.get(creds[0]) if creds and creds[0] else None
                check_url = state.knobs["password_check_url"]
            if check_url is not None:
                accepted = creds is not None and creds[1] is not None and _password_check(state, check_url, creds)
            else:
                accepted = not (creds is None or creds[1] is None or expected is None or not secrets.compare_digest(
                    creds[1].encode(), expected.encode()))
            if not accepted:
                what = "authentication required" if creds is None else "incorrect username or password"
                self._send(401, _error_body("UNAUTHORIZED", what),
                           headers=[("WWW-Authenticate", 'Basic realm="acp-test-dockerauth"')])
                return 401
            user = creds[0]
            key = state.untrusted_key() if fault and fault["kind"] == "untrusted_key" else None
            with state.lock:
                body = state.issue(user, scopes, key)
            if fault and fault["kind"] == "no_token":
                body.pop("token", None)
                body.pop("access_token", None)
            if method == "POST":
                # OAuth2 answers: access_token + scope are required (distribution oauth.md).
                tok = body.pop("token", None) or body.get("access_token")
                if tok and "access_token" not in body and not (fault and fault["kind"] == "no_token"):
                    body["access_token"] = tok
                body["scope"] = " ".join(scopes)
                if params.get("access_type", [""])[0] == "offline" and grant_type == "password":
                    rt = secret_log.register("refresh-token", secrets.token_urlsafe(24))
                    with state.lock:
                        state.refresh_tokens[rt] = user
                    body["refresh_token"] = rt
            with state.lock:
                if "token" in body or "access_token" in body:
                    state.tokens_issued += 1
                    for s in scopes:
                        state.tokens_by_scope[s] = state.tokens_by_scope.get(s, 0) + 1
            self._json(200, body)
            return 200

        # -- control -----------------------------------------------------------

        def _control(self, raw):
            try:
                req = json.loads(raw or b"{}")
                with state.lock:
                    if "set" in req:
                        state.set_knobs(req["set"])
                    if "users" in req:
                        state.users = dict(req["users"])
                        for u, pw in state.users.items():
                            secret_log.register_basic("realm-password", u, pw)
                    if "set_password" in req:
                        sp = req["set_password"]
                        if sp["password"] is None:
                            state.users.pop(sp["user"], None)
                        else:
                            state.users[sp["user"]] = sp["password"]
                            secret_log.register_basic("realm-password", sp["user"], sp["password"])
                    if req.get("clear_faults"):
                        state.faults = []
                    if "inject" in req:
                        f = dict(req["inject"])
                        if f.get("kind") not in _FAULT_KINDS:
                            raise ValueError(f"unknown fault kind {f.get('kind')!r}")
                        state.faults.append(f)
                    if req.get("reset_stats"):
                        state.reset_stats()
                    knobs = dict(state.knobs)
            except (ValueError, KeyError, TypeError) as e:
                return self._json(400, {"error": str(e)})
            self._json(200, {"knobs": knobs})

    return Handler


def _serve(cfg):
    import socket
    import ssl
    from http.server import ThreadingHTTPServer

    state = _State(cfg)
    tls = cfg.get("tls")
    ctx = None
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(tls["cert"], tls["key"])

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 1024  # hundreds of concurrent cold requests must not be refused

        def finish_request(self, request, client_address):
            # The TLS handshake runs here, in the request's own thread, so a slow
            # client never stalls accept().
            if ctx is not None:
                try:
                    request = ctx.wrap_socket(request, server_side=True)
                except (ssl.SSLError, OSError) as e:
                    sys.stderr.write(f"tls handshake from {client_address}: {e}\n")
                    return
            self.RequestHandlerClass(request, client_address, self)

    server = Server(("127.0.0.1", 0), _make_handler(state))
    server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    print(f"{_LISTENING_PREFIX}{server.server_address[1]} ({'https' if ctx else 'http'}, "
          f"{state.key.alg}, {state.key_header})", flush=True)
    server.serve_forever(poll_interval=0.2)


# ---------------------------------------------------------------------------
# The test-side handle


def _import_siblings():
    if _HERE not in sys.path:
        sys.path.insert(0, _HERE)
    import harness
    import registry

    return harness, registry


class TokenRegistry:
    """docker-registry with `auth: token` and the token server it trusts.

    Attributes after start(): registry (a registry.Registry: url, host, port,
    access_log(), users_seen(), client()), registry_url, registry_host,
    realm (full URL), realm_host, service, issuer, ca (CA file or None),
    ca_dir (a directory holding only ca.crt, for skopeo --cert-dir), users.
    """

    def __init__(self, directory, users=None, lifetime=300, tls=False, alg="ES256", key_header="x5c",
                 service=DEFAULT_SERVICE, issuer=DEFAULT_ISSUER, realm_path=DEFAULT_REALM_PATH, realm_url=None,
                 **knobs):
        harness, registry = _import_siblings()
        self._harness = harness
        if users is None:
            users = {"temp_user": secrets.token_urlsafe(18) + ":" + secrets.token_urlsafe(6)}
        if key_header not in ("x5c", "kid"):
            raise ValueError("key_header is 'x5c' or 'kid'")
        self.dir = directory
        self.users = dict(users)
        self.service, self.issuer, self.realm_path = service, issuer, realm_path
        self.alg, self.key_header = alg, key_header
        # realm_url: what the registry's challenge names instead of the token server's own
        # address, e.g. a front (tests/support/nghttpx.py) routing realm_path to token_port.
        self.realm_url = realm_url
        self.knobs = dict(knobs, lifetime=lifetime)
        for k in self.knobs:
            if k not in _KNOBS:
                raise ValueError(f"unknown knob {k!r}")
        os.makedirs(directory, exist_ok=True)
        self.registry = _TokenAuthRegistry(registry.Registry, os.path.join(directory, "registry"), tls=tls)
        self.tls = self.registry.tls  # dict(ca, cert, key, ca_dir) or None; shared by both servers
        self.ca = self.tls["ca"] if self.tls else None
        self.ca_dir = self.tls["ca_dir"] if self.tls else None
        self.token_port = None
        self.token_child = None

    # -- lifecycle ---------------------------------------------------------

    def start(self, timeout=30):
        h = self._harness
        h.require_tools("docker-registry")
        try:
            import cryptography
        except ImportError:
            print("SKIP: python3-cryptography is not installed (scripts/install-deps installs it)", flush=True)
            sys.exit(h.SKIP_EXIT)
        del cryptography
        key = SigningKey(self.alg)
        bundle = os.path.join(self.dir, "token-signer.crt")
        with open(bundle, "w") as f:
            f.write(key.cert_pem())
        cfg = {
            "service": self.service, "issuer": self.issuer, "realm_path": self.realm_path,
            "alg": self.alg, "key_header": self.key_header, "private_pem": key.private_pem(),
            "cert_pem": key.cert_pem(),
            "users": self.users, "knobs": self.knobs,
            "tls": {"cert": self.tls["cert"], "key": self.tls["key"]} if self.tls else None,
        }
        # Config, signing key and passwords travel on stdin: nothing secret on argv or disk.
        self.token_child = h.Child("token-server", [sys.executable, os.path.abspath(__file__), "serve"],
                                   os.path.join(self.dir, "token-server.log"), stdin_data=json.dumps(cfg).encode())

        def port_from_log():
            self.token_child.ensure_alive()
            for line in self.token_child.log_text().splitlines():
                if line.startswith(_LISTENING_PREFIX):
                    return int(line[len(_LISTENING_PREFIX):].split()[0])
            return None

        self.token_port = h.wait_until(port_from_log, timeout, "token server to listen")
        h.wait_until(lambda: self._control_request("GET", "/_stats").status == 200, timeout, "token server /_stats")
        self.registry.token_auth = {"realm": self.realm_url or self.realm, "service": self.service, "issuer": self.issuer,
                                    "rootcertbundle": bundle}
        self.registry.start(timeout)
        return self

    def stop(self):
        self.registry.stop()
        if self.token_child is not None:
            self.token_child.stop(check=False)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- addresses ---------------------------------------------------------

    @property
    def scheme(self):
        return "https" if self.tls else "http"

    @property
    def realm_host(self):
        return f"127.0.0.1:{self.token_port}"

    @property
    def realm(self):
        return f"{self.scheme}://{self.realm_host}{self.realm_path}"

    @property
    def registry_url(self):
        return self.registry.url

    @property
    def registry_host(self):
        return self.registry.host

    def tls_context(self):
        return self._harness.tls_context(self.ca) if self.tls else None

    def user(self):
        """(username, password) of the first user."""
        return next(iter(self.users.items()))

    def authfile(self, path, user=None, password=None):
        """A 0600 containers-auth.json for the registry host (skopeo runs the token flow with it)."""
        if _HERE not in sys.path:
            sys.path.insert(0, _HERE)
        import oci_image

        name = user or self.user()[0]
        return oci_image.write_authfile(path, self.registry_host, name,
                                        password if password is not None else self.users[name])

    # -- control of the token server ---------------------------------------

    def _control_request(self, method, path, body=None):
        headers = [("Content-Type", "application/json")] if body is not None else []
        return self._harness.request("127.0.0.1", self.token_port, method, path, headers,
                                     body=json.dumps(body).encode() if body is not None else None,
                                     tls=self.tls_context())

    def _control(self, **req):
        resp = self._control_request("POST", "/_control", req)
        if resp.status != 200:
            raise RuntimeError(f"token server control: {resp.status} {resp.body[:300]!r}")
        return json.loads(resp.body)["knobs"]

    def stats(self):
        """Counters of the realm (see the module docstring); log entries carry no secret."""
        resp = self._control_request("GET", "/_stats")
        if resp.status != 200:
            raise RuntimeError(f"token server /_stats: {resp.status}")
        return json.loads(resp.body)

    def reset_stats(self):
        self._control(reset_stats=True)

    def configure(self, **knobs):
        """Changes knobs at runtime: lifetime, expires_in, send_expires_in, send_issued_at,
        fields, leeway_compensation, oauth, allowed, require_service, password_check_url."""
        self.knobs.update(knobs)
        return self._control(set=knobs)

    def set_password(self, user, password):
        """Adds a user, or rotates its password (None removes it). Takes effect at once."""
        if password is None:
            self.users.pop(user, None)
        else:
            self.users[user] = password
        self._control(set_password={"user": user, "password": password})

    def inject(self, kind, count=1, status=500, delay=0.0, scope=None):
        """The next `count` realm requests (None: all until clear_faults()), optionally
        only those asking for `scope`, get: 'status' (that status + JSON error),
        'garbage' (200 text/html non-JSON), 'close' (connection dropped, no answer),
        'untrusted_key' (a token the registry will reject), 'no_token' (200 JSON
        without token/access_token) or 'ok' (a normal answer); `delay` seconds first."""
        fault = {"kind": kind, "count": count, "status": status, "delay": delay}
        if scope:
            fault["scope"] = scope
        self._control(inject=fault)

    def fail(self, count=1, status=500):
        self.inject("status", count=count, status=status)

    def slow(self, delay, count=None):
        self.inject("ok", count=count, delay=delay)

    def clear_faults(self):
        self._control(clear_faults=True)

    # -- client helpers for tests ------------------------------------------

    def fetch_token(self, scopes=(), user=None, password=None, service=None, auth=True, method="GET", form=None):
        """One realm request; returns a harness.Response. scopes: list of scope strings."""
        h = self._harness
        if isinstance(scopes, str):
            scopes = [scopes]
        name = user or self.user()[0]
        pw = password if password is not None else self.users.get(name, "")
        if method == "POST":
            fields = {"grant_type": "password", "service": service or self.service, "client_id": "acp-test",
                      "username": name, "password": pw}
            if scopes:
                fields["scope"] = " ".join(scopes)
            fields.update(form or {})
            body = urllib.parse.urlencode(fields).encode()
            return h.request("127.0.0.1", self.token_port, "POST", self.realm_path,
                             [("Content-Type", "application/x-www-form-urlencoded")], body=body,
                             tls=self.tls_context())
        query = urllib.parse.urlencode([("service", service or self.service)] + [("scope", s) for s in scopes])
        headers = [("Authorization", h.basic_auth(name, pw))] if auth else []
        return h.request("127.0.0.1", self.token_port, "GET", f"{self.realm_path}?{query}", headers,
                         tls=self.tls_context())

    def token(self, scopes=(), user=None, password=None):
        """A bearer token for `scopes`, fetched with the user's Basic credentials."""
        resp = self.fetch_token(scopes, user, password)
        if resp.status != 200:
            raise RuntimeError(f"realm answered {resp.status}: {resp.body[:200]!r}")
        body = json.loads(resp.body)
        return body.get("token") or body["access_token"]

    def registry_request(self, path, token=None, method="GET", headers=()):
        """A request straight to the registry, with `Authorization: Bearer token` when given."""
        hdrs = list(headers)
        if token:
            hdrs.append(("Authorization", f"Bearer {token}"))
        return self._harness.request("127.0.0.1", self.registry.port, method, path, hdrs, tls=self.tls_context())


def _TokenAuthRegistry(base, directory, tls):
    """A registry.Registry whose config gets an `auth: token:` section."""

    class TokenAuthRegistry(base):
        token_auth = None

        def _write_config(self):
            path = super()._write_config()  # no users: it writes no auth section itself
            if self.token_auth:
                lines = ["auth:", "  token:"]
                lines += [f"    {k}: {json.dumps(v)}" for k, v in self.token_auth.items()]
                with open(path, "a") as f:
                    f.write("\n".join(lines) + "\n")
            return path

    return TokenAuthRegistry(directory, name="registry", users=None, tls=tls)


def start_token_registry(directory, users=None, lifetime=300, tls=False, **kwargs):
    """Builds and starts a TokenRegistry; see its docstring and the module's."""
    return TokenRegistry(directory, users=users, lifetime=lifetime, tls=tls, **kwargs).start()


if __name__ == "__main__":
    if sys.argv[1:] != ["serve"]:
        sys.exit("usage: token_registry.py serve   (config JSON on stdin)")
    _serve(json.load(sys.stdin))
