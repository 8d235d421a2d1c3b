"""Every place the kit leans on OpenTelemetry SDK or exporter internals, fenced in one package.

Each module here does what a stock SDK class does, in fewer steps, and
checks at start-up that the private names it relies on are there. If one
is not, that shortcut is off and the stock path runs (same telemetry, more
CPU) — never an error. ``shortcuts.status()`` lists each shortcut and
whether it is on (``otel-asgi-kit doctor`` prints it); ``shortcuts.RELIED_ON``
names every private attribute relied on, and ``tests/test_sdk_fence.py``
checks the list against the installed releases.
"""
