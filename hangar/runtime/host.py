"""One process's runtime: the store, the bus, the workers and the run service together."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from opentelemetry.sdk.trace import SpanProcessor

from hangar.admission import Admission
from hangar.config import Settings
from hangar.errors import NotReadyError, StoreError
from hangar.memory.embedders import LocalEmbedder
from hangar.memory.index import index_for
from hangar.memory.knowledge import Knowledge
from hangar.memory.users import UserMemories
from hangar.runtime.accounting import Accounts
from hangar.runtime.batches import Batches
from hangar.runtime.bus import BusItem, EventBus
from hangar.runtime.context import RunContexts
from hangar.runtime.execution import RunExecutor
from hangar.runtime.queue import FairShare
from hangar.runtime.resolve import AgentSpecs, ModelCache
from hangar.runtime.schedules import Schedules
from hangar.runtime.service import RunService
from hangar.runtime.sessions import Sessions
from hangar.runtime.triggers import NatsTriggers
from hangar.runtime.worker import Worker, worker_id
from hangar.sandbox.manager import SandboxManager
from hangar.sandbox.registry import probe
from hangar.spec.sandbox import SandboxTemplate, SandboxTemplateSpec
from hangar.store.base import AuditLog, KeyStore, Ledger, ResourceStore, SpanSink, Store
from hangar.store.records import Notice
from hangar.store.secrets import SecretBox, SecretResolver
from hangar.store.sql import SqlStore
from hangar.telemetry import Telemetry
from hangar.telemetry.budgets import Budgets
from hangar.telemetry.metrics import Metrics
from hangar.tools.mcp import MCPHub

READY_SECONDS = 0.8
"""How long a readiness probe waits for the store: under Kubernetes' default probe
timeout (1 s), so the probe gets Hangar's answer, with its reason, not its own timeout."""


class Runtime:
    started = False
    """Set once ``start`` has migrated the store and started everything this process
    runs; until then (and after ``stop``) it is not ready to serve."""

    def __init__(
        self,
        settings: Settings,
        store: Store | None = None,
        span_processors: Sequence[SpanProcessor] = (),
    ) -> None:
        self.settings = settings
        self.admission = Admission(settings.resolved_admission_file, home=settings.home)
        """What the administrator granted each namespace (read again when it changes)."""
        self.store: Store = store or SqlStore(
            settings.resolved_database_url, schema=settings.database_schema
        )
        # The store as the gateway uses it: one narrow face per concern, never the whole.
        self.resources: ResourceStore = self.store
        self.keys: KeyStore = self.store
        self.audit: AuditLog = self.store
        self.ledger: Ledger = self.store
        self.traces: SpanSink = self.store
        self.telemetry = Telemetry(self.store, settings.telemetry, span_processors)
        self.store.spans = self.telemetry.leaf_spans
        self.bus = EventBus()
        self.sandboxes = SandboxManager(admission=self.admission)
        self.secret_box = SecretBox.from_environment(settings.home)
        self.secrets = SecretResolver(self.store, self.secret_box)
        self.hub = MCPHub(self.store, self.secrets, self.admission)
        self.metrics = Metrics()
        self.budgets = Budgets(self.store)
        self.embedder = LocalEmbedder()
        """The bundled embedding model, loaded at its first use."""
        self.knowledge = Knowledge(
            self.store, index_for(settings), self.embedder, self.admission, self.secrets
        )
        self.memories = UserMemories(self.store, self.knowledge.local)
        """What agents remember of their end users."""
        self.agents = AgentSpecs(self.store)
        self.models = ModelCache(self.store, settings, self.admission, self.secrets)
        self.queue = FairShare(
            self.store, held_back=self.models.held_back, on_claimed=self.models.expect
        )
        self.models.on_room = self.bus.doorbell.ring_all
        accounts = Accounts(self.metrics)
        self.executor = RunExecutor(
            worker_id(),
            self.store,
            self.bus,
            settings,
            queue=self.queue,
            agents=self.agents,
            models=self.models,
            contexts=RunContexts(
                self.store, self.agents, self.models, self.memories, self.knowledge, accounts
            ),
            accounts=accounts,
            sandboxes=self.sandboxes,
            hub=self.hub,
            knowledge=self.knowledge,
            telemetry=self.telemetry,
            budgets=self.budgets,
            admission=self.admission,
        )
        self.worker = Worker(self.store, self.bus, settings, self.queue, self.executor)
        self.sessions = Sessions(self.store)
        self.runs = RunService(
            self.store, self.bus, self.worker, self.telemetry, self.budgets, self.sessions
        )
        self.batches = Batches(self.store, self.runs)
        self.schedules = Schedules(self.store, self.runs)
        self.triggers = (
            NatsTriggers(self.store, self.runs, settings.nats_url, settings.nats_subject_prefix)
            if settings.nats_url
            else None
        )
        self._listening: asyncio.Task[None] | None = None

    async def exposition(self) -> bytes:
        """The Prometheus scrape: the metrics' counters, and gauges read now from this
        process's parts (runs by state from the store, sandbox pools, MCP servers,
        model calls waiting)."""
        return self.metrics.exposition(
            runs=await self.store.count_runs(),
            pools={pool: len(ready) for pool, ready in self.sandboxes.pools.items()},
            sandbox_sessions=len(self.sandboxes.sessions),
            servers=self.hub.statuses(),
            model_waiting=self.models.waiting(),
        )

    def on_notice(self, notice: Notice) -> None:
        """A change another process committed (or this one: the database tells all)."""
        if notice.kind == "queued":
            self.bus.wake_workers()
        elif notice.kind == "event":
            if notice.run_id not in self.worker.running:  # those are published here
                self.bus.publish(BusItem(notice.run_id, notice.seq, notice.type, {}, remote=True))
        else:
            self.bus.wake_workers(all=True)
            self.bus.resync()

    async def start(self, *, workers: int | None = None, streams: bool = True) -> None:
        """Migrate the store and start executing runs (``workers=0``: a gateway only).
        ``streams=False``: this process follows no run for a client (a worker process),
        so it hears only of queued runs, not of every event."""
        await self.store.migrate()
        self._listening = asyncio.create_task(
            self.store.listen(self.on_notice, events=streams), name="hangar-notices"
        )
        await self.telemetry.start()
        if self.triggers is not None:
            await self.triggers.start()
        count = self.settings.workers if workers is None else workers
        if count:
            self.worker.start(count)
            self.schedules.start()  # processes that run work keep the schedules' clock
            self.knowledge.start_resuming()  # and take over ingestions whose process died
            await self.warm_sandbox_pools()
        self.started = True

    async def warm_sandbox_pools(self) -> None:
        """Start the warm pools every stored SandboxTemplate asks for (in the background)."""
        for stored in await self.store.list_all_resources(SandboxTemplate.KIND):
            spec = SandboxTemplateSpec.model_validate(stored.spec)
            if spec.warm_pool and (await probe(spec.backend)).available:
                self.sandboxes.warm_soon(spec, stored.namespace)

    async def ready(self) -> None:
        """Raise ``NotReadyError`` unless this process can serve: started (migrated,
        listening) and its store answering within ``READY_SECONDS``."""
        if not self.started:
            raise NotReadyError("Hangar is starting", hint="wait for the start to finish")
        try:
            async with asyncio.timeout(READY_SECONDS):
                await self.store.ping()
        except (TimeoutError, StoreError) as exc:
            raise NotReadyError(
                "the store does not answer"
                + ("" if isinstance(exc, TimeoutError) else f": {type(exc.__cause__).__name__}"),
                hint="check that the database is up and reachable from this process",
            ) from exc

    async def stop(self) -> None:
        self.started = False
        if self.triggers is not None:
            await self.triggers.stop()
        await self.schedules.stop()
        await self.worker.stop()
        await self.knowledge.close()
        if self._listening is not None:
            self._listening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listening
        await self.hub.close()
        await self.sandboxes.close()
        await self.telemetry.stop()
        await self.store.close()
