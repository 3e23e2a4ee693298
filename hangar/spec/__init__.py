"""Resource schemas: the single source for validation, the API, JSON Schema and CRDs."""

from hangar.spec.agent import Agent, AgentSpec, Limits, ToolRef
from hangar.spec.base import API_VERSION, Metadata, Resource
from hangar.spec.loader import Problem, load_path, parse_document, parse_documents, read_yaml
from hangar.spec.mcp import MCPServer
from hangar.spec.model import Model, ModelSpec, ScriptStep
from hangar.spec.registry import KINDS, json_schema, kind_class
from hangar.spec.sandbox import SandboxTemplate
from hangar.spec.secret import Secret

__all__ = [
    "API_VERSION",
    "KINDS",
    "Agent",
    "AgentSpec",
    "Limits",
    "MCPServer",
    "Metadata",
    "Model",
    "ModelSpec",
    "Problem",
    "Resource",
    "SandboxTemplate",
    "ScriptStep",
    "Secret",
    "ToolRef",
    "json_schema",
    "kind_class",
    "load_path",
    "parse_document",
    "parse_documents",
    "read_yaml",
]
