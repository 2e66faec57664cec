"""The one owner of a run's life: `RunService` starts, resumes, cancels and settles every
kind of run (the CLI, the API and Python callers go through it), `Resources` builds what a
run works with, and `WORKFLOWS` maps each run kind to its workflow."""
