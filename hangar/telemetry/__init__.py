"""Telemetry: traces (OpenTelemetry, GenAI conventions), metrics, usage and budgets."""

from hangar.telemetry.tracing import Telemetry

__all__ = ["Telemetry"]
