"""Fixtures shared by the common library's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.support.spans import recorded_spans


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    """Every span the process records, from here on (the provider is process-wide)."""
    exporter = recorded_spans()
    yield exporter
    exporter.shutdown()
