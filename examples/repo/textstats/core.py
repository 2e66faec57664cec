"""Word and character statistics (written the slow way on purpose)."""


def unique_words(text: str) -> list[str]:
    """The words of `text` in order of first appearance (a list scan per word)."""
    out: list[str] = []
    for word in text.split():
        if word not in out:
            out.append(word)
    return out


def char_histogram(text: str) -> dict[str, int]:
    """How often each character occurs (counts the whole text again for every character)."""
    hist: dict[str, int] = {}
    for ch in text:
        hist[ch] = text.count(ch)
    return hist


def summary(text: str) -> str:
    words = unique_words(text)
    hist = char_histogram(text)
    return f"{len(words)} distinct words, {len(hist)} distinct characters"
