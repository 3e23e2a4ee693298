"""NATS JetStream Triggers: each message on a Trigger's subject starts one run.

Every Hangar process that has ``HANGAR_NATS_URL`` pulls from one durable consumer
per Trigger, so each message goes to one of them; the run's id is derived from the
message's stream and sequence, so a message NATS redelivers (its taker died before
acknowledging it) finds its run already there and starts nothing new.

A namespace's subjects and streams are its own: a Trigger's ``subject`` is heard on
``PREFIX.NAMESPACE.SUBJECT`` in the stream ``HANGAR_NAMESPACE_NAME``, so no
namespace can listen to another's messages (or the server's) by naming them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from typing import Any, Protocol

from hangar.errors import ConflictError, HangarError
from hangar.runtime.service import RunInput, RunService
from hangar.spec.trigger import Trigger, TriggerSpec
from hangar.store.base import ResourceStore, RunQueue


class _TriggersStore(ResourceStore, RunQueue, Protocol):
    """What triggers use of the store: their resources, and the runs they started."""


log = logging.getLogger("hangar.triggers")
SYNC_SECONDS = 2.0


def run_id_for(namespace: str, trigger: str, stream: str, sequence: int | str) -> str:
    digest = hashlib.sha256(f"{namespace}/{trigger}/{stream}/{sequence}".encode()).hexdigest()
    return f"run_{digest[:24]}"


def subject_for(prefix: str, namespace: str, subject: str) -> str:
    """Where a namespace's Trigger listens: under its own prefix."""
    return f"{prefix}.{namespace}.{subject}"


def stream_for(namespace: str, name: str) -> str:
    return f"HANGAR_{namespace}_{name}".replace("-", "_").upper()


class NatsTriggers:
    def __init__(
        self, store: _TriggersStore, runs: RunService, url: str, prefix: str = "hangar"
    ) -> None:
        self.store = store
        self.runs = runs
        self.url = url
        self.prefix = prefix
        self._nc: Any = None
        self._pullers: dict[tuple[str, str, int], asyncio.Task[None]] = {}
        self._task: asyncio.Task[None] | None = None
        self.ready: set[tuple[str, str]] = set()
        """Triggers (namespace, name) whose consumer is pulling."""

    async def start(self) -> None:
        import nats

        self._nc = await nats.connect(self.url, max_reconnect_attempts=-1)
        self._task = asyncio.create_task(self._watch(), name="hangar-nats-triggers")

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._pullers.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.close()

    async def _watch(self) -> None:
        """Follow the stored Triggers: pull for new ones and new generations."""
        while True:
            try:
                await self._sync()
            except Exception:
                log.exception("syncing NATS triggers failed; retrying")
            await asyncio.sleep(SYNC_SECONDS)

    async def _sync(self) -> None:
        wanted = {}
        for stored in await self.store.list_all_resources(Trigger.KIND):
            spec = TriggerSpec.model_validate(stored.spec)
            if spec.nats is not None:
                wanted[(stored.namespace, stored.name, stored.generation)] = spec
        for key in set(self._pullers) - set(wanted):
            self._pullers.pop(key).cancel()
            self.ready.discard(key[:2])
        for key, spec in wanted.items():
            if key not in self._pullers:
                self._pullers[key] = asyncio.create_task(self._pull(key[0], key[1], spec))

    async def _pull(self, namespace: str, name: str, spec: TriggerSpec) -> None:
        from nats.errors import TimeoutError as NatsTimeout
        from nats.js.errors import NotFoundError

        assert spec.nats is not None
        js = self._nc.jetstream()
        subject = subject_for(self.prefix, namespace, spec.nats.subject)
        stream = stream_for(namespace, spec.nats.stream or name)
        try:
            info = await js.stream_info(stream)
        except NotFoundError:
            await js.add_stream(name=stream, subjects=[subject])
        else:
            if subject not in (info.config.subjects or []):  # the Trigger's subject changed
                info.config.subjects = [subject]
                await js.update_stream(info.config)
        # One consumer per subject: a Trigger whose subject changed reads from a fresh one.
        durable = f"hangar-{namespace}-{name}-{hashlib.sha256(subject.encode()).hexdigest()[:8]}"
        subscription = await js.pull_subscribe(subject, durable=durable, stream=stream)
        self.ready.add((namespace, name))
        while True:
            try:
                messages = await subscription.fetch(16, timeout=1)
            except NatsTimeout:
                continue
            for message in messages:
                try:
                    await self.handle(namespace, name, spec, message)
                except HangarError as exc:
                    log.warning(
                        "trigger %s/%s: %s; the message stays unacknowledged",
                        namespace,
                        name,
                        exc.message,
                    )
                    continue
                await message.ack()

    async def handle(self, namespace: str, name: str, spec: TriggerSpec, message: Any) -> str:
        """Start the run for one message (or find it started); return its id."""
        meta = message.metadata
        run_id = run_id_for(namespace, name, meta.stream, meta.sequence.stream)
        if await self.store.get_run(namespace, run_id) is not None:
            return run_id  # redelivered: its run exists already
        text = spec.input.replace("{body}", message.data.decode("utf-8", errors="replace"))
        with contextlib.suppress(ConflictError):  # another process started it just now
            await self.runs.start(
                namespace, spec.agent, RunInput([{"role": "user", "content": text}]), run_id=run_id
            )
        return run_id
