"""Every secret a test run hands out, and the scan that proves none leaked.

Issue 8: across the whole suite, at debug log level, no log line, metric,
error body or command output of the proxy may contain a secret the tests used
(AccessKey secret, STS security token, ACR temporary password, registry
password, bearer token, IMDS token).

Whoever makes or issues a secret calls register(kind, value): the tests
themselves (harness.secrets_token), the docker-registry fixture (its users'
passwords), the token realm (every token it signs), the Alibaba fakes (STS
credentials, IMDS tokens, temporary passwords) — several of them in other
processes. All append to one file named by $ACP_TEST_SECRETS_FILE, which
harness creates once per test program and children inherit through the
environment (also across enter_private_netns's re-exec).

harness.run_tests() calls scan() after the last test case with what the proxy
produced: its log files, /metrics taken before each stop, the output of its
commands (check-config, doctor, hosts ...) and the bodies of its non-2xx
answers. A hit fails the program naming the source, line and kind of secret,
never the value.

Standard library only; importable from any fake without the rest of the
test support code.
"""

import base64
import os
import urllib.parse

ENV = "ACP_TEST_SECRETS_FILE"
MIN_LEN = 8  # shorter values would match by chance (and no secret we issue is this short)


def register(kind, value):
    """Records `value` (a str) as a secret of `kind` (one word: password,
    sts-token, bearer-token, ...). A no-op outside a test run."""
    path = os.environ.get(ENV)
    if not path or not isinstance(value, str) or len(value) < MIN_LEN:
        return value
    if "\n" in value or "\t" in kind:
        raise ValueError("secret_log.register: a secret must be one line")
    # O_APPEND writes of one short line are atomic between processes.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{kind}\t{value}\n".encode())
    finally:
        os.close(fd)
    return value


def register_basic(kind, username, password):
    """A user:password pair: the password itself and the Basic credential the
    proxy would build from it (base64 of user:password)."""
    register(kind, password)
    register(kind + "-basic", base64.b64encode(f"{username}:{password}".encode()).decode())


def load(path=None):
    """-> [(kind, value)] registered so far (deduplicated, in order)."""
    path = path or os.environ.get(ENV)
    if not path or not os.path.exists(path):
        return []
    seen, out = set(), []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            kind, sep, value = line.rstrip("\n").partition("\t")
            if sep and len(value) >= MIN_LEN and value not in seen:
                seen.add(value)
                out.append((kind, value))
    return out


def _needles(value):
    """The forms a leaked value could take in text: as is, percent-encoded (a
    query string or form body), and JSON-escaped ('/' as '\\/')."""
    forms = {value, urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value),
             value.replace("/", "\\/")}
    return [f for f in forms if len(f) >= MIN_LEN]


def scan(sources, secrets):
    """sources: [(name, text)]; secrets: [(kind, value)].
    -> list of findings "NAME line N: a KIND (L chars)" — never the value."""
    findings = []
    compiled = [(kind, value, _needles(value)) for kind, value in secrets]
    for name, text in sources:
        if not text:
            continue
        for kind, value, needles in compiled:
            for needle in needles:
                at = text.find(needle)
                if at >= 0:
                    line = text.count("\n", 0, at) + 1
                    findings.append(f"{name} line {line}: a {kind} ({len(value)} chars)")
                    break
    return findings
