"""The debug API's options and limits, apart from the server: `kaisched run` reads its flags into them
before the first cycle, and the server (grpc, the stubs) is imported only when it starts."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_MAX_STREAMS = 8


@dataclass(frozen=True, slots=True)
class SimulateLimits:
    max_bytes: int = 1 << 20  # the serialized request
    max_objects: int = 2000  # objects sent (the daemon's snapshot comes on top)
    max_nodes: int = 250_000  # YAML/JSON nodes of all objects, every alias counted as what it stands for
    timeout_s: float = 30.0  # per call, when the caller's deadline is later or absent
    concurrency: int = 1  # simulations at once

    def __post_init__(self) -> None:
        for name, flag in FLAGS.items():
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"Simulate's {name} ({flag}) must be positive, got {value}")


FLAGS = {  # the `kaisched run` flag of each limit
    "max_bytes": "--debug-simulate-max-bytes",
    "max_objects": "--debug-simulate-max-objects",
    "max_nodes": "--debug-simulate-max-nodes",
    "timeout_s": "--debug-simulate-timeout",
    "concurrency": "--debug-max-simulations",
}


@dataclass(frozen=True, slots=True)
class ServerOptions:
    address: str = "127.0.0.1"
    port: int = 8790  # 0: any free port
    token: str = ""  # bearer token every call but health checks must carry
    tls_cert: bytes = b""  # PEM; with tls_key, serve TLS
    tls_key: bytes = b""
    tls_client_ca: bytes = b""  # PEM; when set, clients must present a certificate it signed
    workers: int = 8  # threads for health checks and unary calls, on top of those streams and Simulate hold
    max_streams: int = DEFAULT_MAX_STREAMS  # WatchDecisions streams at once (each holds a thread)
    simulate: SimulateLimits = field(default_factory=SimulateLimits)

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")
        if self.max_streams < 1:
            raise ValueError(f"max_streams (--debug-max-streams) must be at least 1, got {self.max_streams}")

    @property
    def threads(self) -> int:
        return self.workers + self.max_streams + self.simulate.concurrency

    @property
    def max_message_bytes(self) -> int:
        """gRPC's receive limit: above Simulate's, so a request a little too large gets Simulate's own
        message (INVALID_ARGUMENT, naming its limit) rather than the transport's RESOURCE_EXHAUSTED."""
        return max(4 << 20, self.simulate.max_bytes + (1 << 20))
