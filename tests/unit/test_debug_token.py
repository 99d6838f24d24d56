"""`kaisched run` refuses to start on a --debug-token-file (or $KAISCHED_DEBUG_TOKEN) that holds no token,
rather than serving the debug API unauthenticated; `kaisched ctl` refuses one too."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from scheduler.daemon import debugattach
from tests.unit.test_debug_service import REPO

# ------------------------------------------------------------------------------------------- tokens


def _args(tmp_path: Path, token: str | None) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    debugattach.add_arguments(p)
    argv = ["--debug-port", "0"]
    if token is not None:
        (tmp_path / "token").write_text(token)
        argv += ["--debug-token-file", str(tmp_path / "token")]
    return p.parse_args(argv)


@pytest.mark.parametrize("content", ["", "  \n\t\n"])
def test_empty_token_file_refuses(tmp_path: Path, content: str) -> None:
    with pytest.raises(ValueError, match="is empty: refusing"):
        debugattach.server_options(_args(tmp_path, content))


def test_token_file_and_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(debugattach.TOKEN_ENV, raising=False)
    opts = debugattach.server_options(_args(tmp_path, "s3cret\n"))
    assert opts is not None and opts.token == "s3cret"
    with pytest.raises(ValueError, match="one word of printable ASCII"):
        debugattach.server_options(_args(tmp_path, "two words"))
    opts = debugattach.server_options(_args(tmp_path, None))
    assert opts is not None and opts.token == ""
    monkeypatch.setenv(debugattach.TOKEN_ENV, " ")
    with pytest.raises(ValueError, match=r"\$KAISCHED_DEBUG_TOKEN is empty"):
        debugattach.server_options(_args(tmp_path, None))


def test_run_with_an_empty_token_file_exits_before_starting(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("\n")
    kaisched = [sys.executable, "-m", "scheduler.cli.main"]
    out = subprocess.run(
        [*kaisched, "run", "--kubeconfig", str(tmp_path / "none"), "--debug-token-file", str(tmp_path / "token")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "is empty: refusing" in out.stderr and "Traceback" not in out.stderr
    out = subprocess.run(
        [*kaisched, "ctl", "--token-file", str(tmp_path / "token"), "queues"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "is empty" in out.stderr
