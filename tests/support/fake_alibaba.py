#!/usr/bin/env python3
"""Faithful fakes of the Alibaba Cloud control-plane endpoints the proxy calls.

One process, four loopback listeners on port 0 (announced as one JSON line on
stdout: {"imds": P, "sts": P, "acr": P, "control": P}):

  imds     ECS instance metadata: IMDSv2 token PUT, region-id, RAM role name and
           role credentials; modes "optional" (v1 + v2), "required" (hardened:
           token-only) and "v1only" (no token support).
  sts      STS 2015-04-01: AssumeRole, verifying the RPC V1 HMAC-SHA1 signature,
           timestamp, nonce and the caller's security token; AssumeRoleWithOIDC
           (anonymous) checking its form fields.
  acr      ACR OpenAPI: GetAuthorizationToken (2018-12-01 EE, 2016-06-07 Personal
           GET /tokens) and ListInstanceEndpoint, verifying the ACS3-HMAC-SHA256
           signature, x-acs-content-sha256, date, nonce and the STS security
           token; EE, Personal and error answer shapes as documented.
  control  test knobs: POST /config (deep merge), POST /now, GET /stats, POST /reset,
           POST /check_password {"username","password"} (for a fake token realm).

The signature checks are written here from the documented algorithms with the
Python standard library (urllib.parse.quote, hashlib, hmac) and share no code
with the C++ signer, so a signing bug in the proxy fails a test.

Credentials this fake issues (IMDS, AssumeRole, AssumeRoleWithOIDC) are
remembered with their expiry and principal; ACR honours the documented rule
that a temporary password lives min(password_lifetime_s, remaining life of the
STS credential that signed the call).

The process exits when its stdin closes (the test that started it died) or on
SIGTERM. Nothing is ever written to disk.
"""

import base64
import copy
import hashlib
import hmac
import json
import os
import secrets
import signal
import sys
import threading

import secret_log
import time
import urllib.parse
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEFAULT_KNOBS = {
    "region": "cn-hangzhou",
    "account_id": "1234567890123456",
    # Long-term AccessKeys the fake accepts: id -> secret.
    "static_keys": {},
    "imds": {
        "mode": "optional",          # optional | required (hardened) | v1only
        "role": "acr-node-role",     # None: no RAM role attached
        "cred_lifetime_s": 21600,
        "rotate_before_s": 1800,     # a new credential when less than this remains
    },
    "sts": {
        "max_session_s": 43200,      # caps DurationSeconds (a role's MaxSessionDuration)
        "oidc_tokens": None,         # None: any token of 4..20000 chars; else the accepted list
        "oidc_provider_arns": None,  # None: any; else the accepted list
        "deny_roles": [],            # role ARNs whose assumption is refused (NoPermission)
    },
    "acr": {
        "password_lifetime_s": 3600,
        "instances": {},             # instance id -> {"endpoints": [ListInstanceEndpoint Endpoints entries]}
        "personal_user_exists": True,
        "deny_principals": [],       # principals without cr:GetAuthorizationToken / cr:ListInstanceEndpoint
        "is_success_false": False,   # GetAuthorizationToken answers HTTP 200 with IsSuccess=false
    },
    "down": {"imds": False, "sts": False, "acr": False},      # 503 ServiceUnavailable
    "delay_ms": {"imds": 0, "sts": 0, "acr": 0},
    "garbage": {"imds": False, "sts": False, "acr": False},  # 200 with an HTML page (a captive portal's answer)
    "fail": {},                      # action -> [ {"status": N, "body": {...}} ... ] consumed one per call
}

MAX_SKEW_MS = 15 * 60 * 1000


def rfc3986(s):
    """Percent-encoding of the Alibaba signatures: unreserved kept, %XX upper-case."""
    return urllib.parse.quote(s, safe="-_.~")


def split_query(raw):
    """Query string -> list of (name, value), decoding %XX only ('+' is literal)."""
    out = []
    if not raw:
        return out
    for part in raw.split("&"):
        if part == "":
            continue
        k, _, v = part.partition("=")
        out.append((urllib.parse.unquote(k), urllib.parse.unquote(v)))
    return out


def iso(ms):
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(s):
    try:
        return int(datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp() * 1000)
    except (TypeError, ValueError):
        return None


def deep_merge(base, patch):
    for k, v in patch.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            deep_merge(base[k], v)
        else:
            base[k] = copy.deepcopy(v)


class State:
    def __init__(self):
        self.lock = threading.RLock()
        self.knobs = copy.deepcopy(DEFAULT_KNOBS)
        self.now_override = None
        self.issued = {}        # AccessKeyId -> {secret, token, expires_ms, principal}
        self.imds_tokens = {}   # token -> expires_ms
        self.imds_cred = None   # AccessKeyId of the role credential IMDS currently hands out
        self.nonces = set()
        self.requests = []      # one record per request
        self.passwords = {}     # temporary password -> {username, expires_ms, instance}

    def now_ms(self):
        with self.lock:
            if self.now_override is not None:
                return self.now_override
        return int(time.time() * 1000)

    def record(self, rec):
        with self.lock:
            self.requests.append(rec)
            if len(self.requests) > 5000:
                del self.requests[:1000]

    def issue(self, principal, lifetime_s):
        ak = "STS." + secrets.token_hex(12)
        cred = {
            "secret": secret_log.register("sts-ak-secret", secrets.token_urlsafe(24)),
            "token": secret_log.register("sts-token", "CAIS" + base64.b64encode(secrets.token_bytes(48)).decode()),  # has + / =
            "expires_ms": self.now_ms() + int(lifetime_s * 1000),
            "principal": principal,
        }
        with self.lock:
            self.issued[ak] = cred
        return ak, cred

    def take_failure(self, action):
        with self.lock:
            q = self.knobs["fail"].get(action)
            if q:
                return q.pop(0)
        return None


STATE = State()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    service = "?"

    def log_message(self, fmt, *args):  # quiet
        pass

    # -- plumbing -----------------------------------------------------------------------
    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def send(self, status, payload, content_type="application/json"):
        data = payload if isinstance(payload, bytes) else (
            payload.encode() if isinstance(payload, str) else json.dumps(payload).encode())
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def gate(self, record):
        """Common knobs: delay, garbage, down. Returns True when the request was answered."""
        k = STATE.knobs
        delay = k["delay_ms"].get(self.service, 0)
        if delay:
            time.sleep(delay / 1000)
        if k["garbage"].get(self.service):
            record["status"] = 200
            record["garbage"] = True
            STATE.record(record)
            self.send(200, "<html><body>Gateway login required</body></html>", "text/html")
            return True
        if k["down"].get(self.service):
            record["status"] = 503
            STATE.record(record)
            self.send(503, {"RequestId": secrets.token_hex(8), "Code": "ServiceUnavailable",
                            "Message": "The request has failed due to a temporary failure of the server."})
            return True
        return False

    def pop_error(self, error):
        """error: {"status", "body"}"""
        self.send(error.get("status", 500), error.get("body", {"Code": "InternalError",
                                                             "Message": "The request processing has failed due to some unknown error."}))

    def do_GET(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def do_PUT(self):
        self.dispatch("PUT")


# ---------------------------------------------------------------------------------------
class ImdsHandler(Handler):
    service = "imds"

    def dispatch(self, method):
        body = self.body()
        del body
        path = urllib.parse.urlsplit(self.path).path
        prefix = "/latest/meta-data/ram/security-credentials/"
        action = {"/latest/api/token": "token", "/latest/meta-data/region-id": "region-id",
                  prefix: "role-name"}.get(path, "credentials" if path.startswith(prefix) else "other")
        rec = {"service": "imds", "method": method, "path": path, "action": action,
               "token": self.headers.get("X-aliyun-ecs-metadata-token") is not None}
        if self.gate(rec):
            return
        k = STATE.knobs["imds"]
        if method == "PUT" and path == "/latest/api/token":
            rec["action"] = "token"
            if k["mode"] == "v1only":
                rec["status"] = 404
                STATE.record(rec)
                return self.send(404, "Not Found", "text/plain")
            if self.headers.get("X-Forwarded-For"):
                rec["status"] = 403
                STATE.record(rec)
                return self.send(403, "Forbidden", "text/plain")
            ttl = self.headers.get("X-aliyun-ecs-metadata-token-ttl-seconds")
            try:
                ttl_s = int(ttl)
            except (TypeError, ValueError):
                ttl_s = 0
            if ttl_s < 1 or ttl_s > 21600:
                rec["status"] = 400
                STATE.record(rec)
                return self.send(400, "Bad Request", "text/plain")
            token = secret_log.register("imds-token", secrets.token_urlsafe(32))
            with STATE.lock:
                STATE.imds_tokens[token] = STATE.now_ms() + ttl_s * 1000
            rec["status"] = 200
            rec["ttl"] = ttl_s
            STATE.record(rec)
            return self.send(200, token, "text/plain")
        if method != "GET":
            rec["status"] = 405
            STATE.record(rec)
            return self.send(405, "Method Not Allowed", "text/plain")

        token = self.headers.get("X-aliyun-ecs-metadata-token")
        if token is not None:
            with STATE.lock:
                exp = STATE.imds_tokens.get(token)
            if exp is None or exp <= STATE.now_ms():
                rec["status"] = 401
                STATE.record(rec)
                return self.send(401, "Unauthorized", "text/plain")
        elif k["mode"] == "required":
            rec["status"] = 403
            STATE.record(rec)
            return self.send(403, "Forbidden", "text/plain")

        if path == "/latest/meta-data/region-id":
            rec["action"] = "region-id"
            rec["status"] = 200
            STATE.record(rec)
            return self.send(200, STATE.knobs["region"], "text/plain")
        if path == prefix:
            rec["action"] = "role-name"
            if not k["role"]:
                rec["status"] = 404
                STATE.record(rec)
                return self.send(404, "Not Found", "text/plain")
            rec["status"] = 200
            STATE.record(rec)
            return self.send(200, k["role"], "text/plain")
        if path.startswith(prefix):
            rec["action"] = "credentials"
            role = path[len(prefix):]
            if not k["role"] or role != k["role"]:
                rec["status"] = 404
                STATE.record(rec)
                return self.send(404, "Not Found", "text/plain")
            with STATE.lock:
                cur = STATE.issued.get(STATE.imds_cred) if STATE.imds_cred else None
                if cur is None or cur["expires_ms"] - STATE.now_ms() <= k["rotate_before_s"] * 1000:
                    ak, cur = STATE.issue("ecs-role:" + role, k["cred_lifetime_s"])
                    STATE.imds_cred = ak
                ak = STATE.imds_cred
            rec["status"] = 200
            STATE.record(rec)
            return self.send(200, {"AccessKeyId": ak, "AccessKeySecret": cur["secret"], "Code": "Success",
                                   "Expiration": iso(cur["expires_ms"]), "LastUpdated": iso(STATE.now_ms()),
                                   "SecurityToken": cur["token"]})
        rec["status"] = 404
        STATE.record(rec)
        return self.send(404, "Not Found", "text/plain")


# ---------------------------------------------------------------------------------------
def pop_error_body(code, message, host):
    return {"RequestId": secrets.token_hex(8).upper(), "HostId": host, "Code": code, "Message": message,
            "Recommend": "https://api.aliyun.com/troubleshoot?q=" + code}


def lookup_key(ak):
    """-> (secret, token or None, expires_ms or None, principal) or None."""
    with STATE.lock:
        if ak in STATE.knobs["static_keys"]:
            return STATE.knobs["static_keys"][ak], None, None, "user:" + ak
        c = STATE.issued.get(ak)
        if c:
            return c["secret"], c["token"], c["expires_ms"], c["principal"]
    return None


def check_caller(ak, token, host):
    """Shared AccessKey / security-token checks. -> (principal, expires_ms, error (status, body))."""
    found = lookup_key(ak)
    if found is None:
        return None, None, None, (404, pop_error_body("InvalidAccessKeyId.NotFound", "Specified access key is not found.", host))
    secret, want_token, expires, principal = found
    if want_token is not None:
        if not token:
            return None, None, None, (400, pop_error_body("MissingSecurityToken", "SecurityToken is mandatory for this action.", host))
        if token != want_token:
            return None, None, None, (400, pop_error_body("InvalidSecurityToken.MismatchWithAccessKey", "The security token you provided does not match the access key.", host))
        if expires <= STATE.now_ms():
            return None, None, None, (400, pop_error_body("InvalidSecurityToken.Expired", "Specified SecurityToken is expired.", host))
    return secret, principal, expires, None


def check_freshness(date_ms, nonce, host):
    if date_ms is None or abs(date_ms - STATE.now_ms()) > MAX_SKEW_MS:
        return 400, pop_error_body("InvalidTimeStamp.Expired", "Specified time stamp or date header is expired.", host)
    with STATE.lock:
        if not nonce or nonce in STATE.nonces:
            return 400, pop_error_body("SignatureNonceUsed", "Specified signature nonce was used already.", host)
        STATE.nonces.add(nonce)
    return None


class StsHandler(Handler):
    service = "sts"

    def dispatch(self, method):
        body = self.body()
        parts = urllib.parse.urlsplit(self.path)
        query = split_query(parts.query)
        form = split_query(body.decode("utf-8", "replace")) if body else []
        params = dict(query)
        params.update(dict(form))
        action = params.get("Action", "")
        rec = {"service": "sts", "method": method, "action": action}
        host = "sts.aliyuncs.com"
        if self.gate(rec):
            return
        fail = STATE.take_failure(action)
        if fail:
            rec["status"] = fail.get("status", 500)
            STATE.record(rec)
            return self.pop_error(fail)
        if method != "POST" or params.get("Version") != "2015-04-01" or params.get("Format") != "JSON":
            rec["status"] = 400
            STATE.record(rec)
            return self.send(400, pop_error_body("InvalidParameter", "Version/Format/method not supported by this fake", host))
        if action == "AssumeRole":
            return self.assume_role(rec, method, query, form, params, host)
        if action == "AssumeRoleWithOIDC":
            return self.assume_role_with_oidc(rec, params, host)
        rec["status"] = 404
        STATE.record(rec)
        return self.send(404, pop_error_body("InvalidAction.NotFound", "Specified api is not found, please check your url and method.", host))

    def issue_answer(self, rec, role_arn, session, duration_s, principal):
        account = role_arn.split(":")[3] if role_arn.count(":") >= 4 else STATE.knobs["account_id"]
        role_name = role_arn.rsplit("/", 1)[-1]
        lifetime = min(duration_s, STATE.knobs["sts"]["max_session_s"])
        ak, cred = STATE.issue(principal, lifetime)
        rec["status"] = 200
        rec["lifetime_s"] = lifetime
        STATE.record(rec)
        return self.send(200, {
            "RequestId": secrets.token_hex(8).upper(),
            "AssumedRoleUser": {"AssumedRoleId": "3" + secrets.token_hex(8) + ":" + session,
                                "Arn": "acs:ram::%s:assumed-role/%s/%s" % (account, role_name, session)},
            "Credentials": {"SecurityToken": cred["token"], "AccessKeyId": ak,
                            "AccessKeySecret": cred["secret"], "Expiration": iso(cred["expires_ms"])}})

    def common_role_checks(self, rec, params, host):
        role_arn = params.get("RoleArn", "")
        session = params.get("RoleSessionName", "")
        try:
            duration = int(params.get("DurationSeconds", "3600"))
        except ValueError:
            duration = -1
        if not role_arn.startswith("acs:ram::") or ":role/" not in role_arn:
            return None, (400, pop_error_body("InvalidParameter.RoleArn", "The parameter RoleArn is wrongly formed.", host))
        if not session or len(session) < 2 or len(session) > 64:
            return None, (400, pop_error_body("InvalidParameter.RoleSessionName", "The parameter RoleSessionName is wrongly formed.", host))
        if duration < 900 or duration > STATE.knobs["sts"]["max_session_s"]:
            return None, (400, pop_error_body("InvalidParameter.DurationSeconds", "The Min/Max value of DurationSeconds is 15min/1hr.", host))
        if role_arn in STATE.knobs["sts"]["deny_roles"]:
            return None, (403, pop_error_body("NoPermission", "You are not authorized to do this action. You should be authorized by RAM.", host))
        return (role_arn, session, duration), None

    def assume_role(self, rec, method, query, form, params, host):
        # --- V1 signature, recomputed from the documented algorithm -----------------------
        given = params.get("Signature")
        signed = [(k, v) for k, v in query if k != "Signature"] + list(form)
        canonical = "&".join("%s=%s" % (rfc3986(k), rfc3986(v)) for k, v in sorted(signed, key=lambda kv: kv[0]))
        string_to_sign = method + "&" + rfc3986("/") + "&" + rfc3986(canonical)
        if params.get("SignatureMethod") != "HMAC-SHA1" or params.get("SignatureVersion") != "1.0":
            rec["status"] = 400
            STATE.record(rec)
            return self.send(400, pop_error_body("InvalidParameter.SignatureMethod", "unsupported signature method", host))
        ak = params.get("AccessKeyId", "")
        secret, principal, _, err = check_caller(ak, params.get("SecurityToken"), host)
        if err:
            rec["status"] = err[0]
            rec["code"] = err[1]["Code"]
            STATE.record(rec)
            return self.send(*err)
        expect = base64.b64encode(hmac.new((secret + "&").encode(), string_to_sign.encode(), hashlib.sha1).digest()).decode()
        if not given or not hmac.compare_digest(given, expect):
            rec["status"] = 400
            rec["code"] = "SignatureDoesNotMatch"
            STATE.record(rec)
            # Real STS echoes its string to sign, which contains the SecurityToken.
            return self.send(400, pop_error_body("SignatureDoesNotMatch",
                                                 "Specified signature is not matched with our calculation. server string to sign is:" + string_to_sign, host))
        err = check_freshness(parse_iso(params.get("Timestamp")), params.get("SignatureNonce"), host)
        if err:
            rec["status"] = err[0]
            rec["code"] = err[1]["Code"]
            STATE.record(rec)
            return self.send(*err)
        checked, err = self.common_role_checks(rec, params, host)
        if err:
            rec["status"] = err[0]
            rec["code"] = err[1]["Code"]
            STATE.record(rec)
            return self.send(*err)
        role_arn, session, duration = checked
        rec["source_principal"] = principal
        rec["role_arn"] = role_arn
        rec["session"] = session
        rec["duration"] = duration
        rec["signed_params"] = sorted(k for k, _ in signed)
        rec["body_params"] = sorted(k for k, _ in form)
        return self.issue_answer(rec, role_arn, session, duration, "assumed-role:" + role_arn)

    def assume_role_with_oidc(self, rec, params, host):
        if "Signature" in params or "AccessKeyId" in params:
            rec["signed"] = True
        knobs = STATE.knobs["sts"]
        token = params.get("OIDCToken", "")
        provider = params.get("OIDCProviderArn", "")
        rec["oidc_token_sha256"] = hashlib.sha256(token.encode()).hexdigest()
        rec["oidc_provider_arn"] = provider
        if len(token) < 4 or len(token) > 20000:
            rec["status"] = 400
            STATE.record(rec)
            return self.send(400, pop_error_body("InvalidParameter.OIDCToken", "The parameter OIDCToken is wrongly formed.", host))
        if knobs["oidc_tokens"] is not None and token not in knobs["oidc_tokens"]:
            rec["status"] = 400
            STATE.record(rec)
            return self.send(400, pop_error_body("AuthenticationFail.OIDCToken.Invalid", "The OIDCToken is invalid.", host))
        if not provider.startswith("acs:ram::") or (knobs["oidc_provider_arns"] is not None and provider not in knobs["oidc_provider_arns"]):
            rec["status"] = 400
            STATE.record(rec)
            return self.send(400, pop_error_body("InvalidParameter.OIDCProviderArn", "The parameter OIDCProviderArn is wrongly formed.", host))
        checked, err = self.common_role_checks(rec, params, host)
        if err:
            rec["status"] = err[0]
            rec["code"] = err[1]["Code"]
            STATE.record(rec)
            return self.send(*err)
        role_arn, session, duration = checked
        rec["role_arn"] = role_arn
        rec["session"] = session
        rec["duration"] = duration
        rec["body_params"] = sorted(params.keys())
        return self.issue_answer(rec, role_arn, session, duration, "oidc-role:" + role_arn)


# ---------------------------------------------------------------------------------------
class AcrHandler(Handler):
    service = "acr"

    def dispatch(self, method):
        body = self.body()
        parts = urllib.parse.urlsplit(self.path)
        path = parts.path or "/"
        action = self.headers.get("x-acs-action", "")
        version = self.headers.get("x-acs-version", "")
        rec = {"service": "acr", "method": method, "path": path, "action": action, "version": version}
        host = "cr.%s.aliyuncs.com" % STATE.knobs["region"]
        if self.gate(rec):
            return

        # --- ACS3-HMAC-SHA256, recomputed from the documented algorithm ---------------------
        auth = self.headers.get("Authorization", "")
        fields = {}
        if auth.startswith("ACS3-HMAC-SHA256 "):
            for item in auth[len("ACS3-HMAC-SHA256 "):].split(","):
                k, _, v = item.strip().partition("=")
                fields[k] = v
        signed_headers = fields.get("SignedHeaders", "").split(";") if fields.get("SignedHeaders") else []
        rec["signed_headers"] = signed_headers

        def fail(status, code, message):
            rec["status"] = status
            rec["code"] = code
            STATE.record(rec)
            return self.send(status, pop_error_body(code, message, host))

        if not fields.get("Credential") or not fields.get("Signature"):
            return fail(400, "MissingAuthorization" if not auth else "IncompleteSignature", "The request signature does not conform to Aliyun standards.")
        required = {"host", "x-acs-action", "x-acs-version", "x-acs-date", "x-acs-signature-nonce", "x-acs-content-sha256"}
        if self.headers.get("x-acs-security-token") is not None:
            required |= {"x-acs-security-token"}
        if not required.issubset(set(signed_headers)) or signed_headers != sorted(signed_headers):
            return fail(400, "IncompleteSignature", "The request signature does not conform to Aliyun standards.")
        if self.headers.get("x-acs-content-sha256") != hashlib.sha256(body).hexdigest():
            return fail(400, "InvalidContentSha256", "x-acs-content-sha256 does not match the body.")
        canonical_query = "&".join("%s=%s" % (rfc3986(k), rfc3986(v))
                                   for k, v in sorted(split_query(parts.query), key=lambda kv: kv[0]))
        canonical_headers = "".join("%s:%s\n" % (h, (self.headers.get(h) or "").strip()) for h in signed_headers)
        canonical_request = "\n".join([method, path, canonical_query, canonical_headers, ";".join(signed_headers),
                                       hashlib.sha256(body).hexdigest()])
        string_to_sign = "ACS3-HMAC-SHA256\n" + hashlib.sha256(canonical_request.encode()).hexdigest()
        ak = fields["Credential"]
        token = self.headers.get("x-acs-security-token")
        secret, principal, cred_expires, err = check_caller(ak, token, host)
        if err:
            rec["status"] = err[0]
            rec["code"] = err[1]["Code"]
            STATE.record(rec)
            return self.send(*err)
        if token is not None and self.headers.get("x-acs-accesskey-id") != ak:
            return fail(400, "InvalidSecurityToken.MismatchWithAccessKey", "x-acs-accesskey-id does not match the credential.")
        expect = hmac.new(secret.encode(), string_to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expect, fields["Signature"]):
            return fail(400, "SignatureDoesNotMatch", "Specified signature is not matched with our calculation. server string to sign is:" + string_to_sign)
        err = check_freshness(parse_iso(self.headers.get("x-acs-date")), self.headers.get("x-acs-signature-nonce"), host)
        if err:
            rec["status"] = err[0]
            rec["code"] = err[1]["Code"]
            STATE.record(rec)
            return self.send(*err)
        rec["principal"] = principal
        rec["sts"] = token is not None

        injected = STATE.take_failure(action if path == "/" else action + "(personal)")
        if injected:
            rec["status"] = injected.get("status", 500)
            STATE.record(rec)
            return self.pop_error(injected)

        knobs = STATE.knobs["acr"]
        query = dict(split_query(parts.query))
        now = STATE.now_ms()
        rid = secrets.token_hex(8).upper()
        if path == "/tokens" and method == "GET" and version == "2016-06-07" and action == "GetAuthorizationToken":
            rec["action"] = "GetAuthorizationToken(personal)"
            if not knobs["personal_user_exists"]:
                rec["status"] = 404
                STATE.record(rec)
                return self.send(404, {"code": "USER_NOT_EXIST", "message": "user is not exist.", "requestId": rid})
            if principal in knobs["deny_principals"]:
                rec["status"] = 403
                STATE.record(rec)
                return self.send(403, {"code": "Forbidden.RAM", "message": "User not authorized to operate on the specified resource.", "requestId": rid})
            expires = self.password_expiry(now, cred_expires)
            rec["status"] = 200
            STATE.record(rec)
            return self.send(200, {"data": {"authorizationToken": self.password(expires, ""), "tempUserName": "cr_temp_user",
                                            "expireDate": expires}, "requestId": rid})
        if path != "/" or version != "2018-12-01" or method not in ("POST", "GET"):
            return fail(404, "InvalidAction.NotFound", "Specified api is not found, please check your url and method.")
        instance_id = query.get("InstanceId", "")
        rec["instance"] = instance_id
        if action in ("GetAuthorizationToken", "ListInstanceEndpoint") and principal in knobs["deny_principals"]:
            return fail(403, "Forbidden.RAM", "User not authorized to operate on the specified resource, or this API doesn't support RAM.")
        if action == "GetAuthorizationToken":
            if instance_id not in knobs["instances"]:
                rec["status"] = 200
                STATE.record(rec)
                return self.send(200, {"Code": "INSTANCE_NOT_EXIST", "IsSuccess": False, "RequestId": rid})
            if knobs["is_success_false"]:
                rec["status"] = 200
                STATE.record(rec)
                return self.send(200, {"Code": "INTERNAL_ERROR", "IsSuccess": False, "RequestId": rid})
            expires = self.password_expiry(now, cred_expires)
            rec["status"] = 200
            rec["expire_time"] = expires
            STATE.record(rec)
            return self.send(200, {"RequestId": rid, "ExpireTime": expires, "Code": "success", "IsSuccess": True,
                                   "TempUsername": "cr_temp_user", "AuthorizationToken": self.password(expires, instance_id)})
        if action == "ListInstanceEndpoint":
            rec["module"] = query.get("ModuleName")
            inst = knobs["instances"].get(instance_id)
            if inst is None:
                rec["status"] = 200
                STATE.record(rec)
                return self.send(200, {"Code": "INSTANCE_NOT_EXIST", "IsSuccess": False, "RequestId": rid})
            rec["status"] = 200
            STATE.record(rec)
            return self.send(200, {"Code": "success", "IsSuccess": True, "RequestId": rid,
                                   "Endpoints": inst.get("endpoints", [])})
        return fail(404, "InvalidAction.NotFound", "Specified api is not found, please check your url and method.")

    @staticmethod
    def password_expiry(now, cred_expires):
        # "If you use STS to make the request, the validity period of the temporary
        # password is the same as that of the STS token used in the request."
        exp = now + int(STATE.knobs["acr"]["password_lifetime_s"] * 1000)
        if cred_expires is not None:
            exp = min(exp, cred_expires)
        return exp

    @staticmethod
    def password(expires_ms, instance_id):
        # The documented example password contains ':' - clients must not split it.
        pw = secrets.token_urlsafe(12) + ":" + secrets.token_urlsafe(24)
        secret_log.register_basic("acr-temp-password", "cr_temp_user", pw)
        with STATE.lock:
            STATE.passwords[pw] = {"username": "cr_temp_user", "expires_ms": expires_ms, "instance": instance_id}
        return pw


# ---------------------------------------------------------------------------------------
class ControlHandler(Handler):
    service = "control"

    def dispatch(self, method):
        body = self.body()
        path = urllib.parse.urlsplit(self.path).path
        if method == "POST" and path == "/config":
            with STATE.lock:
                deep_merge(STATE.knobs, json.loads(body or b"{}"))
            return self.send(200, {"ok": True})
        if method == "POST" and path == "/now":
            v = json.loads(body or b"{}").get("now_ms")
            with STATE.lock:
                STATE.now_override = None if v is None else int(v)
            return self.send(200, {"now_ms": STATE.now_ms()})
        if method == "GET" and path == "/stats":
            with STATE.lock:
                return self.send(200, {"requests": STATE.requests, "now_ms": STATE.now_ms()})
        if method == "POST" and path == "/reset":
            with STATE.lock:
                STATE.requests = []
            return self.send(200, {"ok": True})
        if method == "POST" and path == "/check_password":
            # For a fake token realm in integration tests: is this Basic login one
            # of the temporary passwords issued here, and still valid (fake clock)?
            req = json.loads(body or b"{}")
            with STATE.lock:
                p = STATE.passwords.get(req.get("password", ""))
            valid = bool(p) and p["username"] == req.get("username") and p["expires_ms"] > STATE.now_ms()
            return self.send(200, {"valid": valid, "instance": p["instance"] if p else None,
                                   "expires_ms": p["expires_ms"] if p else None})
        if method == "POST" and path == "/expire_imds_tokens":
            with STATE.lock:
                STATE.imds_tokens.clear()
            return self.send(200, {"ok": True})
        return self.send(404, {"error": "unknown control path"})


def serve(handler):
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main():
    if len(sys.argv) > 1:
        deep_merge(STATE.knobs, json.loads(sys.argv[1]))
    servers = {name: serve(h) for name, h in
               (("imds", ImdsHandler), ("sts", StsHandler), ("acr", AcrHandler), ("control", ControlHandler))}
    print(json.dumps({name: s.server_address[1] for name, s in servers.items()}), flush=True)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    # Exit with the test that started us: its end of our stdin closes when it dies.
    while sys.stdin.buffer.read(4096):
        pass
    os._exit(0)


if __name__ == "__main__":
    main()
