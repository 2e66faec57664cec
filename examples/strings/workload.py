from strings import render_rows


def run() -> None:
    rows = [(f"key{i}", i * 7) for i in range(20000)]
    for _ in range(5):
        render_rows(rows)
