"""Where telemetry leaves the process: the OTLP exporters built from settings, and export health."""
