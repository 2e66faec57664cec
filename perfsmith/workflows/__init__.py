"""End-to-end workflows built on the planner, the sandbox, the verifiers and the LLMs."""
