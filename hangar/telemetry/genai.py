"""The OpenTelemetry GenAI semantic conventions Hangar's spans carry, in one place."""

from __future__ import annotations

from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai

OPERATION = gen_ai.GEN_AI_OPERATION_NAME
PROVIDER = gen_ai.GEN_AI_PROVIDER_NAME
REQUEST_MODEL = gen_ai.GEN_AI_REQUEST_MODEL
REQUEST_TEMPERATURE = gen_ai.GEN_AI_REQUEST_TEMPERATURE
REQUEST_MAX_TOKENS = gen_ai.GEN_AI_REQUEST_MAX_TOKENS
RESPONSE_FINISH_REASONS = gen_ai.GEN_AI_RESPONSE_FINISH_REASONS
INPUT_TOKENS = gen_ai.GEN_AI_USAGE_INPUT_TOKENS
OUTPUT_TOKENS = gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS
AGENT_NAME = gen_ai.GEN_AI_AGENT_NAME
AGENT_ID = gen_ai.GEN_AI_AGENT_ID
AGENT_DESCRIPTION = gen_ai.GEN_AI_AGENT_DESCRIPTION
CONVERSATION_ID = gen_ai.GEN_AI_CONVERSATION_ID
TOOL_NAME = gen_ai.GEN_AI_TOOL_NAME
TOOL_CALL_ID = gen_ai.GEN_AI_TOOL_CALL_ID
TOOL_TYPE = gen_ai.GEN_AI_TOOL_TYPE
TOOL_DESCRIPTION = gen_ai.GEN_AI_TOOL_DESCRIPTION

CHAT = "chat"
INVOKE_AGENT = "invoke_agent"
EXECUTE_TOOL = "execute_tool"

RUN_ID = "hangar.run.id"
NAMESPACE = "hangar.namespace"
COST = "hangar.usage.cost"
TOOL_OUTCOME = "hangar.tool.outcome"
STEP = "hangar.step"
