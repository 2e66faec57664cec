"""The rewrite catalogue: AST rewrites of classic Python performance anti-patterns, each
offered as a candidate for verification (see ``catalogue``)."""

from perfsmith.tools.rewrites.catalogue import (
    RULE_IDS,
    RULES,
    Rewrite,
    RewriteError,
    findings,
    rewrites,
)

__all__ = ["RULES", "RULE_IDS", "Rewrite", "RewriteError", "findings", "rewrites"]
