"""From names in a run to live objects: the agent's spec at the run's generation,
its ``ChatModel`` and its tools."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from hangar.admission import Admission
from hangar.config import Settings
from hangar.errors import AgentNotFoundError, ConfigurationError, ModelNotFoundError, ToolError
from hangar.memory.knowledge import Knowledge
from hangar.memory.retrieval import TOOL_NAME, KnowledgeTool
from hangar.models.base import ChatModel
from hangar.models.limits import WAIT_REASONS, Expected, LimitedModel, ModelGate, WaitReason
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
    reused: a Secret rotated or a grant changed builds the model anew.

    It also knows which Model each agent run here used last, so the runtime can hold
    an agent's new runs in the queue while its Model has no room (``held_back``) and
    claim them again when it has (``on_room``)."""

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
        self._gates: dict[tuple[str, str], ModelGate] = {}
        """(namespace, Model) to its current gate."""
        self._agents: dict[tuple[str, str], str] = {}
        """(namespace, agent) to the Model its last run here called."""
        self._held: set[ModelGate] = set()
        """The gates the last ``held_back`` found without room."""
        self._expected: dict[str, Expected] = {}
        """Runs claimed here whose execution has not taken its ``Expected`` yet."""
        self.on_room: Callable[[], None] | None = None
        """Told when a gate that held runs back has room again (the claimer looks)."""

    async def get(
        self, namespace: str, name: str, agent: str | None = None
    ) -> tuple[ChatModel, Pricing, str]:
        """The model, its prices, and its provider's name (for traces). With ``agent``:
        the Model that agent's runs use (``held_back``)."""
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
            gate = ModelGate(name, spec.limits, on_free=self._room)
            self._models[key] = (LimitedModel(built, gate), spec.pricing, spec.provider)
            self._gates[namespace, name] = gate
        if agent is not None:
            self._agents[namespace, agent] = name
        return self._models[key]

    def held_back(self, claiming: int = 0) -> frozenset[str]:
        """The agents (``namespace/agent``) whose Model has no room in this process now,
        counting ``claiming`` claims in flight as runs it may get: their queued runs
        stay queued."""
        held: set[str] = set()
        self._held.clear()
        for (namespace, agent), name in self._agents.items():
            gate = self._gates.get((namespace, name))
            if gate is not None and gate.full(claiming):
                held.add(f"{namespace}/{agent}")
                self._held.add(gate)
        return frozenset(held)

    def expect(self, run_id: str, namespace: str, agent: str) -> None:
        """A run of ``agent`` was claimed here: it counts against its Model's room
        until its first call (``expected``, ``limits.expecting``) or ``settle``."""
        name = self._agents.get((namespace, agent))
        gate = None if name is None else self._gates.get((namespace, name))
        if gate is not None and gate.limited:
            self._expected[run_id] = Expected(gate)

    def expected(self, run_id: str) -> Expected | None:
        """The run's place in its Model's room, for its execution to settle."""
        return self._expected.pop(run_id, None)

    def settle(self, run_id: str) -> None:
        """A claimed run will not execute here after all: its place is given back."""
        expected = self._expected.pop(run_id, None)
        if expected is not None:
            expected.come()

    def _room(self, gate: ModelGate) -> None:
        if gate in self._held and self.on_room is not None:
            self._held.discard(gate)
            self.on_room()

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
