import random


def generate(seed: int) -> list[tuple[list[tuple[str, int]]]]:
    rng = random.Random(seed)
    return [([(f"k{i}", rng.randrange(10**6)) for i in range(n)],) for n in (0, 1, 100, 5000)]
