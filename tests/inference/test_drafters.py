from __future__ import annotations

from perfsmith.inference.drafters import AdaptiveNgramDrafter, PromptLookupDrafter


def test_prompt_lookup_continues_the_latest_match_of_the_longest_suffix() -> None:
    drafter = PromptLookupDrafter(max_ngram=3, max_draft=3)
    context = [1, 2, 3, 9, 9, 1, 2, 3, 4, 5, 6, 1, 2, 3]
    assert drafter.propose(context) == ([4, 5, 6], None)
    assert drafter.propose([7, 8]) == ([], None)


def test_adaptive_drafter_learns_online_and_shortens_drafts_after_rejections() -> None:
    drafter = AdaptiveNgramDrafter(max_draft=12, min_draft=2)
    context = [5, 6, 7, 8] * 6 + [5]
    draft, _ = drafter.propose(context)
    assert draft[:3] == [6, 7, 8]
    long = drafter.draft_length
    for _ in range(10):
        drafter.feedback(len(draft), 0)
    assert drafter.draft_length < long
    assert drafter.draft_length >= 2
    for _ in range(20):
        drafter.feedback(10, 10)
    assert drafter.draft_length == 12


def test_adaptive_drafter_resets_for_a_new_sequence() -> None:
    drafter = AdaptiveNgramDrafter()
    drafter.propose([1, 2, 3] * 5)
    drafter.propose([4])  # shorter than what it has seen: a new sequence
    assert drafter.propose([4, 1, 2]) == ([], None)
