def find_duplicates(words: list[str]) -> list[str]:
    # fast, but the order of the duplicates changes: verification must reject it
    seen: set[str] = set()
    dupes: set[str] = set()
    for word in words:
        if word in seen:
            dupes.add(word)
        seen.add(word)
    return sorted(dupes)
