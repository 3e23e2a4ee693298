"""Tools: the ``Tool`` protocol, function tools, built-ins, MCP and the tool policy."""

from hangar.tools.base import Tool, ToolContext
from hangar.tools.builtin import BUILTIN_TOOLS
from hangar.tools.function import FunctionTool, tool

__all__ = ["BUILTIN_TOOLS", "FunctionTool", "Tool", "ToolContext", "tool"]
