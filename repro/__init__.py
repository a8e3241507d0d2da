"""advrepro's reproductions: the shared toolkit (data, training, recording, runner) and one folder
per paper (`repro/<slug>/`).

Kept light on purpose: importing `repro` (or `repro.expected`, `repro.config`, `repro.cli`) does
not import torch, so `repro list` starts fast and `catalog` may reuse the light modules; torch is
imported by the modules that need it (`repro.data`, `repro.env`, `repro.train`, the papers).
"""

__all__ = ["ReproError"]


class ReproError(Exception):
    """A user-facing error: the CLI prints its message as one line and exits non-zero.

    The message names the file, line, key or option at fault where it can
    (``repro/fgsm/expected.csv:7: column 'paper': 'n/a' is not a number``).
    """
