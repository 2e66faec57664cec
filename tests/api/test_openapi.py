"""The OpenAPI document: committed, served unchanged, and no generated request gets a 5xx."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from perfsmith.api.openapi import document
from tests.servers import Server

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def test_the_committed_document_matches_the_code_and_the_served_one(plan_server: Server) -> None:
    committed = json.loads(COMMITTED.read_text())
    assert document() == committed, (
        "docs/openapi.json is out of date: run `make openapi` and commit it"
    )
    served = httpx.get(f"{plan_server.url}/openapi.json").json()
    assert served == committed
    assert set(committed["paths"]) >= {
        "/runs",
        "/runs/{run_id}",
        "/runs/{run_id}/cancel",
        "/runs/{run_id}/resume",
        "/runs/{run_id}/messages",
        "/runs/{run_id}/plans",
        "/runs/{run_id}/tasks",
        "/runs/{run_id}/candidates",
        "/runs/{run_id}/artifacts",
        "/runs/{run_id}/artifacts/{artifact_id}",
        "/runs/{run_id}/events",
    }


fuzzed = schemathesis.openapi.from_dict(json.loads(COMMITTED.read_text()))


@pytest.mark.slow
@fuzzed.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_generated_request_gets_a_server_error(
    case: schemathesis.Case, plan_server: Server
) -> None:
    if case.path.endswith("/events"):
        case.query = {**(case.query or {}), "follow": "false"}  # no endless streams
    response = case.call(base_url=plan_server.url, headers=plan_server.headers("fuzz"))
    assert response.status_code < 500, (case.method, case.path, response.text[:500])
    if response.status_code >= 400:
        kind = response.headers.get("content-type")
        assert (kind[0] if isinstance(kind, list) else kind) == "application/problem+json"
        assert {"title", "status", "detail"} <= set(response.json())
