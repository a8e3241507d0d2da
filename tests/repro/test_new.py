"""`repro new` (repro.scaffold): the files it creates and what they contain, its refusal to
overwrite, unknown keys and names, the command line, and the fresh folder's smoke run through the
runner (which is also the run of the smoke test it writes)."""

from __future__ import annotations

import importlib.util
import json
import sys
import tomllib
import types
from pathlib import Path

import pytest
from typer.testing import CliRunner

from repro import ReproError
from repro.cli import app
from repro.scaffold import PaperInfo, new_reproduction

# Arjovsky, Chintala & Bottou, ICML 2017: in papers/references.bib, with no review
KEY = "2017_Arjovsky_M_p-icml_wgan"
SLUG = "tiny_new_paper"
SQLITE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
FOLDER_FILES = {
    "__init__.py",
    "repro.toml",
    "expected.csv",
    "claims.py",
    "reproduce.py",
    "README.md",
}


@pytest.fixture
def catalog_project(project: Path) -> Path:
    """The project copy with the paper of `KEY` reviewless, and the catalog synced from it."""
    from catalog.sync import sync_project

    (project / "papers" / "reviews" / f"{KEY}.md").unlink(missing_ok=True)
    sync_project(project)
    return project


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under the project's repro/, tests/ and papers/reviews/, with its content."""
    files = {}
    for part in ("repro", "tests", "papers/reviews"):
        for path in sorted((root / part).rglob("*")) if (root / part).exists() else []:
            if path.is_file() and "__pycache__" not in path.parts:
                files[path.relative_to(root).as_posix()] = path.read_bytes()
    return files


def load_by_path(name: str, path: Path) -> types.ModuleType:
    """Import a Python file that is not on the import path (a generated file, a test module)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- what it writes


def test_paper_citations_follow_the_house_style() -> None:
    def paper(*last: str, venue: str | None = "Conf. on Things (CoT)") -> PaperInfo:
        return PaperInfo(key="k", title="T", year=2017, last_names=list(last), venue=venue)

    assert paper("Carlini").cite == "Carlini, CoT 2017"
    assert paper("Carlini", "Wagner").cite == "Carlini & Wagner, CoT 2017"
    assert paper("Goodfellow", "Shlens", "Szegedy").authors_short == "Goodfellow, Shlens & Szegedy"
    assert paper("Madry", "Makelov", "Schmidt", "Tsipras").authors_short == "Madry et al."
    assert paper("Shaham", venue="Neurocomputing").cite == "Shaham, Neurocomputing 2017"
    assert paper("Wong", venue=None).cite == "Wong, 2017"
    assert PaperInfo(key="k", title="T", year=1, arxiv_id="1701.07875").link == (
        "https://arxiv.org/abs/1701.07875"
    )
    assert PaperInfo(key="k", title="T", year=1, doi="10.1/x").link == "https://doi.org/10.1/x"
    assert PaperInfo(key="k", title="T", year=1).link is None


@SQLITE
def test_new_creates_a_folder_that_meets_the_contract(catalog_project: Path) -> None:
    from catalog.db import session_scope
    from catalog.queries import show_paper
    from catalog.schema import EXPECTED_KNOWN, read_reproduction
    from catalog.snapshot import review_record
    from catalog.sync import sync_project
    from repro.claims import Results, evaluate, load_claims
    from repro.runner import _notebook

    folder = new_reproduction(
        SLUG, KEY, root=catalog_project, datasets=["fashion_mnist"], uses=["fgsm"]
    )
    assert folder == catalog_project / "repro" / SLUG
    assert {p.name for p in folder.iterdir()} == FOLDER_FILES

    # repro.toml and expected.csv pass the one schema, read together (every metric has a unit).
    with session_scope() as session:
        title = show_paper(session, KEY).title  # "Wasserstein Generative Adversarial Networks"
    repro = read_reproduction(folder, catalog_project)
    config = repro.config
    assert (config.slug, config.key, config.title) == (SLUG, KEY, title)
    assert (config.datasets, config.uses, config.notebook) == (["fashion_mnist"], ["fgsm"], True)
    assert set(config.scales) == {"smoke", "small", "full"}
    assert config.scales["full"]["needs_gpu"] is True
    assert config.metrics == {"accuracy": "fraction"}
    header = (folder / "expected.csv").read_text().splitlines()[0].split(",")
    assert header[: len(EXPECTED_KNOWN)] == list(EXPECTED_KNOWN)
    (row,) = repro.expected
    assert row.id.startswith("example_") and row.dataset == "fashion_mnist"
    assert row.not_run_reason and "replace it" in row.not_run_reason
    assert row.unverified and row.paper is None and row.unit == "fraction"

    # The claim skeleton is reported "not written": neither a pass nor a failure.
    claims = load_claims(folder)
    assert len(claims) == 1
    (outcome,) = evaluate(claims, Results({row.id: 0.9}))
    assert outcome["holds"] is None and outcome["detail"].startswith("not written")

    # The paper's facts come from the catalog: docstring, README, review, notebook title.
    cite = "Arjovsky, Chintala & Bottou, ICML 2017"
    module = load_by_path("_new_init", folder / "__init__.py")
    doc = module.__doc__ or ""
    assert " ".join(doc.split()).startswith(f"{title} ({cite}).")
    for part in ("https://arxiv.org/abs/1701.07875", "Martin Arjovsky", "Map from the paper"):
        assert part in doc
    assert "Deviations" in doc and "Reproduces:" in doc and "repro.fgsm" in doc
    # The map is true from the start: every name it points to exists (test_paper_maps's rules).
    maps = load_by_path("_paper_maps", Path(__file__).with_name("test_paper_maps.py"))
    assert maps.map_entries(doc) and maps.unresolved(module, doc) == []
    readme = (folder / "README.md").read_text()
    assert readme.startswith(f"# {SLUG} — {title} ({cite})")
    for section in ("## What is reproduced", "## Settings per scale", "## Deviations and why"):
        assert section in readme
    assert "| 512 | 10000 | 0 |" in readme  # n_train per scale, from the same table as repro.toml
    nb = _notebook(folder / "reproduce.py")  # Jupytext, with the parameters cell the runner needs
    assert f"# {title} ({cite})" in "".join(c.source for c in nb.cells)

    review = review_record(
        catalog_project / "papers" / "reviews" / f"{KEY}.md", catalog_project, {KEY}
    )
    assert review.front_matter["key"] == KEY and review.front_matter["title"] == title
    assert "## What the paper claims" in review.body

    test_file = catalog_project / "tests" / "repro" / f"test_{SLUG}.py"
    source = test_file.read_text()
    compile(source, str(test_file), "exec")
    assert f'SLUG = "{SLUG}"' in source and "run_reproduction(SLUG" in source
    for path in folder.glob("*.py"):
        compile(path.read_text(), str(path), "exec")

    # `catalog sync` takes the new folder and the review as they are.
    report = sync_project(catalog_project).kinds
    assert report["reproductions"].added == [SLUG]
    assert KEY in report["reviews"].added + report["reviews"].updated
    assert report["expected rows"].added == [f"{SLUG}/{row.id}"]


@SQLITE
def test_new_refuses_to_overwrite_and_keeps_an_existing_review(catalog_project: Path) -> None:
    new_reproduction(SLUG, KEY, root=catalog_project)
    before = snapshot(catalog_project)
    with pytest.raises(ReproError, match=f"repro/{SLUG} exists; repro new never overwrites"):
        new_reproduction(SLUG, KEY, root=catalog_project, datasets=["mnist"])
    assert snapshot(catalog_project) == before

    # Only the smoke test exists: refused, and the folder is not created either.
    other = "tiny_other_paper"
    test_file = catalog_project / "tests" / "repro" / f"test_{other}.py"
    test_file.write_text("# someone's test\n")
    with pytest.raises(ReproError, match=f"tests/repro/test_{other}.py exists"):
        new_reproduction(other, KEY, root=catalog_project)
    assert not (catalog_project / "repro" / other).exists()
    assert test_file.read_text() == "# someone's test\n"

    # A second folder of a paper that has a review: created, the review left as it was.
    review = catalog_project / "papers" / "reviews" / f"{KEY}.md"
    review.write_text(review.read_text() + "\nOur own words.\n")
    kept = review.read_bytes()
    test_file.unlink()
    assert new_reproduction(other, KEY, root=catalog_project).is_dir()
    assert review.read_bytes() == kept


@SQLITE
def test_new_needs_a_key_of_the_catalog(project: Path) -> None:
    """Unknown key: `catalog add`; in references.bib but not in the database: `catalog sync`."""
    before = snapshot(project)
    with pytest.raises(ReproError, match="run `catalog sync` first"):
        new_reproduction(SLUG, KEY, root=project)  # the database is empty: nothing synced yet
    with pytest.raises(
        ReproError, match=r"not in the catalog \(did you mean .*wgan\?\).*catalog add"
    ):
        new_reproduction(SLUG, KEY.replace("wgan", "wgam"), root=project)
    assert snapshot(project) == before


@SQLITE
@pytest.mark.parametrize(
    ("slug", "options", "message"),
    [
        ("Bad-Slug", {}, "is not a reproduction slug"),
        ("runner", {}, "is a name of the toolkit"),
        ("templates", {}, "is a name of the toolkit"),
        (SLUG, {"uses": ["no_such_folder"]}, "uses 'no_such_folder': no reproduction"),
        (SLUG, {"uses": [SLUG]}, "cannot use itself"),
        (SLUG, {"datasets": ["MNIST"]}, "dataset 'MNIST'"),
        (SLUG, {"datasets": ["mnist", "mnist"]}, "given twice"),
    ],
)
def test_new_rejects_bad_names(
    catalog_project: Path, slug: str, options: dict, message: str
) -> None:
    before = snapshot(catalog_project)
    with pytest.raises(ReproError, match=message):
        new_reproduction(slug, KEY, root=catalog_project, **options)
    assert snapshot(catalog_project) == before


@SQLITE
def test_cli_new_creates_then_refuses(catalog_project: Path) -> None:
    runner = CliRunner()
    args = ["new", SLUG, "--key", KEY, "-d", "fashion_mnist", "-d", "mnist", "--uses", "fgsm"]
    created = runner.invoke(app, args)
    assert created.exit_code == 0, created.output
    assert f"test_{SLUG}.py" in created.stdout and f"created: {catalog_project}" in created.stdout
    toml = tomllib.loads((catalog_project / "repro" / SLUG / "repro.toml").read_text())
    assert (toml["datasets"], toml["uses"]) == (["fashion_mnist", "mnist"], ["fgsm"])
    again = runner.invoke(app, args)
    assert again.exit_code == 1
    assert again.stderr.strip() == f"error: repro/{SLUG} exists; repro new never overwrites"
    unknown = runner.invoke(app, ["new", "tiny_other_paper", "--key", "2099_Nobody_N_x"])
    assert unknown.exit_code == 1 and len(unknown.stderr.strip().splitlines()) == 1
    assert "catalog add" in unknown.stderr


# --------------------------------------------------------------------------- the fresh folder runs


@pytest.mark.slow
@SQLITE
def test_fresh_folder_runs_at_smoke_through_the_runner(
    catalog_project: Path, tmp_path: Path
) -> None:
    """Right after `repro new` (no method, no data: mnist is declared, the placeholder runs on
    random images wherever it is missing), the folder's own smoke test passes: the runner executes
    the notebook, records the example row, shows the claim as not written, and stores the run."""
    new_reproduction(SLUG, KEY, root=catalog_project, datasets=["mnist"])
    generated = load_by_path("_new_smoke", catalog_project / "tests" / "repro" / f"test_{SLUG}.py")
    generated.test_smoke_reproduction_through_the_runner(catalog_project, tmp_path)

    (summary_path,) = (tmp_path / "runs" / SLUG).glob("*/summary.json")
    summary = json.loads(summary_path.read_text())
    assert summary["status"] == "succeeded" and summary["scale"] == "smoke"
    (row,) = summary["rows"]
    assert row["id"] == "example_clean_accuracy" and row["verdict"] == "not_compared"
    assert 0.0 <= row["value"] <= 1.0
    (claim,) = summary["claims"]
    assert claim["holds"] is None and claim["detail"].startswith("not written")
    names = {m["name"] for m in summary["metrics"]}
    assert any(name.endswith("_placeholder_accuracy") for name in names)

    from catalog.db import session_scope
    from catalog.runs import latest_runs

    with session_scope() as session:
        (stored,) = latest_runs(session, SLUG)
        assert stored.status == "succeeded"
