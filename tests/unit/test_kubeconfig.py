"""kube/kubeconfig.py reads the common kubeconfigs as the official client does, and hands it the rest."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml
from kubernetes import client as kclient
from kubernetes import config as kconfig

from scheduler.kube import kubeconfig
from scheduler.kube.client import KubeClient


def _write(tmp_path: Path, cluster: dict, user: dict, name: str = "config") -> Path:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "other", "cluster": {"server": "https://wrong"}}, {"name": "c", "cluster": cluster}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u", "namespace": "ns"}}],
        "current-context": "ctx",
    }
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc))
    return path


def test_token_and_relative_ca_match_the_official_client(tmp_path: Path) -> None:
    (tmp_path / "ca.crt").write_text("not checked here")
    path = _write(tmp_path, {"server": "https://127.0.0.1:6443", "certificate-authority": "ca.crt"}, {"token": "t0k"})
    conn = kubeconfig.load(str(path))
    assert conn is not None
    cfg = kclient.Configuration()
    kconfig.load_kube_config(config_file=str(path), client_configuration=cfg)
    assert conn.host == cfg.host == "https://127.0.0.1:6443"
    assert Path(conn.ca_file or "").resolve() == Path(cfg.ssl_ca_cert).resolve() == (tmp_path / "ca.crt").resolve()
    official = cfg.api_key.get("authorization") or cfg.api_key.get("BearerToken")
    assert conn.headers == {"Authorization": official} == {"Authorization": "Bearer t0k"}
    assert conn.verify and cfg.verify_ssl


def test_inline_certificates_are_written_out(tmp_path: Path) -> None:
    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    cluster = {"server": "https://h:1", "certificate-authority-data": b64("CA"), "insecure-skip-tls-verify": True}
    user = {"client-certificate-data": b64("CERT"), "client-key-data": b64("KEY")}
    conn = kubeconfig.load(str(_write(tmp_path, cluster, user)))
    assert conn is not None and not conn.verify and conn.headers == {}
    assert [Path(f or "").read_text() for f in (conn.ca_file, conn.cert_file, conn.key_file)] == ["CA", "CERT", "KEY"]


@pytest.mark.parametrize(
    ("cluster_extra", "user"),
    [
        ({}, {"exec": {"command": "aws", "apiVersion": "client.authentication.k8s.io/v1"}}),
        ({}, {"auth-provider": {"name": "oidc"}}),
        ({}, {"username": "a", "password": "b"}),
        ({"proxy-url": "http://proxy:3128"}, {"token": "t"}),
    ],
)
def test_what_it_does_not_read_is_left_to_the_official_client(tmp_path: Path, cluster_extra, user) -> None:
    assert kubeconfig.load(str(_write(tmp_path, {"server": "https://h:1", **cluster_extra}, user))) is None


def test_token_file_and_default_locations(tmp_path: Path) -> None:
    (tmp_path / "tok").write_text("abc\n")
    path = _write(tmp_path, {"server": "https://h:1"}, {"tokenFile": str(tmp_path / "tok")})
    conn = kubeconfig.load(None, env={"KUBECONFIG": str(path)})
    assert conn is not None and conn.headers == {"Authorization": "Bearer abc"} and conn.token_file
    assert kubeconfig.load(None, env={"KUBECONFIG": f"{path}:{path}"}) is None  # merged lists: official


def test_in_cluster(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("sa-token\n")
    (tmp_path / "ca.crt").write_text("CA")
    env = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    conn = kubeconfig.load(None, env=env, sa_dir=str(tmp_path))
    assert conn is not None and conn.host == "https://10.0.0.1:443"
    assert conn.headers == {"Authorization": "Bearer sa-token"} and conn.ca_file == str(tmp_path / "ca.crt")
    assert conn.token_file == str(tmp_path / "token")
    v6 = kubeconfig.load(None, env={**env, "KUBERNETES_SERVICE_HOST": "fd00::1"}, sa_dir=str(tmp_path))
    assert v6 is not None and v6.host == "https://[fd00::1]:443"
    (tmp_path / "token").write_text("")
    assert kubeconfig.load(None, env=env, sa_dir=str(tmp_path)) is None


def test_from_kubeconfig_uses_it(tmp_path: Path) -> None:
    path = _write(tmp_path, {"server": "http://127.0.0.1:9/"}, {"token": "x"})
    client = KubeClient.from_kubeconfig(str(path), qps=5, burst=7)
    assert client.host == "http://127.0.0.1:9" and client.headers["Authorization"] == "Bearer x"
    assert client.bucket.qps == 5 and client.bucket.capacity == 7


def test_from_kubeconfig_falls_back_to_the_official_client(tmp_path: Path) -> None:
    path = _write(tmp_path, {"server": "https://10.9.9.9:6443", "proxy-url": "http://proxy:3128"}, {"token": "y"})
    assert kubeconfig.load(str(path)) is None
    client = KubeClient.from_kubeconfig(str(path))
    assert client.host == "https://10.9.9.9:6443" and client.headers["Authorization"] == "Bearer y"
