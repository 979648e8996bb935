"""A minimal CRI image-service client: what kubelet does to pull an image.

CriClient(socket).pull_image(ref) calls `/runtime.v1.ImageService/PullImage`
on containerd's gRPC socket, the very call kubelet makes for a pod's image,
with the messages hand-encoded as protobuf (no generated code, no .proto):

    PullImageRequest   { ImageSpec image = 1; AuthConfig auth = 2; }
    ImageSpec          { string image = 1; }
    AuthConfig         { string username = 1; string password = 2; string server_address = 4; }
    PullImageResponse  { string image_ref = 1; }
    ImageStatusRequest { ImageSpec image = 1; }
    ImageStatusResponse{ Image image = 1; }
    ListImagesRequest  { }                     ListImagesResponse { repeated Image images = 1; }
    RemoveImageRequest { ImageSpec image = 1; }
    Image              { string id = 1; repeated string repo_tags = 2; repeated string repo_digests = 3;
                         uint64 size = 4; }
    VersionRequest     { string version = 1; } VersionResponse { string version = 1; string runtime_name = 2;
                         string runtime_version = 3; string runtime_api_version = 4; }

(field numbers from k8s.io/cri-api pkg/apis/runtime/v1/api.proto). Kubelet
passes `auth` only when a pod has an image pull secret; a pull through the
proxy passes none. Credentials given to pull_image() travel inside the gRPC
message only, never on a command line, and are never printed.

Needs python3-grpcio (Debian's package, installed by scripts/install-deps
for /usr/bin/python3). `available()` says whether it can be imported.
"""

import struct

_grpc = None
_grpc_error = None
try:  # only the generic channel API is used: no generated stubs
    import grpc as _grpc
except ImportError as e:  # pragma: no cover - reported by available()
    _grpc_error = e

IMAGE_SERVICE = "/runtime.v1.ImageService/"
RUNTIME_SERVICE = "/runtime.v1.RuntimeService/"


def available():
    """(True, "") when grpc imports, else (False, reason)."""
    if _grpc is not None:
        return True, ""
    return False, f"python3-grpcio is not importable ({_grpc_error}); scripts/install-deps installs it"


# ---------------------------------------------------------------------------
# protobuf wire format (proto3, the few types used here)


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field_bytes(number, data):
    """A length-delimited field (string, bytes, embedded message)."""
    return _varint((number << 3) | 2) + _varint(len(data)) + data


def _field_string(number, text):
    return _field_bytes(number, text.encode()) if text else b""


def decode(data):
    """A message -> {field number: [values]}; varints as int, length-delimited as bytes."""
    fields = {}
    i, n = 0, len(data)

    def varint():
        nonlocal i
        shift = result = 0
        while True:
            if i >= n:
                raise ValueError("truncated varint")
            b = data[i]
            i += 1
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7

    while i < n:
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            value = varint()
        elif wire == 1:
            value = struct.unpack_from("<Q", data, i)[0]
            i += 8
        elif wire == 2:
            length = varint()
            value = bytes(data[i:i + length])
            if len(value) != length:
                raise ValueError("truncated field")
            i += length
        elif wire == 5:
            value = struct.unpack_from("<I", data, i)[0]
            i += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        fields.setdefault(number, []).append(value)
    return fields


def _string(fields, number, default=""):
    v = fields.get(number)
    return v[-1].decode() if v else default


def _strings(fields, number):
    return [x.decode() for x in fields.get(number, [])]


def image_spec(ref):
    return _field_string(1, ref)


def auth_config(username=None, password=None, server_address=None):
    return (_field_string(1, username or "") + _field_string(2, password or "")
            + _field_string(4, server_address or ""))


def _image(data):
    f = decode(data)
    size = f.get(4, [0])[-1]
    return {"id": _string(f, 1), "repo_tags": _strings(f, 2), "repo_digests": _strings(f, 3), "size": size}


class CriError(RuntimeError):
    """A failed CRI call: .code is the gRPC status name (e.g. 'UNKNOWN', 'NOT_FOUND')."""

    def __init__(self, method, code, details):
        super().__init__(f"CRI {method}: {code}: {details}")
        self.method, self.code, self.details = method, code, details


class CriClient:
    def __init__(self, socket_path, timeout=300):
        ok, reason = available()
        if not ok:
            raise RuntimeError(reason)
        self.socket = socket_path
        self.timeout = timeout
        # No proxy, no TLS: a unix socket, like kubelet's --container-runtime-endpoint.
        self.channel = _grpc.insecure_channel(f"unix://{socket_path}", options=[
            ("grpc.enable_http_proxy", 0),
            ("grpc.max_receive_message_length", 64 << 20),
        ])

    def close(self):
        self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _call(self, method, request, timeout=None):
        # request_serializer/response_deserializer None: bytes in, bytes out.
        call = self.channel.unary_unary(method)
        try:
            return call(request, timeout=timeout or self.timeout)
        except _grpc.RpcError as e:
            raise CriError(method.rsplit("/", 1)[-1], e.code().name, e.details()) from None

    # -- RuntimeService ------------------------------------------------------

    def version(self, timeout=10):
        f = decode(self._call(RUNTIME_SERVICE + "Version", _field_string(1, "v1"), timeout))
        return {"version": _string(f, 1), "runtime_name": _string(f, 2), "runtime_version": _string(f, 3),
                "runtime_api_version": _string(f, 4)}

    # -- ImageService --------------------------------------------------------

    def pull_image(self, ref, username=None, password=None, server_address=None, timeout=None):
        """PullImage; returns image_ref (the image id, sha256 of its config).
        username/password: an AuthConfig as kubelet builds it from a pull secret."""
        req = _field_bytes(1, image_spec(ref))
        if username or password:
            req += _field_bytes(2, auth_config(username, password, server_address))
        f = decode(self._call(IMAGE_SERVICE + "PullImage", req, timeout))
        return _string(f, 1)

    def image_status(self, ref):
        """The Image for ref ({id, repo_tags, repo_digests, size}), or None when absent."""
        f = decode(self._call(IMAGE_SERVICE + "ImageStatus", _field_bytes(1, image_spec(ref)), 30))
        return _image(f[1][-1]) if f.get(1) else None

    def list_images(self):
        f = decode(self._call(IMAGE_SERVICE + "ListImages", b"", 30))
        return [_image(x) for x in f.get(1, [])]

    def remove_image(self, ref):
        self._call(IMAGE_SERVICE + "RemoveImage", _field_bytes(1, image_spec(ref)), 60)
