"""The status and verdict vocabulary as the site shows it: badges, labels, CSS classes.

The statuses themselves (`STATUSES`, `Status`, `paper_status`) are defined once in
`catalog.compare`, where the nightly's report reads them too; this module adds what only pages
need: the CSS class of each status badge and the printed label of each verdict.
"""

from __future__ import annotations

import re

from catalog.compare import PENDING, SCALE_RANK, STATUSES, Status, paper_status

__all__ = [
    "PENDING",
    "SCALE_ORDER",
    "STATUSES",
    "VERDICT_LABELS",
    "Status",
    "paper_status",
    "status_css",
]

VERDICT_LABELS = {
    "match": "match",
    "deviates": "deviates",
    "not_compared": "not compared",
    "not_run": "not run",
    "measured": "measured",
}
#: full first: pages show the best scale first (catalog.compare's order)
SCALE_ORDER = SCALE_RANK


def status_css(label: str) -> str:
    """CSS class for a status label; the one place colours are tied to the vocabulary."""
    return "status-" + re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")
