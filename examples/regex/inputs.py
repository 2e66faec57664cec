import random


def generate(seed: int) -> list[tuple[list[str]]]:
    rng = random.Random(seed)
    kinds = ["[ERROR] disk", "[INFO] ok", "[FATAL] boom", "[WARN] hmm", "ERROR no"]
    return [([rng.choice(kinds) + str(i) for i in range(n)],) for n in (0, 3, 2000)]
