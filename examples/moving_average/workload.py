from moving_average import moving_average


def run() -> None:
    values = [float(i % 97) for i in range(20000)]
    moving_average(values, 100)
