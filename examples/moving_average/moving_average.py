"""A naive moving average: every window is summed from scratch (O(n * window))."""


def moving_average(values: list[float], window: int) -> list[float]:
    if window <= 0:
        raise ValueError("window must be positive")
    out = []
    for i in range(len(values) - window + 1):
        total = 0.0
        for j in range(i, i + window):
            total += values[j]
        out.append(total / window)
    return out
