"""The plan-execute-join engine: `drive` runs a stored run's LangGraph graph (planner,
task fetching unit, joiner) to its answer, recording everything through `RunRecorder`.
The graph and the guard are its internals; callers use `drive` and `RunResult`."""
