#!/usr/bin/env python3
"""The Kubernetes manifests in deploy/kubernetes/, checked field by field and run.

Static checks parse every manifest (every *.yaml below the directory, every
document in it):
- structure: apiVersion/kind pairs we ship, required fields, and no field name
  outside a closed list per object type (a typo such as `tolerations` spelt
  wrong would otherwise be dropped silently by the API server), enums, names,
  quantities, selector vs template labels;
- the fields the node issue names: hostNetwork, loopback listeners, probes on
  127.0.0.1 at the admin port, system-node-critical, a toleration for every
  taint, requests and limits, the certs.d hostPath passed as --certs-dir, the
  `acr-configuration` ConfigMap mounted read-only and passed as
  --acr-configuration, a ServiceAccount ready for the RRSA annotation, a cleanup
  DaemonSet running `hosts remove` on the same directory;
- what the pull scope (issue 10) needs and nothing more: one ClusterRole with
  get/list/watch on core pods only, bound to the DaemonSet's ServiceAccount
  alone, the ServiceAccount token mounted in the proxy's pod (and in no other),
  NODE_NAME from the downward API (spec.nodeName);
- every flag passed to the binary appears in its --help (serve) or
  `hosts --help` (hosts).

Live checks play kubelet with the built binary: each pod's volumes are laid out
in a temp dir (ConfigMaps the way kubelet mounts them: `..<timestamp>/` files,
a `..data` link, one link per key; hostPaths as one shared "node" directory),
the container's args are run with their paths mapped there and the listen
ports mapped to free loopback ports. `check-config` loads the add-on's
documented example and the manifests' own ConfigMaps; `serve` starts with the
DaemonSet's exact args, answers the probes, writes hosts.toml beside a user's
file, and lists and watches its node's pods from a fake API server the way a
pod reaches the real one (tests/support/fake_kube.py; the ServiceAccount volume
laid out as kubelet does and bind-mounted read-only at
/var/run/secrets/kubernetes.io/serviceaccount in a private mount namespace of
each pod, KUBERNETES_SERVICE_HOST/PORT pointing at the fake, NODE_NAME as the
downward API sets it); the cleanup DaemonSet's init container restores the
user's file byte for byte and its main container waits for SIGTERM. When possible the script runs
in a private network namespace with only loopback (the proxy then cannot reach
any cloud endpoint, and nothing leaves the machine); without one, the `serve`
case is skipped.

Usage: manifests_test.py --proxy BUILD/proxy/acr-credential-proxy [--manifests DIR]
"""

import argparse
import base64
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))

import harness  # noqa: E402
import secret_log  # noqa: E402

try:
    import yaml
except ImportError:
    print("SKIP: python3-yaml is not installed (scripts/install-deps installs it)", flush=True)
    sys.exit(harness.SKIP_EXIT)

SOURCE_ROOT = os.environ.get("ACP_SOURCE_ROOT") or os.path.abspath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

ARGS = None  # parsed command line
LIVE = False  # inside a private network namespace (the serve case may run)

# The add-on's documented cross-region example (its docs, "Cross-region pull
# configuration example"), exactly as published.
ADDON_EXAMPLE = {
    "service-account": "default",
    "watch-namespace": "all",
    "expiring-threshold": "15m",
    "notify-email": "c*@aliyuncs.com",
    "acr-registry-info": ('- instanceId: "cri-instanceId"\n  regionId: "cn-beijing"\n'
                          '- instanceId: "cri-instanceId"\n  regionId: "cn-hangzhou"      \n'),
}

RBAC_KINDS = {"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"}
RBAC_API = "rbac.authorization.k8s.io"
CLUSTER_SCOPED_KINDS = {"ClusterRole", "ClusterRoleBinding"}
# The issue's RBAC for the pull scope: get/list/watch on core pods, nothing more (docs/scope.md).
SCOPE_RULES = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
SERVICEACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
FAKE_KUBE = os.path.join(SOURCE_ROOT, "tests", "support", "fake_kube.py")
NODE_NAME = "node-1"  # what the downward API gives the pod (spec.nodeName)
PROXY_DRAIN_SECONDS = 30  # timeouts.shutdownGrace default (docs/configuration.md)


# ---------------------------------------------------------------------------
# Loading


class Doc:
    def __init__(self, path, index, obj, text):
        self.path = path
        self.index = index
        self.obj = obj
        self.text = text  # the whole file, comments included

    @property
    def kind(self):
        return self.obj.get("kind") if isinstance(self.obj, dict) else None

    @property
    def name(self):
        meta = self.obj.get("metadata") if isinstance(self.obj, dict) else None
        return meta.get("name") if isinstance(meta, dict) else None

    @property
    def rel(self):
        return os.path.relpath(self.path, ARGS.manifests)

    def where(self):
        return f"{self.rel}#{self.index} {self.kind}/{self.name}"


def load_manifests(directory):
    paths = sorted(set(glob.glob(os.path.join(directory, "**", "*.yaml"), recursive=True)
                       + glob.glob(os.path.join(directory, "**", "*.yml"), recursive=True)))
    docs = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        for i, obj in enumerate(yaml.safe_load_all(text)):
            if obj is not None:
                docs.append(Doc(path, i, obj, text))
    return paths, docs


def pod_spec(doc):
    return doc.obj["spec"]["template"]["spec"]


def all_containers(spec):
    return list(spec.get("initContainers") or []) + list(spec.get("containers") or [])


def daemonsets(docs):
    return [d for d in docs if d.kind == "DaemonSet"]


def runs(container, *words):
    args = list(container.get("command") or []) + list(container.get("args") or [])
    return args[:len(words)] == list(words)


def proxy_daemonset(docs):
    found = [d for d in daemonsets(docs) if any(runs(c, "serve") for c in pod_spec(d)["containers"])]
    return found[0] if len(found) == 1 else None


def cleanup_daemonset(docs):
    found = [d for d in daemonsets(docs)
             if any(runs(c, "hosts", "remove") for c in all_containers(pod_spec(d)))]
    return found[0] if len(found) == 1 else None


def serve_container(ds):
    return next(c for c in pod_spec(ds)["containers"] if runs(c, "serve"))


def flag_values(args, flag):
    """Values of --flag=V and --flag V, in order."""
    out = []
    for i, a in enumerate(args):
        if a.startswith(flag + "="):
            out.append(a[len(flag) + 1:])
        elif a == flag and i + 1 < len(args):
            out.append(args[i + 1])
    return out


def one_flag(args, flag):
    v = flag_values(args, flag)
    return v[0] if len(v) == 1 else None


def split_host_port(value):
    m = re.fullmatch(r"(\[[0-9a-fA-F:.]+\]|[0-9.]+):([0-9]+)", value or "")
    return (m.group(1).strip("[]"), int(m.group(2))) if m else (None, None)


# ---------------------------------------------------------------------------
# A closed schema of the fields these manifests may use. A dict is an object
# whose keys are all listed ("!key": required); ("list", S), ("map", S),
# ("enum", ...) and the leaf validators below describe the rest.

def _str(v):
    return isinstance(v, str)


def _bool(v):
    return isinstance(v, bool)


def _int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _int_or_str(v):
    return _int(v) or _str(v)


QUANTITY_RE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
QUANTITY_UNITS = {None: 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
                  "Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40}


def quantity(v):
    """A Kubernetes quantity as a float, or None."""
    m = QUANTITY_RE.match(str(v)) if _str(v) or _int(v) else None
    return float(m.group(1)) * QUANTITY_UNITS[m.group(2)] if m else None


def _quantity(v):
    return quantity(v) is not None


DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _dns_label(v):
    return _str(v) and len(v) <= 63 and DNS_LABEL.match(v) is not None


def _dns_subdomain(v):
    return _str(v) and len(v) <= 253 and all(DNS_LABEL.match(p) for p in v.split("."))


def _port_name(v):
    return _str(v) and len(v) <= 15 and re.match(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", v) and re.search("[a-z]", v)


def _abs_path(v):
    return _str(v) and v.startswith("/")


# A reference as containerd parses it: [host[:port]/]path[:tag][@digest].
IMAGE_RE = re.compile(r"^(?:(?P<host>[a-z0-9.-]+(?::[0-9]+)?)/)?(?P<path>[a-z0-9]+(?:[._-][a-z0-9]+)*"
                      r"(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*)(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
                      r"(?:@sha256:[0-9a-f]{64})?$")


def _image(v):
    return _str(v) and IMAGE_RE.match(v) is not None


META = {"!name": _dns_subdomain, "namespace": _dns_label, "labels": ("map", _str), "annotations": ("map", _str)}
SELECTOR_REQ = {"!key": _str, "!operator": ("enum", "In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"),
                "values": ("list", _str)}
NODE_SELECTOR_TERM = {"matchExpressions": ("list", SELECTOR_REQ), "matchFields": ("list", SELECTOR_REQ)}
AFFINITY = {"nodeAffinity": {
    "requiredDuringSchedulingIgnoredDuringExecution": {"!nodeSelectorTerms": ("list", NODE_SELECTOR_TERM)},
    "preferredDuringSchedulingIgnoredDuringExecution": ("list", {"!weight": _int, "!preference": NODE_SELECTOR_TERM}),
}}
TOLERATION = {"key": _str, "operator": ("enum", "Exists", "Equal"), "value": _str,
              "effect": ("enum", "NoSchedule", "PreferNoSchedule", "NoExecute"), "tolerationSeconds": _int}
SECCOMP = {"!type": ("enum", "RuntimeDefault", "Localhost", "Unconfined"), "localhostProfile": _str}
POD_SECURITY = {"runAsUser": _int, "runAsGroup": _int, "runAsNonRoot": _bool, "fsGroup": _int,
                "supplementalGroups": ("list", _int), "seccompProfile": SECCOMP}
CONTAINER_SECURITY = {"runAsUser": _int, "runAsGroup": _int, "runAsNonRoot": _bool, "privileged": _bool,
                      "allowPrivilegeEscalation": _bool, "readOnlyRootFilesystem": _bool,
                      "capabilities": {"add": ("list", _str), "drop": ("list", _str)}, "seccompProfile": SECCOMP}
PROBE = {"httpGet": {"host": _str, "!port": _int_or_str, "path": _str, "scheme": ("enum", "HTTP", "HTTPS")},
         "tcpSocket": {"host": _str, "!port": _int_or_str}, "exec": {"command": ("list", _str)},
         "initialDelaySeconds": _int, "periodSeconds": _int, "timeoutSeconds": _int,
         "failureThreshold": _int, "successThreshold": _int}
RESOURCE_LIST = {"cpu": _quantity, "memory": _quantity, "ephemeral-storage": _quantity}
KEY_REF = {"!name": _dns_subdomain, "!key": _str, "optional": _bool}
ENV = {"!name": _str, "value": _str, "valueFrom": {
    "secretKeyRef": KEY_REF, "configMapKeyRef": KEY_REF,
    "fieldRef": {"!fieldPath": _str, "apiVersion": _str}}}
CONTAINER = {
    "!name": _dns_label, "!image": _image, "imagePullPolicy": ("enum", "Always", "IfNotPresent", "Never"),
    "command": ("list", _str), "args": ("list", _str), "env": ("list", ENV),
    "ports": ("list", {"name": _port_name, "!containerPort": _int, "hostPort": _int,
                       "protocol": ("enum", "TCP", "UDP", "SCTP")}),
    "livenessProbe": PROBE, "readinessProbe": PROBE, "startupProbe": PROBE,
    "resources": {"requests": RESOURCE_LIST, "limits": RESOURCE_LIST},
    "securityContext": CONTAINER_SECURITY,
    "volumeMounts": ("list", {"!name": _dns_label, "!mountPath": _abs_path, "readOnly": _bool, "subPath": _str,
                              "mountPropagation": ("enum", "None", "HostToContainer", "Bidirectional")}),
}
VOLUME = {"!name": _dns_label,
          "configMap": {"!name": _dns_subdomain, "optional": _bool, "defaultMode": _int,
                        "items": ("list", {"!key": _str, "!path": _str})},
          "secret": {"!secretName": _dns_subdomain, "optional": _bool, "defaultMode": _int},
          "hostPath": {"!path": _abs_path, "type": ("enum", "", "DirectoryOrCreate", "Directory", "FileOrCreate",
                                                    "File", "Socket", "CharDevice", "BlockDevice")},
          "emptyDir": {"medium": _str, "sizeLimit": _quantity}}
POD_SPEC = {
    "serviceAccountName": _dns_subdomain, "automountServiceAccountToken": _bool, "hostNetwork": _bool,
    "dnsPolicy": ("enum", "ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"),
    "enableServiceLinks": _bool, "priorityClassName": _dns_subdomain, "terminationGracePeriodSeconds": _int,
    "nodeSelector": ("map", _str), "affinity": AFFINITY, "tolerations": ("list", TOLERATION),
    "securityContext": POD_SECURITY, "initContainers": ("list", CONTAINER), "!containers": ("list", CONTAINER),
    "volumes": ("list", VOLUME), "restartPolicy": ("enum", "Always"),
}
LABEL_SELECTOR = {"matchLabels": ("map", _str), "matchExpressions": ("list", SELECTOR_REQ)}
CLUSTER_META = {"!name": _dns_subdomain, "labels": ("map", _str), "annotations": ("map", _str)}
POLICY_RULE = {"apiGroups": ("list", _str), "resources": ("list", _str), "verbs": ("list", _str),
               "resourceNames": ("list", _str), "nonResourceURLs": ("list", _str)}
SCHEMAS = {
    ("v1", "ServiceAccount"): {"!apiVersion": _str, "!kind": _str, "!metadata": META,
                               "automountServiceAccountToken": _bool},
    (RBAC_API + "/v1", "ClusterRole"): {"!apiVersion": _str, "!kind": _str, "!metadata": CLUSTER_META,
                                        "!rules": ("list", POLICY_RULE)},
    (RBAC_API + "/v1", "ClusterRoleBinding"): {
        "!apiVersion": _str, "!kind": _str, "!metadata": CLUSTER_META,
        "!roleRef": {"!apiGroup": _str, "!kind": ("enum", "ClusterRole", "Role"), "!name": _dns_subdomain},
        "!subjects": ("list", {"!kind": ("enum", "ServiceAccount", "User", "Group"), "!name": _str,
                               "namespace": _dns_label, "apiGroup": _str})},
    ("v1", "ConfigMap"): {"!apiVersion": _str, "!kind": _str, "!metadata": META, "data": ("map", _str),
                          "immutable": _bool},
    ("apps/v1", "DaemonSet"): {"!apiVersion": _str, "!kind": _str, "!metadata": META, "!spec": {
        "!selector": LABEL_SELECTOR,
        "updateStrategy": {"!type": ("enum", "RollingUpdate", "OnDelete"),
                           "rollingUpdate": {"maxUnavailable": _int_or_str, "maxSurge": _int_or_str}},
        "minReadySeconds": _int, "revisionHistoryLimit": _int,
        "!template": {"!metadata": {"labels": ("map", _str), "annotations": ("map", _str)}, "!spec": POD_SPEC},
    }},
}


def validate(value, schema, path, problems):
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            problems.append(f"{path}: expected an object, got {type(value).__name__}")
            return
        known = {k.lstrip("!"): s for k, s in schema.items()}
        for k in schema:
            if k.startswith("!") and k[1:] not in value:
                problems.append(f"{path}.{k[1:]}: required field missing")
        for k, v in value.items():
            if k not in known:
                problems.append(f"{path}.{k}: unknown field (known: {', '.join(sorted(known))})")
            else:
                validate(v, known[k], f"{path}.{k}", problems)
    elif isinstance(schema, tuple) and schema[0] == "list":
        if not isinstance(value, list):
            problems.append(f"{path}: expected a list")
            return
        for i, item in enumerate(value):
            validate(item, schema[1], f"{path}[{i}]", problems)
    elif isinstance(schema, tuple) and schema[0] == "map":
        if not isinstance(value, dict):
            problems.append(f"{path}: expected a map")
            return
        for k, v in value.items():
            if not isinstance(k, str):
                problems.append(f"{path}: key {k!r} is not a string")
            validate(v, schema[1], f"{path}[{k!r}]", problems)
    elif isinstance(schema, tuple) and schema[0] == "enum":
        if value not in schema[1:]:
            problems.append(f"{path}: {value!r} is not one of {list(schema[1:])}")
    elif not schema(value):
        problems.append(f"{path}: invalid value {value!r} ({schema.__name__.lstrip('_')})")


# ---------------------------------------------------------------------------
# Playing kubelet


class Node:
    """A pretend node: hostPath directories live under one temp dir, so the
    proxy's pod and the cleanup pod see the same files; every pod gets its own
    directory for ConfigMap volumes."""

    def __init__(self, root, configmaps, api=None):
        self.root = root
        self.configmaps = configmaps  # (namespace, name) -> data
        self.api = api  # a FakeApiServer, or None
        self.ports = {}  # manifest port -> free loopback port
        self.pods = 0

    def host_path(self, path):
        local = os.path.join(self.root, "host", path.lstrip("/"))
        return local

    def port(self, p):
        if p not in self.ports:
            self.ports[p] = harness.free_port()
        return self.ports[p]

    def mounts(self, spec, namespace, container):
        """mountPath -> local directory, volumes set up as kubelet would."""
        self.pods += 1
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        out = {}
        for m in container.get("volumeMounts") or []:
            v = volumes[m["name"]]
            if "hostPath" in v:
                local = self.host_path(v["hostPath"]["path"])
                if v["hostPath"].get("type") == "DirectoryOrCreate":
                    os.makedirs(local, exist_ok=True)
            elif "configMap" in v:
                local = os.path.join(self.root, f"pod{self.pods}", "volumes", m["name"])
                data = self.configmaps.get((namespace, v["configMap"]["name"]))
                if data is None and not v["configMap"].get("optional", False):
                    raise AssertionError(f"ConfigMap {namespace}/{v['configMap']['name']} is in no manifest: "
                                         f"kubelet would not start the pod")
                write_configmap_volume(local, data or {})
            else:
                raise AssertionError(f"volume {m['name']}: this test does not know how to lay it out")
            out[m["mountPath"]] = local
        return out

    def local_args(self, container, mounts):
        """The container's args with mount paths mapped to local directories
        and listen ports to free loopback ports."""
        out = []
        for a in list(container.get("command") or []) + list(container.get("args") or []):
            flag, eq, value = a.partition("=")
            if not eq:
                flag, value = "", a
            if flag in ("--listen", "--admin-listen"):
                host, port = split_host_port(value)
                value = f"{'[' + host + ']' if ':' in host else host}:{self.port(port)}"
            elif value.startswith("/"):
                value = map_path(value, mounts)
            out.append(flag + eq + value if eq else value)
        return out


    def env(self, container, namespace):
        """The container's env as kubelet sets it: literals, the downward API
        fields the manifests use, and the API server's service variables."""
        out = {}
        for e in container.get("env") or []:
            if "value" in e:
                out[e["name"]] = e["value"]
                continue
            ref = (e.get("valueFrom") or {}).get("fieldRef") or {}
            field = {"spec.nodeName": NODE_NAME, "metadata.namespace": namespace}.get(ref.get("fieldPath"))
            if field is None:
                raise AssertionError(f"env {e['name']}: this test does not know how to fill {e.get('valueFrom')}")
            out[e["name"]] = field
        if self.api is not None:
            # kubelet sets these for every pod, enableServiceLinks or not.
            out["KUBERNETES_SERVICE_HOST"] = self.api.host
            out["KUBERNETES_SERVICE_PORT"] = str(self.api.port)
            out["KUBERNETES_SERVICE_PORT_HTTPS"] = str(self.api.port)
        return out

    def serviceaccount_volume(self, spec, namespace):
        """The token, ca.crt and namespace as kubelet projects them (atomic
        writer: ..data link), or None when the pod gets no token."""
        if self.api is None or spec.get("automountServiceAccountToken", True) is False:
            return None
        self.pods += 1
        local = os.path.join(self.root, f"pod{self.pods}", "volumes", "kube-api-access")
        write_configmap_volume(local, {"token": self.api.token, "ca.crt": self.api.ca_pem, "namespace": namespace})
        return local

    def pod_argv(self, argv, serviceaccount_dir):
        """argv as the pod's process: in a private mount namespace with the
        ServiceAccount volume read-only at SERVICEACCOUNT_DIR. The pod's /run is
        its own tmpfs, as a container's is (nothing is created on the host)."""
        if serviceaccount_dir is None:
            return argv
        run_dir = os.path.realpath("/var/run")  # /run on Debian (/var/run is a link to it)
        target = run_dir + SERVICEACCOUNT_DIR[len("/var/run"):]
        script = ('set -e; mount -t tmpfs -o mode=0755 acp-pod-run "$1"; mkdir -p "$2"; '
                  'mount --bind "$3" "$2"; mount -o remount,bind,ro "$2"; shift 3; exec "$@"')
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", run_dir, target,
                serviceaccount_dir] + list(argv)


class FakeApiServer:
    """tests/support/fake_kube.py in its own process: the Kubernetes API
    server the proxy's pod reaches in-cluster. Its kubeconfig gives the URL,
    the CA and the bearer token that kubelet would project into the pod."""

    def __init__(self, tmp, node_name, pods=()):
        """pods: fake_kube.py --pod specs, NAMESPACE/NAME=IMAGE[,IMAGE...][@SERVICEACCOUNT], on node_name."""
        kubeconfig = os.path.join(tmp.path, "fake-kube.kubeconfig")
        argv = [sys.executable, FAKE_KUBE, "--node", node_name, "--dir", tmp.join("fake-kube"),
                "--kubeconfig-out", kubeconfig]
        for p in pods:
            argv += ["--pod", p]
        self.child = harness.Child("fake-kube", argv, tmp.join("fake-kube.log"), env=clean_env())
        harness.wait_until(lambda: not self.child.alive() or _complete_yaml(kubeconfig), 20,
                           "fake_kube.py to write its kubeconfig")
        self.child.ensure_alive()
        with open(kubeconfig, encoding="utf-8") as f:
            cfg = yaml.safe_load(f)
        cluster = cfg["clusters"][0]["cluster"]
        user = cfg["users"][0]["user"]
        m = re.fullmatch(r"https://(\[[0-9a-fA-F:.]+\]|[0-9.]+):([0-9]+)/?", cluster["server"])
        if m is None:
            raise AssertionError(f"fake_kube.py serves {cluster['server']!r}: in-cluster access is https to an IP")
        self.host, self.port = m.group(1).strip("[]"), int(m.group(2))
        if "certificate-authority-data" in cluster:
            self.ca_pem = base64.b64decode(cluster["certificate-authority-data"]).decode()
        else:
            self.ca_pem = _read(os.path.join(os.path.dirname(kubeconfig), cluster["certificate-authority"]))
        if "token" in user:
            self.token = user["token"]
        else:
            self.token = _read(os.path.join(os.path.dirname(kubeconfig), user["tokenFile"])).strip()
        secret_log.register("bearer-token", self.token)

    def stop(self):
        if self.child.alive():
            self.child.stop(signal.SIGTERM, timeout=10, check=False)


def _complete_yaml(path):
    try:
        with open(path, encoding="utf-8") as f:
            cfg = yaml.safe_load(f)
        return bool(isinstance(cfg, dict) and cfg.get("clusters") and cfg.get("users"))
    except (OSError, yaml.YAMLError):
        return False


def proxy_watches_pods():
    """The binary has the pull scope's API access (serve --kubeconfig)."""
    return re.search(r"--kubeconfig(?![\w-])", run_proxy(["--help"]).stdout) is not None


def map_path(path, mounts):
    for mount_path in sorted(mounts, key=len, reverse=True):
        if path == mount_path or path.startswith(mount_path.rstrip("/") + "/"):
            return mounts[mount_path] + path[len(mount_path):]
    raise AssertionError(f"{path} is not inside any volume mount of the container (it would not exist in the pod)")


def write_configmap_volume(directory, data, stamp="..2026_01_02_03_04_05.000000001"):
    """A ConfigMap volume as kubelet's atomic writer lays it out."""
    os.makedirs(os.path.join(directory, stamp), exist_ok=True)
    for key, value in data.items():
        with open(os.path.join(directory, stamp, key), "w", encoding="utf-8") as f:
            f.write(value)
    os.symlink(stamp, os.path.join(directory, "..data"))
    for key in data:
        os.symlink(os.path.join("..data", key), os.path.join(directory, key))


def clean_env():
    """No cloud credentials from the environment of whoever runs the test."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("ALIBABA_", "ALICLOUD_", "ALIBABACLOUD_"))}


def run_proxy(args, timeout=60):
    return subprocess.run([ARGS.proxy] + args, capture_output=True, text=True, timeout=timeout, env=clean_env())


def addon_domains(configmap_data):
    """The explicit domains of an `acr-registry-info` value."""
    out = []
    for entry in yaml.safe_load(configmap_data.get("acr-registry-info") or "[]") or []:
        d = entry.get("domains") or []
        out += [x.strip() for x in (d.split(",") if isinstance(d, str) else d) if x.strip()]
    return out


# ---------------------------------------------------------------------------
# Tests


class ManifestTest(harness.TestCaseBase):
    @classmethod
    def setUpClass(cls):
        cls.paths, cls.docs = load_manifests(ARGS.manifests)

    def setUp(self):
        self.c = harness.Checks(self)

    def proxy(self):
        ds = proxy_daemonset(self.docs)
        self.assertIsNotNone(ds, "exactly one DaemonSet must run `serve`")
        return ds

    def cleanup(self):
        ds = cleanup_daemonset(self.docs)
        self.assertIsNotNone(ds, "exactly one DaemonSet must run `hosts remove`")
        return ds

    def configmaps(self):
        return {(d.obj["metadata"].get("namespace", "default"), d.name): d.obj.get("data") or {}
                for d in self.docs if d.kind == "ConfigMap"}

    # -- structure ---------------------------------------------------------

    def test_every_manifest_parses_into_known_objects_with_known_fields(self):
        self.c.check(len(self.paths) >= 2, f"manifests found under {ARGS.manifests}: {self.paths}")
        for d in self.docs:
            schema = SCHEMAS.get((d.obj.get("apiVersion"), d.kind)) if isinstance(d.obj, dict) else None
            if not self.c.check(schema is not None, f"{d.where()}: apiVersion/kind not among what we ship: "
                                f"{sorted(SCHEMAS)}"):
                continue
            problems = []
            validate(d.obj, schema, d.kind, problems)
            for p in problems:
                self.c.check(False, f"{d.where()}: {p}")
        self.c.done()

    def test_names_are_unique_and_everything_lives_in_kube_system(self):
        seen = {}
        for d in self.docs:
            key = (d.kind, d.name)
            self.c.check(key not in seen, f"{d.where()}: also defined in {seen.get(key)}")
            seen[key] = d.where()
            if d.kind in CLUSTER_SCOPED_KINDS:
                # A namespace on a cluster-scoped object is ignored by the API server: a sign of a mix-up.
                self.c.eq(d.obj["metadata"].get("namespace"), None, f"{d.where()}: namespace (cluster-scoped)")
            else:
                self.c.eq(d.obj["metadata"].get("namespace"), "kube-system", f"{d.where()}: namespace")
        self.c.done()

    # -- the pull scope's API access (issue 10) ------------------------------

    def test_rbac_is_exactly_get_list_watch_on_pods_for_the_proxys_service_account(self):
        sa_name = pod_spec(self.proxy()).get("serviceAccountName")
        rbac = [d for d in self.docs if d.kind in RBAC_KINDS]
        kinds = sorted(d.kind for d in rbac)
        self.c.eq(kinds, ["ClusterRole", "ClusterRoleBinding"], "RBAC objects shipped (one ClusterRole, one binding)")
        roles = [d for d in rbac if d.kind == "ClusterRole"]
        bindings = [d for d in rbac if d.kind == "ClusterRoleBinding"]
        if not self.c.check(len(roles) == 1 and len(bindings) == 1, "one ClusterRole and one ClusterRoleBinding"):
            self.c.done()
            return
        role, binding = roles[0], bindings[0]
        self.c.check(role.rel == "acr-credential-proxy.yaml" and binding.rel == "acr-credential-proxy.yaml",
                     f"the RBAC objects go with the DaemonSet (deleted with it): {role.rel}, {binding.rel}")
        rules = role.obj.get("rules") or []
        # Exactly the one rule, nothing widened: no other group, resource, subresource, verb or wildcard,
        # no resourceNames (the pods are not known in advance) and no aggregation.
        self.c.eq([{k: sorted(v) if k == "verbs" else v for k, v in r.items()} for r in rules], SCOPE_RULES,
                  f"{role.where()}: rules")
        self.c.check("aggregationRule" not in role.obj, f"{role.where()}: aggregationRule")
        self.c.check(not any("*" in v for r in rules for v in r.values()), f"{role.where()}: a wildcard")
        self.c.eq(binding.obj.get("roleRef"), {"apiGroup": RBAC_API, "kind": "ClusterRole", "name": role.name},
                  f"{binding.where()}: roleRef")
        self.c.eq(binding.obj.get("subjects"),
                  [{"kind": "ServiceAccount", "name": sa_name, "namespace": "kube-system"}],
                  f"{binding.where()}: subjects (the DaemonSet's ServiceAccount only)")
        self.c.done()

    def test_the_proxy_pod_gets_its_token_and_no_other_pod_does(self):
        proxy = self.proxy()
        spec = pod_spec(proxy)
        sa_name = spec.get("serviceAccountName")
        sa = [d for d in self.docs if d.kind == "ServiceAccount" and d.name == sa_name]
        if self.c.check(len(sa) == 1, f"ServiceAccount {sa_name!r} is in no manifest"):
            self.c.check(sa[0].obj.get("automountServiceAccountToken", True) is True,
                         f"{sa[0].where()}: automountServiceAccountToken")
        # The pod's own setting wins over the ServiceAccount's: it must not turn the token off.
        self.c.eq(spec.get("automountServiceAccountToken", True), True,
                  f"{proxy.where()}: automountServiceAccountToken")
        for c in all_containers(spec):
            self.c.check(not any(m["mountPath"].rstrip("/") in (SERVICEACCOUNT_DIR, "/var/run/secrets",
                                                               "/var/run", "/run")
                                 for m in c.get("volumeMounts") or []),
                         f"{proxy.where()} {c['name']}: a volume hides the ServiceAccount token")
        # Every other pod runs without API credentials.
        for ds in daemonsets(self.docs):
            if ds is not proxy:
                cspec = pod_spec(ds)
                self.c.eq(cspec.get("automountServiceAccountToken"), False,
                          f"{ds.where()}: automountServiceAccountToken")
                self.c.check(cspec.get("serviceAccountName") in (None, "default"),
                             f"{ds.where()}: runs as {cspec.get('serviceAccountName')!r} (bound to the pod reader)")
        self.c.done()

    def test_node_name_comes_from_the_downward_api(self):
        c = serve_container(self.proxy())
        env = [e for e in c.get("env") or [] if e.get("name") == "NODE_NAME"]
        if self.c.check(len(env) == 1, f"one NODE_NAME in the serve container's env: {c.get('env')}"):
            self.c.check("value" not in env[0], "NODE_NAME must not be a literal")
            ref = (env[0].get("valueFrom") or {}).get("fieldRef") or {}
            self.c.eq(ref.get("fieldPath"), "spec.nodeName", "NODE_NAME fieldRef.fieldPath")
            self.c.check(ref.get("apiVersion", "v1") == "v1", f"NODE_NAME fieldRef.apiVersion {ref.get('apiVersion')}")
            self.c.eq(set((env[0].get("valueFrom") or {})), {"fieldRef"}, "NODE_NAME valueFrom")
        # Nothing overrides it: no --node-name, no --kubeconfig (in-cluster access), in any container.
        args = c.get("args") or []
        self.c.eq(flag_values(args, "--node-name"), [], "--node-name (would override the downward API)")
        self.c.eq(flag_values(args, "--kubeconfig"), [], "--kubeconfig (the pod uses its ServiceAccount)")
        self.c.done()

    def test_daemonset_selectors_match_their_pod_labels(self):
        for ds in daemonsets(self.docs):
            selector = ds.obj["spec"]["selector"].get("matchLabels") or {}
            labels = ds.obj["spec"]["template"]["metadata"].get("labels") or {}
            self.c.check(selector and all(labels.get(k) == v for k, v in selector.items()),
                         f"{ds.where()}: selector {selector} does not select template labels {labels}")
        proxy, cleanup = proxy_daemonset(self.docs), cleanup_daemonset(self.docs)
        if proxy and cleanup:
            # A cleanup pod must never be taken for a proxy pod (or be adopted by its DaemonSet).
            p = proxy.obj["spec"]["selector"]["matchLabels"]
            cl = cleanup.obj["spec"]["template"]["metadata"]["labels"]
            self.c.check(not all(cl.get(k) == v for k, v in p.items()), "the proxy's selector matches cleanup pods")
        self.c.done()

    def test_the_users_acr_configuration_is_only_in_examples(self):
        # `kubectl delete -f acr-credential-proxy.yaml` must never delete the add-on's ConfigMap,
        # and applying the manifests must never overwrite it.
        for d in self.docs:
            if d.kind == "ConfigMap" and d.name == "acr-configuration":
                self.c.check(d.rel.startswith("examples" + os.sep), f"{d.where()}: outside examples/")
        # `kubectl apply -f deploy/kubernetes/` (not recursive) must install the proxy only.
        top = [d for d in self.docs if os.path.dirname(d.path) == os.path.abspath(ARGS.manifests)]
        self.c.check(all(d is not cleanup_daemonset(self.docs) for d in top),
                     "the cleanup DaemonSet sits beside the proxy: `kubectl apply -f DIR` would run both")
        self.c.done()

    # -- the DaemonSet, field by field ---------------------------------------

    def test_proxy_daemonset_runs_on_every_node_with_the_node_network(self):
        ds = self.proxy()
        spec = pod_spec(ds)
        self.c.eq(spec.get("hostNetwork"), True, "hostNetwork")
        self.c.eq(spec.get("dnsPolicy"), "Default", "dnsPolicy (the node's resolver, as containerd's own)")
        self.c.eq(spec.get("priorityClassName"), "system-node-critical", "priorityClassName")
        tolerate_all = [t for t in spec.get("tolerations") or []
                        if t.get("operator") == "Exists" and not t.get("key") and not t.get("effect")]
        self.c.check(len(tolerate_all) == 1, f"one toleration {{operator: Exists}} without key/effect: "
                     f"{spec.get('tolerations')}")
        self.c.eq(spec.get("nodeSelector"), {"kubernetes.io/os": "linux"}, "nodeSelector")
        # A rolling update hands the node's ports over (serve --reuse-port) instead of closing them.
        strategy = ds.obj["spec"].get("updateStrategy") or {}
        rolling = strategy.get("rollingUpdate") or {}
        self.c.eq(strategy.get("type"), "RollingUpdate", "updateStrategy.type")
        self.c.eq(rolling.get("maxUnavailable"), 0, "updateStrategy.rollingUpdate.maxUnavailable")
        self.c.eq(rolling.get("maxSurge"), 1, "updateStrategy.rollingUpdate.maxSurge")
        self.c.check("--reuse-port" in (serve_container(ds).get("args") or []),
                     "maxSurge needs serve --reuse-port (the surge pod binds the same ports)")
        self.c.check(not any(c.get("ports") for c in all_containers(spec)),
                     "container ports are host ports with hostNetwork: the scheduler would refuse the surge pod")
        grace = spec.get("terminationGracePeriodSeconds") or 30
        self.c.check(grace > PROXY_DRAIN_SECONDS, f"terminationGracePeriodSeconds {grace} must exceed the "
                     f"proxy's {PROXY_DRAIN_SECONDS}s drain")
        self.c.done()

    def test_proxy_listens_on_loopback_and_kubelet_probes_the_admin_port_there(self):
        c = serve_container(self.proxy())
        args = c.get("args") or []
        listen_host, listen_port = split_host_port(one_flag(args, "--listen"))
        admin_host, admin_port = split_host_port(one_flag(args, "--admin-listen"))
        self.c.check(listen_host in ("127.0.0.1", "::1"), f"--listen on loopback: {flag_values(args, '--listen')}")
        self.c.check(admin_host in ("127.0.0.1", "::1"),
                     f"--admin-listen on loopback: {flag_values(args, '--admin-listen')}")
        self.c.check(listen_port != admin_port, "--listen and --admin-listen share a port")
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = (c.get(probe) or {}).get("httpGet") or {}
            self.c.eq(get.get("path"), path, f"{probe}.httpGet.path")
            self.c.eq(get.get("host"), admin_host, f"{probe}.httpGet.host (kubelet's default is the pod IP)")
            port = get.get("port")
            if isinstance(port, str):
                port = next((p.get("containerPort") for p in c.get("ports") or [] if p.get("name") == port), port)
            self.c.eq(port, admin_port, f"{probe}.httpGet.port")
            self.c.check(get.get("scheme", "HTTP") == "HTTP", f"{probe}: the admin listener is plain HTTP")
        self.c.done()

    def test_every_container_has_requests_and_limits(self):
        for ds in daemonsets(self.docs):
            for c in all_containers(pod_spec(ds)):
                res = c.get("resources") or {}
                for r in ("cpu", "memory"):
                    req = quantity((res.get("requests") or {}).get(r))
                    lim = quantity((res.get("limits") or {}).get(r))
                    if self.c.check(req is not None and lim is not None,
                                    f"{ds.where()} {c['name']}: requests.{r} and limits.{r}"):
                        self.c.check(req <= lim, f"{ds.where()} {c['name']}: requests.{r} above limits.{r}")
        c = serve_container(self.proxy())
        mem = quantity(c["resources"]["limits"]["memory"])
        # The data plane's tested bound: RSS stays under 64 MiB while streaming a 1 GiB blob.
        self.c.check(mem >= 64 * 2 ** 20, f"proxy memory limit {c['resources']['limits']['memory']} below 64Mi")
        self.c.done()

    def test_containers_run_with_no_capabilities_and_a_read_only_root(self):
        for ds in daemonsets(self.docs):
            spec = pod_spec(ds)
            seccomp = ((spec.get("securityContext") or {}).get("seccompProfile") or {}).get("type")
            for c in all_containers(spec):
                sc = c.get("securityContext") or {}
                seccomp_c = (sc.get("seccompProfile") or {}).get("type", seccomp)
                where = f"{ds.where()} {c['name']}"
                self.c.eq(seccomp_c, "RuntimeDefault", f"{where}: seccompProfile")
                self.c.eq(sc.get("allowPrivilegeEscalation"), False, f"{where}: allowPrivilegeEscalation")
                self.c.eq(sc.get("readOnlyRootFilesystem"), True, f"{where}: readOnlyRootFilesystem")
                self.c.check(sc.get("privileged") is not True, f"{where}: privileged")
                self.c.eq((sc.get("capabilities") or {}).get("drop"), ["ALL"], f"{where}: capabilities.drop")
                self.c.eq((sc.get("capabilities") or {}).get("add"), None, f"{where}: capabilities.add")
                for m in c.get("volumeMounts") or []:
                    self.c.check("subPath" not in m, f"{where}: subPath mount {m['name']} never sees updates")
        self.c.done()

    def test_certs_dir_is_a_host_path_mounted_writable_and_passed_as_certs_dir(self):
        ds = self.proxy()
        spec, c = pod_spec(ds), serve_container(ds)
        certs_dir = one_flag(c.get("args") or [], "--certs-dir")
        self.c.eq(certs_dir, "/etc/containerd/certs.d", "--certs-dir")
        mount = next((m for m in c.get("volumeMounts") or [] if m["mountPath"] == certs_dir), None)
        if self.c.check(mount is not None, f"no volumeMount at {certs_dir}"):
            self.c.check(not mount.get("readOnly", False), "the certs dir must be writable")
            vol = next((v for v in spec.get("volumes") or [] if v["name"] == mount["name"]), {})
            self.c.eq(vol.get("hostPath"), {"path": "/etc/containerd/certs.d", "type": "DirectoryOrCreate"},
                      f"volume {mount['name']}")
        self.c.done()

    def test_the_addons_configmap_is_mounted_read_only_and_passed_as_acr_configuration(self):
        ds = self.proxy()
        spec, c = pod_spec(ds), serve_container(ds)
        args = c.get("args") or []
        path = one_flag(args, "--acr-configuration")
        mount = next((m for m in c.get("volumeMounts") or [] if m["mountPath"] == path), None)
        if self.c.check(mount is not None, f"--acr-configuration {path!r} is not a volumeMount's mountPath"):
            self.c.eq(mount.get("readOnly"), True, "acr-configuration mount readOnly")
            vol = next((v for v in spec.get("volumes") or [] if v["name"] == mount["name"]), {})
            self.c.eq((vol.get("configMap") or {}).get("name"), "acr-configuration", "the mounted ConfigMap")
            self.c.eq((vol.get("configMap") or {}).get("items"), None, "items (every key must be there)")
        # Every other path argument sits in a read-only ConfigMap mount, and the key exists.
        cms = self.configmaps()
        for flag in ("--config",):
            for value in flag_values(args, flag):
                mount = next((m for m in c.get("volumeMounts") or [] if value.startswith(m["mountPath"] + "/")), None)
                if not self.c.check(mount is not None, f"{flag} {value}: not in a volume mount"):
                    continue
                vol = next(v for v in spec["volumes"] if v["name"] == mount["name"])
                cm = cms.get(("kube-system", (vol.get("configMap") or {}).get("name")))
                key = value[len(mount["mountPath"]) + 1:]
                self.c.check(cm is not None and key in cm, f"{flag} {value}: no key {key!r} in the mounted ConfigMap")
        self.c.done()

    def test_service_account_is_ready_for_rrsa(self):
        ds = self.proxy()
        name = pod_spec(ds).get("serviceAccountName")
        sa = [d for d in self.docs if d.kind == "ServiceAccount" and d.name == name]
        if self.c.check(len(sa) == 1, f"ServiceAccount {name!r} is in no manifest"):
            # The annotation ack-pod-identity-webhook reads, shown (commented) where it goes.
            self.c.check("pod-identity.alibabacloud.com/role-name" in sa[0].text, "RRSA annotation not shown")
            self.c.check("pod-identity.alibabacloud.com/injection" in sa[0].text, "RRSA namespace label not shown")
        self.c.done()

    def test_one_image_everywhere_and_the_placeholder_is_documented(self):
        images = {c["image"] for ds in daemonsets(self.docs) for c in all_containers(pod_spec(ds))}
        self.c.eq(len(images), 1, f"one image for the proxy and its cleanup: {sorted(images)}")
        for ds in daemonsets(self.docs):
            for c in all_containers(pod_spec(ds)):
                self.c.eq(c.get("imagePullPolicy"), "IfNotPresent", f"{ds.where()} {c['name']}: imagePullPolicy")
        with open(os.path.join(SOURCE_ROOT, "docs", "kubernetes.md"), encoding="utf-8") as f:
            doc = f.read()
        for image in images:
            self.c.check(image in doc, f"docs/kubernetes.md does not name the image placeholder {image}")
        self.c.done()

    # -- the cleanup --------------------------------------------------------

    def test_cleanup_runs_hosts_remove_on_the_same_host_directory_on_every_node(self):
        proxy, cleanup = self.proxy(), self.cleanup()
        pspec, cspec = pod_spec(proxy), pod_spec(cleanup)
        pc = serve_container(proxy)
        p_certs = one_flag(pc["args"], "--certs-dir")
        p_mount = next(m for m in pc["volumeMounts"] if m["mountPath"] == p_certs)
        p_host = next(v for v in pspec["volumes"] if v["name"] == p_mount["name"])["hostPath"]["path"]
        removers = [c for c in all_containers(cspec) if runs(c, "hosts", "remove")]
        self.c.check(len(removers) >= 1, "no container runs `hosts remove`")
        for c in removers:
            args = c.get("args") or []
            certs = one_flag(args, "--certs-dir")
            mount = next((m for m in c.get("volumeMounts") or [] if m["mountPath"] == certs), None)
            if not self.c.check(mount is not None, f"{c['name']}: --certs-dir {certs!r} is not a mountPath"):
                continue
            vol = next(v for v in cspec["volumes"] if v["name"] == mount["name"])
            self.c.eq((vol.get("hostPath") or {}).get("path"), p_host, f"{c['name']}: host directory")
            self.c.check(not mount.get("readOnly", False), f"{c['name']}: the certs dir must be writable")
        # A DaemonSet's pod must keep running: the last (main) container waits.
        main = cspec["containers"]
        self.c.check(len(main) == 1 and runs(main[0], "hosts", "remove") and "--wait" in main[0]["args"],
                     "the cleanup's main container must be `hosts remove ... --wait`")
        # The work happens in an init container, so Ready means done.
        self.c.check(any(runs(c, "hosts", "remove") and "--wait" not in c["args"]
                         for c in cspec.get("initContainers") or []),
                     "an init container must run `hosts remove` (without --wait)")
        # Everywhere the proxy ran: same node selection, priority and tolerations.
        for key in ("nodeSelector", "affinity", "tolerations", "priorityClassName"):
            self.c.eq(cspec.get(key), pspec.get(key), f"cleanup {key}")
        self.c.done()

    # -- the binary accepts what the manifests pass -------------------------

    def test_every_flag_the_manifests_pass_is_in_the_binarys_help(self):
        main_help = run_proxy(["--help"])
        hosts_help = run_proxy(["hosts", "--help"])
        self.c.eq(main_help.returncode, 0, "--help exit status")
        self.c.eq(hosts_help.returncode, 0, "hosts --help exit status")
        for ds in daemonsets(self.docs):
            for c in all_containers(pod_spec(ds)):
                args = list(c.get("command") or []) + list(c.get("args") or [])
                where = f"{ds.where()} {c['name']}"
                if not self.c.check(args and args[0] in ("serve", "hosts"), f"{where}: command {args[:1]}"):
                    continue
                text = hosts_help.stdout if args[0] == "hosts" else main_help.stdout
                for a in args:
                    if a.startswith("--"):
                        flag = a.split("=", 1)[0]
                        self.c.check(re.search(re.escape(flag) + r"(?![\w-])", text) is not None,
                                     f"{where}: {flag} is not in `{'hosts ' if args[0] == 'hosts' else ''}--help`")
                if args[0] == "hosts":
                    self.c.check(args[1] in ("install", "remove", "print"), f"{where}: hosts {args[1]}")
        self.c.done()

    def test_check_config_loads_the_addons_documented_example_mounted_as_kubelet_does(self):
        with tempfile.TemporaryDirectory(prefix="acp-k8s-") as tmp:
            mounted = os.path.join(tmp, "acr-configuration")
            write_configmap_volume(mounted, ADDON_EXAMPLE)
            r = run_proxy(["check-config", "--acr-configuration", mounted])
            self.c.eq(r.returncode, 0, f"check-config exit status (stderr: {r.stderr.strip()})")
            shown = yaml.safe_load(r.stdout) if r.returncode == 0 else {}
            regions = [i.get("regionId") for i in (shown or {}).get("acrInstances") or []]
            self.c.eq(regions, ["cn-beijing", "cn-hangzhou"], "instances read from the mounted keys")
            self.c.check("notify-email" in r.stderr, f"one warning for notify-email: {r.stderr!r}")
            self.c.check("..data" not in r.stderr and "..2026" not in r.stderr,
                         f"kubelet's ..data entries must be skipped silently: {r.stderr!r}")
        self.c.done()

    def test_check_config_loads_what_the_daemonset_mounts_with_its_own_args(self):
        ds = self.proxy()
        c = serve_container(ds)
        with tempfile.TemporaryDirectory(prefix="acp-k8s-") as tmp:
            node = Node(tmp, self.configmaps())
            args = node.local_args(c, node.mounts(pod_spec(ds), "kube-system", c))
            # check-config takes the same configuration flags as serve.
            keep = [a for a in args[1:] if a.split("=", 1)[0] in ("--config", "--acr-configuration", "--listen",
                                                                   "--admin-listen")]
            r = run_proxy(["check-config"] + keep)
            self.c.eq(r.returncode, 0, f"check-config {keep}: exit status (stderr: {r.stderr.strip()})")
            self.c.check("unknown key" not in r.stderr, f"a key of the manifests' config is unknown: {r.stderr}")
            shown = yaml.safe_load(r.stdout) if r.returncode == 0 else {}
            self.c.eq((shown or {}).get("listen"), one_flag(keep, "--listen"), "listen after the override")
        self.c.done()

    def test_the_docs_doctor_commands_fit_the_pod(self):
        # docs/kubernetes.md runs `kubectl exec ... -- acr-credential-proxy doctor ...`: every flag must
        # exist, and every path must be inside one of the proxy container's mounts.
        with open(os.path.join(SOURCE_ROOT, "docs", "kubernetes.md"), encoding="utf-8") as f:
            text = f.read().replace("\\\n", " ")
        commands = [line.split("-- acr-credential-proxy ", 1)[1].split()
                    for line in text.splitlines() if "exec " in line and "-- acr-credential-proxy doctor" in line]
        self.c.check(len(commands) >= 1, "no `kubectl exec ... -- acr-credential-proxy doctor` in docs/kubernetes.md")
        main_help = run_proxy(["--help"]).stdout
        c = serve_container(self.proxy())
        mounts = [m["mountPath"] for m in c.get("volumeMounts") or []]
        for words in commands:
            for i, w in enumerate(words):
                if not w.startswith("--"):
                    continue
                self.c.check(re.search(re.escape(w.split("=", 1)[0]) + r"(?![\w-])", main_help) is not None,
                             f"doctor {w}: not in --help")
                value = w.split("=", 1)[1] if "=" in w else (words[i + 1] if i + 1 < len(words) else "")
                if value.startswith("/"):
                    self.c.check(any(value == m or value.startswith(m.rstrip("/") + "/") for m in mounts),
                                 f"doctor {w.split('=', 1)[0]} {value}: not inside a mount of the pod {mounts}")
        self.c.done()

    # -- serve and cleanup, as kubelet would run them ------------------------

    def test_serve_rolls_over_and_cleanup_restores_as_kubelet_runs_them(self):
        if not LIVE:
            self.skipTest("no private network namespace (needs root and unshare): the proxy could reach real "
                          "cloud endpoints")
        proxy, cleanup = self.proxy(), self.cleanup()
        c = serve_container(proxy)
        spec = pod_spec(proxy)
        cms = self.configmaps()
        domains = addon_domains(cms.get(("kube-system", "acr-configuration")) or {})
        self.assertGreaterEqual(len(domains), 2, "examples/acr-configuration.yaml should name two domains")
        # The ConfigMap form always scopes pulls: the proxy must list and watch its node's pods first.
        watches = proxy_watches_pods()
        if watches and not os.path.exists(FAKE_KUBE):
            self.skipTest(f"serve needs an API server (pull scope) and {FAKE_KUBE} does not exist yet")
        tmp = harness.TempDir("k8s")
        # Two pods on the node: one the add-on's default rule (namespace and ServiceAccount `default`,
        # as examples/acr-configuration.yaml keeps it) lets pull, one in another namespace.
        allowed_repo, denied_repo = "team/app", "team/batch"
        pods = [f"default/web={domains[0]}/{allowed_repo}:1", f"other/job={domains[0]}/{denied_repo}:2"]
        api = FakeApiServer(tmp, NODE_NAME, pods) if os.path.exists(FAKE_KUBE) else None
        node = Node(tmp.path, cms, api)

        # A user's own hosts.toml for one of the domains, already on the node.
        certs_host = node.host_path(one_flag(c["args"], "--certs-dir"))
        user_file = os.path.join(certs_host, domains[1], "hosts.toml")
        os.makedirs(os.path.dirname(user_file))
        user_bytes = (b"# the user's\nserver = 'https://%s'\n[host.'https://mirror.example.com']\n"
                      b"  capabilities = ['pull']\n" % domains[1].encode())
        with open(user_file, "wb") as f:
            f.write(user_bytes)

        def probe(kind):
            get = c[kind]["httpGet"]
            return harness.request(get["host"], node.port(get["port"]), "GET", get["path"], timeout=5)

        def start_pod(name):
            args = node.local_args(c, node.mounts(spec, "kube-system", c))
            env = dict(clean_env(), **node.env(c, "kube-system"))
            argv = node.pod_argv([ARGS.proxy] + args, node.serviceaccount_volume(spec, "kube-system"))
            child = harness.Child(name, argv, tmp.join(f"{name}.log"), env=env)
            wait_for_log(child, "listening data=", f"{name} to listen")
            return child

        def scope_metrics():
            get = c["livenessProbe"]["httpGet"]
            r = harness.request(get["host"], node.port(get["port"]), "GET", "/metrics", timeout=5)
            harness.scan_source("/metrics", r.body.decode("utf-8", "replace"))
            return {m.group(1): float(m.group(2)) for m in re.finditer(r"^(acp_scope_[a-z_]+(?:\{[^}]*\})?) (\S+)$",
                                                                        r.body.decode("utf-8", "replace"), re.M)}

        listen_host, listen_port = split_host_port(one_flag(c["args"], "--listen"))
        grace = spec.get("terminationGracePeriodSeconds", 30)
        old = start_pod("proxy-old")
        new = None
        try:
            self.c.eq(probe("livenessProbe").status, 200, "livenessProbe")
            ready = probe("readinessProbe")
            # No credential source is reachable in here: not ready, and it says why.
            self.c.eq(ready.status, 503, f"readinessProbe without credentials ({ready.body!r})")
            self.c.eq(harness.request(listen_host, node.port(listen_port), "GET", "/v2/").status, 200,
                      "GET /v2/ on the data listener")
            if watches:
                # In-cluster access as the manifests set it up: the token and CA kubelet mounts, the
                # service variables, NODE_NAME from spec.nodeName. The watch runs after the list.
                harness.wait_until(lambda: scope_metrics().get("acp_scope_watch_up") == 1, 20,
                                   "the proxy to watch its node's pods (acp_scope_watch_up 1)")
                m = scope_metrics()
                self.c.eq(m.get("acp_scope_pods_indexed"), 2, "pods indexed (both pods of the node)")
                self.c.eq(m.get("acp_scope_references_indexed"), 1, "references indexed (the in-scope pod's)")
                self.c.check(NODE_NAME in old.log_text(), f"the proxy's log names node {NODE_NAME} (from NODE_NAME)")
                # The add-on's rule from the mounted ConfigMap: the other namespace's image gets a 404 at once,
                # naming the rule, and containerd would fall back to the registry.
                started = time.monotonic()
                r = harness.request(listen_host, node.port(listen_port), "GET",
                                    f"/v2/{denied_repo}/manifests/2?ns={domains[0]}", timeout=10, scan_name="scope 404")
                took = time.monotonic() - started
                self.c.eq(r.status, 404, f"a pull only an out-of-scope pod references ({r.body!r})")
                self.c.check(b"NAME_UNKNOWN" in r.body and b"watch-namespace: default" in r.body,
                             f"the 404 names the rule: {r.body!r}")
                self.c.check(took < 2, f"the out-of-scope 404 took {took:.2f}s (must not wait for a pod)")
                self.c.eq(scope_metrics().get('acp_scope_denied_total{reason="out_of_scope"}'), 1,
                          "acp_scope_denied_total{reason=\"out_of_scope\"}")
                r = harness.request(listen_host, node.port(listen_port), "GET",
                                    f"/v2/{allowed_repo}/manifests/1?ns={domains[0]}", timeout=30,
                                    scan_name="in-scope pull")
                self.c.check(r.status != 404 and b"watch-namespace" not in r.body and b"references" not in r.body,
                             f"the in-scope pod's image is not refused by the scope: {r.status} {r.body!r}")

            mirror = f'[host."http://{listen_host}:{node.port(listen_port)}"]'
            files = {d: os.path.join(certs_host, d, "hosts.toml") for d in domains}
            harness.wait_until(lambda: not old.alive() or all(
                os.path.exists(f) and mirror in _read(f) for f in files.values()), 20,
                "serve --certs-dir to write hosts.toml for every domain")
            old.ensure_alive()
            for d, f in files.items():
                text = _read(f)
                self.c.check(f'server = "https://{d}"' in text or f"server = 'https://{d}'" in text,
                             f"{f}: server line: {text!r}")
                self.c.check("mirror.example.com" not in text or text.index(mirror) < text.index("mirror.example.com"),
                             f"{f}: the proxy is not the first host: {text!r}")
                self.c.check('capabilities = ["pull", "resolve"]' in text, f"{f}: capabilities: {text!r}")
            self.c.check("mirror.example.com" in _read(files[domains[1]]), "the user's [host] was dropped")
            written = {f: _read(f) for f in files.values()}

            # The rolling update (maxSurge): the new pod binds beside the old one and takes new
            # connections; the old one then drains and exits 0 on SIGTERM.
            new = start_pod("proxy-new")
            self.c.check(old.alive(), "the old pod died when the new one started")
            pings_before = new.log_text().count("kind=ping")
            self.c.eq(harness.request(listen_host, node.port(listen_port), "GET", "/v2/").status, 200,
                      "GET /v2/ with both pods up")
            harness.wait_until(lambda: new.log_text().count("kind=ping") > pings_before, 10,
                               "the new pod to log the request (new connections go to it)")
            self.c.eq(old.stop(signal.SIGTERM, timeout=grace, check=False), 0, "old pod's exit status after SIGTERM")
            self.c.eq(probe("livenessProbe").status, 200, "livenessProbe after the old pod left")
            self.c.eq(harness.request(listen_host, node.port(listen_port), "GET", "/v2/").status, 200,
                      "GET /v2/ after the old pod left")
            self.c.eq({f: _read(f) for f in files.values()}, written, "hosts.toml files across the hand-over")

            self.c.eq(new.stop(signal.SIGTERM, timeout=grace, check=False), 0, "serve exit status after SIGTERM")
            self.c.check(all(os.path.exists(f) for f in files.values()), "hosts.toml files must stay after serve exits")
        finally:
            for child in (old, new):
                if child is not None and child.alive():
                    child.stop(signal.SIGKILL, timeout=10, check=False)
            if api is not None:
                api.stop()

        # The cleanup DaemonSet on the same node: init container, then the waiting main container.
        cspec = pod_spec(cleanup)
        for init in cspec.get("initContainers") or []:
            r = subprocess.run([ARGS.proxy] + node.local_args(init, node.mounts(cspec, "kube-system", init)),
                               capture_output=True, text=True, timeout=60, env=clean_env())
            self.c.eq(r.returncode, 0, f"cleanup init container {init['name']} (stderr: {r.stderr.strip()})")
        with open(user_file, "rb") as f:
            self.c.eq(f.read(), user_bytes, "the user's hosts.toml restored byte for byte")
        self.c.eq(sorted(os.listdir(certs_host)), [domains[1]], "what is left in the certs dir")
        self.c.eq(sorted(os.listdir(os.path.dirname(user_file))), ["hosts.toml"], "the user's directory")

        main = cspec["containers"][0]
        waiter = harness.Child("cleanup", [ARGS.proxy] + node.local_args(main, node.mounts(cspec, "kube-system", main)),
                               tmp.join("cleanup.log"), env=clean_env())
        try:
            wait_for_log(waiter, "waiting for SIGTERM", "the cleanup's main container to wait")
            self.c.check(waiter.alive(), "the cleanup's main container exited instead of waiting")
            self.c.eq(waiter.stop(signal.SIGTERM, timeout=cspec.get("terminationGracePeriodSeconds", 30), check=False),
                      0, "cleanup main container exit status after SIGTERM")
        finally:
            if waiter.alive():
                waiter.stop(signal.SIGKILL, timeout=10, check=False)
        tmp.cleanup()
        self.c.done()


def wait_for_log(child, text, what, timeout=20):
    """Polls the child's log for `text`; fails at once (with its log) if it exits first."""
    harness.wait_until(lambda: not child.alive() or text in child.log_text(), timeout, what)
    child.ensure_alive()


def _read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def _answers(probe, kind):
    try:
        probe(kind)
        return True
    except OSError:
        return False


def main():
    global ARGS, LIVE
    parser = argparse.ArgumentParser()
    parser.add_argument("--proxy", required=True, help="the built acr-credential-proxy binary")
    parser.add_argument("--manifests", default=os.path.join(SOURCE_ROOT, "deploy", "kubernetes"),
                        help="the directory of manifests (default: deploy/kubernetes/ of this tree)")
    ARGS = parser.parse_args()
    ARGS.proxy = os.path.abspath(ARGS.proxy)
    ARGS.manifests = os.path.abspath(ARGS.manifests)
    if not os.access(ARGS.proxy, os.X_OK):
        print(f"FAIL: {ARGS.proxy} is not an executable", flush=True)
        return 1
    if os.environ.get("ACP_PRIVATE_NETNS") == "1" or (
            shutil.which("unshare") and shutil.which("ip")
            and subprocess.run(["unshare", "--net", "true"], capture_output=True).returncode == 0):
        harness.enter_private_netns()  # returns only inside the namespace
        LIVE = True
    sys.argv = sys.argv[:1]
    return harness.run_tests()


if __name__ == "__main__":
    sys.exit(main())
