"""bench/commit.py's own parts that are not timing: how it sorts the API server's request counts into
requests per pod, and its plot, which is optional (matplotlib is a bench-only extra)."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.benchmod import load


def _bench():  # type: ignore[no-untyped-def]
    return load("commit")


def test_request_mix_counts_the_commit_and_leaves_kwok_out() -> None:
    bench = _bench()
    diff = Counter(
        {
            ("POST", "pods", "binding", False): 80,  # 10 gangs of 8
            ("POST", "pods", "binding", True): 8,  # one retried gang dry-run
            ("PATCH", "podgroups", "", False): 20,  # intent + clear per gang
            ("PATCH", "podgroups", "status", False): 10,
            ("POST", "events", "", False): 80,
            ("LIST", "pods", "", False): 2,
            ("WATCH", "pods", "", False): 5,  # watches and kwok's writes are not the scheduler's cost
            ("PATCH", "pods", "status", False): 160,  # kwok's status writes
            ("PUT", "leases", "", False): 50,
            ("PATCH", "nodes", "status", False): 30,
        }
    )
    mix = bench.request_mix(diff, 80)
    assert mix["binds"] == 1.0 and mix["dry runs"] == 0.1 and mix["PodGroup writes"] == 0.25
    assert mix["commit"] == pytest.approx(1.35)
    assert mix["status+events"] == pytest.approx(90 / 80) and mix["other"] == pytest.approx(2 / 80)
    assert mix["pods/status"] == 2.0  # kwok's status writes


def test_api_counts_parses_the_servers_metric_lines() -> None:
    bench = _bench()
    text = "\n".join(
        [
            "# TYPE apiserver_request_total counter",
            'apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="pods",'
            'scope="resource",subresource="binding",verb="POST",version="v1"} 12',
            'apiserver_request_total{code="201",component="apiserver",dry_run="All",group="",resource="pods",'
            'scope="resource",subresource="binding",verb="POST",version="v1"} 3',
            'apiserver_request_total{code="409",component="apiserver",dry_run="",group="",resource="pods",'
            'scope="resource",subresource="binding",verb="POST",version="v1"} 1',
            'apiserver_request_duration_seconds_count{verb="POST"} 99',
        ]
    )

    class Client:
        def request(self, method: str, path: str, **kw: object) -> dict[str, str]:
            assert (method, path) == ("GET", "/metrics")
            decode = kw["decode"]
            assert callable(decode)
            out = decode(text.encode())
            assert isinstance(out, dict)
            return out

    counts = bench.api_counts(Client())
    assert counts == Counter({("POST", "pods", "binding", False): 13, ("POST", "pods", "binding", True): 3})


def test_plot_is_skipped_with_a_message_without_matplotlib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bench = _bench()
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    out = bench.plot(tmp_path / "p.png", "t", {"ceiling": (0.0, [0.5, 1.0])})
    assert out.startswith("plot skipped: matplotlib is not installed") and not (tmp_path / "p.png").exists()


def test_plot_draws_a_png_with_matplotlib(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")  # the `bench` extra
    bench = _bench()
    out = bench.plot(tmp_path / "p.png", "t", {"ceiling": (0.0, [0.5, 1.0]), "kaisched": (1.0, [1.5, 3.0])})
    assert out == f"plot: {tmp_path / 'p.png'}"
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
