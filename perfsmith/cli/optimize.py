"""`perfsmith optimize` (one function) and `perfsmith optimize-repo` (a repository's
hottest functions, kept as commits on a new branch)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from perfsmith.cli.common import (
    LLM_OR_NONE_HELP,
    BackendOption,
    DbOption,
    JsonOption,
    ServerOption,
    TokenOption,
    check_backend,
    err,
    execute,
    fail,
    model_spec,
    out,
    settings_for,
    usage_error,
)
from perfsmith.cli.results import print_outcome


def optimize_cmd(
    target: Annotated[str, typer.Argument(help="The function to speed up: FILE::FUNCTION.")],
    workload: Annotated[
        str | None,
        typer.Option("--workload", help="FILE::FUNC of no arguments that exercises the target."),
    ] = None,
    inputs: Annotated[
        str | None,
        typer.Option(
            "--inputs",
            help="Input generator FILE::FUNC; FUNC(seed) returns a list "
            "of argument tuples. Default: drawn from the type hints.",
        ),
    ] = None,
    candidate: Annotated[
        list[Path] | None,
        typer.Option("--candidate", help="A file defining the same function (repeatable)."),
    ] = None,
    llm: Annotated[str | None, typer.Option("--llm", help=LLM_OR_NONE_HELP)] = None,
    rounds: Annotated[int, typer.Option("--rounds", min=1, max=10)] = 2,
    candidates_k: Annotated[
        int, typer.Option("--candidates", min=1, max=8, help="Proposals per round.")
    ] = 3,
    apply: Annotated[
        bool, typer.Option("--apply", help="Rewrite FILE with the best verified candidate.")
    ] = False,
    report_dir: Annotated[Path | None, typer.Option("--report-dir")] = None,
    backend: BackendOption = "auto",
    verify_rounds: Annotated[int, typer.Option("--verify-rounds", min=3, max=200)] = 12,
    db: DbOption = None,
    as_json: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Make FUNCTION faster: plan, propose candidates with the LLM, verify each in the
    sandbox, report the fastest verified one (and apply it with --apply)."""
    if server:
        unsupported = [
            flag
            for flag, given in (
                ("--workload", workload),
                ("--candidate", candidate),
                ("--llm", llm),
                ("--apply", apply),
                ("--report-dir", report_dir),
            )
            if given
        ]
        if unsupported:
            usage_error(
                f"{', '.join(unsupported)} cannot be used with --server: the server runs its "
                "own LLM and sandbox on the code sent to it (the diff comes back)"
            )
        from perfsmith.cli import remote

        try:
            remote.optimize(
                server,
                token,
                out,
                err,
                target=target,
                inputs=inputs,
                rounds=rounds,
                k=candidates_k,
                verify_rounds=verify_rounds,
                as_json=as_json,
            )
        except remote.RemoteUsageError as exc:
            usage_error(str(exc))
        return
    from perfsmith.verifiers.python.target import TargetError, parse_target

    check_backend(backend)
    try:
        ref = parse_target(target, what="function")
        work = parse_target(workload, what="workload function") if workload else None
        gen = parse_target(inputs, what="input generator") if inputs else None
    except TargetError as exc:
        usage_error(str(exc))
    for path in candidate or []:
        if not path.is_file():
            usage_error(f"--candidate {path} is not a readable file")
    # the command line is right: now load what the run needs
    from perfsmith.service.library import optimize

    settings = settings_for(db)
    spec = model_spec(llm, settings)

    # the live task table while the plan runs (not with --json or when piped)
    result = execute(
        lambda listeners: optimize(
            ref,
            backend=backend,
            llm=spec,
            workload=work,
            inputs=gen,
            candidates=candidate or [],
            rounds=rounds,
            k=candidates_k,
            apply=apply,
            settings=settings,
            report_dir=report_dir,
            verify_rounds=verify_rounds,
            listeners=listeners,
        ),
        as_json,
    )
    print_outcome(result, as_json)


def optimize_repo_cmd(
    path: Annotated[Path, typer.Argument(help="A git repository.")],
    command: Annotated[
        str, typer.Option("--command", help="The project's own check, e.g. 'pytest -q'.")
    ],
    top: Annotated[int, typer.Option("--top", min=1, max=20, help="Functions to optimize.")] = 3,
    branch: Annotated[str | None, typer.Option("--branch", help="New branch name.")] = None,
    llm: Annotated[str | None, typer.Option("--llm", help=LLM_OR_NONE_HELP)] = None,
    candidate: Annotated[
        list[str] | None,
        typer.Option(
            "--candidate",
            help="FILE::FUNC=PATH: a candidate for one function, FILE relative to the "
            "repository (repeatable).",
        ),
    ] = None,
    rounds: Annotated[int, typer.Option("--rounds", min=1, max=10)] = 1,
    candidates_k: Annotated[int, typer.Option("--candidates", min=1, max=8)] = 3,
    backend: BackendOption = "auto",
    verify_rounds: Annotated[int, typer.Option("--verify-rounds", min=3, max=200)] = 12,
    report_dir: Annotated[Path | None, typer.Option("--report-dir")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Profile COMMAND in the repository, optimize its hottest functions, and commit each
    verified speedup that COMMAND still accepts to a new branch (the working tree is not
    touched)."""
    check_backend(backend)
    from perfsmith.workflows.checkout import not_a_repository

    problem = not_a_repository(path)  # what the run checks first, said before anything loads
    if problem is not None:
        fail(problem)
    settings = settings_for(db)
    given: dict[str, list[Path]] = {}
    for item in candidate or []:
        function, sep, file = item.partition("=")
        if not sep or "::" not in function or not file:
            raise typer.BadParameter(f"{item!r} is not FILE::FUNC=PATH", param_hint="--candidate")
        if not Path(file).is_file():
            usage_error(f"--candidate {file} is not a readable file")
        given.setdefault(function, []).append(Path(file))
    spec = model_spec(llm, settings)
    # the command line is right: now load what the run needs
    from perfsmith.service.library import optimize_repo

    result = execute(
        lambda listeners: optimize_repo(
            path,
            command=command,
            llm=spec,
            top=top,
            branch=branch,
            rounds=rounds,
            k=candidates_k,
            candidates=given,
            settings=settings,
            backend=backend,
            verify_rounds=verify_rounds,
            report_dir=report_dir,
            listeners=listeners,
        ),
        as_json,
    )
    print_outcome(result, as_json)
