from __future__ import annotations

from pathlib import Path

import pytest

from perfsmith.errors import ToolError
from perfsmith.tools.loader import load_tools
from perfsmith.tools.registry import ToolRegistry, tool


@tool(max_concurrency=2, timeout_s=5)
async def search(query: str, limit: int = 3) -> list[str]:
    """Search the index."""
    return [query] * limit


def test_schema_signature_and_prompt_rendering() -> None:
    assert search.signature == "search(query: str, limit: int = 3) -> list[str]"
    assert search.is_async and search.max_concurrency == 2 and search.timeout_s == 5
    assert search.validate({"query": "x", "limit": "4"}) == {"query": "x", "limit": 4}
    with pytest.raises(ToolError, match="limit"):
        search.validate({"query": "x", "limit": "many"})
    registry = ToolRegistry([search])
    assert (
        registry.render() == "1. search(query: str, limit: int = 3) -> list[str]: Search the index."
    )


async def test_sync_and_async_tools_are_invoked() -> None:
    @tool
    def double(x: int) -> int:
        """Double it."""
        return 2 * x

    assert await double.invoke({"x": 21}) == 42
    assert await search.invoke({"query": "q", "limit": 2}) == ["q", "q"]


def test_bad_tool_definitions_are_refused() -> None:
    def undocumented(x: int) -> int:
        return x

    with pytest.raises(ToolError, match="docstring"):
        tool(undocumented)

    def variadic(*xs: int) -> int:
        """Sum."""
        return sum(xs)

    with pytest.raises(ToolError, match=r"\*args"):
        tool(variadic)
    with pytest.raises(ToolError, match="reserved"):
        ToolRegistry([tool(name="join", description="no")(lambda: None)])
    with pytest.raises(ToolError, match="two tools are named"):
        ToolRegistry([search, tool(name="search", description="again")(lambda: None)])


def test_loader_finds_tools_in_files_and_modules(tmp_path: Path) -> None:
    path = tmp_path / "mytools.py"
    path.write_text(
        "from perfsmith import tool\n\n@tool\ndef one() -> int:\n    '''One.'''\n    return 1\n"
    )
    assert [t.name for t in load_tools([str(path)])] == ["one"]
    assert {t.name for t in load_tools(["perfsmith.tools.demo"])} == {"time_snippet", "rank"}
    (tmp_path / "empty.py").write_text("x = 1\n")
    with pytest.raises(ToolError, match="defines no tools"):
        load_tools([str(tmp_path / "empty.py")])
    (tmp_path / "broken.py").write_text("raise RuntimeError('nope')\n")
    with pytest.raises(ToolError, match="RuntimeError: nope"):
        load_tools([str(tmp_path / "broken.py")])
