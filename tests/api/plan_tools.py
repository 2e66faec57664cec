"""Small, real tools for the API tests' free-form plans (the server loads this file)."""

from __future__ import annotations

import asyncio

from perfsmith.tools.registry import tool


@tool
async def pause(ms: int) -> int:
    """Sleep `ms` milliseconds; returns ms."""
    await asyncio.sleep(ms / 1000)
    return ms


@tool(inline=True)
def total(a: int, b: int, c: int) -> int:
    """The sum of three numbers."""
    return a + b + c
