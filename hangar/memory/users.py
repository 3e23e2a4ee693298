"""Long-term memory of end users: facts learnt from their runs, recalled in later ones.

After a run for a user, the agent's model (or the one the agent names for memory) is
asked for the lasting facts the conversation taught about the user, as JSON. Each fact
is embedded; one that says nearly the same as a fact already kept replaces that one's
wording (a user who moved city has one city, not two), the rest are added. A later run
recalls the facts nearest its question. A user's facts are few (tens, hundreds), so
recall is an exact comparison with each of them: no index to keep in step.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from hangar.errors import InvalidRequestError, MemoryNotFoundError
from hangar.ids import new_id, now
from hangar.memory.embedders import Embedder
from hangar.models.base import ChatModel, complete
from hangar.models.messages import Message, ModelRequest, ModelSettings
from hangar.store.base import MemoryStore, RunQueue
from hangar.store.records import MemoryChanges, MemoryRecord
from hangar.usage import Usage


class _UsersStore(MemoryStore, RunQueue, Protocol):
    """What user memory uses of the store: memories, and the runs they are learnt from."""


SAME_FACT = 0.85
"""Cosine similarity above which a new fact restates a kept one (and replaces it)."""
MAX_FACTS = 20
MAX_FACT_CHARS = 500
USER_MAX = 255
CONTROL = re.compile(r"[\x00-\x1f\x7f]")

EXTRACT = """You maintain long-term memory about one user of an assistant.
From the conversation below, list the lasting facts about the user (who they are, what
they have, what they prefer, their plans): one short sentence each, in the third person
("The user ..."). Leave out what only mattered for this conversation, and facts about
anything but the user. Facts already known are listed with their ids: do not repeat
them; when the conversation changes one (the user moved, changed their mind), give its
id and its new wording under "updates".

Known facts:
{known}

Conversation:
{conversation}

Answer with JSON only, empty lists when there is nothing to add or change:
{{"facts": ["..."], "updates": [{{"id": "...", "text": "..."}}]}}"""


def check_user(user: str) -> str:
    """An end user's id as callers send it: 1 to 255 characters, no control characters."""
    if not user or len(user) > USER_MAX or CONTROL.search(user):
        raise InvalidRequestError(
            f"user must be 1 to {USER_MAX} characters without control characters",
            hint="send your own stable id for the end user (an account id, a hash)",
            details={"user": user[:64]},
        )
    return user


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Vectors from the embedders are unit length: the dot product is the cosine."""
    return math.fsum(x * y for x, y in zip(a, b, strict=False))


def _clean(text: Any) -> str:
    return " ".join(text.split())[:MAX_FACT_CHARS] if isinstance(text, str) else ""


def parse_facts(text: str) -> tuple[list[str], dict[str, str]]:
    """New facts and rewordings by id in a model's answer: the JSON object in it
    (fenced or not); anything else is nothing learnt, not an error (a small model's
    answer is often not JSON)."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return [], {}
    try:
        found = json.loads(text[start : end + 1])
    except ValueError:
        return [], {}
    if not isinstance(found, dict):
        return [], {}
    facts = found.get("facts")
    cleaned = [_clean(f) for f in facts] if isinstance(facts, list) else []
    updates: dict[str, str] = {}
    for item in found.get("updates") or []:
        if isinstance(item, dict) and isinstance(item.get("id"), str) and _clean(item.get("text")):
            updates[item["id"]] = _clean(item["text"])
    return list(dict.fromkeys(f for f in cleaned if f))[:MAX_FACTS], updates


def transcript(messages: Sequence[dict[str, Any]]) -> str:
    """What the user and the assistant said (tool traffic left out)."""
    lines = []
    for message in messages:
        role, content = message.get("role"), message.get("content")
        if role in ("user", "assistant") and isinstance(content, str) and content.strip():
            lines.append(f"{role}: {content.strip()}")
    return "\n".join(lines)


@dataclass(frozen=True)
class Learnt:
    added: int
    updated: int
    usage: Usage


@dataclass
class _Turns:
    """A lock and how many hold it or wait for it (forgotten when none)."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    takers: int = 0


class UserMemories:
    def __init__(self, store: _UsersStore, embedder: Embedder) -> None:
        self.store = store
        self.embedder = embedder
        self._learning: dict[tuple[str, str], _Turns] = {}
        """Per user, taken while learning from a run: a user's runs one after another
        were learnt from at once, each keeping a fact the other had just kept."""

    async def recall(self, namespace: str, user: str, query: str, k: int) -> list[MemoryRecord]:
        """The user's ``k`` facts nearest the query, nearest first."""
        kept = await self.store.list_memories(namespace, user)
        if not kept or k <= 0:
            return []
        if len(kept) <= k:
            return kept
        vector = (await self.embedder.embed([query]))[0]
        ranked = sorted(kept, key=lambda m: _cosine(vector, m.embedding), reverse=True)
        return ranked[:k]

    async def remember(
        self,
        namespace: str,
        user: str,
        facts: Sequence[str],
        run_id: str | None = None,
        rewordings: Mapping[str, str] | None = None,
    ) -> tuple[int, int]:
        """Keep facts: each replaces a kept fact it restates, or is added; and give
        kept facts the new wordings ``rewordings`` has for their ids. Returns (added,
        updated). The embeddings come first: what is kept is read and changed in one
        step of the store, which other processes learning for this user wait for."""
        rewordings = rewordings or {}
        if not facts and not rewordings:
            return 0, 0
        texts = [*rewordings.values(), *facts]
        vectors = await self.embedder.embed(texts)
        split = len(rewordings)
        reworded = {
            memory_id: (text, vector)
            for (memory_id, text), vector in zip(rewordings.items(), vectors[:split], strict=True)
        }
        new = list(zip(facts, vectors[split:], strict=True))

        def change(kept: list[MemoryRecord]) -> MemoryChanges:
            return _changes(namespace, user, kept, reworded, new, run_id)

        changes = await self.store.change_memories(namespace, user, change)
        return len(changes.added), len(changes.updated)

    async def learn(
        self,
        namespace: str,
        user: str,
        model: ChatModel,
        conversation: Sequence[dict[str, Any]],
        run_id: str,
    ) -> Learnt:
        """Ask the model for the facts a finished conversation taught, and keep them.
        One run at a time per user in this process, each told what the last one kept;
        across processes, the model of one may not be told what another just kept, but
        the keeping itself waits its turn and finds the fact there (and keeps it once)."""
        said = transcript(conversation)
        if not said:
            return Learnt(0, 0, Usage())
        key = (namespace, user)
        turns = self._learning.setdefault(key, _Turns())
        turns.takers += 1
        try:
            async with turns.lock:
                return await self._learn(namespace, user, model, said, run_id)
        finally:
            turns.takers -= 1
            if not turns.takers:
                del self._learning[key]

    async def _learn(
        self, namespace: str, user: str, model: ChatModel, said: str, run_id: str
    ) -> Learnt:
        kept = {m.id: m for m in await self.store.list_memories(namespace, user)}
        known = "\n".join(f"- [{m.id}] {m.text}" for m in kept.values()) or "(none)"
        prompt = EXTRACT.format(known=known, conversation=said)
        request = ModelRequest(
            (Message(role="user", content=prompt),), settings=ModelSettings(temperature=0)
        )
        response = await complete(model, request)
        if await self.store.get_run(namespace, run_id) is None:
            return Learnt(0, 0, response.usage)  # the user was forgotten meanwhile
        facts, rewordings = parse_facts(response.message.content or "")
        changed = {i: text for i, text in rewordings.items() if i in kept and kept[i].text != text}
        added, updated = await self.remember(namespace, user, facts, run_id, changed)
        return Learnt(added, updated, response.usage)

    # --- by hand (REST, CLI) --------------------------------------------------------------

    async def of(self, namespace: str, user: str) -> list[MemoryRecord]:
        return await self.store.list_memories(namespace, user)

    async def forget(self, namespace: str, user: str) -> dict[str, int]:
        """Forget the user: their memories, runs, sessions and every trace of them;
        returns how many of each went."""
        return await self.store.forget_user(namespace, user)

    async def add(self, namespace: str, user: str, text: str) -> MemoryRecord:
        text = _fact(text)
        vector = (await self.embedder.embed([text]))[0]
        stamp = now()
        memory = MemoryRecord(new_id("mem"), namespace, user, text, vector, stamp, stamp)
        await self.store.add_memory(memory)
        return memory

    async def edit(self, namespace: str, user: str, memory_id: str, text: str) -> MemoryRecord:
        text = _fact(text)
        vector = (await self.embedder.embed([text]))[0]
        changed = await self.store.update_memory(namespace, user, memory_id, text, vector)
        if changed is None:
            raise _missing(user, memory_id)
        return changed

    async def delete(self, namespace: str, user: str, memory_id: str) -> None:
        if not await self.store.delete_memory(namespace, user, memory_id):
            raise _missing(user, memory_id)


def _changes(
    namespace: str,
    user: str,
    kept: list[MemoryRecord],
    reworded: Mapping[str, tuple[str, list[float]]],
    facts: Sequence[tuple[str, list[float]]],
    run_id: str | None,
) -> MemoryChanges:
    """What keeping ``facts`` and ``reworded`` does to the memories ``kept`` now: a
    fact as near as ``SAME_FACT`` to a kept one gives it its wording (once per fact,
    the nearest), the others are added; rewordings of memories deleted since are
    dropped."""
    current = {m.id: (m.text, m.embedding) for m in kept}
    updated: dict[str, tuple[str, list[float]]] = {}
    for memory_id, (text, vector) in reworded.items():
        if memory_id in current and current[memory_id][0] != text:
            current[memory_id] = updated[memory_id] = (text, vector)
    added: list[MemoryRecord] = []
    for fact, vector in facts:
        nearest = max(current, key=lambda i: _cosine(vector, current[i][1]), default=None)
        if nearest is not None and _cosine(vector, current[nearest][1]) >= SAME_FACT:
            if current[nearest][0] != fact:
                current[nearest] = updated[nearest] = (fact, vector)
            continue
        stamp = now()
        memory = MemoryRecord(new_id("mem"), namespace, user, fact, vector, stamp, stamp, run_id)
        current[memory.id] = (fact, vector)
        added.append(memory)
    return MemoryChanges([(i, t, v) for i, (t, v) in updated.items()], added)


def _fact(text: str) -> str:
    text = " ".join(text.split())
    if not text or len(text) > MAX_FACT_CHARS:
        raise InvalidRequestError(
            f"a memory is 1 to {MAX_FACT_CHARS} characters of text", details={"length": len(text)}
        )
    return text


def _missing(user: str, memory_id: str) -> MemoryNotFoundError:
    return MemoryNotFoundError(
        f"memory {memory_id!r} of user {user!r} not found",
        hint="list the user's memories: hangar memories list USER",
        details={"user": user, "memory": memory_id},
    )


def recalled_context(facts: Sequence[str]) -> str:
    if not facts:
        return ""
    listed = "\n".join(f"- {fact}" for fact in facts)
    return f"What you remember about this user from earlier conversations:\n{listed}"
