"""OTLP wire format written by the kit (see ``wire``) and the exporters that send it."""
