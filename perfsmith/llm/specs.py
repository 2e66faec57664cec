"""How an LLM is named on the command line and in stored run configs (a spec string).

Kept free of imports: the CLI's help text reads it without loading any client."""

from __future__ import annotations

SPEC_HELP = (
    "'local' (perfsmith's own engine; 'local:MODEL' for another model), an OpenAI-compatible "
    "base URL (http://host:port/v1), or 'scripted:FILE' where FILE is a "
    'JSON object {"planner": [...], "joiner": [...]} of replies by purpose (or a JSON list)'
)
