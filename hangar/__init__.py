"""Hangar: a self-hosted platform that runs AI agents in production."""

__version__ = "0.1.0"
