"""Builds the two C extensions (the OTLP writers, the request path); everything else is in pyproject.toml."""

from setuptools import Extension, setup

FLAGS = ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"]

setup(
    ext_modules=[
        Extension(
            "otel_asgi_kit_accel._wire",
            ["src/otel_asgi_kit_accel/_wire.c"],
            extra_compile_args=FLAGS,
        ),
        Extension("otel_asgi_kit_accel._core", ["src/otel_asgi_kit_accel/_core.c"], extra_compile_args=FLAGS),
    ]
)
