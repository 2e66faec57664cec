"""String building in a loop: each += copies the whole string built so far."""


def render_rows(rows: list[tuple[str, int]]) -> str:
    out = ""
    for name, value in rows:
        out = out + name + "=" + str(value) + ";\n"
    return out
