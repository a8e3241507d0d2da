"""The static website of the catalog (`catalog publish --out DIR`), built from the database.

Why a static site: it is how most people meet the project, it must open from `file://` and from
GitHub Pages, and it must be diffable. Split by concern:

    load.py      the database -> views (papers, lists, runs, reproductions, scoreboard); each
                 expected row at the best scale that ran (catalog.compare.best_per_row)
    pivot.py     each source table in the shape the paper printed it (repro.toml [site.tables],
                 else an inferred layout), ours in every cell, rows not run folded
    adaptive.py  our adaptive attacks (`adaptive.<row>.<attack>` metrics) beside their rows
    tables.py    expected vs measured and the cross-paper comparison (catalog.compare's DataFrames)
    charts.py    SVG laid out at build time: run history, "paper vs ours" scatter, verdict bars
    markdown.py  markdown-it rendering and nh3 sanitising (notes, reviews, notebooks)
    text.py      number and time formatting, safe file names
    status.py    status badges and verdict labels (the statuses are catalog.compare's)
    images.py    PNG sizes
    views.py     the dataclasses the templates receive
    write.py     templates, figures, notebooks, search index; `publish()`
    screenshots.py  full-page PNGs of the built site in Chromium (`publish --screenshots DIR`)

Dependency direction: sitebuilder -> catalog, never the reverse; only `catalog publish` (imported
inside the command) and nox reach this package, so pandas, Jinja and nbconvert stay out of
`catalog list`'s start-up.
"""

from sitebuilder.views import PublishReport
from sitebuilder.write import publish

__all__ = ["PublishReport", "publish"]
