import random


def generate(seed: int) -> list[tuple[list[float]]]:
    rng = random.Random(seed)
    return [([rng.uniform(-1e3, 1e3) for _ in range(n)],) for n in (0, 1, 10, 5000)]
