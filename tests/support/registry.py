"""A real docker-registry (distribution 2.8) started on a free loopback port.

Registry(dir, users=..., tls=...).start() writes a config (filesystem storage
under `dir`, optional htpasswd auth, optional TLS with a CA and a server
certificate generated with openssl for 127.0.0.1/localhost), starts
`docker-registry serve` as a child, reads the port it picked back from its
log ("listening on 127.0.0.1:PORT") and polls /v2/ until it answers.

Passwords are random, written to the htpasswd file through stdin and to
0600 authfiles; never on a command line.
"""

import os
import re
import secrets
import shutil
import subprocess

import harness
import secret_log

_LISTENING = re.compile(r'listening on 127\.0\.0\.1:(\d+)')
# Access log (gorilla combined format): 127.0.0.1 - - [date] "GET /v2/ HTTP/1.1" 200 2 "" "ua"
_ACCESS = re.compile(r'^\S+ - \S+ \[[^\]]+\] "(\S+) (\S+) HTTP/[\d.]+" (\d{3}) ')
_USER = re.compile(r'auth\.user\.name="?([^" ]+)"?')


def make_tls_material(directory, dns_names=("localhost",), ips=("127.0.0.1",)):
    """A throwaway CA and a server certificate signed by it (EC P-256, 2 days).

    Returns dict(ca=..., cert=..., key=..., ca_dir=...) where ca_dir holds
    only ca.crt (what skopeo's --cert-dir and containerd's `ca` want).
    """
    os.makedirs(directory, exist_ok=True)
    j = lambda name: os.path.join(directory, name)  # noqa: E731
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    harness.run(["openssl", "req", "-x509", *ec, "-keyout", j("ca.key"), "-out", j("ca.crt"), "-days", "2",
                 "-subj", "/CN=acp test CA", "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
    harness.run(["openssl", "req", *ec, "-keyout", j("server.key"), "-out", j("server.csr"),
                 "-subj", f"/CN={(list(dns_names) or list(ips))[0]}"])
    sans = ",".join([f"DNS:{d}" for d in dns_names] + [f"IP:{i}" for i in ips])
    with open(j("server.ext"), "w") as f:
        f.write(f"subjectAltName={sans}\nbasicConstraints=CA:FALSE\n"
                "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    harness.run(["openssl", "x509", "-req", "-in", j("server.csr"), "-CA", j("ca.crt"), "-CAkey", j("ca.key"),
                 "-CAcreateserial", "-out", j("server.crt"), "-days", "2", "-extfile", j("server.ext")])
    ca_dir = j("ca-only")
    os.makedirs(ca_dir, exist_ok=True)
    shutil.copy(j("ca.crt"), os.path.join(ca_dir, "ca.crt"))
    return {"ca": j("ca.crt"), "cert": j("server.crt"), "key": j("server.key"), "ca_dir": ca_dir}


class Registry:
    """docker-registry on 127.0.0.1:<port it picked>.

    users: {name: password} enables htpasswd auth (None: anonymous);
    users=True makes one user with a random password.
    """

    def __init__(self, directory, name="registry", users=None, tls=False, dns_names=("localhost",)):
        self.dir = directory
        self.name = name
        if users is True:
            users = {"robot": secrets.token_urlsafe(18)}
        self.users = dict(users) if users else {}
        for u, pw in self.users.items():
            secret_log.register_basic("registry-password", u, pw)
        self.tls = make_tls_material(os.path.join(directory, "tls"), dns_names) if tls else None
        self.port = None
        self.child = None
        os.makedirs(directory, exist_ok=True)

    # -- lifecycle ---------------------------------------------------------

    def _write_htpasswd(self):
        path = os.path.join(self.dir, "htpasswd")
        lines = []
        for user, password in self.users.items():
            # -i: the password comes on stdin; -B: bcrypt (the only hash distribution accepts).
            out = subprocess.run(["htpasswd", "-niB", user], input=password + "\n", capture_output=True,
                                 text=True, check=True, timeout=60)
            lines.append(out.stdout.strip())
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def _write_config(self):
        storage = os.path.join(self.dir, "storage")
        os.makedirs(storage, exist_ok=True)
        cfg = [
            "version: 0.1",
            "log:",
            "  level: info",
            "  formatter: text",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {storage}",
            "  delete:",
            "    enabled: true",
            "  maintenance:",
            "    uploadpurging:",
            "      enabled: false",
            "http:",
            "  addr: 127.0.0.1:0",
            f"  secret: {secrets.token_hex(16)}",
        ]
        if self.tls:
            cfg += ["  tls:", f"    certificate: {self.tls['cert']}", f"    key: {self.tls['key']}"]
        if self.users:
            cfg += ["auth:", "  htpasswd:", "    realm: acp-test", f"    path: {self._write_htpasswd()}"]
        path = os.path.join(self.dir, "config.yml")
        with open(path, "w") as f:
            f.write("\n".join(cfg) + "\n")
        return path

    def start(self, timeout=30):
        harness.require_tools("docker-registry")
        config = self._write_config()
        self.child = harness.Child(self.name, ["docker-registry", "serve", config], os.path.join(self.dir, "registry.log"))

        def port_from_log():
            self.child.ensure_alive()
            m = _LISTENING.search(self.child.log_text())
            return int(m.group(1)) if m else None

        self.port = harness.wait_until(port_from_log, timeout, f"{self.name} to listen")
        harness.wait_until(lambda: self.get("/v2/").status in (200, 401), timeout, f"{self.name} /v2/")
        return self

    def stop(self):
        if self.child is not None:
            # distribution exits 0 on SIGTERM after a graceful drain (http.draintimeout 0: at once)
            self.child.stop(check=False)

    # -- addresses and credentials ----------------------------------------

    @property
    def host(self):
        """host:port as clients name it (and as containerd puts it in ns=)."""
        return f"127.0.0.1:{self.port}"

    @property
    def scheme(self):
        return "https" if self.tls else "http"

    @property
    def url(self):
        return f"{self.scheme}://{self.host}"

    def user(self):
        """(username, password) of the first user."""
        return next(iter(self.users.items()))

    def authfile(self, path, user=None):
        import oci_image

        name, password = (user, self.users[user]) if user else self.user()
        return oci_image.write_authfile(path, self.host, name, password)

    def tls_context(self):
        return harness.tls_context(self.tls["ca"]) if self.tls else None

    def client(self):
        return harness.Client("127.0.0.1", self.port, tls=self.tls_context())

    def get(self, path, headers=(), method="GET", user=None):
        """A request straight to the registry, authenticated when it has users."""
        headers = list(headers)
        if self.users:
            name = user or self.user()[0]
            headers.append(("Authorization", harness.basic_auth(name, self.users[name])))
        return harness.request("127.0.0.1", self.port, method, path, headers, tls=self.tls_context())

    def upload_blob(self, repo, path, digest, size, timeout=600):
        """Monolithic blob upload (POST, then PUT streaming the file); 201 expected.

        For blobs too big for skopeo's re-compression (it gzips uncompressed
        layers on push): the bytes land in the registry exactly as on disk.
        """
        import urllib.parse

        auth = []
        if self.users:
            auth = [("Authorization", harness.basic_auth(*self.user()))]
        started = harness.request("127.0.0.1", self.port, "POST", f"/v2/{repo}/blobs/uploads/", auth + [("Content-Length", "0")],
                                  tls=self.tls_context())
        if started.status != 202:
            raise RuntimeError(f"blob upload start: {started!r}")
        loc = urllib.parse.urlsplit(started.header("Location"))
        query = (loc.query + "&" if loc.query else "") + "digest=" + urllib.parse.quote(digest)
        client = harness.Client("127.0.0.1", self.port, tls=self.tls_context(), timeout=timeout)
        try:
            with open(path, "rb") as f:
                client._connect()
                conn = client.conn
                conn.putrequest("PUT", f"{loc.path}?{query}", skip_accept_encoding=True)
                for k, v in auth + [("Content-Type", "application/octet-stream"), ("Content-Length", str(size))]:
                    conn.putheader(k, v)
                conn.endheaders()
                while True:
                    chunk = f.read(1 << 20)
                    if not chunk:
                        break
                    conn.sock.sendall(chunk)
                resp = conn.getresponse()
                body = resp.read()
        finally:
            client.close()
        if resp.status != 201:
            raise RuntimeError(f"blob upload: {resp.status} {body[:300]!r}")

    # -- what the registry saw --------------------------------------------
    #
    # distribution writes a request's log lines after it has sent the answer, so
    # a reader can be a moment ahead. settle() makes the log current: it sends
    # an unauthenticated marker request and waits until that is logged; every
    # request answered before it is logged by then.

    _MARKER = "acp-log-marker"

    def settle(self, timeout=10):
        token = secrets.token_hex(6)
        harness.request("127.0.0.1", self.port, "GET", f"/v2/?{self._MARKER}={token}", tls=self.tls_context())
        harness.wait_until(lambda: token in self.child.log_text(), timeout, f"{self.name} log marker")

    def _lines(self):
        self.settle()
        return [line for line in self.child.log_text().splitlines() if self._MARKER not in line]

    def access_log(self):
        """[(method, uri, status)] for every request the registry answered, in order."""
        out = []
        for line in self._lines():
            m = _ACCESS.match(line)
            if m:
                out.append((m.group(1), m.group(2), int(m.group(3))))
        return out

    def users_seen(self):
        """auth.user.name of the requests the registry logged it for, in order.

        With `auth: token` every authenticated request carries it; with
        htpasswd, distribution 2.8 logs it only on error answers (not on 200s).
        """
        return [m.group(1) for line in self._lines() if "response completed" in line
                for m in [_USER.search(line)] if m]
