def unique_words(text: str) -> list[str]:
    """The words of `text` in order of first appearance."""
    return list(dict.fromkeys(text.split()))
