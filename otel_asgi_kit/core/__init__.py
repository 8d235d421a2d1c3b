"""The request core: what one HTTP request or WebSocket connection records, whatever the protocol.

``ServerRequest`` and ``Connection`` start the SERVER span, record the HTTP
and WebSocket metrics, the security event and the trace header value. They
know nothing of ASGI or aiohttp: the adapters (``otel_asgi_kit.asgi``,
``otel_asgi_kit.aiohttp``) translate their protocol into these calls.
"""
