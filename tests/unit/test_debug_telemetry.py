"""OpenTelemetry: one trace per cycle with phase spans and counts; metrics mirror the Prometheus store."""

from __future__ import annotations

import subprocess
import sys

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from scheduler.cache.cluster_state import ClusterState
from scheduler.framework.cycleinfo import CycleInfo
from scheduler.framework.record import SessionRecord
from scheduler.telemetry.metrics import Metrics
from scheduler.telemetry.otel import Telemetry, TelemetryError, _exporter_names


def info(cycle: int = 7) -> CycleInfo:
    summary = {
        "events": 3,
        "gangs_tried": 4,
        "gangs_placed": 2,
        "gangs_waiting": 2,
        "pods_bound": 9,
        "bind_failures": 0,
    }
    phases = (("snapshot", 0.01), ("allocate", 0.02), ("commit", 0.03), ("status", 0.001))
    return CycleInfo(SessionRecord(cycle, 0.0), ClusterState().snapshot(), 1_700_000_000.0, phases, summary, {})


def test_spans_per_cycle() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    Telemetry(Metrics(), provider).observe(info())
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {"kaisched.cycle", "snapshot", "action.allocate", "commit", "status"}
    root = spans["kaisched.cycle"]
    assert root.attributes is not None
    assert root.attributes["kaisched.cycle"] == 7 and root.attributes["kaisched.pods.bound"] == 9
    for name in ("snapshot", "action.allocate", "commit", "status"):
        assert spans[name].parent is not None and spans[name].parent.span_id == root.context.span_id
    assert spans["commit"].attributes is not None and spans["commit"].attributes["kaisched.pods.bound"] == 9
    assert spans["action.allocate"].attributes == {
        "kaisched.gangs.tried": 4,
        "kaisched.gangs.placed": 2,
        "kaisched.gangs.waiting": 2,
    }
    assert root.start_time == 1_700_000_000 * 10**9
    assert root.end_time is not None and abs(root.end_time - root.start_time - 61_000_000) < 1000


def test_metrics_mirror_prometheus() -> None:
    metrics = Metrics()
    metrics.set_gauges("kaisched_gangs_waiting", {(("reason", "OverLimit"),): 2.0})
    reader = InMemoryMetricReader()
    Telemetry(metrics, None, [reader]).observe(info())
    data = reader.get_metrics_data()
    assert data is not None
    found = {m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert {"kaisched_cycle_duration_seconds", "kaisched_pods_bound", "kaisched_bind_duration_seconds"} <= set(found)
    waiting = found["kaisched_gangs_waiting"].data.data_points  # type: ignore[union-attr]
    assert [(dict(p.attributes or {}), p.value) for p in waiting] == [({"reason": "OverLimit"}, 2.0)]
    # the same bind latency is on the Prometheus endpoint
    assert "kaisched_bind_duration_seconds_count 1" in metrics.render()


def test_exporters_from_env() -> None:
    assert _exporter_names({}, "traces") == []
    assert _exporter_names({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}, "traces") == ["otlp"]
    assert _exporter_names({"OTEL_TRACES_EXPORTER": "console,otlp"}, "traces") == ["console", "otlp"]
    assert _exporter_names({"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"}, "traces") == []
    t = Telemetry.from_env(Metrics(), {})
    assert t.tracer is None and t.meter_provider is None
    t = Telemetry.from_env(Metrics(), {"OTEL_TRACES_EXPORTER": "console", "OTEL_METRICS_EXPORTER": "none"})
    assert t.tracer is not None and t.meter_provider is None
    t.shutdown()
    with pytest.raises(TelemetryError, match="zipkin"):
        Telemetry.from_env(Metrics(), {"OTEL_TRACES_EXPORTER": "zipkin"})


def test_no_exporter_configured_never_loads_the_sdk() -> None:
    """The default (no OTEL_* exporter) keeps the OpenTelemetry SDK off `kaisched run`'s start-up path."""
    code = (
        "import sys\n"
        "from scheduler.telemetry.metrics import Metrics\n"
        "from scheduler.telemetry.otel import Telemetry\n"
        "Telemetry.from_env(Metrics(), {})\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
