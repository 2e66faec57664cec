"""Tools the planner can call: registered from typed Python functions with `@tool`.

A tool's argument schema is a pydantic model built from the function's signature, so a
plan's arguments are validated before the tool runs, and the planner prompt shows each
tool's signature and docstring.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, get_type_hints, overload

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, create_model

from perfsmith.errors import ToolError

F = TypeVar("F", bound=Callable[..., Any])


def _type_name(annotation: Any) -> str:
    if annotation is inspect.Parameter.empty:
        return "any"
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


@dataclass(eq=False)
class Tool:
    """A callable the planner may use, with its validated argument schema."""

    name: str
    description: str
    fn: Callable[..., Any]
    params: list[str]
    required: frozenset[str]
    args_model: type[BaseModel]
    adapters: dict[str, TypeAdapter[Any]]
    signature: str
    is_async: bool
    max_concurrency: int | None = None
    timeout_s: float | None = None
    # Sync tools run in a worker thread unless marked inline (cheap and non-blocking).
    inline: bool = False

    def bind(self, args: Iterable[Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """Map a call's positional and keyword arguments to parameter names."""
        positional = list(args)
        if len(positional) > len(self.params):
            raise ToolError(
                f"{self.name}() takes {len(self.params)} argument(s) "
                f"({', '.join(self.params) or 'none'}) but {len(positional)} were given"
            )
        bound = dict(zip(self.params, positional, strict=False))
        for key, value in kwargs.items():
            if key not in self.params:
                raise ToolError(
                    f"{self.name}() has no argument {key!r}; "
                    f"it takes: {', '.join(self.params) or 'none'}"
                )
            if key in bound:
                raise ToolError(f"{self.name}() got argument {key!r} twice")
            bound[key] = value
        missing = sorted(self.required - bound.keys())
        if missing:
            raise ToolError(f"{self.name}() is missing required argument(s): {', '.join(missing)}")
        return bound

    def check_field(self, key: str, value: Any) -> None:
        """Validate one literal argument (used at parse time, before references resolve)."""
        try:
            self.adapters[key].validate_python(value)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ToolError(
                f"{self.name}() argument {key!r}: {first['msg']} (got {value!r:.80})"
            ) from exc

    def validate(self, bound: Mapping[str, Any]) -> dict[str, Any]:
        """Validate and coerce resolved arguments against the schema."""
        try:
            model = self.args_model.model_validate(dict(bound))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}"
                for e in exc.errors()
            )
            raise ToolError(f"{self.name}() arguments invalid: {problems}") from exc
        return {name: getattr(model, name) for name in bound}

    async def invoke(self, arguments: Mapping[str, Any]) -> Any:
        if self.is_async:
            return await self.fn(**arguments)
        if self.inline:
            return self.fn(**arguments)
        return await asyncio.to_thread(self.fn, **arguments)

    def render(self) -> str:
        return f"{self.signature}: {self.description}"


def make_tool(
    fn: Callable[..., Any],
    *,
    name: str | None = None,
    description: str | None = None,
    max_concurrency: int | None = None,
    timeout_s: float | None = None,
    inline: bool = False,
) -> Tool:
    tool_name = name or fn.__name__
    if not tool_name.isidentifier():
        raise ToolError(f"tool name {tool_name!r} is not a Python identifier")
    doc = description or inspect.getdoc(fn) or ""
    if not doc:
        raise ToolError(f"tool {tool_name!r} needs a description or a docstring for the planner")
    sig = inspect.signature(fn)
    try:
        hints = get_type_hints(fn)
    except Exception as exc:  # unresolvable forward references
        raise ToolError(f"tool {tool_name!r}: cannot resolve type hints ({exc})") from exc
    fields: dict[str, Any] = {}
    params: list[str] = []
    required: set[str] = set()
    parts: list[str] = []
    for p in sig.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise ToolError(f"tool {tool_name!r}: *args and **kwargs are not supported")
        annotation = hints.get(p.name, Any)
        params.append(p.name)
        if p.default is p.empty:
            required.add(p.name)
            fields[p.name] = (annotation, ...)
            parts.append(f"{p.name}: {_type_name(annotation)}")
        else:
            fields[p.name] = (annotation, p.default)
            parts.append(f"{p.name}: {_type_name(annotation)} = {p.default!r}")
    args_model = create_model(
        f"{tool_name}_args",
        __config__=ConfigDict(arbitrary_types_allowed=True, extra="forbid"),
        **fields,
    )
    adapters = {k: TypeAdapter(v[0]) for k, v in fields.items()}
    returns = hints.get("return", Any)
    signature = f"{tool_name}({', '.join(parts)}) -> {_type_name(returns)}"
    return Tool(
        name=tool_name,
        description=doc.strip(),
        fn=fn,
        params=params,
        required=frozenset(required),
        args_model=args_model,
        adapters=adapters,
        signature=signature,
        is_async=inspect.iscoroutinefunction(fn),
        max_concurrency=max_concurrency,
        timeout_s=timeout_s,
        inline=inline,
    )


@overload
def tool(fn: F, /) -> Tool: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    max_concurrency: int | None = None,
    timeout_s: float | None = None,
    inline: bool = False,
) -> Callable[[F], Tool]: ...


def tool(
    fn: F | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    max_concurrency: int | None = None,
    timeout_s: float | None = None,
    inline: bool = False,
) -> Tool | Callable[[F], Tool]:
    """Turn a typed function (sync or async) into a Tool.

    `max_concurrency` caps how many calls of this tool run at once; `timeout_s` overrides
    the run's per-task timeout; `inline` runs a sync tool on the event loop (only for cheap
    functions that never block).
    """

    def wrap(f: F) -> Tool:
        return make_tool(
            f,
            name=name,
            description=description,
            max_concurrency=max_concurrency,
            timeout_s=timeout_s,
            inline=inline,
        )

    return wrap(fn) if fn is not None else wrap


class ToolRegistry:
    """The tools one run may use, by name."""

    def __init__(self, tools: Iterable[Tool | Callable[..., Any]] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for t in tools:
            self.add(t)

    def add(self, t: Tool | Callable[..., Any]) -> Tool:
        resolved = t if isinstance(t, Tool) else make_tool(t)
        if resolved.name in self._tools and self._tools[resolved.name] is not resolved:
            raise ToolError(f"two tools are named {resolved.name!r}")
        if resolved.name == "join":
            raise ToolError("'join' is reserved for the end of a plan")
        self._tools[resolved.name] = resolved
        return resolved

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def names(self) -> list[str]:
        return sorted(self._tools)

    def __iter__(self) -> Iterator[Tool]:
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def render(self) -> str:
        """Numbered tool descriptions for the planner prompt."""
        return "\n".join(f"{i}. {t.render()}" for i, t in enumerate(self, start=1))
