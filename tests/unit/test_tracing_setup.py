"""Tracing is optional: which exporters the OTEL_* variables ask for, a bad value is one
line, and without OpenTelemetry installed every helper is a no-op (a subprocess in which
`import opentelemetry` fails)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from workers.tracing import exporter_names


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "console"}, ["console"]),
        ({"OTEL_TRACES_EXPORTER": "otlp, console"}, ["otlp", "console"]),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"}, []),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "console"}, []),
    ],
)
def test_exporters_follow_the_standard_variables(env: dict[str, str], expected: list[str]) -> None:
    assert exporter_names(env) == expected


def test_an_unknown_exporter_is_one_line_naming_the_variable() -> None:
    with pytest.raises(SystemExit) as exc:
        exporter_names({"OTEL_TRACES_EXPORTER": "jaeger"})
    message = str(exc.value)
    assert "OTEL_TRACES_EXPORTER='jaeger'" in message and "otlp, console, none" in message
    assert "\n" not in message


WITHOUT_OTEL = textwrap.dedent(
    """
    import asyncio, importlib.abc, sys

    class NoOtel(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "opentelemetry" or name.startswith("opentelemetry."):
                raise ImportError(f"blocked: {name}")
            return None

    sys.meta_path.insert(0, NoOtel())
    import workers.cli  # everything the processes import
    from jobs import tracecontext
    from workers import tracing
    from workers.bus.base import Message

    assert tracecontext.otel_trace is None
    assert not tracing.setup("worker", {"OTEL_TRACES_EXPORTER": "console"})
    assert not tracecontext.enabled() and tracecontext.current_traceparent() is None
    assert tracing.current() is None

    @tracecontext.traced("x", lambda r: {"r": r})
    async def answer():
        return 42

    async def main():
        assert await answer() == 42
        ran = []
        async def work():
            ran.append(1)
        await tracing.attempt(object(), "w", work())
        assert ran == [1]
    asyncio.run(main())
    message = Message("k", b"v", {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"})
    with tracing.publishing([message], "t") as out:
        assert out == [message]
    print("no-op ok")
    """
)


def test_without_opentelemetry_everything_is_a_no_op() -> None:
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_OTEL], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "no-op ok" in done.stdout
