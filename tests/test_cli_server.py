"""`perfsmith tokens ...` and `perfsmith serve`'s refusals, as a user runs them."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from perfsmith.api.tokens import TokenStore
from perfsmith.storage.db import Database
from tests.cli_runner import cli


def test_tokens_are_created_once_listed_without_secrets_and_revoked(tmp_path: Path) -> None:
    env = {**os.environ}
    made = cli(env, "tokens", "create", "ci-bot", "--tenant", "team-a")
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    assert secret.startswith("psk_") and len(secret) > 40
    assert "not shown again" in made.stderr
    listed = json.loads(cli(env, "tokens", "list", "--json").stdout)
    assert [(t["name"], t["tenant"], t["revoked"]) for t in listed] == [("ci-bot", "team-a", False)]
    assert secret not in json.dumps(listed) and secret.startswith(listed[0]["prefix"])
    db = Database(f"sqlite:///{tmp_path / 'home' / 'perfsmith.db'}")
    store = TokenStore(db)
    principal = store.authenticate(secret)
    assert principal is not None and principal.tenant == "team-a"

    again = cli(env, "tokens", "create", "ci-bot")
    assert again.returncode == 1 and "exists already" in again.stderr
    bad = cli(env, "tokens", "create", "no spaces allowed")
    assert bad.returncode == 1 and "token name" in bad.stderr
    assert cli(env, "tokens", "revoke", "ci-bot").returncode == 0
    assert store.authenticate(secret) is None
    twice = cli(env, "tokens", "revoke", "ci-bot")
    assert twice.returncode == 1 and "no active token" in twice.stderr
    assert "revoked" in cli(env, "tokens", "list").stdout
    db.close()


def test_serve_refuses_bad_options_before_listening(tmp_path: Path) -> None:
    env = {**os.environ}
    remote = cli(env, "serve", "--host", "0.0.0.0", "--port", "8099")
    assert remote.returncode == 2 and "--allow-remote" in remote.stderr
    assert cli(env, "serve", "--port", "0").returncode == 2
    sandbox = cli(env, "serve", "--sandbox", "chroot")
    assert sandbox.returncode == 2 and "--sandbox" in sandbox.stderr
    workspace = cli(env, "serve", "--workspace", str(tmp_path / "missing"))
    assert workspace.returncode == 2 and "not a folder" in workspace.stderr
    script = cli(env, "serve", "--llm", f"scripted:{tmp_path / 'none.json'}")
    assert script.returncode == 2 and "does not exist" in script.stderr
    folder = cli(env, "serve", "--llm", f"scripted:{tmp_path}")
    assert folder.returncode == 2 and "cannot read script file" in folder.stderr
    model_free = cli(env, "serve", "--llm", "none")
    assert model_free.returncode == 2 and "needs a model" in model_free.stderr
    tools = cli(env, "serve", "--tools", str(tmp_path / "none.py"))
    assert tools.returncode == 2 and "does not exist" in tools.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        script_file = tmp_path / "script.json"
        script_file.write_text('["Action: Finish(ok)"]')
        taken = cli(env, "serve", "--port", str(port), "--llm", f"scripted:{script_file}")
        assert taken.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in taken.stderr
