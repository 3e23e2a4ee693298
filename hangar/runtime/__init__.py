"""The engine: the agent loop, workers that drive runs, and the run service.

Import what you need from its modules (`hangar.runtime.host` for `Runtime`): a client
reading events (the CLI) imports `hangar.runtime.events` alone, without the engine.
"""
