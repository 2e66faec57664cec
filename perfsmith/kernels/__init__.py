"""Kernel generation: KernelBench problems, C++/CUDA candidates, their verification."""
