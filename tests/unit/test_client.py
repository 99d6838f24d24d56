import time

from scheduler.kube import client as kclient
from scheduler.kube.client import KubeClient, TokenBucket


def test_service_account_token_is_reread(tmp_path, monkeypatch):
    token = tmp_path / "token"
    token.write_text("first")
    c = KubeClient("https://127.0.0.1:1", headers={"Authorization": "Bearer first"}, token_file=str(token))
    assert c._auth_headers()["Authorization"] == "Bearer first"
    token.write_text("second\n")
    monkeypatch.setattr(kclient, "TOKEN_REFRESH_S", 0.0)
    time.sleep(0.01)
    assert c._auth_headers()["Authorization"] == "Bearer second"


def test_token_bucket_paces_after_the_burst():
    b = TokenBucket(qps=50, burst=5)
    start = time.monotonic()
    for _ in range(10):
        b.take()
    # a lower bound only (a slow machine can only make it longer): 5 beyond the burst at 50/s need 0.1 s
    assert time.monotonic() - start >= 0.09


def test_run_takes_the_bind_parallelism_and_sizes_the_pool_from_it():
    from scheduler.backends.kubernetes import BIND_PARALLELISM
    from scheduler.cli.main import _parser

    args = _parser("run").parse_args(["run"])
    assert args.bind_parallelism == BIND_PARALLELISM == 64
    args = _parser("run").parse_args(["run", "--bind-parallelism", "8"])
    assert args.bind_parallelism == 8
    client = KubeClient("http://127.0.0.1:9", pool_size=2 * 8 + 64)
    assert client.pool.connection_pool_kw["maxsize"] == 80
