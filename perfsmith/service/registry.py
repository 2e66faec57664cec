"""The one registry from a run's kind to its workflow."""

from __future__ import annotations

from perfsmith.workflows.base import Workflow
from perfsmith.workflows.kernels import KernelWorkflow
from perfsmith.workflows.optimize import OptimizeWorkflow
from perfsmith.workflows.plan import PlanWorkflow
from perfsmith.workflows.repo import RepoWorkflow
from perfsmith.workflows.report import write_report

WORKFLOWS: dict[str, Workflow] = {
    "orchestrate": PlanWorkflow("orchestrate"),
    "demo": PlanWorkflow("demo"),
    "optimize": OptimizeWorkflow(write_report),
    "kernel": KernelWorkflow(),
    "repo": RepoWorkflow(),
}
