"""Small constructors of the AST nodes a rewrite inserts."""

from __future__ import annotations

import ast


def name_load(name: str) -> ast.Name:
    return ast.Name(id=name, ctx=ast.Load())


def name_store(name: str) -> ast.Name:
    return ast.Name(id=name, ctx=ast.Store())


def call(func: str | ast.expr, *args: ast.expr, **kwargs: ast.expr) -> ast.Call:
    f = name_load(func) if isinstance(func, str) else func
    return ast.Call(
        func=f, args=list(args), keywords=[ast.keyword(arg=k, value=v) for k, v in kwargs.items()]
    )


def attr(value: str | ast.expr, name: str) -> ast.Attribute:
    v = name_load(value) if isinstance(value, str) else value
    return ast.Attribute(value=v, attr=name, ctx=ast.Load())


def assign(name: str, value: ast.expr) -> ast.Assign:
    return ast.Assign(targets=[name_store(name)], value=value, lineno=0)


def loop_items(loop: ast.For, item: ast.expr) -> ast.expr:
    """What ``loop`` goes over, as an iterable of ``item``: the loop's own iterable when
    ``item`` is its variable, else a generator expression of ``item`` over the loop."""
    if (
        isinstance(loop.target, ast.Name)
        and isinstance(item, ast.Name)
        and item.id == loop.target.id
    ):
        return loop.iter
    generator = ast.comprehension(target=loop.target, iter=loop.iter, ifs=[], is_async=0)
    return ast.GeneratorExp(elt=item, generators=[generator])
