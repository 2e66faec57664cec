"""A matrix product with an epilogue: gelu(x @ w + b)."""

import torch


class Model(torch.nn.Module):
    def __init__(self, k: int, n: int) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(k, n) / k**0.5)
        self.b = torch.nn.Parameter(torch.randn(n) * 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.gelu(x @ self.w + self.b)


def get_inputs() -> list[torch.Tensor]:
    return [torch.randn(256, 512)]


def get_init_inputs() -> list[int]:
    return [512, 1024]
