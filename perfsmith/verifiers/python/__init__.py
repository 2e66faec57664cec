"""Python functions: differential testing and interleaved timing in the sandbox."""
