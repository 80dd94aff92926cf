"""Logging (structlog JSON on stderr with correlation ids) and Prometheus metrics."""
