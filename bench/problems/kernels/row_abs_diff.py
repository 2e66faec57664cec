"""Row sums of absolute differences (an L1 distance per row of two matrices)."""

import torch


class Model(torch.nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a - b).abs().sum(dim=1)


def get_inputs() -> list[torch.Tensor]:
    return [torch.randn(1024, 4096), torch.randn(1024, 4096)]


def get_init_inputs() -> list[int]:
    return []
