"""Verifiers: is a candidate correct and is it faster, decided with statistics.

``python/``: Python functions (differential testing on generated or recorded inputs,
interleaved timing, cheat checks); ``kernel/``: kernels for PyTorch operators (compiled and
checked in the sandbox against the eager reference)."""
