"""Knowledge in an agent's run: the ``search_knowledge`` tool the model calls, and
automatic retrieval ("instant RAG") that searches with the run's question and puts
what it finds before the first model call. Either way every chunk that reached the
model is cited in the run's result, by source and chunk."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hangar.memory.index import Hit
from hangar.memory.knowledge import Knowledge
from hangar.models.messages import Message, ToolDefinition
from hangar.spec.agent import KnowledgeRef
from hangar.tools.base import ToolContext

TOOL_NAME = "search_knowledge"


def passages(hits: Sequence[Hit], knowledge_base: str, first: int = 1) -> str:
    """Hits as numbered passages the model can quote and cite."""
    if not hits:
        return "No passages found."
    parts = []
    for n, hit in enumerate(hits, start=first):
        where = f"{hit.source}, chunk {hit.index}" + (f", {hit.title}" if hit.title else "")
        parts.append(f"[{n}] ({knowledge_base}: {where})\n{hit.text}")
    return "\n\n".join(parts)


def citations(hits: Sequence[Hit], knowledge_base: str) -> list[dict[str, Any]]:
    return [{"knowledge_base": knowledge_base, **hit.citation()} for hit in hits]


class KnowledgeTool:
    """One tool over all the agent's ``tool`` knowledge bases: the model names the
    base when there are several."""

    def __init__(self, knowledge: Knowledge, refs: Sequence[KnowledgeRef], about: dict[str, str]):
        self.knowledge = knowledge
        self.refs = {ref.name: ref for ref in refs}
        names = list(self.refs)
        properties: dict[str, Any] = {
            "query": {"type": "string", "description": "What to look for, in plain words."}
        }
        required = ["query"]
        if len(names) > 1:
            properties["knowledge_base"] = {"type": "string", "enum": names}
            required.append("knowledge_base")
        described = "; ".join(
            f"{name}: {about[name]}" if about.get(name) else name for name in names
        )
        self._definition = ToolDefinition(
            name=TOOL_NAME,
            description=f"Search the knowledge base ({described}) and return the passages "
            "that best match the query, numbered, with their sources. Cite what you use.",
            parameters={
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": False,
            },
        )

    @property
    def definition(self) -> ToolDefinition:
        return self._definition

    @property
    def idempotent(self) -> bool:
        return True

    async def call(self, arguments: dict[str, Any], context: ToolContext) -> str:
        query = arguments.get("query")
        if not isinstance(query, str) or not query.strip():
            return "error: 'query' must be a non-empty string"
        name = arguments.get("knowledge_base") or next(iter(self.refs))
        ref = self.refs.get(str(name))
        if ref is None:
            return f"error: no knowledge base {name!r}; choose one of {sorted(self.refs)}"
        hits = await self.knowledge.search(context.namespace, ref.name, query, ref.top_k)
        if context.report is not None:
            context.report.citations.extend(citations(hits, ref.name))
        return passages(hits, ref.name)


def question(messages: Sequence[Message]) -> str:
    """What automatic retrieval searches with: the run's last user message."""
    for message in reversed(messages):
        if message.role == "user" and message.content:
            return message.content
    return ""


async def retrieve(
    knowledge: Knowledge, namespace: str, refs: Sequence[KnowledgeRef], query: str
) -> dict[str, Any]:
    """Search each ``auto`` base with the question: the context text for the model and
    the citations of what it holds (recorded as the run's ``knowledge`` event, so a
    resumed run puts the same passages back)."""
    texts: list[str] = []
    cited: list[dict[str, Any]] = []
    for ref in refs:
        hits = await knowledge.search(namespace, ref.name, query, ref.top_k)
        if hits:
            texts.append(passages(hits, ref.name, first=len(cited) + 1))
            cited.extend(citations(hits, ref.name))
    context = ""
    if texts:
        context = (
            "Passages from the knowledge base that may answer the user. Use them, cite "
            "them by their numbers, and say so when they do not hold the answer.\n\n"
            + "\n\n".join(texts)
        )
    return {"query": query, "context": context, "citations": cited}


def with_context(messages: list[Message], context: str) -> list[Message]:
    """The messages with the retrieved passages as a system message, after the
    agent's instructions and before the conversation."""
    if not context:
        return messages
    note = Message(role="system", content=context)
    at = 1 if messages and messages[0].role == "system" else 0
    return [*messages[:at], note, *messages[at:]]
