"""A quadratic duplicate finder: `seen` and `dupes` are lists, so each lookup scans them."""


def find_duplicates(words: list[str]) -> list[str]:
    seen = []
    dupes = []
    for word in words:
        if word in seen:
            if word not in dupes:
                dupes.append(word)
        else:
            seen.append(word)
    return dupes
