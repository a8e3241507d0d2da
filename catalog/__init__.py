"""advrepro's literature catalog: papers, reading lists, reviews, reproductions and their runs.

Kept free of heavy imports (no torch) so that `catalog` commands start fast.
"""

__all__ = ["CatalogError"]


class CatalogError(Exception):
    """A user-facing error: the CLI prints its message as one line and exits non-zero.

    The message names the file, line and key where it can (``papers/references.bib:12: key X: ...``).
    """
