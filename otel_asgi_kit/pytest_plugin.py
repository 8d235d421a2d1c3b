"""The ``otel_kit`` fixture (entry point ``pytest11``): the kit's telemetry of one test, in memory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from otel_asgi_kit.testing import KitCapture, capture_telemetry


@pytest.fixture
def otel_kit() -> Iterator[KitCapture]:
    """Spans, metrics and logs the kit records during the test (``otel_asgi_kit.testing.KitCapture``)."""
    with capture_telemetry() as capture:
        yield capture
