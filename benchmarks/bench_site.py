"""Site build time (`catalog publish`) for generated catalogs of 250, 500 and 1,000 papers.

Goal (issue 5): under 15 s at 1,000 papers, growing linearly. Each catalog is generated with a
fixed seed in a fresh SQLite file: papers with 1-6 authors, abstracts and BibTeX, four reading
lists covering about 60 % of the papers with notes, reviews for 5 %, and reproductions for 2 %,
each with 30 expected rows and three runs (smoke, small, full) whose run directories hold a figure
and an executed notebook, so figures are copied and notebooks rendered as in a real build. Only
`publish()` is timed (best of `--repeat`), not the generation.

    python benchmarks/bench_site.py [--sizes 250 500 1000] [--repeat 2] [--json [PATH]]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

WORDS = [
    "adversarial",
    "robust",
    "training",
    "attack",
    "defense",
    "gradient",
    "projection",
    "generator",
    "classifier",
    "perturbation",
    "certified",
    "bound",
    "network",
    "image",
    "dataset",
    "accuracy",
    "evaluation",
    "model",
    "input",
    "norm",
    "transfer",
    "black-box",
    "white-box",
    "ensemble",
    "distillation",
    "detection",
    "manifold",
    "latent",
    "sample",
    "loss",
]
FIRST = (
    "Ian Nicholas Aleksander Pouya Maya Rama Anish Florian Battista Nicolas Alexey Jonathan".split()  # noqa: SIM905
)
LAST = "Goodfellow Carlini Madry Samangouei Kabkab Chellappa Athalye Tramer Biggio Papernot".split()  # noqa: SIM905
VENUES = ["ICLR", "NeurIPS", "ICML", "CVPR", "IEEE S&P", "USENIX Security", "arXiv", "AISec"]


def _sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def generate(url: str, runs_dir: Path, n_papers: int, seed: int = 0) -> dict[str, int]:
    """Fill an empty catalog with `n_papers` generated papers; return what was made."""
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

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "site"))
    from conftest import run_summary, tiny_png, write_notebook  # the site tests' helpers

    rng = random.Random(seed)
    counts = {"papers": n_papers, "runs": 0, "reproductions": 0}
    with session_scope(url) as s:
        authors = [
            Author(name=f"{f} {chr(65 + i % 26)}. {last}{i}", last_name=f"{last}{i}")
            for i, (f, last) in enumerate((rng.choice(FIRST), rng.choice(LAST)) for _ in range(400))
        ]
        s.add_all(authors)
        lists = [
            ReadingList(
                slug=f"list-{i}", title=f"Reading list {i}", format="papis", source_file="x"
            )
            for i in range(4)
        ]
        s.add_all(lists)
        s.flush()
        author_ids = [a.id for a in s.exec(select(Author))]
        keys = []
        for i in range(n_papers):
            year = 2013 + i % 12
            key = f"{year}_Gen_P_p-x_{i:05d}"
            keys.append(key)
            title = _sentence(rng, rng.randint(5, 12))[:-1]
            s.add(
                Paper(
                    key=key,
                    title=title,
                    year=year,
                    venue=rng.choice(VENUES),
                    arxiv_id=f"{year % 100:02d}{i % 12 + 1:02d}.{i:05d}",
                    abstract=" ".join(_sentence(rng, 15) for _ in range(8)),
                    bibtex=f"@inproceedings{{{key},\n  title = {{{title}}},\n  year = {{{year}}},\n}}",
                )
            )
        s.flush()
        for key in keys:
            for position, author_id in enumerate(rng.sample(author_ids, rng.randint(1, 6))):
                s.add(PaperAuthor(paper_key=key, author_id=author_id, position=position))
        positions = [0, 0, 0, 0]
        for key in keys:
            if rng.random() < 0.6:
                li = rng.randrange(4)
                positions[li] += 1
                s.add(
                    ListEntry(
                        list_slug=lists[li].slug,
                        position=positions[li],
                        paper_key=key,
                        note=_sentence(rng, 40) + " **" + rng.choice(WORDS) + "**",
                    )
                )
            if rng.random() < 0.05:
                s.add(
                    Review(
                        paper_key=key,
                        source_file="x",
                        body="# Review\n\n" + "\n\n".join(_sentence(rng, 60) for _ in range(6)),
                    )
                )
        s.flush()
        for r, key in enumerate(keys[:: max(1, n_papers // max(1, n_papers // 50))]):
            slug = f"repro_{r:03d}"
            counts["reproductions"] += 1
            s.add(Reproduction(slug=slug, paper_key=key, path=f"repro/{slug}"))
            s.flush()
            for j in range(30):
                s.add(
                    ExpectedResult(
                        slug=slug,
                        row_id=f"row_{j:02d}",
                        position=j,
                        source="Table 1",
                        dataset="mnist",
                        metric="accuracy",
                        unit="fraction",
                        paper_value=round(rng.random(), 4),
                        tolerance=0.03,
                        setting={
                            "attack": "fgsm",
                            "eps": 0.3,
                            "defense": f"d{j % 4}",
                            "model": "A",
                        },
                    )
                )
            s.flush()
            for day, scale in enumerate(("smoke", "small", "full")):
                run_id = f"2026111{day}T000000Z-{slug}-{scale}"
                summary = run_summary(
                    run_id,
                    slug,
                    scale,
                    f"2026-11-1{day}T00:00:00+00:00",
                    rows=[
                        {
                            "id": f"row_{j:02d}",
                            "value": round(rng.random(), 4),
                            "paper": 0.5,
                            "tolerance": 0.03,
                            "delta": 0.1,
                            "verdict": "not_compared",
                        }
                        for j in range(30)
                    ],
                    claims=[{"id": "c", "text": "A claim", "holds": rng.random() < 0.8}],
                    figures=[{"path": "figures/f.png", "caption": "A figure"}],
                )
                run_dir = runs_dir / slug / run_id
                (run_dir / "figures").mkdir(parents=True, exist_ok=True)
                (run_dir / "figures" / "f.png").write_bytes(tiny_png(64, 48))
                write_notebook(run_dir / "reproduce.ipynb", slug)
                store_run(s, summary, str(run_dir))
                counts["runs"] += 1
    return counts


def measure(n_papers: int, repeat: int) -> dict[str, Any]:
    from catalog.db import reset_engines, session_scope
    from sitebuilder import publish

    with tempfile.TemporaryDirectory(prefix="bench-site-") as tmp:
        root = Path(tmp)
        url = f"sqlite:///{root / 'catalog.db'}"
        started = time.perf_counter()
        counts = generate(url, root / "runs", n_papers)
        generated = time.perf_counter() - started
        times = []
        report = None
        for _ in range(repeat):
            started = time.perf_counter()
            with session_scope(url) as session:
                report = publish(session, root / "site", runs_dir=root / "runs", root=root)
            times.append(time.perf_counter() - started)
        reset_engines()
        assert report is not None
        return {
            "papers": n_papers,
            "reproductions": counts["reproductions"],
            "runs": counts["runs"],
            "pages": report.pages,
            "notebooks": report.notebooks,
            "megabytes": round(report.bytes / 1e6, 2),
            "seconds": round(min(times), 3),
            "seconds_all": [round(t, 3) for t in times],
            "ms_per_paper": round(1000 * min(times) / n_papers, 2),
            "generate_seconds": round(generated, 2),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[250, 500, 1000])
    parser.add_argument("--repeat", type=int, default=2, help="builds per size (best is kept)")
    parser.add_argument(
        "--json", nargs="?", const="-", default=None, help="write JSON to PATH (stdout: no PATH)"
    )
    parser.add_argument("--goal", type=float, default=15.0, help="seconds allowed at 1,000 papers")
    args = parser.parse_args(argv)

    results = [measure(n, args.repeat) for n in args.sizes]
    print(f"{'papers':>7} {'repros':>6} {'runs':>5} {'pages':>6} {'nb':>4} {'MB':>6} "
          f"{'build s':>8} {'ms/paper':>9}")  # fmt: skip
    for r in results:
        print(
            f"{r['papers']:>7} {r['reproductions']:>6} {r['runs']:>5} {r['pages']:>6} "
            f"{r['notebooks']:>4} {r['megabytes']:>6} {r['seconds']:>8.2f} {r['ms_per_paper']:>9.2f}"
        )
    # Linear growth: fit seconds = fixed + per_paper * papers; the fixed part is template
    # compilation and imports, paid once per build.
    xs = [r["papers"] for r in results]
    ys = [r["seconds"] for r in results]
    fixed, slope, r2 = ys[0], 0.0, 1.0
    if len(results) > 1:
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
            (x - mx) ** 2 for x in xs
        )
        fixed = my - slope * mx
        total = sum((y - my) ** 2 for y in ys)
        residual = sum((y - fixed - slope * x) ** 2 for x, y in zip(xs, ys, strict=True))
        r2 = 1 - residual / total if total else 1.0
    at_1000 = next((r["seconds"] for r in results if r["papers"] == 1000), None)
    verdict = {
        "goal_seconds_at_1000": args.goal,
        "seconds_at_1000": at_1000,
        "meets_goal": at_1000 is not None and at_1000 < args.goal,
        "fit_fixed_seconds": round(fixed, 3),
        "fit_ms_per_paper": round(1000 * slope, 3),
        "fit_r2": round(r2, 4),
    }
    print(
        f"linear fit: {fixed:.2f} s + {1000 * slope:.2f} ms/paper (R² {r2:.3f})"
        + (f"; 1,000 papers: {at_1000:.2f} s (goal < {args.goal:.0f} s)" if at_1000 else "")
    )
    if args.json:
        payload = json.dumps({"benchmark": "site_build", "results": results, **verdict}, indent=2)
        if args.json == "-":
            print(payload)
        else:
            Path(args.json).write_text(payload + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
