"""Repeated regex compilation: the pattern is rebuilt for every line."""

import re


def count_errors(lines: list[str]) -> int:
    count = 0
    for line in lines:
        if re.compile(r"^\[(ERROR|FATAL)\]\s+\w+").match(line):
            count += 1
    return count
