"""A real, local Kubernetes control plane for tests: etcd + kube-apiserver on loopback.

No Docker, no kubelets, no controllers (unless a test starts them with ``spawn``): the
unmodified upstream binaries built by ``e2e/testbin/build.sh``, run the way envtest does.

Usable from pytest (see tests/integration/conftest.py) and from plain Python::

    from tests.kubecluster import LocalCluster
    with LocalCluster() as c:
        print(c.kubeconfig)          # admin kubeconfig (static token, group system:masters)
        api = c.api_client()         # kubernetes.client.ApiClient

Every process runs in its own process group with its output in ``<workdir>/logs/<name>.log``;
``stop()`` kills them all and removes the temp dir. Clusters still running at interpreter
exit are stopped by an ``atexit`` hook, and on Linux the children are also sent SIGKILL if
the thread that started them dies (PR_SET_PDEATHSIG), so a killed test run leaves nothing.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
TESTBIN_DIR = REPO_ROOT / "e2e" / "testbin"
CONTROL_PLANE_BINARIES = ("etcd", "kube-apiserver")
ALL_BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


class ClusterError(RuntimeError):
    """A control-plane process failed to start (the message carries its log tail)."""


def testbin_dir() -> Path:
    """The folder holding the testbin binaries, without building anything.

    ``KAISCHED_TESTBIN_DIR`` overrides it; otherwise it is the cache folder that
    ``e2e/testbin/build.sh`` fills (``e2e/testbin/bindir.sh`` computes it).
    """
    override = os.environ.get("KAISCHED_TESTBIN_DIR")
    if override:
        return Path(override)
    out = subprocess.run(["bash", str(TESTBIN_DIR / "bindir.sh")], check=True, capture_output=True, text=True).stdout
    return Path(out.strip().splitlines()[-1])


def missing_binaries(bin_dir: Path | None = None, names: tuple[str, ...] = CONTROL_PLANE_BINARIES) -> list[str]:
    d = bin_dir or testbin_dir()
    return [n for n in names if not os.access(d / n, os.X_OK)]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(path: Path, lines: int = 40) -> str:
    try:
        data = path.read_text(errors="replace").splitlines()
    except OSError as e:
        return f"<no log: {e}>"
    return "\n".join(data[-lines:])


_PR_SET_PDEATHSIG = 1
_prctl: Any = None
if sys.platform.startswith("linux"):
    with contextlib.suppress(OSError, AttributeError):
        _prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved now: no dlopen after fork


def _child_setup() -> None:
    """Runs in the child before exec: get SIGKILL when the starting thread dies (Linux)."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class _Proc:
    def __init__(
        self, name: str, argv: list[str], log: Path, env: dict[str, str] | None, die_with_parent: bool
    ) -> None:
        self.name, self.argv, self.log = name, argv, log
        self._logf = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self._logf.write(f"\n==== {time.strftime('%H:%M:%S')} start: {' '.join(argv)}\n".encode())
        self._logf.flush()
        self.popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._logf,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            preexec_fn=_child_setup if die_with_parent and _prctl is not None else None,
        )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        p = self.popen
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout)
        # Kill the whole group in any case: a child of the process may outlive it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(p.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(5)
        self._logf.close()


_LIVE: set[LocalCluster] = set()
_LIVE_LOCK = threading.Lock()


@atexit.register
def _stop_all() -> None:
    with _LIVE_LOCK:
        live = list(_LIVE)
    for c in live:
        with contextlib.suppress(Exception):
            c.stop()


_WORKDIR_PREFIX = "kaisched-cluster-"


def _sweep_stale_workdirs() -> None:
    """Remove temp dirs left by a cluster whose owning process was killed (SIGKILL skips atexit)."""
    for d in Path(tempfile.gettempdir()).glob(_WORKDIR_PREFIX + "*"):
        try:
            pid = int((d / "owner.pid").read_text())
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except (OSError, ValueError):
            pass  # no owner file yet, or not ours to judge


class LocalCluster:
    """etcd + kube-apiserver on 127.0.0.1 with free ports and a temp dir."""

    ADMIN_USER = "kaisched-admin"

    def __init__(
        self,
        bin_dir: str | Path | None = None,
        *,
        extra_apiserver_args: list[str] | tuple[str, ...] = (),
        startup_timeout: float = 90.0,
        keep_workdir: bool = False,
        die_with_parent: bool = True,
    ) -> None:
        self.bin_dir = Path(bin_dir) if bin_dir else testbin_dir()
        self.extra_apiserver_args = list(extra_apiserver_args)
        self.startup_timeout = startup_timeout
        self.keep_workdir = keep_workdir
        self.die_with_parent = die_with_parent
        self.workdir: Path | None = None
        self.etcd_port = self.etcd_peer_port = self.apiserver_port = 0
        self.token = ""
        self._procs: dict[str, _Proc] = {}
        self._apiserver_argv: list[str] = []

    # ---------------------------------------------------------------- properties
    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def etcd_url(self) -> str:
        return f"http://127.0.0.1:{self.etcd_port}"

    def _path(self, *parts: str) -> Path:
        assert self.workdir is not None, "cluster not started"
        return self.workdir.joinpath(*parts)

    @property
    def kubeconfig(self) -> Path:
        return self._path("kubeconfig")

    @property
    def ca_file(self) -> Path:
        return self._path("pki", "serving.crt")

    def log_path(self, name: str) -> Path:
        return self._path("logs", f"{name}.log")

    # ---------------------------------------------------------------- lifecycle
    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> LocalCluster:
        missing = missing_binaries(self.bin_dir)
        if missing:
            raise ClusterError(f"missing {', '.join(missing)} in {self.bin_dir}: run e2e/testbin/build.sh")
        _sweep_stale_workdirs()
        self.workdir = Path(tempfile.mkdtemp(prefix=_WORKDIR_PREFIX))
        (self.workdir / "owner.pid").write_text(str(os.getpid()))
        with _LIVE_LOCK:
            _LIVE.add(self)
        try:
            for d in ("pki", "logs", "etcd"):
                self._path(d).mkdir()
            self._make_pki()
            self.etcd_port, self.etcd_peer_port, self.apiserver_port = free_port(), free_port(), free_port()
            self._start_etcd()
            self._start_apiserver()
            self._write_kubeconfig()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for name in reversed(list(self._procs)):
            self._procs.pop(name).stop()
        with _LIVE_LOCK:
            _LIVE.discard(self)
        if self.workdir is not None and not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def restart_apiserver(self) -> None:
        """Stop and start kube-apiserver only: same ports, flags, certs and etcd."""
        p = self._procs.pop("kube-apiserver", None)
        if p is not None:
            p.stop()
        self._launch_apiserver()

    def stop_apiserver(self) -> None:
        p = self._procs.pop("kube-apiserver", None)
        if p is not None:
            p.stop()

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start another process owned by this cluster (logs in logs/<name>.log, killed by stop())."""
        if name in self._procs and self._procs[name].alive():
            raise ClusterError(f"{name} is already running")
        proc = _Proc(name, argv, self.log_path(name), env, self.die_with_parent)
        self._procs[name] = proc
        return proc.popen

    KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"

    def start_kwok(self, extra_args: list[str] | tuple[str, ...] = ()) -> subprocess.Popen[bytes]:
        """Start the kwok controller: it keeps Nodes annotated ``kwok.x-k8s.io/node: fake`` Ready
        (heartbeats) and turns pods bound to them Running, as kind+kwok scale tests do."""
        stages = self.bin_dir / "kwok-stages.yaml"
        if missing_binaries(self.bin_dir, ("kwok",)) or not stages.is_file():
            raise ClusterError(f"kwok or kwok-stages.yaml missing in {self.bin_dir}: run e2e/testbin/build.sh")
        kwok_home = self._path("kwok")
        kwok_home.mkdir(exist_ok=True)
        argv = [
            str(self.bin_dir / "kwok"),
            f"--kubeconfig={self.kubeconfig}",
            f"--config={stages}",  # upstream's node/fast, node/heartbeat and pod/fast stages
            f"--manage-nodes-with-annotation-selector={self.KWOK_NODE_ANNOTATION}=fake",
            "--cidr=10.244.0.0/16",
            "--node-ip=127.0.0.1",
            *extra_args,
        ]
        # HOME points at an empty dir, so no user ~/.kwok/kwok.yaml is read.
        return self.spawn("kwok", argv, env={**os.environ, "HOME": str(kwok_home)})

    KCM_CONTROLLERS = ("deployment-controller", "replicaset-controller", "garbage-collector-controller")

    def start_controller_manager(
        self, controllers: tuple[str, ...] = KCM_CONTROLLERS, extra: tuple[str, ...] = ()
    ) -> subprocess.Popen[bytes]:
        """Start kube-controller-manager with only `controllers` (by default what Deployments need: their
        ReplicaSets make the pods, and re-make the ones a scheduler evicts; garbage collection), plus
        `extra` flags."""
        if missing_binaries(self.bin_dir, ("kube-controller-manager",)):
            raise ClusterError(f"kube-controller-manager missing in {self.bin_dir}: run e2e/testbin/build.sh")
        argv = [
            str(self.bin_dir / "kube-controller-manager"),
            f"--kubeconfig={self.kubeconfig}",
            f"--controllers={','.join(controllers)}",
            "--leader-elect=false",
            "--secure-port=0",
            "--concurrent-deployment-syncs=10",
            "--concurrent-replicaset-syncs=10",
            "--v=1",
            *extra,
        ]
        return self.spawn("kube-controller-manager", argv)

    def kill(self, name: str) -> None:
        p = self._procs.pop(name, None)
        if p is not None:
            p.stop()

    def logs(self, name: str, lines: int = 40) -> str:
        return _tail(self.log_path(name), lines)

    # ---------------------------------------------------------------- clients
    def client_configuration(self) -> Any:
        from kubernetes import client, config

        cfg = client.Configuration()
        config.load_kube_config(config_file=str(self.kubeconfig), client_configuration=cfg)
        return cfg

    def api_client(self) -> Any:
        from kubernetes import client

        return client.ApiClient(self.client_configuration())

    def request(
        self, path: str, method: str = "GET", timeout: float = 5.0, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        """A raw authenticated request to the API server (for health checks)."""
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        req = urllib.request.Request(
            self.server + path, method=method, headers={"Authorization": f"Bearer {self.token}", **(headers or {})}
        )
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    # ---------------------------------------------------------------- internals
    def _openssl(self, *args: str) -> None:
        r = subprocess.run(["openssl", *args], capture_output=True, text=True)
        if r.returncode != 0:
            raise ClusterError(f"openssl {' '.join(args)} failed:\n{r.stderr}")

    def _make_pki(self) -> None:
        if shutil.which("openssl") is None:
            raise ClusterError("the openssl CLI is needed to make the API server's certificates")
        pki = self._path("pki")
        self._openssl(
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(pki / "serving.key"),
            "-out",
            str(pki / "serving.crt"),
            "-days",
            "30",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
        )
        # One RSA key both signs and verifies service-account tokens.
        self._openssl("genrsa", "-out", str(pki / "sa.key"), "2048")
        self.token = secrets.token_hex(24)
        (pki / "tokens.csv").write_text(f'{self.token},{self.ADMIN_USER},{self.ADMIN_USER},"system:masters"\n')

    def _start_etcd(self) -> None:
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        argv = [
            str(self.bin_dir / "etcd"),
            "--name=kaisched",
            f"--data-dir={self._path('etcd')}",
            f"--listen-client-urls={self.etcd_url}",
            f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=kaisched={peer}",
            "--initial-cluster-state=new",
            "--unsafe-no-fsync",
            "--watch-progress-notify-interval=5s",
            "--quota-backend-bytes=8589934592",
            "--log-level=warn",
        ]
        self.spawn("etcd", argv)
        self._wait("etcd", self._etcd_healthy)

    def _etcd_healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.etcd_url + "/health", timeout=2) as r:
                return r.status == 200 and b'"true"' in r.read()
        except (OSError, urllib.error.URLError):
            return False

    def _start_apiserver(self) -> None:
        pki = self._path("pki")
        self._apiserver_argv = [
            str(self.bin_dir / "kube-apiserver"),
            f"--etcd-servers={self.etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.apiserver_port}",
            f"--cert-dir={pki}",
            f"--tls-cert-file={pki / 'serving.crt'}",
            f"--tls-private-key-file={pki / 'serving.key'}",
            f"--token-auth-file={pki / 'tokens.csv'}",
            "--authorization-mode=RBAC",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.key'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--endpoint-reconciler-type=none",
            "--allow-privileged=true",
            "--disable-admission-plugins=ServiceAccount,TaintNodesByCondition",
            "--max-requests-inflight=0",
            "--max-mutating-requests-inflight=0",
            "--enable-priority-and-fairness=false",
            "--profiling=false",
            *self.extra_apiserver_args,
        ]
        self._launch_apiserver()

    def _launch_apiserver(self) -> None:
        self.spawn("kube-apiserver", self._apiserver_argv)
        self._wait("kube-apiserver", lambda: self._ready("/readyz"))

    def _ready(self, path: str) -> bool:
        try:
            status, _ = self.request(path, timeout=2)
        except (OSError, urllib.error.URLError):
            return False
        return status == 200

    def _wait(self, name: str, ok: Any) -> None:
        deadline = time.monotonic() + self.startup_timeout
        proc = self._procs[name]
        while time.monotonic() < deadline:
            if ok():
                return
            if not proc.alive():
                raise ClusterError(
                    f"{name} exited with code {proc.popen.returncode} during startup; "
                    f"last log lines ({proc.log}):\n{self.logs(name)}"
                )
            time.sleep(0.1)
        raise ClusterError(
            f"{name} not ready after {self.startup_timeout:.0f}s; last log lines ({proc.log}):\n{self.logs(name)}"
        )

    def _write_kubeconfig(self) -> None:
        self.kubeconfig.write_text(
            f"""apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: {self.server}
    certificate-authority: {self.ca_file}
users:
- name: {self.ADMIN_USER}
  user:
    token: {self.token}
contexts:
- name: local
  context: {{cluster: local, user: {self.ADMIN_USER}}}
current-context: local
"""
        )


def deployment_manifest(
    name: str, replicas: int, pod_spec: dict[str, Any], labels: dict[str, str], annotations: dict[str, str]
) -> dict[str, Any]:
    """A Deployment whose pods carry `labels` (plus app=<name>, its selector), `annotations` and `pod_spec`."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {**labels, "app": name}, "annotations": annotations}, "spec": pod_spec},
        },
    }


CRD_DIR = REPO_ROOT / "deploy" / "crds"


def apply_crds(api_client: Any, crd_dir: Path = CRD_DIR, timeout: float = 30.0) -> list[str]:
    """Create or replace every CRD in ``crd_dir`` and wait until each is Established.

    Returns the CRD names. Raises ClusterError with the API server's message if one is refused.
    """
    import yaml
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    ext = client.ApiextensionsV1Api(api_client)
    names: list[str] = []
    for path in sorted(crd_dir.glob("*.yaml")):
        # libyaml's loader where PyYAML has it: upstream CRDs are megabytes (tests/upstream_crds.py)
        for doc in yaml.load_all(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            name = doc["metadata"]["name"]
            try:
                ext.create_custom_resource_definition(doc)
            except ApiException as e:
                if e.status != 409:
                    raise ClusterError(f"{path.name}: CRD {name} refused ({e.status}): {e.body}") from e
                cur = ext.read_custom_resource_definition(name)
                doc["metadata"]["resourceVersion"] = cur.metadata.resource_version
                try:
                    ext.replace_custom_resource_definition(name, doc)
                except ApiException as e2:
                    raise ClusterError(f"{path.name}: CRD {name} refused ({e2.status}): {e2.body}") from e2
            names.append(name)
    deadline = time.monotonic() + timeout
    for name in names:
        while True:
            crd = ext.read_custom_resource_definition(name)
            conds = {c.type: c for c in (crd.status.conditions or [])} if crd.status else {}
            if "Established" in conds and conds["Established"].status == "True":
                break
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"CRD {name} not Established after {timeout:.0f}s: "
                    f"{[(c.type, c.status, c.message) for c in conds.values()]}"
                )
            time.sleep(0.1)
    return names


if __name__ == "__main__":  # manual use: python -m tests.kubecluster
    with LocalCluster() as c:
        print(f"export KUBECONFIG={c.kubeconfig}   (Ctrl-C stops the cluster)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while all(p.alive() for p in c._procs.values()):
                time.sleep(1)
