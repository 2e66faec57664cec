"""A pure-Python numeric loop: the sum of squared differences from the mean."""


def variance(values: list[float]) -> float:
    if not values:
        return 0.0
    total = 0.0
    for v in values:
        total += v
    mean = total / len(values)
    acc = 0.0
    for i in range(len(values)):
        acc = acc + (values[i] - mean) * (values[i] - mean)
    return acc / len(values)
