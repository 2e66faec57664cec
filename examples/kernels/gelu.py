"""GELU (the exact, erf form) of a float32 tensor."""

import torch


class Model(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.gelu(x)


SHAPE = (1024, 1024)


def get_inputs() -> list[torch.Tensor]:
    return [torch.randn(*SHAPE) * 3]


def get_init_inputs() -> list[int]:
    return []
