"""Session memory: a session's history kept within a token budget.

When a session's turns outgrow the agent's budget, the newest turns are kept word for
word (half the budget at most, the last turn always) and the older ones are replaced
by a summary the model writes. The summary is kept on the session with the last turn
it covers, so the next turn reuses it, or extends it with only the turns that have
since fallen out of the window: each turn is summarised once, not once per turn.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from hangar.memory.chunking import approximate_tokens
from hangar.memory.users import transcript
from hangar.models.base import ChatModel, complete
from hangar.models.messages import Message, ModelRequest, ModelSettings
from hangar.store.records import RunRecord, RunStatus
from hangar.usage import Usage

SUMMARISE = """Summarise this conversation between a user and an assistant for the
assistant, who will go on with it and no longer sees these turns. Keep every fact, name,
number, decision and open question; drop pleasantries. At most {words} words.

{previous}Conversation:
{conversation}"""

Summariser = Callable[[str, str], Awaitable[tuple[str, Usage]]]
"""(summary so far, transcript of more turns) → (new summary, tokens spent)."""


@dataclass(frozen=True)
class Turn:
    run_id: str
    messages: list[dict[str, Any]]

    @property
    def tokens(self) -> int:
        return sum(approximate_tokens(str(m.get("content") or "")) + 4 for m in self.messages)


def turns_of(runs: Sequence[RunRecord], *, before: str) -> list[Turn]:
    """The succeeded turns before the run ``before``, oldest first."""
    turns = []
    for run in runs:
        if run.id == before:
            break
        if run.status == RunStatus.SUCCEEDED and run.output and "message" in run.output:
            turns.append(Turn(run.id, [*run.input.get("messages", []), run.output["message"]]))
    return turns


@dataclass(frozen=True)
class Fitted:
    messages: list[dict[str, Any]]
    summary: dict[str, Any] | None
    """The summary used (``text``, ``through``, ``turns``), None when all turns fit."""
    fresh: bool
    """Whether the summary was written now (then it is stored, and its cost charged)."""
    usage: Usage


def summary_message(text: str) -> dict[str, Any]:
    return {"role": "system", "content": f"Summary of the conversation so far:\n{text}"}


async def fit(
    turns: Sequence[Turn],
    budget: int,
    kept: dict[str, Any] | None,
    summarise: Summariser,
) -> Fitted:
    """The history a turn sees: all of it when it fits in ``budget`` tokens, else a
    summary of the older turns and the newest ones whole."""
    flat = [m for turn in turns for m in turn.messages]
    if sum(t.tokens for t in turns) <= budget:
        return Fitted(flat, None, False, Usage())
    window: list[Turn] = []
    room = budget // 2
    for turn in reversed(turns):
        if window and turn.tokens > room:
            break
        window.insert(0, turn)
        room -= turn.tokens
    older = list(turns[: len(turns) - len(window)])
    if not older:  # the last turn alone is over the budget: it is kept whole anyway
        return Fitted(flat, None, False, Usage())
    through = older[-1].run_id
    ids = [t.run_id for t in older]
    usage = Usage()
    if kept is not None and kept.get("through") == through:
        text, fresh = str(kept["text"]), False
    else:
        previous, start = "", 0
        if kept is not None and kept.get("through") in ids:
            previous, start = str(kept["text"]), ids.index(kept["through"]) + 1
        more = transcript([m for turn in older[start:] for m in turn.messages])
        text, usage = await summarise(previous, more)
        fresh = True
    summary = {"text": text, "through": through, "turns": len(older)}
    messages = [summary_message(text), *(m for turn in window for m in turn.messages)]
    return Fitted(messages, summary, fresh, usage)


def model_summariser(model: ChatModel, budget: int) -> Summariser:
    async def summarise(previous: str, conversation: str) -> tuple[str, Usage]:
        before = f"Summary of what came before:\n{previous}\n\n" if previous else ""
        prompt = SUMMARISE.format(
            words=max(50, budget // 4), previous=before, conversation=conversation
        )
        request = ModelRequest(
            (Message(role="user", content=prompt),), settings=ModelSettings(temperature=0)
        )
        response = await complete(model, request)
        return (response.message.content or "").strip(), response.usage

    return summarise
