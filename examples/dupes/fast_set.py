def find_duplicates(words: list[str]) -> list[str]:
    seen: set[str] = set()
    added: set[str] = set()
    dupes = []
    for word in words:
        if word in seen:
            if word not in added:
                added.add(word)
                dupes.append(word)
        else:
            seen.add(word)
    return dupes
