"""The aiohttp.web adapter: aiohttp's requests, responses and WebSockets translated into the request core.

``hooks`` installs it at start-up (zero code); ``middleware`` is the
per-request path, ``websocket`` counts WebSocket messages.
"""
