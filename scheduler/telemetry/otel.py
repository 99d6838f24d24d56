"""OpenTelemetry: a trace per cycle (spans for snapshot, each action, commit and status) and the daemon's
metrics, exported where the standard OTEL_* variables say (nothing by default).

Spans are emitted after the cycle with the timestamps it measured, so the scheduling path carries no
tracing calls. Metric values are read from the same `Metrics` store the Prometheus endpoint renders, so
the two never disagree.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from scheduler.telemetry.metrics import Metrics

# the SDK is imported where a provider is made: with no exporter configured (the default) `kaisched run`
# never loads it, ~40 ms off the start-up path to the first bind
if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Observation
    from opentelemetry.sdk.metrics.export import MetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

    from scheduler.framework.cycleinfo import CycleInfo

log = logging.getLogger("kaisched.telemetry")

# the span of each phase the runner reports, and the counts it carries
PHASE_SPANS = {"snapshot": "snapshot", "allocate": "action.allocate", "commit": "commit", "status": "status"}
BIND_LATENCY = "kaisched_bind_duration_seconds"


class TelemetryError(ValueError):
    pass


def _exporter_names(env: Mapping[str, str], signal: str) -> list[str]:
    """OTEL_<SIGNAL>_EXPORTER, else otlp when an OTLP endpoint is set, else none."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    value = env.get(f"OTEL_{signal.upper()}_EXPORTER", "").strip()
    if not value:
        endpoint = env.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        value = "otlp" if endpoint else "none"
    names = [n.strip().lower() for n in value.split(",") if n.strip()]
    return [] if names == ["none"] else [n for n in names if n != "none"]


def _load_exporter(group: str, name: str, env: Mapping[str, str]) -> Any:
    wanted = name
    if name == "otlp":
        protocol = env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc").strip().lower()
        wanted = "otlp_proto_http" if protocol.startswith("http") else "otlp_proto_grpc"
    found = list(entry_points(group=group, name=wanted))
    if not found:
        raise TelemetryError(
            f"no OpenTelemetry exporter {name!r} ({group}/{wanted}) is installed; "
            "install opentelemetry-exporter-otlp for otlp, or use console or none"
        )
    return found[0].load()()


class Telemetry:
    """The cycle observer for OpenTelemetry; always records bind latency into the Prometheus store."""

    def __init__(
        self,
        metrics: Metrics,
        tracer_provider: TracerProvider | None = None,
        metric_readers: Iterable[MetricReader] = (),
        service_name: str = "kaisched",
    ) -> None:
        self.metrics = metrics
        self.tracer_provider = tracer_provider
        self.tracer = tracer_provider.get_tracer("kaisched") if tracer_provider is not None else None
        readers = list(metric_readers)
        self.meter_provider = None
        if readers:
            from opentelemetry.sdk.metrics import MeterProvider
            from opentelemetry.sdk.resources import Resource

            self.meter_provider = MeterProvider(
                resource=Resource.create({"service.name": service_name}), metric_readers=readers
            )
            meter = self.meter_provider.get_meter("kaisched")
            self.cycle_hist = meter.create_histogram("kaisched_cycle_duration_seconds", unit="s")
            self.bind_hist = meter.create_histogram(BIND_LATENCY, unit="s")
            self.pods_bound = meter.create_counter("kaisched_pods_bound", unit="{pod}")
            self.cycles = meter.create_counter("kaisched_cycles", unit="{cycle}")
            for name in ("kaisched_gangs_waiting", "kaisched_queue_fair_share", "kaisched_queue_allocated"):
                meter.create_observable_gauge(name, callbacks=[self._gauge_reader(name)])

    @staticmethod
    def from_env(metrics: Metrics, env: Mapping[str, str] | None = None) -> Telemetry:
        env = os.environ if env is None else env
        service = env.get("OTEL_SERVICE_NAME", "kaisched")
        tracer_provider = None
        traces = _exporter_names(env, "traces")
        if traces:
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            tracer_provider = TracerProvider(resource=Resource.create({"service.name": service}))
            for name in traces:
                exporter: SpanExporter = _load_exporter("opentelemetry_traces_exporter", name, env)
                tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
        readers: list[MetricReader] = []
        for name in _exporter_names(env, "metrics"):
            from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

            readers.append(PeriodicExportingMetricReader(_load_exporter("opentelemetry_metrics_exporter", name, env)))
        if traces or readers:
            log.info(
                "OpenTelemetry: traces=%s metrics=%s",
                ",".join(traces) or "none",
                ",".join(_exporter_names(env, "metrics")) or "none",
            )
        return Telemetry(metrics, tracer_provider, readers, service)

    def _gauge_reader(self, name: str) -> Any:
        from opentelemetry.metrics import Observation

        def read(options: CallbackOptions) -> Iterable[Observation]:
            with self.metrics.lock:
                values = [(dict(labels), v) for (n, labels), v in self.metrics.gauges.items() if n == name]
            return [Observation(v, labels) for labels, v in values]

        return read

    def observe(self, info: CycleInfo) -> None:
        phases = dict(info.phases)
        s = info.summary
        if s.get("gangs_placed"):
            self.metrics.observe(BIND_LATENCY, phases.get("commit", 0.0))
        total = sum(phases.values())
        if self.meter_provider is not None:
            self.cycle_hist.record(total)
            self.cycles.add(1)
            self.pods_bound.add(int(s.get("pods_bound", 0)))
            if s.get("gangs_placed"):
                self.bind_hist.record(phases.get("commit", 0.0))
        if self.tracer is not None:
            self._trace(info, total)

    def _trace(self, info: CycleInfo, total: float) -> None:
        from opentelemetry.trace import set_span_in_context

        assert self.tracer is not None
        s = info.summary
        counts = {
            "kaisched.gangs.tried": int(s.get("gangs_tried", 0)),
            "kaisched.gangs.placed": int(s.get("gangs_placed", 0)),
            "kaisched.gangs.waiting": int(s.get("gangs_waiting", 0)),
            "kaisched.pods.bound": int(s.get("pods_bound", 0)),
        }
        start = int(info.start_unix * 1e9)
        root = self.tracer.start_span(
            "kaisched.cycle",
            start_time=start,
            attributes={
                "kaisched.cycle": info.record.cycle,
                "kaisched.events": int(s.get("events", 0)),
                "kaisched.bind.failures": int(s.get("bind_failures", 0)),
                **counts,
            },
        )
        ctx = set_span_in_context(root)
        at = start
        for phase, seconds in info.phases:
            end = at + int(seconds * 1e9)
            attrs: dict[str, int] = {}
            if phase == "allocate":
                attrs = {k: v for k, v in counts.items() if k.startswith("kaisched.gangs")}
            elif phase == "commit":
                attrs = {
                    "kaisched.gangs.placed": counts["kaisched.gangs.placed"],
                    "kaisched.pods.bound": counts["kaisched.pods.bound"],
                    "kaisched.bind.failures": int(s.get("bind_failures", 0)),
                }
            span = self.tracer.start_span(PHASE_SPANS.get(phase, phase), context=ctx, start_time=at, attributes=attrs)
            span.end(end_time=end)
            at = end
        root.end(end_time=start + int(total * 1e9))

    def shutdown(self) -> None:
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()
        if self.meter_provider is not None:
            self.meter_provider.shutdown()
