"""Keys the kit writes into an ASGI scope.

``SPAN_KEY`` marks a scope as traced (an inner copy of the middleware passes
it through); ``ROUTE_KEY`` and ``MOUNT_PREFIX_KEY`` are written by framework
hooks that know the matched route; ``ERROR_KEY`` holds an exception a
framework caught and answered with a 5xx (it never reaches the middleware);
``CLEANUP_KEY`` says that what the app does after the response's last byte is
the framework's own cleanup (Django closes the response and sends
``request_finished`` in a worker thread), never a background task of the app:
that time gets no ``background`` span, however long a busy host makes it.
"""

SPAN_KEY = "otel_asgi_kit.span"
ROUTE_KEY = "otel_asgi_kit.route"
MOUNT_PREFIX_KEY = "otel_asgi_kit.mount_prefix"
ERROR_KEY = "otel_asgi_kit.error"
CLEANUP_KEY = "otel_asgi_kit.cleanup_after_response"
