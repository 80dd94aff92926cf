"""Execution simulator: the pure matching engine and, in service.py, its NATS adapter."""
