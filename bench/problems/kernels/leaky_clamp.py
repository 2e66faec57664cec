"""An activation chain: leaky_relu, doubled, clamped to [-1, 1]."""

import torch


class Model(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(torch.nn.functional.leaky_relu(x, 0.1) * 2.0, -1.0, 1.0)


def get_inputs() -> list[torch.Tensor]:
    return [torch.randn(2048, 2048)]


def get_init_inputs() -> list[int]:
    return []
