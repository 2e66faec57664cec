import random

from dupes import find_duplicates


def run() -> None:
    rng = random.Random(0)
    words = [f"w{rng.randrange(1500)}" for _ in range(3000)]
    for _ in range(3):
        find_duplicates(words)
