"""LayerNorm over the last dimension, with learned weight and bias."""

import torch


class Model(torch.nn.Module):
    def __init__(self, features: int) -> None:
        super().__init__()
        self.norm = torch.nn.LayerNorm(features)
        with torch.no_grad():  # not the identity affine map: the kernel must apply them
            self.norm.weight.uniform_(0.5, 1.5)
            self.norm.bias.uniform_(-0.5, 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x)


ROWS, FEATURES = 512, 2048


def get_inputs() -> list[torch.Tensor]:
    return [torch.randn(ROWS, FEATURES) * 2 + 1]


def get_init_inputs() -> list[int]:
    return [FEATURES]
