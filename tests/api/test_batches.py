"""Batches through the REST API and the Python client, against a real server that works
the queue (`serve --work-batches`): submit, follow, report; every bad input refused."""

from __future__ import annotations

import httpx
import pytest

from perfsmith.api.client import ApiError, Client
from tests.servers import BATCH, Server


@pytest.mark.slow(seconds=15)
async def test_a_batch_is_submitted_worked_and_reported(batch_server: Server) -> None:
    async with Client(batch_server.url, batch_server.tokens["alice"]) as client:
        batch = await client.batches.submit(BATCH)
        assert batch.name == "api-night" and len(batch.jobs) == 1
        assert batch.jobs[0].kind == "optimize"
        done = await client.batches.wait(batch.id, poll_s=0.3)
        job = done.jobs[0]
        assert job.status == "done", job.error
        assert job.summary["speedup"] > 1 and job.summary["ci"][0] > 1
        assert job.run_id is not None
        # the job's run is a run like any other: its candidates are the API's too
        candidates = await client.runs.candidates(job.run_id)
        assert any(c.verdict == "faster" for c in candidates)
        markdown = await client.batches.report(batch.id)
        assert "| dupes/dupes.py::find_duplicates | optimize | done |" in markdown
        html = await client.batches.report(batch.id, format="html")
        assert html.count("<svg") == 2
        assert batch.id in [b.id for b in await client.batches.list()]
        with pytest.raises(ApiError) as caught:
            await client.batches.cancel(batch.id)
        assert caught.value.status == 409  # it has ended
        with pytest.raises(ApiError) as caught:
            await client.batches.resume(batch.id, until="tomorrow")
        assert caught.value.status == 422 and "neither HH:MM" in caught.value.detail
    # another tenant's batch does not exist for you
    async with Client(batch_server.url, batch_server.tokens["bob"]) as other:
        with pytest.raises(ApiError) as caught:
            await other.batches.get(batch.id)
        assert caught.value.status == 404
        assert batch.id not in [b.id for b in await other.batches.list()]


@pytest.mark.parametrize(
    ("toml", "problem"),
    [
        ('[[function]]\ntarget = "/etc/hosts::f"\n', "must be a path relative"),
        ('[[function]]\ntarget = "../../x.py::f"\n', "must be a path relative"),
        ('[[function]]\ntarget = "dupes/dupes.py::find_duplicates"\nllm = "local"\n', "own model"),
        ('[[repo]]\nurl = "https://example.invalid/r.git"\ncommand = "true"\n', "workspace only"),
        ("x = " + "[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ("[batch\n", "not valid TOML"),
    ],
)
def test_bad_batches_are_refused_with_every_problem(
    batch_server: Server, toml: str, problem: str
) -> None:
    response = httpx.post(
        f"{batch_server.url}/batches", json={"toml": toml}, headers=batch_server.headers()
    )
    assert response.status_code == 422, response.text
    body = response.json()
    assert any(problem in e["message"] for e in body["errors"]), body


def test_batch_endpoints_refuse_malformed_requests(batch_server: Server) -> None:
    url, headers = batch_server.url, batch_server.headers()
    assert httpx.post(f"{url}/batches", json={"toml": BATCH}).status_code == 401
    huge = httpx.post(f"{url}/batches", json={"toml": "#" * 2_000_000}, headers=headers)
    assert huge.status_code == 413
    for body in ({}, {"toml": ""}, {"toml": 3}, {"toml": BATCH, "extra": 1}):
        assert httpx.post(f"{url}/batches", json=body, headers=headers).status_code == 422
    assert httpx.get(f"{url}/batches/not-an-id", headers=headers).status_code == 422
    missing = "0" * 32
    for method, path in (
        ("GET", f"/batches/{missing}"),
        ("GET", f"/batches/{missing}/report"),
        ("POST", f"/batches/{missing}/cancel"),
        ("POST", f"/batches/{missing}/resume"),
    ):
        response = httpx.request(method, f"{url}{path}", headers=headers)
        assert response.status_code == 404, (path, response.text)
    bad_format = httpx.get(f"{url}/batches/{missing}/report?format=pdf", headers=headers)
    assert bad_format.status_code == 422


def test_the_batch_page_reads_only_fields_the_api_defines() -> None:
    import re
    from pathlib import Path

    from perfsmith.api.schemas import BatchJobOut, BatchOut

    script = (
        Path(__file__).resolve().parents[2] / "perfsmith" / "ui" / "static" / "batches.js"
    ).read_text()
    batch_fields = set(BatchOut.model_fields)
    job_fields = set(BatchJobOut.model_fields)
    read_batch = set(re.findall(r"\b(?:batch|b)\.(\w+)", script))
    read_job = set(re.findall(r"\bj\.(\w+)", script))
    read_summary = set(re.findall(r"\bsummary\.(\w+)", script))
    assert read_batch and read_job and read_summary
    assert read_batch <= batch_fields, read_batch - batch_fields
    assert read_job <= job_fields, read_job - job_fields
    # the summary a job's run leaves (perfsmith.batch.results.run_summary)
    assert read_summary <= {"speedup", "ci"}, read_summary
