"""The checked-in gRPC stubs are exactly what proto/generate.py makes from proto/ today."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_generated_stubs_match_the_proto(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools")
    spec = importlib.util.spec_from_file_location("proto_generate", REPO / "proto" / "generate.py")
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    gen.generate(tmp_path)
    fresh = tmp_path / "scheduler" / "debug" / "_pb"
    names = sorted(p.name for p in fresh.iterdir() if p.is_file())
    assert names == ["debug_pb2.py", "debug_pb2.pyi", "debug_pb2_grpc.py"]
    for name in names:
        checked_in = (REPO / "scheduler" / "debug" / "_pb" / name).read_text()
        assert checked_in == (fresh / name).read_text(), f"{name} is stale: run python proto/generate.py"


def test_package_is_versioned() -> None:
    from scheduler.debug._pb import debug_pb2

    assert debug_pb2.DESCRIPTOR.package == "kai.scheduler.debug.v1"
    assert "Debug" in debug_pb2.DESCRIPTOR.services_by_name
