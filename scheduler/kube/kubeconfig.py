"""Where the API server is and who we are: the pod's service account, or a kubeconfig, read here for the
common cases (a token or a client certificate, a CA or none) without the official client, whose import
costs several tenths of a second of start-up (bench/startup.py). Anything else (exec and auth-provider
plugins, basic auth, impersonation, proxies, merged KUBECONFIG lists) is left to the official client:
`load` returns None and KubeClient.from_kubeconfig falls back to `official`.
"""

from __future__ import annotations

import base64
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
_CLUSTER_KEYS = {"server", "certificate-authority", "certificate-authority-data", "insecure-skip-tls-verify"}
_USER_KEYS = {"token", "tokenFile", "client-certificate", "client-certificate-data", "client-key", "client-key-data"}


@dataclass(frozen=True, slots=True)
class Connection:
    host: str
    headers: dict[str, str] = field(default_factory=dict)
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True
    token_file: str | None = None  # re-read now and then (rotating tokens)


def load(path: str | None, env: dict[str, str] | None = None, sa_dir: str = SERVICE_ACCOUNT_DIR) -> Connection | None:
    """The official client's order: the kubeconfig at `path`; else in-cluster; else $KUBECONFIG or
    ~/.kube/config. None: what it says needs the official client."""
    env = dict(os.environ) if env is None else env
    if path:
        return _kubeconfig(Path(path))
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
    token_file = Path(sa_dir) / "token"
    if host and port and token_file.is_file():
        token = token_file.read_text().strip()
        if not token:
            return None  # the official client refuses it, with its own message
        ca = Path(sa_dir) / "ca.crt"
        return Connection(
            host=f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}",
            headers={"Authorization": f"Bearer {token}"},
            ca_file=str(ca) if ca.is_file() else None,
            token_file=str(token_file),
        )
    listed = env.get("KUBECONFIG", "")
    if os.pathsep in listed:
        return None  # several files, merged: the official client's rules
    return _kubeconfig(Path(listed or Path.home() / ".kube" / "config"))


def _named(items: Any, name: Any, key: str) -> dict[str, Any] | None:
    for item in items or []:
        if isinstance(item, dict) and item.get("name") == name and isinstance(item.get(key), dict):
            found: dict[str, Any] = item[key]
            return found
    return None


def _file_or_data(entry: dict[str, Any], key: str, base: Path) -> str | None:
    """A path (relative to the kubeconfig's folder) or base64 data written to a private file."""
    if entry.get(f"{key}-data"):
        fd, name = tempfile.mkstemp(prefix="kaisched-kubeconfig-")
        with os.fdopen(fd, "wb") as f:
            f.write(base64.b64decode(entry[f"{key}-data"]))
        return name
    if entry.get(key):
        return str(base / os.path.expanduser(str(entry[key])))
    return None


def _kubeconfig(path: Path) -> Connection | None:
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None  # the official client says what is wrong
    if not isinstance(doc, dict):
        return None
    context = _named(doc.get("contexts"), doc.get("current-context"), "context")
    if context is None:
        return None
    cluster = _named(doc.get("clusters"), context.get("cluster"), "cluster")
    user = _named(doc.get("users"), context.get("user"), "user") if context.get("user") else {}
    if cluster is None or user is None or not cluster.get("server"):
        return None
    if set(cluster) - _CLUSTER_KEYS or set(user) - _USER_KEYS:
        return None
    base = path.parent
    headers = {}
    token_file = None
    if user.get("token"):
        headers["Authorization"] = f"Bearer {user['token']}"
    elif user.get("tokenFile"):
        token_file = str(base / str(user["tokenFile"]))
        headers["Authorization"] = f"Bearer {Path(token_file).read_text().strip()}"
    return Connection(
        host=str(cluster["server"]),
        headers=headers,
        ca_file=_file_or_data(cluster, "certificate-authority", base),
        cert_file=_file_or_data(user, "client-certificate", base),
        key_file=_file_or_data(user, "client-key", base),
        verify=not bool(cluster.get("insecure-skip-tls-verify")),
        token_file=token_file,
    )


def official(path: str | None) -> Connection:
    """What the official client makes of it (exec and auth-provider plugins, merged lists...); raises
    its ConfigException when there is no configuration at all."""
    from kubernetes import client as kclient
    from kubernetes import config as kconfig

    cfg = kclient.Configuration()
    token_file = None
    if path:
        kconfig.load_kube_config(config_file=path, client_configuration=cfg)
    else:
        try:
            kconfig.load_incluster_config(client_configuration=cfg)
            token_file = f"{SERVICE_ACCOUNT_DIR}/token"
        except kconfig.ConfigException:
            kconfig.load_kube_config(client_configuration=cfg)
    headers = {}
    token = (cfg.api_key or {}).get("authorization") or (cfg.api_key or {}).get("BearerToken")
    if token:
        prefix = (cfg.api_key_prefix or {}).get("authorization", "")
        headers["Authorization"] = f"{prefix} {token}".strip() if not token.startswith("Bearer") else token
    return Connection(
        host=cfg.host,
        headers=headers,
        ca_file=cfg.ssl_ca_cert,
        cert_file=cfg.cert_file,
        key_file=cfg.key_file,
        verify=cfg.verify_ssl,
        token_file=token_file,
    )
