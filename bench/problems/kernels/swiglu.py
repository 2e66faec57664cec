"""SwiGLU's gate: silu(a) * b, elementwise over two (rows, cols) float32 matrices."""

import torch


class Model(torch.nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.silu(a) * b


def get_inputs() -> list[torch.Tensor]:
    return [torch.randn(1024, 2048), torch.randn(1024, 2048)]


def get_init_inputs() -> list[int]:
    return []
