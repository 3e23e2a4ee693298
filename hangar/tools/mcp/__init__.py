"""MCP: the hub that connects Hangar to MCP servers, through the official SDK."""

from hangar.tools.mcp.hub import MCPHub, MCPTool, qualified_name

__all__ = ["MCPHub", "MCPTool", "qualified_name"]
