import random

from textstats.core import char_histogram, summary, unique_words


def corpus(n: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    return " ".join(f"w{rng.randrange(n // 2)}" for _ in range(n))


def test_unique_words_keeps_first_appearance_order() -> None:
    assert unique_words("b a b c a") == ["b", "a", "c"]
    assert len(unique_words(corpus(3000))) <= 1500


def test_char_histogram_counts() -> None:
    assert char_histogram("abca") == {"a": 2, "b": 1, "c": 1}
    text = corpus(2000)
    assert sum(char_histogram(text).values()) == len(text)


def test_summary() -> None:
    assert summary("a b a") == "2 distinct words, 3 distinct characters"
