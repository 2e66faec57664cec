"""Kernels for PyTorch operators: KernelBench problems, C++/CUDA/Triton candidates and
their verification."""
