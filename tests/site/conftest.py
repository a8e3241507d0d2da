"""A small hand-made catalog for the site tests: papers, lists, a review, reproductions, runs.

Built directly with the SQLModel tables and `catalog.runs.store_run` (no `catalog sync`, no runner),
so the site tests depend only on the schema and the summary.json contract. It contains what the
site must handle: every status of the vocabulary, a failed run with its traceback, a run without
its directory, an unresolved list entry, a method-only reproduction, and XSS probes in a title, a
note, the review and a notebook output.
"""

from __future__ import annotations

import base64
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from catalog.db import session_scope
from catalog.models import (
    Author,
    ExpectedResult,
    ListEntry,
    Paper,
    PaperAuthor,
    ReadingList,
    Reproduction,
    Review,
)
from catalog.runs import store_run

DG = "2018_Samangouei_P_p-iclr_dpcaaugm"
FGSM = "2015_Goodfellow_I_p-iclr_ehae"
MADRY = "2018_Madry_A_p-iclr_tdlmrtaa"
CW = "2017_Carlini_N_p-sp_tertnn"
PAPERNOT = "2017_Papernot_N_p-asiaccs_pbaaml"
SAP = "2018_Dhillon_G_p-iclr_saprad"
PROBE = "2019_Probe_E_arxiv_xss"
XSS_TITLE = '<img src=x onerror="window.__xss=1">'
XSS_NOTE = "<script>window.__xss=1</script> SAP prunes a random subset of activations."

STATUS_OF = {
    DG: "reproduced at reduced scale",
    FGSM: "partial",
    MADRY: "reproduced",
    PAPERNOT: "not reproduced",
    SAP: "pending",
    PROBE: "pending",
    CW: "pending",
}


def tiny_png(width: int = 3, height: int = 2) -> bytes:
    """A valid RGB PNG of the given size (red), written by hand: no imaging library needed."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    raw = b"".join(b"\x00" + b"\xcc\x22\x22" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def write_notebook(path: Path, slug: str) -> None:
    """An 'executed' notebook with a stream, an embedded PNG and a hostile HTML output."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

    png = base64.b64encode(tiny_png(4, 4)).decode()
    nb = new_notebook(
        cells=[
            new_markdown_cell(f"# Reproduce {slug}\n\nSee <script>window.__xss=1</script> here."),
            new_code_cell(
                "print('accuracy', 0.91)",
                execution_count=1,
                outputs=[new_output("stream", name="stdout", text="accuracy 0.91\n")],
            ),
            new_code_cell(
                "show()",
                execution_count=2,
                outputs=[
                    new_output("display_data", data={"image/png": png, "text/plain": "<Figure>"}),
                    new_output(
                        "display_data",
                        data={
                            "text/html": '<b>table</b><img src="https://evil.example/x.png" '
                            'onerror="window.__xss=1"><script>window.__xss=1</script>',
                            "text/plain": "table",
                        },
                    ),
                ],
            ),
        ]
    )
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))


def run_summary(
    run_id: str,
    slug: str,
    scale: str,
    started: str,
    *,
    status: str = "succeeded",
    rows: list[dict[str, Any]] | None = None,
    claims: list[dict[str, Any]] | None = None,
    metrics: list[dict[str, Any]] | None = None,
    figures: list[dict[str, Any]] | None = None,
    error: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    summary = {
        "schema_version": 1,
        "run_id": run_id,
        "slug": slug,
        "scale": scale,
        "status": status,
        "seed": 0,
        "parameters": {"scale": scale, "device": "cpu", "seed": 0},
        "started_at": started,
        "finished_at": started,
        "wall_seconds": 83.5,
        "provenance": {
            "git_commit": "0123456789abcdef0123",
            "git_dirty": False,
            "device": "cpu" if scale != "full" else "NVIDIA H100 80GB HBM3",
            "host": "runner-1",
            "python": "3.11.7",
            "torch": "2.9.0",
            "torchvision": "0.24.0",
            "cuda": None if scale != "full" else "12.8",
            "executor": "local",
        },
        "notebook": "reproduce.ipynb",
        "error": error,
        "rows": rows or [],
        "metrics": metrics or [],
        "claims": claims or [],
        "figures": figures or [],
    }
    summary.update(extra)
    return summary


def _row(row_id: str, value: float | None, paper: float, verdict: str, **extra: Any) -> dict:
    delta = None if value is None else round(value - paper, 6)
    return {
        "id": row_id,
        "value": value,
        "paper": paper,
        "tolerance": 0.03,
        "delta": delta,
        "verdict": verdict,
        "reason": extra.pop("reason", None),
        **extra,
    }


def _paper(session, key, title, year, venue, authors, **fields) -> None:
    bibtex = fields.pop("bibtex", None) or (
        f"@inproceedings{{{key},\n  title = {{{title}}},\n  year = {{{year}}},\n}}"
    )
    session.add(Paper(key=key, title=title, year=year, venue=venue, bibtex=bibtex, **fields))
    session.flush()
    for position, name in enumerate(authors):
        author = session.exec(select(Author).where(Author.name == name)).first()
        if author is None:
            author = Author(name=name, last_name=name.split()[-1])
            session.add(author)
            session.flush()
        session.add(PaperAuthor(paper_key=key, author_id=author.id, position=position))


#: repro.toml's [site] tables (sync stores the whole repro.toml as `Reproduction.config`);
#: FGSM and Madry declare none, so their tables and headlines are inferred
SITE_CONFIG = {
    "defense_gan": {
        "site": {
            "headline": "t4_mnist_fgsm_a_rec",
            "tables": {"Table 4": {"rows": ["model", "attack"], "columns": ["defense"]}},
        }
    }
}
#: our adaptive attack on the Fashion-MNIST Defense-GAN-Rec row (catalog.compare.adaptive_target),
#: its attack name a script probe
ADAPTIVE = "adaptive.t4_fmnist_fgsm_a_rec.bpda_pgd<script>window.__xss=1</script>"
#: the shared robustness battery (repro.robust_eval) on the Madry full run: the paper's attack
#: (PGD-40) 9.2 points above the worst case, so flagged; a second model with no paper attack
ROBUSTNESS_METRICS = [
    {"name": "robustness.pgd_at.eps", "value": 0.3},
    {"name": "robustness.pgd_at.clean", "value": 98.5},
    {"name": "robustness.pgd_at.paper", "value": 89.9},
    {"name": "robustness.pgd_at.pgd100", "value": 88.1},
    {"name": "robustness.pgd_at.pgd100.ci95_low", "value": 86.0},
    {"name": "robustness.pgd_at.pgd100.ci95_high", "value": 90.2},
    {"name": "robustness.pgd_at.autoattack", "value": 80.7},
    {"name": "robustness.pgd_at.worst", "value": 80.7},
    {"name": "robustness.pgd_at.gap", "value": 9.2},
    {"name": "robustness.natural.eps", "value": 0.3},
    {"name": "robustness.natural.clean", "value": 99.2},
    {"name": "robustness.natural.worst", "value": 0.0},
    {"name": "cost.pgd_at.epoch_seconds_same_batches", "value": 41.5},
    {"name": "cost.pgd_at.epoch_seconds", "value": 60.0},
    {"name": "cost.natural.epoch_seconds", "value": 5.25},
]

#: each metric's unit, as a repro.toml's [metrics] declares it (sync stores it on the row)
UNIT_OF = {
    "accuracy": "fraction",
    "accuracy_pct": "percent",
    "error_pct": "percent",
    "seconds_per_image": "seconds",
}


def _expected(session, slug: str, rows: list[tuple]) -> None:
    """Expected rows: (id, source, dataset, metric, paper, setting, provenance[, columns]), where
    the optional `columns` sets `status` / `paper_std` (expected.csv's columns of the number)."""
    for position, row in enumerate(rows):
        row_id, source, dataset, metric, paper, setting, provenance = row[:7]
        session.add(
            ExpectedResult(
                slug=slug,
                row_id=row_id,
                position=position,
                source=source,
                dataset=dataset,
                metric=metric,
                unit=UNIT_OF[metric],
                paper_value=paper,
                tolerance=0.03 if metric == "accuracy" else 2.0,
                provenance=provenance,
                setting=setting,
                **(row[7] if len(row) > 7 else {}),
            )
        )


def make_catalog(url: str, runs_dir: Path, *, only: set[str] | None = None) -> None:
    """Fill the empty catalog at `url`; write run directories under `runs_dir`.

    `only` restricts the reproductions (and their papers' runs) to those slugs.
    """
    want = lambda slug: only is None or slug in only  # noqa: E731
    with session_scope(url) as s:
        _paper(
            s,
            DG,
            "Defense-GAN: Protecting Classifiers Against Adversarial Attacks Using Generative Models",
            2018,
            "ICLR",
            ["Pouya Samangouei", "Maya Kabkab", "Rama Chellappa"],
            venue_kind="conference",
            arxiv_id="1805.06605",
            code_url="https://github.com/kabkabm/defensegan",
            abstract="Projects inputs onto the range of a generator before classifying them.",
        )
        _paper(
            s,
            FGSM,
            "Explaining and Harnessing Adversarial Examples",
            2015,
            "ICLR",
            ["Ian J. Goodfellow", "Jonathon Shlens", "Christian Szegedy"],
            arxiv_id="1412.6572",
            abstract="The linearity hypothesis and the fast gradient sign method.",
        )
        _paper(
            s,
            MADRY,
            "Towards Deep Learning Models Resistant to Adversarial Attacks",
            2018,
            "ICLR",
            ["Aleksander Madry", "Aleksandar Makelov", "Ludwig Schmidt", "Dimitris Tsipras",
             "Adrian Vladu"],
            arxiv_id="1706.06083",
            doi="10.48550/arXiv.1706.06083",
        )  # fmt: skip
        _paper(
            s, CW, "Towards Evaluating the Robustness of Neural Networks", 2017, "IEEE S&P",
            ["Nicholas Carlini", "David Wagner"],
        )  # fmt: skip
        _paper(
            s, PAPERNOT, "Practical Black-Box Attacks against Machine Learning", 2017,
            "AsiaCCS", ["Nicolas Papernot", "Patrick McDaniel", "Ian J. Goodfellow"],
        )  # fmt: skip
        _paper(
            s, SAP, "Stochastic Activation Pruning for Robust Adversarial Defense", 2018, "ICLR",
            ["Guneet S. Dhillon", "Anima Anandkumar"],
        )  # fmt: skip
        _paper(
            s,
            PROBE,
            XSS_TITLE,
            2019,
            "arXiv",
            ["Éva Probé"],
            venue_kind="preprint",
            abstract='An abstract with <b onmouseover="window.__xss=1">markup</b> and zebrafish.',
        )
        s.add(
            Review(
                paper_key=DG,
                source_file=f"papers/reviews/{DG}.md",
                front_matter={"reviewer": "advrepro", "date": "2026-11-21", "title": "ignored"},
                body=(
                    "# Defense-GAN\n\nWe quote arXiv 1805.06605v2.\n\n## What held\n\n"
                    "Text <script>window.__xss=1</script> and <img src=x onerror=alert(1)>.\n\n"
                    "A [paper link](https://arxiv.org/abs/1805.06605), a [relative link](../repro/x.md),"
                    " a [bad link](javascript:alert(1)) and ![remote](http://evil.example/x.png).\n\n"
                    "#### Deep heading\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"
                ),
            )
        )
        s.add(
            ReadingList(
                slug="adversarial-robustness",
                title="Adversarial Robustness",
                format="review-list",
                source_file="papers/lists/000_a0d081c71b00c22e.txt",
                description="A short list with a review paragraph per paper.",
            )
        )
        s.add(
            ReadingList(
                slug="lecture-13",
                title="Theories of Deep Learning, lecture 13",
                format="lecture",
                source_file="papers/lists/001_900e14a43f1f4880.txt",
            )
        )
        s.flush()
        entries = [
            (
                "adversarial-robustness",
                1,
                DG,
                "Projects inputs onto the **range** of G; see [@2015_Goodfellow_I_p-iclr_ehae]"
                " and [@1999_Nobody_X_none].",
            ),
            ("adversarial-robustness", 2, SAP, XSS_NOTE),
            ("adversarial-robustness", 3, None, None),
            ("lecture-13", 1, FGSM, "Slide: FGSM (Goodfellow et al. 15')"),
            ("lecture-13", 2, MADRY, None),
            ("lecture-13", 3, DG, "Defense-GAN slide"),
            ("lecture-13", 4, PROBE, '<img src=x onerror="window.__xss=1"> probe note'),
        ]
        for list_slug, position, key, note in entries:
            s.add(
                ListEntry(
                    list_slug=list_slug,
                    position=position,
                    paper_key=key,
                    note=note,
                    cited_title=None if key else "Model Compression with Adversarial Robustness",
                    cited_url=None if key else "https://arxiv.org/abs/1903.12561",
                )
            )

        repros = [
            ("defense_gan", DG, ["carlini_wagner", "fgsm"], True),
            ("fgsm", FGSM, [], True),
            ("madry_pgd", MADRY, ["fgsm"], True),
            ("carlini_wagner", CW, [], False),
            ("papernot_blackbox", PAPERNOT, ["fgsm"], True),
        ]
        for slug, key, uses, has_notebook in repros:
            if not want(slug):
                continue
            s.add(
                Reproduction(
                    slug=slug,
                    paper_key=key,
                    title=slug.replace("_", " "),
                    uses=[u for u in uses if want(u)],
                    datasets=["mnist", "fashion_mnist"],
                    needs_gpu=slug == "defense_gan",
                    has_notebook=has_notebook,
                    path=f"repro/{slug}",
                    config=SITE_CONFIG.get(slug, {}),
                )
            )
        s.flush()
        fgsm_set = {"attack": "fgsm", "eps": 0.3}
        p10 = "arXiv 1805.06605v2 p.10 [P]"
        if want("defense_gan"):
            _expected(
                s,
                "defense_gan",
                [
                    ("t4_mnist_fgsm_a_none", "Table 4", "mnist", "accuracy", 0.217,
                     {**fgsm_set, "model": "A", "defense": "none"}, p10),
                    ("t4_mnist_fgsm_a_rec", "Table 4", "mnist", "accuracy", 0.988,
                     {**fgsm_set, "model": "A", "defense": "defense_gan_rec", "L": 200, "R": 10},
                     p10),
                    ("t4_mnist_fgsm_a_magnet", "Table 4", "mnist", "accuracy", 0.191,
                     {**fgsm_set, "model": "A", "defense": "magnet"}, p10),
                    ("t4_fmnist_fgsm_a_rec", "Table 4", "fashion_mnist", "accuracy", 0.896,
                     {**fgsm_set, "model": "A", "defense": "defense_gan_rec"}, p10,
                     {"paper_std": 0.0017}),
                    ("t13_seconds", "Table 13", "mnist", "seconds_per_image", 0.675, {},
                     "unverified: read off a blurry scan"),
                ],
            )  # fmt: skip
        if want("fgsm"):
            _expected(
                s,
                "fgsm",
                [
                    ("mnist_maxout_fgsm_error", "Section 5", "mnist", "error_pct", 89.4,
                     {"attack": "fgsm", "eps": 0.25, "model": "maxout", "training": "natural"},
                     "arXiv 1412.6572v3 p.4"),
                    ("mnist_maxout_advtrain_error", "Section 5", "mnist", "error_pct", 17.9,
                     {"attack": "fgsm", "eps": 0.25, "model": "maxout",
                      "training": "fgsm adversarial (alpha 0.5)"},
                     "unverified: recollection"),
                ],
            )  # fmt: skip
        if want("madry_pgd"):
            _expected(
                s,
                "madry_pgd",
                [
                    ("mnist_pgd_acc", "Table 1", "mnist", "accuracy_pct", 89.3,
                     {"attack": "pgd", "eps": 0.3, "model": "madry_cnn", "defense": "madry_pgd"},
                     "arXiv 1706.06083v4 Table 1"),
                    ("mnist_fgsm_acc", "Table 1", "mnist", "accuracy_pct", 95.6,
                     {**fgsm_set, "model": "madry_cnn", "defense": "madry_pgd"},
                     "arXiv 1706.06083v4 Table 1"),
                ],
            )  # fmt: skip
        if want("papernot_blackbox"):
            _expected(
                s,
                "papernot_blackbox",
                [("mnist_substitute_acc", "Table 2", "mnist", "accuracy_pct", 81.2,
                  {"attack": "substitute_fgsm"}, "arXiv 1602.02697 Table 2")],
            )  # fmt: skip
        s.flush()

        def store(summary: dict[str, Any], *, with_dir: bool = True) -> None:
            run_dir = runs_dir / summary["slug"] / summary["run_id"]
            if with_dir:
                (run_dir / "figures").mkdir(parents=True, exist_ok=True)
                for fig in summary["figures"]:
                    if "missing" not in fig["path"]:  # one figure is deliberately absent
                        (run_dir / fig["path"]).write_bytes(tiny_png(6, 4))
                write_notebook(run_dir / "reproduce.ipynb", summary["slug"])
            store_run(s, summary, str(run_dir) if with_dir else None)

        if want("defense_gan"):
            store(
                run_summary(
                    "20261120T010000Z-defense_gan-smoke-aaaaaa", "defense_gan", "smoke",
                    "2026-11-20T01:00:00+00:00",
                    rows=[
                        _row("t4_mnist_fgsm_a_none", 0.31, 0.217, "not_compared",
                             reason="reduced scale"),
                        _row("t4_mnist_fgsm_a_rec", 0.71, 0.988, "not_compared",
                             reason="reduced scale"),
                    ],
                    claims=[{"id": "rec_beats_none", "text": "Defense-GAN-Rec beats no defense",
                             "holds": True, "detail": "0.71 > 0.31"}],
                    figures=[{"path": "figures/recon.png", "caption": "Smoke reconstructions"}],
                )
            )  # fmt: skip
            store(
                run_summary(
                    "20261121T020000Z-defense_gan-small-bbbbbb", "defense_gan", "small",
                    "2026-11-21T02:00:00+00:00",
                    rows=[
                        _row("t4_mnist_fgsm_a_none", 0.25, 0.217, "not_compared",
                             reason="measured on mnist-test-split", changed=True,
                             change="value 0.31 → 0.25 (tolerance 0.03)"),
                        _row("t4_mnist_fgsm_a_rec", 0.93, 0.988, "not_compared",
                             reason="reduced scale"),
                        _row("t4_mnist_fgsm_a_magnet", None, 0.191, "not_run",
                             reason="no MagNet implementation here <script>window.__xss=1</script>"),
                        _row("t4_fmnist_fgsm_a_rec", 0.81, 0.896, "not_compared",
                             reason="reduced scale"),
                    ],
                    claims=[
                        {"id": "rec_beats_none", "text": "Defense-GAN-Rec beats no defense by 50 points",
                         "holds": True, "detail": "93.0 vs 25.0", "changed": True,
                         "change": "holds: not evaluated → true"},
                        {"id": "timing", "text": "Reconstruction costs under a second per image",
                         "holds": None, "detail": "not evaluated: metric seconds_per_image missing"},
                    ],
                    metrics=[{"name": "gan_train_seconds", "value": 412.25},
                             {"name": ADAPTIVE, "value": 0.12}],
                    figures=[
                        {"path": "figures/recon.png",
                         "caption": "Clean, adversarial and reconstructed digits"},
                        {"path": "figures/missing.png", "caption": "A figure whose file is gone"},
                    ],
                )
            )  # fmt: skip
            failed = run_summary(
                "20261121T040000Z-defense_gan-full-cccccc", "defense_gan", "full",
                "2026-11-21T04:00:00+00:00", status="failed",
                error="Traceback (most recent call last):\n  File \"reproduce.py\", line 3\n"
                "RuntimeError: CUDA out of memory <script>window.__xss=1</script>",
            )  # fmt: skip
            store(failed)
        if want("fgsm"):
            store(
                run_summary(
                    "20261119T050000Z-fgsm-full-dddddd", "fgsm", "full",
                    "2026-11-19T05:00:00+00:00",
                    rows=[
                        _row("mnist_maxout_fgsm_error", 90.1, 89.4, "match"),
                        _row("mnist_maxout_advtrain_error", 25.0, 17.9, "deviates"),
                    ],
                    claims=[{"id": "advtrain_helps", "text": "Adversarial training lowers the error",
                             "holds": False, "detail": "25.0 is not below 17.9 + 2"}],
                )
            )  # fmt: skip
        if want("madry_pgd"):
            store(
                run_summary(
                    "20261119T060000Z-madry_pgd-full-eeeeee", "madry_pgd", "full",
                    "2026-11-19T06:00:00+00:00",
                    rows=[_row("mnist_pgd_acc", 89.9, 89.3, "match"),
                          _row("mnist_fgsm_acc", 95.1, 95.6, "match")],
                    claims=[{"id": "robust", "text": "PGD training is robust to PGD",
                             "holds": True, "detail": "89.9 %"}],
                    metrics=ROBUSTNESS_METRICS,
                    figures=[{"path": "figures/loss.png", "caption": "PGD loss over restarts"}],
                )
            )  # fmt: skip
        if want("papernot_blackbox"):
            store(
                run_summary(
                    "20261118T070000Z-papernot_blackbox-small-ffffff", "papernot_blackbox",
                    "small", "2026-11-18T07:00:00+00:00", status="failed",
                    error="repro.data.DataUnavailable: mnist training split not found",
                ),
                with_dir=False,
            )  # fmt: skip


@pytest.fixture
def catalog_db(db_url: str, tmp_path: Path) -> tuple[str, Path]:
    """The hand-made catalog on SQLite and PostgreSQL; returns (database URL, runs folder)."""
    runs_dir = tmp_path / "runs"
    make_catalog(db_url, runs_dir)
    return db_url, runs_dir
