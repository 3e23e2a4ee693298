"""OpenAI-compatible embeddings over the bundled local model: ``POST /v1/embeddings``
with the ``openai`` client's ``embeddings.create``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from hangar.errors import InvalidRequestError, ModelNotFoundError
from hangar.gateway.auth import RunKey, RuntimeDep
from hangar.memory.embedders import LOCAL_MODEL

router = APIRouter(tags=["openai"])
MAX_INPUTS = 2048


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")  # OpenAI's client sends encoding_format

    model: str = Field(description=f"{LOCAL_MODEL!r}, the bundled model.")
    input: str | list[str] = Field(description="A text or a list of texts.")


@router.post("/v1/embeddings")
async def embeddings(body: EmbeddingRequest, key: RunKey, rt: RuntimeDep) -> dict[str, Any]:
    if body.model != LOCAL_MODEL:
        raise ModelNotFoundError(
            f"no embedding model {body.model!r} here",
            hint=f"this server embeds with {LOCAL_MODEL!r}",
            details={"model": body.model},
        )
    texts = [body.input] if isinstance(body.input, str) else body.input
    if not texts or len(texts) > MAX_INPUTS:
        raise InvalidRequestError(f"give 1 to {MAX_INPUTS} inputs, got {len(texts)}")
    embedder = rt.embedder
    counts = [embedder.count_tokens(text) for text in texts]
    for i, count in enumerate(counts):
        if count > embedder.max_tokens:
            raise InvalidRequestError(
                f"input[{i}] has {count} tokens; {LOCAL_MODEL} reads at most "
                f"{embedder.max_tokens} and would drop the rest",
                hint="split the text into chunks first",
                details={"index": i, "tokens": count, "max_tokens": embedder.max_tokens},
            )
    vectors = await embedder.embed(texts)
    return {
        "object": "list",
        "model": LOCAL_MODEL,
        "data": [
            {"object": "embedding", "index": i, "embedding": vector}
            for i, vector in enumerate(vectors)
        ],
        "usage": {"prompt_tokens": sum(counts), "total_tokens": sum(counts)},
    }
