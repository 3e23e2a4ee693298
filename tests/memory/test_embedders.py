"""The bundled embedder works offline and puts related texts together; Hangar serves
it as OpenAI's embeddings API, which the OpenAI-compatible embedder (and the real
`openai` client) read back identically."""

from __future__ import annotations

import math

import openai
import pytest

from hangar.errors import ModelProviderError
from hangar.memory.embedders import LOCAL_MODEL, LocalEmbedder, OpenAIEmbedder
from tests.helpers import ServerThread

QUERY = "How do I install Hangar on Linux?"
NEAR = "Installing on Linux: run apt-get install hangar, then hangar up."
FAR = "The cat slept all afternoon in a patch of sun on the kitchen floor."


def dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


async def test_the_bundled_model_embeds_offline_and_puts_related_texts_together(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # any download attempt would fail
    embedder = LocalEmbedder()
    query, near, far = await embedder.embed([QUERY, NEAR, FAR])
    assert len(query) == 384
    assert all(math.isclose(dot(v, v), 1.0, rel_tol=1e-4) for v in (query, near, far))
    assert dot(query, near) > dot(query, far) + 0.3
    assert embedder.count_tokens("Hangar runs agents") == len(
        embedder._model().tokenizer.tokenize("Hangar runs agents")
    )
    assert await embedder.embed([]) == []


async def test_hangar_serves_openai_embeddings_that_read_back_the_same(
    server: ServerThread,
) -> None:
    local = await LocalEmbedder().embed([QUERY, NEAR])
    client = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key=server.admin_key)
    response = await client.embeddings.create(model=LOCAL_MODEL, input=[QUERY, NEAR])
    assert [item.index for item in response.data] == [0, 1]
    assert response.usage.prompt_tokens > 0
    served = await OpenAIEmbedder(LOCAL_MODEL, f"{server.url}/v1", server.admin_key).embed(
        [QUERY, NEAR]
    )
    for mine, theirs in zip(local, served, strict=True):
        assert dot(mine, theirs) > 0.9999

    with pytest.raises(openai.UnprocessableEntityError) as too_long:
        await client.embeddings.create(model=LOCAL_MODEL, input="word " * 400)
    assert "at most 256" in str(too_long.value)
    with pytest.raises(openai.NotFoundError):
        await client.embeddings.create(model="text-embedding-3-small", input="hi")
    wrong = OpenAIEmbedder("text-embedding-3-small", f"{server.url}/v1", server.admin_key)
    with pytest.raises(ModelProviderError, match=r"embeddings from .* failed"):
        await wrong.embed(["hi"])
