"""Looping model output is cut back to what it said once, and flagged."""

from perfsmith.llm.degenerate import cut_repetition


def test_a_sentence_repeated_twenty_times_is_said_once() -> None:
    text = "The fastest candidate is 3. " * 20 + "It is verified."
    cut = cut_repetition(text)
    assert cut.cut
    assert cut.text == "The fastest candidate is 3. It is verified. [repetition cut]"


def test_a_phrase_loop_without_punctuation_is_cut_at_its_first_round() -> None:
    cut = cut_repetition("use a set " * 30)
    assert cut.cut and cut.text == "use a set [repetition cut]"


def test_ordinary_answers_are_left_alone() -> None:
    text = (
        "Candidate 2 (catalogue) is 41x faster. Candidate 3 was incorrect on input #1. "
        "Candidate 4 was slower."
    )
    assert cut_repetition(text).text == text and not cut_repetition(text).cut
    assert not cut_repetition("").cut
