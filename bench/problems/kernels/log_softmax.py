"""Row log-softmax of a (rows, cols) float32 matrix."""

import torch


class Model(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(x, dim=1)


def get_inputs() -> list[torch.Tensor]:
    return [torch.randn(512, 4096) * 3]


def get_init_inputs() -> list[int]:
    return []
