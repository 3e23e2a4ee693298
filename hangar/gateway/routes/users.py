"""End users over REST: the facts remembered about each (list, add, edit, delete), and
forgetting a user entirely. A user is the id callers send as a run's ``user``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from hangar.gateway.auth import ReadKey, RuntimeDep, WriteKey
from hangar.memory.users import MAX_FACT_CHARS, check_user

router = APIRouter(tags=["users"])


class MemoryText(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=MAX_FACT_CHARS, description="The fact, in words.")


@router.get("/v1/users/{user}/memories")
async def list_memories(user: str, key: ReadKey, rt: RuntimeDep) -> dict[str, Any]:
    found = await rt.memories.of(key.namespace, check_user(user))
    return {"items": [memory.to_dict() for memory in found]}


@router.post("/v1/users/{user}/memories", status_code=201)
async def add_memory(user: str, body: MemoryText, key: WriteKey, rt: RuntimeDep) -> dict[str, Any]:
    memory = await rt.memories.add(key.namespace, check_user(user), body.text)
    return memory.to_dict()


@router.patch("/v1/users/{user}/memories/{memory_id}")
async def edit_memory(
    user: str, memory_id: str, body: MemoryText, key: WriteKey, rt: RuntimeDep
) -> dict[str, Any]:
    memory = await rt.memories.edit(key.namespace, check_user(user), memory_id, body.text)
    return memory.to_dict()


@router.delete("/v1/users/{user}/memories/{memory_id}")
async def delete_memory(user: str, memory_id: str, key: WriteKey, rt: RuntimeDep) -> dict[str, Any]:
    await rt.memories.delete(key.namespace, check_user(user), memory_id)
    return {"id": memory_id, "object": "memory", "deleted": True}


@router.delete("/v1/users/{user}")
async def forget_user(user: str, key: WriteKey, rt: RuntimeDep) -> dict[str, Any]:
    """Forget the user: their memories, runs, sessions and every trace of them."""
    removed = await rt.memories.forget(key.namespace, check_user(user))
    return {"user": user, "object": "user", "forgotten": True, "removed": removed}
