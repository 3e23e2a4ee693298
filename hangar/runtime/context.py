"""What a run knows before its first model call, and what it teaches after its end.

The session's earlier turns (summarised past the agent's budget), the facts recalled
about its end user, and the passages its knowledge bases give for the question: each
recorded once as an event, so a resumed run reads them back instead of asking again.
After a successful run for an end user, what it learnt about them is kept.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar

from hangar.memory.history import fit, model_summariser, turns_of
from hangar.memory.knowledge import Knowledge
from hangar.memory.retrieval import question, retrieve
from hangar.memory.users import UserMemories, recalled_context
from hangar.models.messages import Message
from hangar.models.pricing import priced
from hangar.runtime.accounting import Accounts
from hangar.runtime.events import Event, KnowledgeFound, MemoryLoaded, Recalled, parse
from hangar.runtime.loop import Outcome
from hangar.runtime.resolve import AgentSpecs, ModelCache
from hangar.runtime.sessions import conversation
from hangar.spec.agent import AgentSpec
from hangar.store.base import Ledger, SessionStore
from hangar.store.records import RunEvent, RunRecord, RunStatus
from hangar.usage import Usage

log = logging.getLogger("hangar.runtime")

Record = Callable[[Event], Awaitable[None]]
E = TypeVar("E", KnowledgeFound, MemoryLoaded)


@dataclass(frozen=True)
class Context:
    """A run's messages with its history first, and the context the loop gives the
    model beside them (recalled facts, retrieved passages)."""

    messages: list[Message]
    retrieved: str
    spent: Usage
    """What summarising the history cost (already recorded, with its event)."""


class _ContextStore(SessionStore, Ledger, Protocol):
    """What assembling a run's context reads and writes."""


class RunContexts:
    def __init__(
        self,
        store: _ContextStore,
        agents: AgentSpecs,
        models: ModelCache,
        memories: UserMemories,
        knowledge: Knowledge,
        accounts: Accounts,
    ) -> None:
        self.store = store
        self.agents = agents
        self.models = models
        self.memories = memories
        self.knowledge = knowledge
        self.accounts = accounts

    async def assemble(
        self, run: RunRecord, spec: AgentSpec, events: list[RunEvent], record: Record
    ) -> Context:
        """The run's context, from its events when it has them (resumed)."""
        given = [Message.from_openai(m) for m in run.input.get("messages", [])]
        history, remembered, spent = await self._remember(
            run, spec, question(given), events, record
        )
        messages = [*(Message.from_openai(m) for m in history), *given]
        retrieved = remembered
        auto = [ref for ref in spec.knowledge if ref.retrieval == "auto"]
        if auto:  # once per run: a resumed run gets the same passages back
            found = _recorded(events, KnowledgeFound)
            if found is None:
                found = KnowledgeFound.from_json(
                    await retrieve(self.knowledge, run.namespace, auto, question(messages))
                )
                await record(found)
            retrieved = "\n\n".join(p for p in (remembered, found.context) if p)
        return Context(messages, retrieved, spent)

    async def _remember(
        self,
        run: RunRecord,
        spec: AgentSpec,
        asked: str,
        events: list[RunEvent],
        record: Record,
    ) -> tuple[list[dict[str, Any]], str, Usage]:
        """The session history the run sees (summarised past the agent's budget) and
        what it recalls of its end user, recorded once as its ``memory`` event (a
        resumed run reads the recall back; the summary is kept on the session).
        Returns the history, the recall as context, and what summarising cost."""
        loaded = MemoryLoaded()
        recorded = _recorded(events, MemoryLoaded)
        history: list[dict[str, Any]] = []
        if run.session_id is not None:  # the session's earlier turns come first
            turns = await self.store.session_runs(run.namespace, run.session_id)
            budget = spec.memory.session
            if budget is None:
                history = conversation(turns, before=run.id)
            else:
                session = await self.store.get_session(run.namespace, run.session_id)
                name = budget.model or spec.model
                model, pricing, _ = await self.models.get(run.namespace, name)
                started = time.perf_counter()
                fitted = await fit(
                    turns_of(turns, before=run.id),
                    budget.max_tokens,
                    session.summary if session is not None else None,
                    model_summariser(model, budget.max_tokens),
                )
                history = fitted.messages
                if fitted.summary is not None:
                    loaded = replace(loaded, summary=fitted.summary)
                if fitted.fresh and fitted.summary is not None:
                    await self.store.set_session_summary(
                        run.namespace, run.session_id, fitted.summary
                    )
                    loaded = replace(
                        loaded,
                        model=name,
                        usage=priced(fitted.usage, pricing),
                        duration_ms=_ms(started),
                    )
        facts: list[str] = []
        if spec.memory.user is not None and run.user is not None:
            if recorded is not None:
                facts = [m.text for m in recorded.recalled or ()]
            else:
                found = await self.memories.recall(
                    run.namespace, run.user, asked, spec.memory.user.recall
                )
                loaded = replace(loaded, recalled=tuple(Recalled(m.id, m.text) for m in found))
                facts = [m.text for m in found]
        spent = Usage()
        if loaded.to_json() and recorded is None:
            await record(loaded)
            spent = loaded.usage or spent
        return history, recalled_context(facts), spent

    async def learn(self, run: RunRecord, outcome: Outcome) -> None:
        """After a run for an end user: keep what it taught about them. Its tokens go
        to the ledger under the run (the run's own usage is final by now)."""
        if run.user is None or run.parent_id is not None:
            return  # an agent called as a tool hears its caller, not the user
        if outcome.status is not RunStatus.SUCCEEDED:
            return
        spec = await self.agents.get(run.namespace, run.agent, run.agent_generation)
        if spec.memory.user is None or "message" not in outcome.output:
            return
        name = spec.memory.user.model or spec.model
        try:
            model, pricing, _ = await self.models.get(run.namespace, name)
            said = [*run.input.get("messages", []), outcome.output["message"]]
            started = time.perf_counter()
            learnt = await self.memories.learn(run.namespace, run.user, model, said, run.id)
            charged = self.accounts.charged(run, name, priced(learnt.usage, pricing), _ms(started))
            await self.store.record_usage(charged)
            log.info(
                "run %s: %d facts added, %d updated for its user",
                run.id,
                learnt.added,
                learnt.updated,
            )
        except Exception:  # the run is done; losing one lesson must not disturb it
            log.exception("learning from run %s for its user failed", run.id)


def _recorded(events: list[RunEvent], kind: type[E]) -> E | None:
    """The run's stored event of that kind (once per run), if any."""
    for stored in events:
        event = parse(stored.type, stored.data)
        if isinstance(event, kind):
            return event
    return None


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
