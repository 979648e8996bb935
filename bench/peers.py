"""The servers the benchmark compares the proxy with, all on 127.0.0.1.

  Upstream        nginx serving pre-generated manifest and blob files the way
                  a registry does (Content-Type, Docker-Content-Digest,
                  Docker-Distribution-Api-Version), behind a bearer-token
                  check: no or a wrong `Authorization` gets 401 with
                  `WWW-Authenticate: Bearer realm=.../token,service=bench`, and
                  /token hands out the token for fixed Basic credentials.
                  One plain-HTTP and one TLS listener. It is the ceiling for
                  workloads 1-2: static files with sendfile, no proxy can be
                  faster in front of it.
  NginxProxy      Debian's nginx as a reverse proxy to the upstream, injecting
                  a fixed `Authorization: Bearer ...` (the cheapest possible
                  proxy: it can never refresh anything), keep-alive upstream.
  RegistryProxy   docker-registry 2.8 in proxy (pull-through cache) mode with
                  static upstream credentials (it runs the token flow itself).

Every nginx here runs one worker process (the proxy runs one event loop) with
access logs off; docker-registry's access log is off too. Passwords are random
per run and live in 0600 files in the run's temp dir.
"""

import os
import secrets

import harness
import proc_stats

def _nginx_common(prefix):
    """The top of every nginx config here: foreground, one worker, files in `prefix`."""
    for d in ("tmp", "logs"):
        os.makedirs(os.path.join(prefix, d), exist_ok=True)
    t = os.path.join(prefix, "tmp")
    return f"""
daemon off;
master_process on;
user root;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 4096; multi_accept on; }}
http {{
  access_log off;
  client_body_temp_path {t}/body;
  proxy_temp_path {t}/proxy;
  fastcgi_temp_path {t}/fastcgi;
  uwsgi_temp_path {t}/uwsgi;
  scgi_temp_path {t}/scgi;
  server_tokens off;
  map_hash_bucket_size 256;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
"""


class Nginx:
    """nginx -c CONF -p PREFIX in the foreground as our child, stopped by pid."""

    def __init__(self, prefix, name):
        self.prefix, self.name = prefix, name
        os.makedirs(prefix, exist_ok=True)
        self.conf = os.path.join(prefix, "nginx.conf")
        self.child = None

    def start_with(self, text, ports, timeout=20):
        with open(self.conf, "w") as f:
            f.write(text)
        self.child = harness.Child(self.name, ["nginx", "-e", os.path.join(self.prefix, "logs", "error.log"),
                                               "-p", self.prefix, "-c", self.conf],
                                   os.path.join(self.prefix, "stdout.log"))

        def up():
            self.child.ensure_alive()
            return all(self._answers(p) for p in ports)

        harness.wait_until(up, timeout, f"{self.name} to listen")
        return self

    @staticmethod
    def _answers(port):
        import socket
        with socket.socket() as s:
            s.settimeout(1)
            return s.connect_ex(("127.0.0.1", port)) == 0

    def workers(self):
        return proc_stats.children(self.child.pid)

    def cpu_seconds(self):
        """CPU of master + workers (the master does nothing while serving)."""
        return sum(proc_stats.cpu_seconds(p) for p in [self.child.pid] + self.workers())

    def rss_kib(self):
        return sum(proc_stats.rss_kib(p) for p in [self.child.pid] + self.workers())

    def stop(self):
        if self.child is not None:
            self.child.stop(check=False, timeout=20)


class Upstream:
    """The fast upstream registry (see the module docstring).

    files: {url path: (local file, content type, digest)} for GET/HEAD.
    """

    REPO = "bench/app"

    def __init__(self, prefix, files, tls):
        self.nginx = Nginx(prefix, "upstream-nginx")
        self.files = files
        self.tls = tls  # registry.make_tls_material() dict
        self.user = "bench"
        self.password = secrets.token_urlsafe(18)
        self.token = secrets.token_urlsafe(32)
        self.port = None
        self.tls_port = None

    @property
    def basic(self):
        return harness.basic_auth(self.user, self.password)

    @property
    def bearer(self):
        return f"Bearer {self.token}"

    def _locations(self, scheme, port):
        realm = f"{scheme}://127.0.0.1:{port}/token"
        out = [f"""
    location = /token {{
      if ($bench_basic_ok = 0) {{ return 401 '{{"errors":[{{"code":"UNAUTHORIZED"}}]}}'; }}
      default_type application/json;
      return 200 '{{"token":"{self.token}","access_token":"{self.token}","expires_in":3600}}';
    }}
    location @unauthorized {{
      add_header WWW-Authenticate 'Bearer realm="{realm}",service="bench"' always;
      add_header Docker-Distribution-Api-Version registry/2.0 always;
      default_type application/json;
      return 401 '{{"errors":[{{"code":"UNAUTHORIZED","message":"authentication required"}}]}}\\n';
    }}
    location = /v2/ {{
      error_page 401 = @unauthorized;
      if ($bench_bearer_ok = 0) {{ return 401; }}
      add_header Docker-Distribution-Api-Version registry/2.0 always;
      default_type application/json;
      return 200 '{{}}';
    }}"""]
        for path, (local, ctype, digest) in self.files.items():
            out.append(f"""
    location = {path} {{
      error_page 401 = @unauthorized;
      if ($bench_bearer_ok = 0) {{ return 401; }}
      alias {local};
      types {{ }}
      default_type {ctype};
      etag off;
      add_header Docker-Content-Digest {digest};
      add_header Docker-Distribution-Api-Version registry/2.0;
      add_header ETag '"{digest}"';
    }}""")
        return "\n".join(out)

    def start(self):
        self.port, self.tls_port = harness.free_port(), harness.free_port()
        text = _nginx_common(self.nginx.prefix) + f"""
  map $http_authorization $bench_bearer_ok {{ "Bearer {self.token}" 1; default 0; }}
  map $http_authorization $bench_basic_ok {{ "{self.basic}" 1; default 0; }}
  server {{
    listen 127.0.0.1:{self.port} backlog=4096;
{self._locations("http", self.port)}
  }}
  server {{
    listen 127.0.0.1:{self.tls_port} ssl backlog=4096;
    ssl_certificate {self.tls["cert"]};
    ssl_certificate_key {self.tls["key"]};
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:bench:1m;
{self._locations("https", self.tls_port)}
  }}
}}
"""
        self.nginx.start_with(text, [self.port, self.tls_port])
        return self

    def url(self, tls=False):
        return f"https://127.0.0.1:{self.tls_port}" if tls else f"http://127.0.0.1:{self.port}"

    def host(self, tls=False):
        return f"127.0.0.1:{self.tls_port if tls else self.port}"

    def stop(self):
        self.nginx.stop()


class NginxProxy:
    """nginx reverse proxy injecting the upstream's fixed bearer token.

    `port` forwards to the plain-HTTP upstream, `tls_port` (plain HTTP on our
    side) to the TLS one with certificate verification and session reuse.
    Buffers of 64 KiB like the proxy's relay, no temp files (it streams).
    """

    def __init__(self, prefix, upstream):
        self.nginx = Nginx(prefix, "nginx-proxy")
        self.up = upstream
        self.port = None
        self.tls_port = None

    def start(self):
        self.port, self.tls_port = harness.free_port(), harness.free_port()
        common_loc = f"""
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Authorization "{self.up.bearer}";
      proxy_buffering on;
      proxy_buffer_size 64k;
      proxy_buffers 4 64k;
      proxy_max_temp_file_size 0;
      proxy_read_timeout 300s;"""
        text = _nginx_common(self.nginx.prefix) + f"""
  upstream plain {{ server 127.0.0.1:{self.up.port}; keepalive 128; }}
  upstream secure {{ server 127.0.0.1:{self.up.tls_port}; keepalive 128; }}
  server {{
    listen 127.0.0.1:{self.port} backlog=4096;
    location / {{ proxy_pass http://plain; {common_loc} }}
  }}
  server {{
    listen 127.0.0.1:{self.tls_port} backlog=4096;
    location / {{
      proxy_pass https://secure; {common_loc}
      proxy_ssl_verify on;
      proxy_ssl_trusted_certificate {self.up.tls["ca"]};
      proxy_ssl_name localhost;  # nginx 1.22 checks DNS names only, not IP SANs
      proxy_ssl_session_reuse on;
    }}
  }}
}}
"""
        self.nginx.start_with(text, [self.port, self.tls_port])
        return self

    def cpu_seconds(self):
        return self.nginx.cpu_seconds()

    def rss_kib(self):
        return self.nginx.rss_kib()

    def stop(self):
        self.nginx.stop()


class RegistryProxy:
    """docker-registry (distribution 2.8) in proxy mode: a pull-through cache of
    `remote_url` logging in with static credentials. Fresh storage per start()."""

    def __init__(self, directory, remote_url, username, password, ca_file=None, name="registry-proxy"):
        self.dir, self.remote_url = directory, remote_url
        self.username, self.password, self.ca_file = username, password, ca_file
        self.name = name
        self.child = None
        self.port = None
        self.starts = 0

    def start(self, timeout=30):
        harness.require_tools("docker-registry")
        self.starts += 1
        d = os.path.join(self.dir, f"run{self.starts}")
        port = harness.free_port()  # warn level hides the "listening on" line
        os.makedirs(os.path.join(d, "storage"), exist_ok=True)
        cfg = os.path.join(d, "config.yml")
        fd = os.open(cfg, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("\n".join([
                "version: 0.1",
                "log:",
                "  level: warn",
                "  formatter: text",
                "  accesslog:",
                "    disabled: true",
                "storage:",
                "  filesystem:",
                f"    rootdirectory: {d}/storage",
                "  cache:",
                "    blobdescriptor: inmemory",
                "  maintenance:",
                "    uploadpurging:",
                "      enabled: false",
                "http:",
                f"  addr: 127.0.0.1:{port}",
                f"  secret: {secrets.token_hex(16)}",
                "proxy:",
                f"  remoteurl: {self.remote_url}",
                f"  username: {self.username}",
                f"  password: {self.password}",
            ]) + "\n")
        env = dict(os.environ)
        if self.ca_file:
            env["SSL_CERT_FILE"] = self.ca_file
        self.child = harness.Child(self.name, ["docker-registry", "serve", cfg], os.path.join(d, "registry.log"),
                                   env=env)

        self.port = port

        def answers():
            self.child.ensure_alive()
            return harness.request("127.0.0.1", self.port, "GET", "/v2/", timeout=5).status == 200

        harness.wait_until(answers, timeout, f"{self.name} /v2/")
        return self

    @property
    def host(self):
        return f"127.0.0.1:{self.port}"

    def cpu_seconds(self):
        return proc_stats.cpu_seconds(self.child.pid)

    def rss_kib(self):
        return proc_stats.rss_kib(self.child.pid)

    def stop(self):
        if self.child is not None:
            self.child.stop(check=False, timeout=20)
            self.child = None
