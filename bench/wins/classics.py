"""Classic slow Python functions, each with its input generator (`gen_<name>`): the
targets of bench/wins.py. Written the way they are met in real code, not tuned for any
rule; a few have patterns perfsmith's catalogue does not cover."""

import math
import random
import re


def intersect(a: list[int], b: list[int]) -> list[int]:
    return [x for x in a if x in b]


def gen_intersect(seed: int) -> list[tuple[list[int], list[int]]]:
    rng = random.Random(seed)
    return [([], [])] + [
        ([rng.randrange(500) for _ in range(n)], [rng.randrange(500) for _ in range(n)])
        for n in (5, 400, 2000)
    ]


def word_histogram(words: list[str]) -> dict[str, int]:
    return {w: words.count(w) for w in words}


def gen_word_histogram(seed: int) -> list[tuple[list[str]]]:
    rng = random.Random(seed)
    return [([],)] + [([f"w{rng.randrange(300)}" for _ in range(n)],) for n in (10, 1500)]


def ordered_unique(items: list[int]) -> list[int]:
    seen = []
    for x in items:
        if x not in seen:
            seen.append(x)
    return seen


def gen_ordered_unique(seed: int) -> list[tuple[list[int]]]:
    rng = random.Random(seed)
    return [([],)] + [([rng.randrange(n) for _ in range(n)],) for n in (3, 3000)]


def bfs_order(graph: dict[int, list[int]], start: int) -> list[int]:
    queue = [start]
    seen = {start}
    order = []
    while queue:
        node = queue.pop(0)
        order.append(node)
        for nxt in graph.get(node, []):
            if nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    return order


def gen_bfs_order(seed: int) -> list[tuple[dict[int, list[int]], int]]:
    rng = random.Random(seed)
    cases = []
    for n in (1, 20, 20000):
        graph = {i: [rng.randrange(n) for _ in range(3)] for i in range(n)}
        cases.append((graph, 0))
    return cases


def reversed_squares(xs: list[int]) -> list[int]:
    out = []
    for x in xs:
        out.insert(0, x * x)
    return out


def gen_reversed_squares(seed: int) -> list[tuple[list[int]]]:
    rng = random.Random(seed)
    return [([],)] + [([rng.randrange(-99, 99) for _ in range(n)],) for n in (3, 6000)]


def render_table(rows: list[tuple[str, float]]) -> str:
    text = ""
    for name, value in rows:
        text = text + name + ": " + format(value, ".2f") + "\n"
    return text


def gen_render_table(seed: int) -> list[tuple[list[tuple[str, float]]]]:
    rng = random.Random(seed)
    return [([],)] + [([(f"row{i}", rng.random() * 100) for i in range(n)],) for n in (2, 8000)]


def smallest_ten(xs: list[float]) -> list[float]:
    return sorted(xs)[:10]


def gen_smallest_ten(seed: int) -> list[tuple[list[float]]]:
    rng = random.Random(seed)
    return [([],)] + [([rng.random() for _ in range(n)],) for n in (5, 20000)]


def value_range(xs: list[int]) -> int:
    return sorted(xs)[-1] - sorted(xs)[0]


def gen_value_range(seed: int) -> list[tuple[list[int]]]:
    rng = random.Random(seed)
    return [([rng.randrange(10**6) for _ in range(n)],) for n in (1, 20000)]


def grid_paths(rows: int, cols: int) -> int:
    if rows == 0 or cols == 0:
        return 1
    return grid_paths(rows - 1, cols) + grid_paths(rows, cols - 1)


def gen_grid_paths(seed: int) -> list[tuple[int, int]]:
    return [(0, 4), (3, 3), (8, 7), (10, 9)]


def join_orders(orders: list[dict[str, int]], users: list[dict[str, int]]) -> list[tuple[int, int]]:
    out = []
    for order in orders:
        for user in users:
            if user["id"] == order["user"]:
                out.append((order["amount"], user["tier"]))
    return out


def gen_join_orders(seed: int) -> list[tuple[list[dict[str, int]], list[dict[str, int]]]]:
    rng = random.Random(seed)
    users = [{"id": i, "tier": rng.randrange(3)} for i in range(600)]
    orders = [{"user": rng.randrange(700), "amount": rng.randrange(100)} for _ in range(600)]
    return [([], users), (orders, users)]


def window_sums(xs: list[int], k: int) -> list[int]:
    return [sum(xs[i : i + k]) for i in range(len(xs) - k + 1)]


def gen_window_sums(seed: int) -> list[tuple[list[int], int]]:
    rng = random.Random(seed)
    return [([], 3)] + [
        ([rng.randrange(-50, 50) for _ in range(n)], k) for n, k in ((10, 3), (4000, 200))
    ]


def normalize(xs: list[float]) -> list[float]:
    return [x / max(xs) for x in xs]


def gen_normalize(seed: int) -> list[tuple[list[float]]]:
    rng = random.Random(seed)
    return [([],)] + [([rng.random() + 0.1 for _ in range(n)],) for n in (3, 3000)]


def count_words(words: list[str]) -> dict[str, int]:
    counts = {}
    for w in words:
        if w in counts:
            counts[w] += 1
        else:
            counts[w] = 1
    return counts


def gen_count_words(seed: int) -> list[tuple[list[str]]]:
    rng = random.Random(seed)
    return [([],)] + [([f"w{rng.randrange(2000)}" for _ in range(n)],) for n in (5, 50000)]


def positions(items: list[str], wanted: list[str]) -> list[int]:
    return [items.index(w) for w in wanted]


def gen_positions(seed: int) -> list[tuple[list[str], list[str]]]:
    rng = random.Random(seed)
    items = [f"k{i}" for i in range(3000)]
    return [(items, [f"k{rng.randrange(3000)}" for _ in range(n)]) for n in (1, 1000)]


def distances(points: list[tuple[float, float]]) -> list[float]:
    out = []
    for x, y in points:
        out.append(math.sqrt(x * x + y * y))
    return out


def gen_distances(seed: int) -> list[tuple[list[tuple[float, float]]]]:
    rng = random.Random(seed)
    return [([(rng.random(), rng.random()) for _ in range(n)],) for n in (0, 50000)]


def error_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if re.match(r"^\[(ERROR|FATAL)\] \w+", line)]


def gen_error_lines(seed: int) -> list[tuple[list[str]]]:
    rng = random.Random(seed)
    kinds = ["[ERROR] disk", "[INFO] ok", "[FATAL] cpu", "[WARN] slow"]
    return [([rng.choice(kinds) + str(i) for i in range(n)],) for n in (0, 30000)]


def sum_of_squares(xs: list[int]) -> int:
    total = 0
    for x in xs:
        total += x * x
    return total


def gen_sum_of_squares(seed: int) -> list[tuple[list[int]]]:
    rng = random.Random(seed)
    return [([rng.randrange(-1000, 1000) for _ in range(n)],) for n in (0, 100000)]


def without_stopwords(words: list[str], stop: list[str]) -> list[str]:
    kept = []
    for w in words:
        if w.lower() not in [s.lower() for s in stop]:
            kept.append(w)
    return kept


def gen_without_stopwords(seed: int) -> list[tuple[list[str], list[str]]]:
    rng = random.Random(seed)
    stop = [f"S{i}" for i in range(150)]
    return [([], stop)] + [
        ([rng.choice(["s3", "Word", "s140", "x"]) for _ in range(n)], stop) for n in (4, 3000)
    ]


TARGETS = [
    "intersect",
    "word_histogram",
    "ordered_unique",
    "bfs_order",
    "reversed_squares",
    "render_table",
    "smallest_ten",
    "value_range",
    "grid_paths",
    "join_orders",
    "window_sums",
    "normalize",
    "count_words",
    "positions",
    "distances",
    "error_lines",
    "sum_of_squares",
    "without_stopwords",
]
