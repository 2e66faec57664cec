import random

from numeric import variance


def run() -> None:
    rng = random.Random(0)
    values = [rng.random() for _ in range(200000)]
    for _ in range(5):
        variance(values)
