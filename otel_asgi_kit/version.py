__version__ = "0.1.0"

# The instrumentation scope of every span, metric and log record the kit itself emits.
SCOPE_NAME = "otel_asgi_kit"
SCOPE_VERSION = __version__
