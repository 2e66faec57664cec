from regex_count import count_errors


def run() -> None:
    lines = [("[ERROR] x" if i % 7 == 0 else "[INFO] fine") for i in range(100000)]
    for _ in range(3):
        count_errors(lines)
