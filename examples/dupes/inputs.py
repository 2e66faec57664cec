import random


def generate(seed: int) -> list[tuple[list[str]]]:
    rng = random.Random(seed)
    cases = []
    for size in (0, 1, 50, 800, 2000):
        cases.append(([f"w{rng.randrange(max(1, size // 2))}" for _ in range(size)],))
    return cases
