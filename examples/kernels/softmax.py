"""Row softmax of a (rows, cols) float32 matrix."""

import torch


class Model(torch.nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(x, dim=self.dim)


ROWS, COLS = 512, 2048


def get_inputs() -> list[torch.Tensor]:
    return [torch.randn(ROWS, COLS) * 4]


def get_init_inputs() -> list[int]:
    return [1]
