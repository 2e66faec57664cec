"""Free-form runs (`perfsmith run`, `perfsmith.run`, the API's plan runs) and the demo: the
planner plans over the user's tools, the engine executes, the joiner answers."""

from __future__ import annotations

from typing import Any

from perfsmith.engine.drive import drive
from perfsmith.errors import PerfsmithError
from perfsmith.llm.base import ChatModel
from perfsmith.workflows.base import Finished, Job


class PlanWorkflow:
    """Config: ``tools`` (module specs, or None for in-process tools given as the job's
    ``extras["tools"]``), ``llm`` (a spec, or None) and ``max_replans``."""

    def __init__(self, kind: str = "orchestrate") -> None:
        self.kind = kind

    def request_text(self, config: dict[str, Any]) -> str:
        return str(config.get("request") or "")

    def check(self, config: dict[str, Any]) -> dict[str, Any]:
        if config.get("tools") is not None:
            from perfsmith.tools.loader import load_tools

            load_tools(list(config["tools"]))  # a missing module fails before the run
        return config

    def _tools(self, job: Job) -> list[Any]:
        if "tools" in job.extras:
            return list(job.extras["tools"])
        specs = job.config.get("tools")
        if not specs:
            raise PerfsmithError(
                f"run {job.run_id} was started from Python with in-process tools; resume it "
                "with `await perfsmith.resume(run_id, tools=..., llm=...)`"
            )
        from perfsmith.tools.loader import load_tools

        return load_tools(list(specs))

    def _model(self, job: Job) -> ChatModel:
        model = job.resources.model(job.config.get("llm"))
        if model is not None:
            return model
        if self.kind == "demo":
            from perfsmith.tools.demo import demo_model

            return demo_model()
        from perfsmith.llm.factory import model_from_settings

        return model_from_settings(job.settings)

    async def start(self, job: Job) -> Finished:
        return await self._drive(job, resuming=False, follow_up=None)

    async def resume(self, job: Job, follow_up: str | None) -> Finished:
        return await self._drive(job, resuming=follow_up is None, follow_up=follow_up)

    async def _drive(self, job: Job, *, resuming: bool, follow_up: str | None) -> Finished:
        replans = job.config.get("max_replans")
        result = await drive(
            db=job.db,
            run_id=job.run_id,
            request=job.request,
            tools=self._tools(job),
            llm=self._model(job),
            settings=job.settings,
            max_replans=job.settings.max_replans if replans is None else int(replans),
            listeners=job.listeners,
            observers=job.extras.get("observers", ()),
            resuming=resuming,
            follow_up=follow_up,
            guard=job.extras.get("guard"),
        )
        return Finished(answer=result.answer, result=result, summary={"rounds": result.rounds})
