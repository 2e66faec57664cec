"""The tool registry (`@tool`) and perfsmith's tools."""

from perfsmith.tools.registry import Tool, ToolRegistry, make_tool, tool

__all__ = ["Tool", "ToolRegistry", "make_tool", "tool"]
