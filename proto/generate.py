"""Regenerate the debug API's Python stubs into scheduler/debug/_pb (needs grpcio-tools).

    python proto/generate.py [OUT_DIR]

The .proto is mapped to the package path so the generated modules import each other as
`scheduler.debug._pb`; tests/unit/test_debug_stubs.py regenerates into a temp dir and compares.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROTO_DIR = REPO / "proto" / "kai" / "scheduler" / "debug" / "v1"
PACKAGE = "scheduler/debug/_pb"
FILES = ("debug.proto",)


def generate(out: Path) -> None:
    import grpc_tools
    from grpc_tools import protoc

    include = Path(grpc_tools.__file__).parent / "_proto"
    out.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{PACKAGE}={PROTO_DIR}",
        f"-I{include}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *(f"{PACKAGE}/{f}" for f in FILES),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO)
