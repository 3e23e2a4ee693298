"""From names in a run to live objects: the agent's spec at the run's generation,
its ``ChatModel`` and its tools."""

from __future__ import annotations

import asyncio

from hangar.admission import Admission
from hangar.config import Settings
from hangar.errors import AgentNotFoundError, ConfigurationError, ModelNotFoundError, ToolError
from hangar.memory.knowledge import Knowledge
from hangar.memory.retrieval import TOOL_NAME, KnowledgeTool
from hangar.models.base import ChatModel
from hangar.models.limits import WAIT_REASONS, LimitedModel, ModelGate, WaitReason
from hangar.models.registry import Endpoint, build_chat_model, resolve_endpoint
from hangar.runtime.subagents import AgentTool, ChildRunner
from hangar.spec.agent import Agent, AgentSpec
from hangar.spec.model import Model, ModelSpec, Pricing
from hangar.spec.toolpolicy import NamespaceToolPolicy, ToolPolicySpec
from hangar.store.base import ResourceStore
from hangar.store.secrets import SecretResolver
from hangar.tools.base import Tool
from hangar.tools.builtin import BUILTIN_TOOLS
from hangar.tools.mcp import MCPHub
from hangar.tools.policy import NamedPolicy

LOCAL_MODEL = "local"
LOCAL_MODEL_SPEC = ModelSpec(provider="local")
"""The embedded default: the ``local`` Model exists in every namespace unless redefined."""


class AgentSpecs:
    """Agent specs by generation. A version never changes once stored, so each is
    read and validated once per process."""

    def __init__(self, store: ResourceStore) -> None:
        self.store = store
        self._specs: dict[tuple[str, str, int], AgentSpec] = {}

    async def get(self, namespace: str, name: str, generation: int) -> AgentSpec:
        key = (namespace, name, generation)
        if key not in self._specs:
            version = await self.store.get_version(namespace, Agent.KIND, name, generation)
            if version is None:
                raise AgentNotFoundError(f"agent {name!r} generation {generation} not found")
            self._specs[key] = AgentSpec.model_validate(version.spec)
        return self._specs[key]


class ModelCache:
    """Chat models are built once per (namespace, name, generation, endpoint) and
    reused: a Secret rotated or a grant changed builds the model anew."""

    def __init__(
        self,
        store: ResourceStore,
        settings: Settings,
        admission: Admission,
        secrets: SecretResolver,
    ) -> None:
        self.store = store
        self.settings = settings
        self.admission = admission
        self.secrets = secrets
        self._models: dict[tuple[str, str, int, Endpoint], tuple[LimitedModel, Pricing, str]] = {}

    async def get(self, namespace: str, name: str) -> tuple[ChatModel, Pricing, str]:
        """The model, its prices, and its provider's name (for traces)."""
        stored = await self.store.cached_resource(namespace, Model.KIND, name)
        if stored is None:
            if name != LOCAL_MODEL:
                raise ModelNotFoundError(
                    f"model {name!r} not found in namespace {namespace!r}",
                    hint="apply a Model with that name, or use 'local'",
                )
            spec, generation = LOCAL_MODEL_SPEC, 0
        else:
            spec, generation = ModelSpec.model_validate(stored.spec), stored.generation
        endpoint = await self._endpoint(namespace, name, spec)
        key = (namespace, name, generation, endpoint)
        if key not in self._models:
            for old in [k for k in self._models if k[:2] == key[:2]]:
                del self._models[old]  # an older generation, or a rotated credential
            built = build_chat_model(name, spec, self.settings, endpoint)
            limited = LimitedModel(built, ModelGate(name, spec.limits))
            self._models[key] = (limited, spec.pricing, spec.provider)
        return self._models[key]

    def waiting(self) -> list[tuple[str, str, WaitReason, int]]:
        """Calls waiting now on each Model's limits in this process: (namespace, model,
        reason, calls), for ``/metrics``."""
        return [
            (namespace, name, reason, model.gate.waiting[reason])
            for (namespace, name, _, _), (model, _, _) in self._models.items()
            for reason in WAIT_REASONS
            if model.gate.waiting[reason]
        ]

    async def _endpoint(self, namespace: str, name: str, spec: ModelSpec) -> Endpoint:
        """Where a remote model is (checked against the namespace's grants at every
        use: a grant withdrawn stops the Model working); for a local one, that its file
        is one the namespace may read."""
        grants = self.admission.grants(namespace)
        where = f"Model {name!r} spec"
        if spec.path is not None:
            grants.readable(spec.path, f"{where}.path")
        if spec.provider not in ("openai", "anthropic"):
            return Endpoint()
        return await resolve_endpoint(
            grants,
            self.secrets,
            where,
            base_url=spec.base_url,
            base_url_env=spec.base_url_env,
            api_key=spec.api_key,
            api_key_env=spec.api_key_env,
        )


async def namespace_policies(store: ResourceStore, namespace: str) -> tuple[NamedPolicy, ...]:
    """The namespace's ToolPolicies (read through the store's short cache)."""
    found = await store.cached_resources(namespace, NamespaceToolPolicy.KIND)
    return tuple(
        NamedPolicy(f"ToolPolicy {r.name!r}", ToolPolicySpec.model_validate(r.spec)) for r in found
    )


async def agent_tools(
    spec: AgentSpec,
    namespace: str,
    hub: MCPHub,
    children: ChildRunner,
    knowledge: Knowledge | None = None,
) -> dict[str, Tool]:
    """The agent's tools by the name the model calls them; MCP servers are connected
    (or found connected) concurrently."""
    tools: dict[str, Tool] = {}
    searched = [ref for ref in spec.knowledge if ref.retrieval == "tool"]
    if searched and knowledge is not None:
        about = {
            ref.name: (await knowledge.base(namespace, ref.name)).description for ref in searched
        }
        tools[TOOL_NAME] = KnowledgeTool(knowledge, searched, about)
    for ref in spec.tools:
        if ref.builtin is not None:
            tool = BUILTIN_TOOLS[ref.builtin]
            tools[tool.definition.name] = tool
        elif ref.agent is not None:
            child = await hub.store.get_resource(namespace, Agent.KIND, ref.agent)
            if child is None:
                raise ConfigurationError(
                    f"the agent calls agent {ref.agent!r} as a tool, which does not exist in "
                    f"namespace {namespace!r}",
                    hint="apply that agent, or remove it from spec.tools",
                )
            description = str(child.spec.get("description", ""))
            tools[ref.agent] = AgentTool(children, ref.agent, description, spec.limits.max_depth)

    async def server_tools(name: str, include: list[str]) -> list[Tool]:
        try:
            return list(await hub.tools(namespace, name, include))
        except ToolError as exc:
            raise ConfigurationError(
                exc.message,
                hint="see the server's state with `hangar get mcpservers`",
                details={"mcp_server": name},
            ) from None

    refs = [ref for ref in spec.tools if ref.mcp is not None]
    found = await asyncio.gather(*(server_tools(r.mcp, r.include) for r in refs if r.mcp))
    for server in found:
        for tool in server:
            tools[tool.definition.name] = tool
    return tools
