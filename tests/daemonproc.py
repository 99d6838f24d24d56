"""`kaisched run` as a child process, for integration and e2e tests: start, probe, read metrics, kill.

The process gets its own process group and dies with the test process (tests.kubecluster._child_setup);
its output goes to a log file whose tail tests print when they fail."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.kubecluster import _child_setup

REPO = Path(__file__).resolve().parents[1]


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text exposition -> {series: value} (series keep their labels)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


class DaemonProcess:
    def __init__(
        self, argv: list[str], log: Path, port: int, label: str = "daemon", env: dict[str, str] | None = None
    ) -> None:
        self.log, self.port = log, port
        self._logf = open(log, "ab")  # noqa: SIM115 - closed in kill()
        self._logf.write(f"\n==== {time.strftime('%H:%M:%S')} start {label}: {' '.join(argv)}\n".encode())
        self._logf.flush()
        full_env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            **(env or {}),
        }
        self.popen = subprocess.Popen(
            argv,
            cwd=REPO,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=self._logf,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_child_setup,  # SIGKILL if the test process dies
        )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def get(self, path: str, timeout: float = 2.0) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=timeout) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def metrics(self) -> dict[str, float]:
        status, body = self.get("/metrics")
        assert status == 200, body
        return parse_metrics(body)

    def send(self, sig: int) -> None:
        """Send a signal and return at once (SIGSTOP / SIGCONT: the process lives on)."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send `sig`, wait for the process to exit, and make sure it has (SIGKILL after 10 s)."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)
        if not self._logf.closed:
            self._logf.close()

    def tail(self, lines: int = 60) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError as e:
            return f"<no daemon log: {e}>"
        return "\n".join(text[-lines:])
