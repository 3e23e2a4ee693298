"""``KnowledgeBase``: private documents an agent can search, declared like the rest.

Its sources are a folder on the server and URLs (fetched through the base's own
egress allow-list); files can also be uploaded to it over REST. Ingestion cuts them
into chunks, embeds them and indexes them; an agent names the base in its
``knowledge`` to search it by tool or to have it searched for every run."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from hangar.spec.agent import Egress
from hangar.spec.base import Resource, SpecModel
from hangar.spec.secret import SecretKeyRef

DEFAULT_INCLUDE = ["*.md", "*.markdown", "*.txt", "*.html", "*.htm", "*.pdf"]


class EmbedderSpec(SpecModel):
    """The bundled all-MiniLM-L6-v2 (``local``), or any OpenAI-compatible endpoint."""

    provider: Literal["local", "openai"] = "local"
    model: str = Field(default="all-minilm-l6-v2", description="The endpoint's model id.")
    base_url: str | None = Field(default=None, description="With 'openai': the endpoint.")
    api_key: SecretKeyRef | None = Field(
        default=None, description="The API key, from a Secret of the namespace."
    )
    api_key_env: str | None = Field(
        default=None,
        description="Environment variable of the server holding the API key (only names "
        "the administrator granted the namespace).",
    )

    CEL = (
        {
            "rule": "!(self.provider == 'local' && has(self.baseUrl))",
            "message": "'baseUrl' is for provider 'openai'; 'local' runs in the server",
        },
        {
            "rule": "!(has(self.apiKey) && has(self.apiKeyEnv))",
            "message": "give the API key once: 'apiKey' (a Secret) or 'apiKeyEnv'",
        },
    )

    @model_validator(mode="after")
    def _endpoint(self) -> EmbedderSpec:
        if self.provider == "local" and self.base_url is not None:
            raise ValueError("'baseUrl' is for provider 'openai'; 'local' runs in the server")
        if self.api_key is not None and self.api_key_env is not None:
            raise ValueError("give the API key once: 'apiKey' (a Secret) or 'apiKeyEnv'")
        return self


class ChunkingSpec(SpecModel):
    max_tokens: int = Field(
        default=200,
        ge=16,
        le=8192,
        description="Tokens per chunk, in the embedder's own count (at most what it reads).",
    )
    overlap: int = Field(default=40, ge=0, description="Tokens each chunk repeats of the last.")

    CEL = (
        {
            "rule": "self.overlap < self.maxTokens",
            "messageExpression": "'overlap (' + string(self.overlap) + ') must be less than "
            "maxTokens (' + string(self.maxTokens) + ')'",
        },
    )

    @model_validator(mode="after")
    def _overlap(self) -> ChunkingSpec:
        if self.overlap >= self.max_tokens:
            raise ValueError(
                f"overlap ({self.overlap}) must be less than maxTokens ({self.max_tokens})"
            )
        return self


class SourceSpec(SpecModel):
    """One place documents come from: a folder on the server, or a URL."""

    folder: str | None = Field(
        default=None,
        description="A directory on the server, recursed: only under a folder the "
        "administrator granted the namespace; links out of it are not followed.",
    )
    include: list[str] = Field(
        default_factory=lambda: list(DEFAULT_INCLUDE),
        description="With 'folder': glob patterns of the file names to take.",
    )
    url: str | None = Field(default=None, description="A page or file, fetched with GET.")

    CEL = (
        {
            "rule": "has(self.folder) != has(self.url)",
            "message": "a source needs exactly one of 'folder' or 'url'",
        },
    )

    @model_validator(mode="after")
    def _one(self) -> SourceSpec:
        if (self.folder is None) == (self.url is None):
            raise ValueError("a source needs exactly one of 'folder' or 'url'")
        return self


class KnowledgeBaseSpec(SpecModel):
    description: str = Field(default="", description="What it holds; the search tool says it.")
    embedder: EmbedderSpec = Field(default_factory=EmbedderSpec)
    chunking: ChunkingSpec = Field(default_factory=ChunkingSpec)
    sources: list[SourceSpec] = Field(default_factory=list, max_length=1000)
    egress: Egress = Field(
        default_factory=Egress, description="Hosts the 'url' sources may be fetched from."
    )


class KnowledgeBase(Resource):
    """Documents agents search: where they come from, how they are chunked and embedded."""

    KIND: ClassVar[str] = "KnowledgeBase"
    PLURAL: ClassVar[str] = "knowledgebases"
    kind: Literal["KnowledgeBase"]
    spec: KnowledgeBaseSpec
