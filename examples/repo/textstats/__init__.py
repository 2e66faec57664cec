"""A small text-statistics package with two slow functions, for `perfsmith optimize-repo`."""
