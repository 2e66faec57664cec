"""Typed errors a user can meet; each message says what failed and what to do next."""

from __future__ import annotations


class PerfsmithError(Exception):
    """Base class of every error perfsmith raises on purpose."""


class ConfigError(PerfsmithError):
    """The configuration (environment, perfsmith.toml, arguments) is unusable."""


class LLMError(PerfsmithError):
    """An LLM call failed for good (after retries, or at once for errors retrying cannot fix)."""

    def __init__(
        self,
        message: str,
        *,
        attempts: int = 1,
        status_code: int | None = None,
        refused: bool = False,
    ) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.status_code = status_code
        # the model was reached and refused this request (a prompt past its context, say):
        # another request may succeed, unlike an endpoint that cannot be reached
        self.refused = refused or status_code in (400, 413, 422)


class CandidateError(PerfsmithError):
    """A candidate that cannot be verified: no code, a syntax error, the function missing."""


class ToolError(PerfsmithError):
    """A tool was registered or called wrongly."""


class StorageError(PerfsmithError):
    """The database could not be reached or holds something unexpected."""


class RunNotFoundError(StorageError):
    """No run with the given id exists in the configured database."""

    def __init__(self, run_id: str) -> None:
        super().__init__(
            f"no run with id {run_id!r} in this database; `perfsmith runs list` shows the runs"
        )
        self.run_id = run_id


class BatchFileError(PerfsmithError):
    """A batch file that cannot run: every problem found, so that one edit fixes them all."""

    def __init__(self, source: str, problems: list[str]) -> None:
        listed = "\n".join(f"  - {p}" for p in problems)
        super().__init__(
            f"{source}: {len(problems)} problem{'s' if len(problems) != 1 else ''}; "
            f"nothing was submitted:\n{listed}"
        )
        self.source = source
        self.problems = problems


class BatchNotFoundError(StorageError):
    """No batch with the given id exists in the configured database."""

    def __init__(self, batch_id: str) -> None:
        super().__init__(
            f"no batch with id {batch_id!r} in this database; `perfsmith batch status` lists them"
        )
        self.batch_id = batch_id
