"""Tiny in-process HTTP/1.1 servers for tests: fake upstreams that record
every request's method, target and header lines (in order, repeats kept).

FakeServer(handler).start() listens on 127.0.0.1 port 0 in a daemon thread;
`handler(req)` gets a Request and returns (status, headers list, body bytes);
Content-Length is added when missing, and HEAD answers carry no body.
serve_bytes() answers with a single Range honoured. stop() shuts the server
down (also at exit).
"""

import atexit
import http.server
import re
import threading


class Request:
    def __init__(self, method, target, headers, body):
        self.method = method
        self.target = target
        self.path = target.split("?", 1)[0]
        self.query = target.split("?", 1)[1] if "?" in target else ""
        self.headers = headers  # [(name, value)] in arrival order
        self.body = body

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def header_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def __repr__(self):
        return f"<{self.method} {self.target} {self.headers!r}>"


def serve_bytes(req, data, content_type="application/octet-stream", extra=()):
    """A 200 or 206 answer for `data`, honouring a single `Range: bytes=a-b`."""
    headers = [("Content-Type", content_type), ("Accept-Ranges", "bytes")] + list(extra)
    rng = req.header("Range")
    if rng:
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())
        if m:
            start = int(m.group(1))
            end = int(m.group(2)) if m.group(2) else len(data) - 1
            end = min(end, len(data) - 1)
            if start <= end:
                headers.append(("Content-Range", f"bytes {start}-{end}/{len(data)}"))
                return 206, headers, data[start:end + 1]
            return 416, [("Content-Range", f"bytes */{len(data)}")], b""
    return 200, headers, data


class FakeServer:
    def __init__(self, handler, name="fake"):
        self.handler = handler
        self.name = name
        self.requests = []
        self._lock = threading.Lock()
        self._server = None
        self._thread = None

    def start(self):
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                req = Request(self.command, self.path, list(self.headers.items()), body)
                with outer._lock:
                    outer.requests.append(req)
                status, headers, data = outer.handler(req)
                data = data or b""
                self.send_response(status)
                names = {k.lower() for k, _ in headers}
                for k, v in headers:
                    self.send_header(k, v)
                if "content-length" not in names:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name=self.name, daemon=True)
        self._thread.start()
        atexit.register(self.stop)
        return self

    @property
    def port(self):
        return self._server.server_address[1]

    @property
    def host(self):
        return f"127.0.0.1:{self.port}"

    def seen(self):
        with self._lock:
            return list(self.requests)

    def clear(self):
        with self._lock:
            self.requests.clear()

    def stop(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
