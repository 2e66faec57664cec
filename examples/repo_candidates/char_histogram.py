def char_histogram(text: str) -> dict[str, int]:
    """How often each character occurs, in order of first appearance."""
    hist: dict[str, int] = {}
    for ch in text:
        hist[ch] = hist.get(ch, 0) + 1
    return hist
