"""An HTTP/2-only registry stand-in (python3-h2, TLS with ALPN h2) that misbehaves on purpose.

H2FaultServer(dir).start() listens on 127.0.0.1:<port 0>, one thread per connection, TLS with a
throwaway CA (registry.make_tls_material) and ALPN offering only "h2". It answers, anonymously:

  GET /v2/                          200 {}
  GET|HEAD /v2/<name>/manifests/<r> 200 a fixed OCI manifest (Content-Type, Docker-Content-Digest,
                                    Content-Length)
  GET|HEAD /v2/<name>/blobs/<d>     200 the blob registered with add_blob() (Content-Length,
                                    Docker-Content-Digest); 404 BLOB_UNKNOWN otherwise
  anything else                     404

What the repository name selects (so a test picks the fault by the path it asks for):

  fault/goaway  of the first `goaway_after` streams that reach one connection, the first
                `goaway_keep` get their headers and the first `goaway_partial` body bytes, then
                wait; the others get nothing. When the last of them has arrived (or `goaway_wait`
                seconds passed) the server sends GOAWAY(NO_ERROR, last_stream_id = the
                `goaway_keep`-th stream id), finishes the streams at or below it, never answers the
                ones above it (RFC 9113 6.8: not processed, safe to retry on another connection)
                and closes the connection once the kept ones are done. Only
                the first connection that sees such a request does this (`goaway_once`); later
                connections serve fault/goaway normally.
  fault/rst     a blob GET gets its headers (the full Content-Length) and `rst_after` body bytes,
                then RST_STREAM(INTERNAL_ERROR). Manifests are served normally.

The GOAWAY frame is written to the socket by hand (hyperframe): h2's state machine refuses DATA
after it has sent GOAWAY itself, and a graceful GOAWAY lets the streams below the last id finish.

stats() -> {"connections": n, "non_h2": n, "per_connection": [{"id", "streams": [(stream id, path,
answer)], "goaway_last": id or None, "goaway_open": [ids open when it was sent], "after_goaway":
[paths of streams opened after it]}]}; answer is "done", "rst", "refused" (above the GOAWAY id)
or "open". Every DATA frame respects the peer's flow-control windows.

A missing python3-h2 makes require_h2() exit 77 naming the package.
"""

import hashlib
import json
import os
import socket
import ssl
import sys
import threading
import time

import harness
import registry

PACKAGE = "python3-h2"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"


def require_h2():
    try:
        import h2  # noqa: F401
        import hyperframe  # noqa: F401
    except ImportError:
        print(f"SKIP: the python h2 module is not installed for {sys.executable} (Debian package {PACKAGE}; "
              "scripts/install-deps installs it)", flush=True)
        sys.exit(harness.SKIP_EXIT)


def _digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


class _Stream:
    def __init__(self, sid, method, path):
        self.sid = sid
        self.method = method
        self.path = path
        self.pending = b""  # body bytes not sent yet
        self.hold_after = None  # send no more than this many body bytes until released
        self.sent = 0
        self.end_after = True  # END_STREAM once pending is empty
        self.rst_at = None  # RST_STREAM once this many body bytes went out
        self.answer = "open"


class _Connection:
    def __init__(self, server, sock, cid):
        import h2.config
        import h2.connection

        self.server = server
        self.sock = sock
        self.id = cid
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        self.streams = {}
        self.order = []  # stream ids in arrival order
        self.goaway_role = False  # this connection plays the GOAWAY scenario
        self.goaway_held = []  # stream ids held for it
        self.goaway_first_at = None
        self.goaway_last = None
        self.closing = False
        self.record = {"id": cid, "streams": [], "goaway_last": None, "goaway_open": [], "after_goaway": []}

    # -- plumbing -------------------------------------------------------------

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def respond(self, stream, status, headers, body=b"", head_only=False):
        hdrs = [(":status", str(status))] + [(k, v) for k, v in headers]
        if "content-length" not in dict(headers):
            hdrs.append(("content-length", str(len(body))))
        if head_only or not body:
            self.conn.send_headers(stream.sid, hdrs, end_stream=True)
            stream.answer = "done"
            return
        self.conn.send_headers(stream.sid, hdrs)
        stream.pending = body

    def pump(self):
        """Sends as much pending body as the windows allow."""
        for sid in list(self.order):
            s = self.streams.get(sid)
            if s is None or s.answer != "open" or (not s.pending and s.rst_at is None):
                continue
            while s.pending:
                limit = len(s.pending)
                if s.hold_after is not None:
                    limit = min(limit, s.hold_after - s.sent)
                if s.rst_at is not None:
                    limit = min(limit, s.rst_at - s.sent)
                try:
                    window = self.conn.local_flow_control_window(sid)
                except Exception:  # noqa: BLE001 - stream closed by the peer
                    s.answer = "reset by peer"
                    break
                n = min(limit, window, self.conn.max_outbound_frame_size)
                if n <= 0:
                    break
                end = n == len(s.pending) and s.end_after and s.rst_at is None
                self.conn.send_data(sid, s.pending[:n], end_stream=end)
                s.pending = s.pending[n:]
                s.sent += n
                if end:
                    s.answer = "done"
            if s.answer == "open" and s.rst_at is not None and s.sent >= s.rst_at:
                import h2.errors

                self.flush()
                self.conn.reset_stream(sid, error_code=h2.errors.ErrorCodes.INTERNAL_ERROR)
                s.answer = "rst"
        self.flush()

    # -- the registry ---------------------------------------------------------

    def on_request(self, sid, headers):
        h = dict(headers)
        method, path = h.get(":method", ""), h.get(":path", "")
        s = _Stream(sid, method, path)
        self.streams[sid] = s
        self.order.append(sid)
        if self.goaway_last is not None:
            # A new stream after our GOAWAY: a client bug. Never answered; recorded.
            self.record["after_goaway"].append(path)
            s.answer = "refused"
            return
        path_only = path.split("?", 1)[0]
        head = method == "HEAD"
        srv = self.server
        if path_only == "/v2/":
            self.respond(s, 200, [("content-type", "application/json")], b"{}", head)
            return
        parts = path_only.split("/")
        # /v2/<name...>/(manifests|blobs)/<ref>
        if len(parts) < 5 or parts[1] != "v2" or parts[-2] not in ("manifests", "blobs"):
            self.respond(s, 404, [("content-type", "application/json")], b'{"errors":[{"code":"NOT_FOUND"}]}', head)
            return
        name, kind, ref = "/".join(parts[2:-2]), parts[-2], parts[-1]
        if kind == "manifests":
            body = srv.manifest
            headers = [("content-type", MANIFEST_TYPE), ("docker-content-digest", _digest(body))]
        else:
            body = srv.blobs.get(ref)
            if body is None:
                self.respond(s, 404, [("content-type", "application/json")],
                             b'{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry"}]}', head)
                return
            headers = [("content-type", "application/octet-stream"), ("docker-content-digest", ref)]
        if name == "fault/rst" and kind == "blobs" and not head:
            s.rst_at = min(srv.rst_after, len(body) - 1)
            s.end_after = False
        if name == "fault/goaway" and not head and self._goaway_candidate():
            keep = len(self.goaway_held) < srv.goaway_keep
            self.goaway_held.append(sid)
            if self.goaway_first_at is None:
                self.goaway_first_at = time.monotonic()
            if not keep:
                return  # above the last id the GOAWAY will name: never answered, not even a header
            s.hold_after = min(srv.goaway_partial, len(body) - 1)
        self.respond(s, 200, headers, body, head)

    def _goaway_candidate(self):
        srv = self.server
        if self.goaway_role:
            return len(self.goaway_held) < srv.goaway_after
        with srv.lock:
            if srv.goaway_fired_by is not None and srv.goaway_once:
                return False
            srv.goaway_fired_by = self.id
        self.goaway_role = True
        return True

    def maybe_goaway(self, force=False):
        srv = self.server
        if not self.goaway_role or self.goaway_last is not None or not self.goaway_held:
            return
        if len(self.goaway_held) < srv.goaway_after and not force:
            return
        from hyperframe.frame import GoAwayFrame

        held = sorted(self.goaway_held)
        keep = held[:max(1, min(srv.goaway_keep, len(held)))]
        last = keep[-1]
        self.flush()  # frames h2 queued go first: the GOAWAY is written between whole frames
        frame = GoAwayFrame(0)
        frame.last_stream_id = last
        frame.error_code = 0
        self.sock.sendall(frame.serialize())
        self.goaway_last = last
        self.record["goaway_last"] = last
        self.record["goaway_open"] = [sid for sid in self.order if self.streams[sid].answer == "open"]
        for sid in held:
            s = self.streams[sid]
            if sid <= last:
                s.hold_after = None
            else:
                s.answer = "refused"
                s.pending = b""
        self.closing = True

    def done_after_goaway(self):
        return self.closing and all(self.streams[sid].answer != "open" for sid in self.order
                                    if sid <= (self.goaway_last or 0))

    # -- the loop -------------------------------------------------------------

    def run(self):
        import h2.events
        import h2.exceptions

        self.conn.initiate_connection()
        self.flush()
        self.sock.settimeout(0.05)
        try:
            while not self.server.stopping.is_set():
                try:
                    data = self.sock.recv(65536)
                    if not data:
                        break
                except (socket.timeout, ssl.SSLWantReadError):
                    data = None
                if data:
                    try:
                        events = self.conn.receive_data(data)
                    except h2.exceptions.ProtocolError:
                        self.flush()
                        break
                    for ev in events:
                        if isinstance(ev, h2.events.RequestReceived):
                            self.on_request(ev.stream_id, ev.headers)
                        elif isinstance(ev, h2.events.StreamReset):
                            st = self.streams.get(ev.stream_id)
                            if st is not None and st.answer == "open":
                                st.answer = "reset by peer"
                        elif isinstance(ev, h2.events.ConnectionTerminated):
                            self.server.note(self, "peer GOAWAY")
                if self.goaway_first_at is not None:
                    late = time.monotonic() - self.goaway_first_at > self.server.goaway_wait
                    self.maybe_goaway(force=late)
                self.pump()
                if self.done_after_goaway():
                    break
        except (OSError, ssl.SSLError):
            pass
        finally:
            self.record["streams"] = [(sid, self.streams[sid].path, self.streams[sid].answer) for sid in self.order]
            self._close_gracefully()

    def _close_gracefully(self, linger=3.0):
        """FIN, then read until the peer closes: closing with its frames (WINDOW_UPDATE, SETTINGS
        ACK) unread would make the kernel send RST, and the peer could lose the last DATA frames."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
            self.sock.settimeout(0.2)
            deadline = time.monotonic() + linger
            while time.monotonic() < deadline:
                try:
                    if not self.sock.recv(65536):
                        break
                except (socket.timeout, ssl.SSLWantReadError):
                    continue
        except (OSError, ssl.SSLError):
            pass
        try:
            self.sock.close()
        except OSError:
            pass


class H2FaultServer:
    def __init__(self, directory, tls=None, goaway_after=8, goaway_keep=4, goaway_partial=16384, goaway_wait=10.0,
                 goaway_once=True, rst_after=65536):
        require_h2()
        os.makedirs(directory, exist_ok=True)
        self.dir = directory
        self.tls = tls or registry.make_tls_material(os.path.join(directory, "tls"))
        self.goaway_after, self.goaway_keep = goaway_after, goaway_keep
        self.goaway_partial, self.goaway_wait, self.goaway_once = goaway_partial, goaway_wait, goaway_once
        self.rst_after = rst_after
        self.goaway_fired_by = None
        self.manifest = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST_TYPE,
                                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                               "digest": _digest(b"{}"), "size": 2},
                                    "layers": []}, separators=(",", ":")).encode()
        self.blobs = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.conns = []
        self.non_h2 = 0
        self.notes = []
        self.port = None
        self._listener = None
        self._accept_thread = None

    def add_blob(self, data):
        """Registers a blob; returns its digest."""
        d = _digest(data)
        self.blobs[d] = data
        return d

    @property
    def manifest_digest(self):
        return _digest(self.manifest)

    def start(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.tls["cert"], self.tls["key"])
        ctx.set_alpn_protocols(["h2"])
        self._ctx = ctx
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", 0))
        ls.listen(128)
        ls.settimeout(0.1)
        self._listener = ls
        self.port = ls.getsockname()[1]
        self._accept_thread = threading.Thread(target=self._accept, daemon=True)
        self._accept_thread.start()
        return self

    def _accept(self):
        while not self.stopping.is_set():
            try:
                raw, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw):
        raw.settimeout(10)
        try:
            sock = self._ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            raw.close()
            return
        if sock.selected_alpn_protocol() != "h2":
            with self.lock:
                self.non_h2 += 1
            sock.close()
            return
        with self.lock:
            c = _Connection(self, sock, len(self.conns) + 1)
            self.conns.append(c)
        c.run()

    def note(self, conn, what):
        with self.lock:
            self.notes.append((conn.id, what))

    def stop(self):
        self.stopping.set()
        if self._listener is not None:
            self._listener.close()
        if self._accept_thread is not None:
            self._accept_thread.join(timeout=5)

    def stats(self):
        with self.lock:
            per = []
            for c in self.conns:
                rec = dict(c.record)
                rec["streams"] = [(sid, c.streams[sid].path, c.streams[sid].answer) for sid in list(c.order)]
                per.append(rec)
            return {"connections": len(self.conns), "non_h2": self.non_h2, "per_connection": per,
                    "notes": list(self.notes)}

    def reset_goaway(self):
        with self.lock:
            self.goaway_fired_by = None

    @property
    def host(self):
        return f"127.0.0.1:{self.port}"

    @property
    def ca(self):
        return self.tls["ca"]

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
