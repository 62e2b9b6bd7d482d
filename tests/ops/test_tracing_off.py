"""Tracing is off and free unless the OTEL_* variables ask for it."""

from __future__ import annotations

import subprocess
import sys

from mlgate.tracing import tracing_requested


def test_tracing_is_requested_only_by_the_standard_variables() -> None:
    assert not tracing_requested({})
    assert tracing_requested({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:4317"})
    assert tracing_requested({"OTEL_TRACES_EXPORTER": "otlp"})
    assert not tracing_requested({"OTEL_TRACES_EXPORTER": "none"})
    assert not tracing_requested(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4317", "OTEL_SDK_DISABLED": "true"}
    )


def test_with_tracing_off_the_gateway_never_imports_opentelemetry() -> None:
    code = (
        "import sys, mlgate.tracing as t, server.app\n"
        "assert not t.configure_tracing('mlgate-gateway')\n"
        "with t.span('x'): pass\n"
        "assert t.inject((('a', 'b'),)) == (('a', 'b'),)\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    env = {"PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout
    assert out.strip() == "[]"
