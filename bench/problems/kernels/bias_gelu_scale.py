"""gelu(x + bias) * scale: a bias broadcast over rows, an activation, a scale."""

import torch


class Model(torch.nn.Module):
    def __init__(self, features: int) -> None:
        super().__init__()
        self.bias = torch.nn.Parameter(torch.randn(features) * 0.1)
        self.scale = 0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.gelu(x + self.bias) * self.scale


def get_inputs() -> list[torch.Tensor]:
    return [torch.randn(1024, 1024)]


def get_init_inputs() -> list[int]:
    return [1024]
