"""Streaming plan parser: tokens in, one plan item out as soon as its line is complete."""

from __future__ import annotations

from perfsmith.planner.parser import NEED_MORE, PlanParser, _NeedMore
from perfsmith.planner.plan import PlanItem
from perfsmith.tools.registry import ToolRegistry


class StreamingPlanParser:
    def __init__(self, registry: ToolRegistry) -> None:
        self._parser = PlanParser(registry)
        self._buffer = ""
        self._pending: str | None = None  # a numbered call still open across lines
        self.text_parts: list[str] = []

    @property
    def joined(self) -> bool:
        return self._parser.joined

    @property
    def text(self) -> str:
        return "".join(self.text_parts)

    def _line(self, line: str, final: bool = False) -> PlanItem | None:
        self._parser.lineno += 1
        if self._pending is not None:
            line = self._pending + "\n" + line
            self._pending = None
        item = self._parser.parse_line(line, final)
        if item is NEED_MORE:
            self._pending = line
            return None
        assert not isinstance(item, _NeedMore)
        return item

    def feed(self, chunk: str) -> list[PlanItem]:
        self.text_parts.append(chunk)
        self._buffer += chunk
        if "\n" not in chunk:
            return []
        *lines, self._buffer = self._buffer.split("\n")
        out: list[PlanItem] = []
        for line in lines:
            item = self._line(line)
            if item is not None:
                out.append(item)
        return out

    def close(self) -> list[PlanItem]:
        """End of stream: parse what is left and report a missing join()."""
        out: list[PlanItem] = []
        rest, self._buffer = self._buffer, ""
        if rest or self._pending is not None:
            if self._pending is not None and not rest:
                pending, self._pending = self._pending, None
                item = self._parser.parse_line(pending, final=True)
            else:
                item = self._line(rest, final=True)
            if item is not None and not isinstance(item, _NeedMore):
                out.append(item)
        out.extend(self._parser.finish())
        return out
