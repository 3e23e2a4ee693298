"""Sessions: long-running conversations with one agent.

A session holds no messages of its own: its runs are its turns, and the conversation
is read from them (each turn's input messages, then its answer). So a turn is added to
the history in the same transaction that ends its run, a failed or cancelled turn
leaves nothing behind, and deleting a session deletes exactly its runs. Turns take
turns: a run may start in a session only while no other run of it is active, so each
one sees the answer of the one before.
"""

from __future__ import annotations

from typing import Any, Protocol

from hangar.errors import AgentNotFoundError, InvalidRequestError, SessionNotFoundError
from hangar.ids import new_id, now
from hangar.spec.agent import Agent
from hangar.store.base import ResourceStore, SessionStore
from hangar.store.records import RunRecord, RunStatus, SessionRecord


class _SessionsStore(SessionStore, ResourceStore, Protocol):
    """What conversations use of the store: sessions, and the agents they talk to."""


MAX_METADATA = 16


def conversation(turns: list[RunRecord], *, before: str | None = None) -> list[dict[str, Any]]:
    """The OpenAI-format messages of the session's succeeded turns (oldest first) that
    came before the run ``before``."""
    messages: list[dict[str, Any]] = []
    for run in turns:
        if run.id == before:
            break
        if run.status == RunStatus.SUCCEEDED and run.output and "message" in run.output:
            messages.extend(run.input.get("messages", []))
            messages.append(run.output["message"])
    return messages


class Sessions:
    def __init__(self, store: _SessionsStore) -> None:
        self.store = store

    async def create(
        self,
        namespace: str,
        agent: str,
        metadata: dict[str, str] | None = None,
        key_id: str | None = None,
    ) -> SessionRecord:
        if await self.store.get_resource(namespace, Agent.KIND, agent) is None:
            raise AgentNotFoundError(
                f"agent {agent!r} not found in namespace {namespace!r}",
                hint="list agents with `hangar get agents`",
                details={"agent": agent, "namespace": namespace},
            )
        metadata = metadata or {}
        if len(metadata) > MAX_METADATA:
            raise InvalidRequestError(
                f"a session takes at most {MAX_METADATA} metadata entries, got {len(metadata)}"
            )
        stamp = now()
        session = SessionRecord(
            id=new_id("ses"),
            namespace=namespace,
            agent=agent,
            metadata=metadata,
            created_at=stamp,
            updated_at=stamp,
            key_id=key_id,
        )
        await self.store.create_session(session)
        return session

    async def get(self, namespace: str, session_id: str) -> SessionRecord:
        session = await self.store.get_session(namespace, session_id)
        if session is None:
            raise _not_found(namespace, session_id)
        return session

    async def recent(
        self, namespace: str, *, agent: str | None = None, limit: int = 50
    ) -> list[SessionRecord]:
        return await self.store.list_sessions(namespace, agent=agent, limit=limit)

    async def turns(self, namespace: str, session_id: str) -> list[RunRecord]:
        """The session's runs, oldest first."""
        return await self.store.session_runs(namespace, session_id)

    async def history(self, namespace: str, session_id: str) -> list[dict[str, Any]]:
        await self.get(namespace, session_id)
        return conversation(await self.store.session_runs(namespace, session_id))

    async def delete(self, namespace: str, session_id: str) -> None:
        if not await self.store.delete_session(namespace, session_id):
            raise _not_found(namespace, session_id)


def _not_found(namespace: str, session_id: str) -> SessionNotFoundError:
    return SessionNotFoundError(
        f"session {session_id!r} not found in namespace {namespace!r}",
        hint="list sessions with GET /v1/sessions or `hangar sessions list`",
        details={"session": session_id},
    )
