"""Sessions over REST: open a conversation with an agent, add turns, read it, delete it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from hangar.errors import SessionNotFoundError
from hangar.gateway.auth import ReadOrRunKey, RunKey, RuntimeDep, visible
from hangar.gateway.routes.runs import RunRequest, start_run
from hangar.runtime.host import Runtime
from hangar.runtime.sessions import conversation
from hangar.store.records import ApiKey, SessionRecord

router = APIRouter(tags=["sessions"])


class SessionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent: str = Field(description="The agent the session talks to.")
    metadata: dict[str, str] = Field(default_factory=dict, description="Your own labels.")


async def _session(rt: Runtime, key: ApiKey, session_id: str) -> SessionRecord:
    """The session, if this key may see it (a runner: the sessions it opened)."""
    session = await rt.sessions.get(key.namespace, session_id)
    if not visible(key, session.key_id):
        raise SessionNotFoundError(
            f"session {session_id!r} not found in namespace {key.namespace!r}",
            details={"session": session_id},
        )
    return session


@router.post("/v1/sessions", status_code=201)
async def create_session(body: SessionRequest, key: RunKey, rt: RuntimeDep) -> dict[str, Any]:
    session = await rt.sessions.create(key.namespace, body.agent, body.metadata, key_id=key.id)
    return session.to_dict()


@router.get("/v1/sessions")
async def list_sessions(
    key: ReadOrRunKey,
    rt: RuntimeDep,
    agent: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> dict[str, Any]:
    found = await rt.sessions.recent(key.namespace, agent=agent, limit=limit)
    return {"items": [session.to_dict() for session in found if visible(key, session.key_id)]}


@router.get("/v1/sessions/{session_id}")
async def get_session(session_id: str, key: ReadOrRunKey, rt: RuntimeDep) -> dict[str, Any]:
    """The session with its conversation (the succeeded turns' messages) and its runs."""
    session = await _session(rt, key, session_id)
    turns = await rt.sessions.turns(key.namespace, session_id)
    return {
        **session.to_dict(),
        "messages": conversation(turns),
        "runs": [
            {"id": run.id, "status": run.status.value, "created_at": run.created_at.isoformat()}
            for run in turns
        ],
    }


@router.delete("/v1/sessions/{session_id}")
async def delete_session(session_id: str, key: RunKey, rt: RuntimeDep) -> dict[str, Any]:
    """Deletes the session's runs and their events too (the usage ledger keeps its lines)."""
    await _session(rt, key, session_id)
    await rt.sessions.delete(key.namespace, session_id)
    return {"id": session_id, "object": "session", "deleted": True}


@router.post("/v1/sessions/{session_id}/runs", status_code=200)
async def start_turn(session_id: str, body: RunRequest, key: RunKey, rt: RuntimeDep) -> Any:
    """The session's next turn: ``POST /v1/agents/{its agent}/runs`` with ``session`` set."""
    session = await _session(rt, key, session_id)
    turn = body.model_copy(update={"session": session.id})
    return await start_run(session.agent, turn, key, rt)
