"""The OpenAPI document, as committed in docs/openapi.json (`make openapi` rewrites it;
a test fails when the served one drifts from it).

    python -m perfsmith.api.openapi > docs/openapi.json
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any


def document() -> dict[str, Any]:
    from perfsmith.api.app import create_app
    from perfsmith.api.intake import Workspace
    from perfsmith.api.manager import RunManager, ServerConfig
    from perfsmith.config import load_settings
    from perfsmith.storage.db import Database

    with tempfile.TemporaryDirectory() as folder:
        db = Database(f"sqlite:///{Path(folder) / 'openapi.db'}", migrate=False)
        try:
            manager = RunManager(
                db, load_settings(), ServerConfig(llm="local", workspace=Workspace(Path(folder)))
            )
            return create_app(manager).openapi()
        finally:
            db.close()


def main() -> None:
    sys.stdout.write(json.dumps(document(), indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
