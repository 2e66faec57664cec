"""Linear layer, bias, then ReLU: relu(x @ W.T + b)."""

import torch


class Model(torch.nn.Module):
    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(in_features, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.linear(x))


BATCH, IN, OUT = 256, 512, 512


def get_inputs() -> list[torch.Tensor]:
    return [torch.randn(BATCH, IN)]


def get_init_inputs() -> list[int]:
    return [IN, OUT]
