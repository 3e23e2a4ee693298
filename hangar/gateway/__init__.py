"""The HTTP front door: REST, OpenAI-compatible chat completions, SSE streams."""

from hangar.gateway.app import create_app

__all__ = ["create_app"]
