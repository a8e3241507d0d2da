"""What a paper's results look like on the site: the paper's tables in their printed shape with ours
in every cell, the "paper vs ours" scatter, the index's headline numbers, the scoreboard, the
galleries, and our adaptive attacks beside the rows they challenge.

Two halves: the pure layout functions (`sitebuilder.pivot`, `sitebuilder.charts`,
`sitebuilder.adaptive`, `catalog.compare.adaptive_target`) on hand-made records, then the pages
built from the hand-made catalog of `conftest.py` (Defense-GAN declares its Table 4 layout and its
headline there; FGSM and Madry declare nothing, so theirs are inferred).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from catalog.compare import adaptive_target
from sitebuilder import PublishReport
from sitebuilder.adaptive import adaptive_findings
from sitebuilder.charts import bar, nice_ticks, scatter, scatters
from sitebuilder.pivot import layout_of, source_tables

from .conftest import DG, FGSM, MADRY, PAPERNOT
from .test_publish import _contrast, build, paper_page, parse

# ----------------------------------------------------------------------------- records


def rec(row_id: str, source: str = "Table 1", **kw: Any) -> dict[str, Any]:
    """A record as `best_per_row` gives it (the fields the site reads)."""
    setting = kw.pop("setting", {})
    base = {
        "id": row_id,
        "source": source,
        "dataset": "mnist",
        "metric": "accuracy",
        "unit": "fraction",
        "paper": 0.9,
        "paper_std": None,
        "tolerance": 0.03,
        "provenance": "arXiv p.1",
        "status": None,
        "setting": setting,
        "run_id": "r1",
        "scale": "small",
        "value": 0.8,
        "delta": -0.1,
        "verdict": "not_compared",
        "reason": "small scale (compared at full only)",
        "changed": False,
        "change": None,
    }
    base.update(kw)
    return base


def table4() -> list[dict[str, Any]]:
    """Defense-GAN's Table 4 in miniature: two datasets, two models, a no-attack row repeated
    under each attack, L/R set by the defense, eps by the attack."""
    out = []
    for ds in ("mnist", "fashion_mnist"):
        for attack, eps in (("fgsm", 0.3), ("cw_l2", None)):
            for model in ("A", "B"):
                out.append(
                    rec(
                        f"{ds}_{attack}_{model}_clean",
                        "Table 4",
                        dataset=ds,
                        setting={"model": model, "attack": "none", "defense": "none"},
                    )
                )
                for defense in ("none", "defense_gan_rec", "magnet"):
                    setting = {"model": model, "attack": attack, "eps": eps, "defense": defense}
                    if defense == "defense_gan_rec":
                        setting.update(L=200, R=10)
                    out.append(rec(f"{ds}_{attack}_{model}_{defense}", "Table 4", dataset=ds,
                                   setting=setting))  # fmt: skip
    return out


# ----------------------------------------------------------------------------- layout


def test_declared_layout_splits_datasets_and_prints_determined_columns_once() -> None:
    layout = layout_of(table4(), {"rows": ["attack", "model"], "columns": ["defense"]})
    assert layout.declared
    assert (layout.rows, layout.columns, layout.facets) == (("attack", "model"), ("defense",),
                                                            ("dataset",))  # fmt: skip
    assert set(layout.column_notes) == {"L", "R"}  # set by the defense: in its header
    assert layout.row_notes == ("eps",)  # set by the attack: in the row header


def test_inferred_layout_prefers_the_defense_across() -> None:
    layout = layout_of(table4())
    assert not layout.declared
    assert layout.columns == ("defense",) and layout.facets == ("dataset",)
    assert set(layout.rows) == {"model", "attack"}


def test_inferred_layout_of_a_list_of_attacks_is_one_column() -> None:
    """Madry's Table 1: one accuracy per attack setting; no dimension fills a grid."""
    settings = [
        ("", "none", "", ""), ("A", "fgsm", "", ""), ("A", "pgd", 40, 1), ("A", "pgd", 100, 1),
        ("A", "pgd", 40, 20), ("A", "pgd", 100, 20), ("A", "cw", 40, 1), ("A'", "fgsm", "", ""),
        ("A'", "pgd", 40, 1), ("B", "fgsm", "", ""), ("B", "cw+", "", ""),
    ]  # fmt: skip
    recs = [
        rec(f"r{i}", setting={"source_net": s, "attack": a, "steps": st, "restarts": r})
        for i, (s, a, st, r) in enumerate(settings)
    ]
    layout = layout_of(recs)
    assert layout.columns == ()
    assert layout.rows == ("source_net", "attack", "steps", "restarts")
    (table,) = source_tables("madry", recs, {}, ran=True)[0].tables
    # grouped by source, then in expected.csv's (the paper's) order: 40x1, 100x1, 40x20, 100x20
    assert [r.headers for r in table.rows][:6] == [
        ["–", "none", "–", "–"], ["A", "fgsm", "–", "–"], ["A", "pgd", "40", "1"],
        ["A", "pgd", "100", "1"], ["A", "pgd", "40", "20"], ["A", "pgd", "100", "20"],
    ]  # fmt: skip
    assert table.rows[3].repeats == [True, True, False, False]


def test_inferred_layout_of_a_transfer_matrix() -> None:
    """Liu et al.'s transfer tables: source model down, target model across."""
    models = ["VGG-16", "ResNet-50", "GoogLeNet"]
    recs = [
        rec(f"{s}_{t}", setting={"source_model": s, "target_model": t}, metric="top1_match")
        for s in models
        for t in models
    ]
    layout = layout_of(recs)
    assert layout.columns == ("target_model",) and layout.rows == ("source_model",)
    (table,) = source_tables("liu", recs, {}, ran=True)[0].tables
    assert [label for label, _ in table.columns] == models
    assert [r.headers for r in table.rows] == [[m] for m in models]


def test_metric_columns_when_a_setting_has_several_numbers() -> None:
    """FGSM's text: error and confidence of each model; the dataset follows from the model."""
    recs = []
    for model, ds in (("softmax", "mnist"), ("maxout", "mnist"), ("conv maxout", "cifar10")):
        for metric in ("error_pct", "confidence_pct"):
            recs.append(rec(f"{model}_{metric}", dataset=ds, metric=metric, unit="percent",
                            setting={"model": model, "attack": "fgsm"}))  # fmt: skip
    layout = layout_of(recs)
    assert layout.columns == ("metric",) and layout.rows == ("model",)
    assert layout.facets == () and layout.row_notes == ("dataset",)


def test_cells_carry_both_numbers_and_rows_not_run_collapse_with_counted_reasons() -> None:
    recs = table4()
    for r in recs:
        if r["dataset"] == "mnist" or r["setting"]["defense"] == "magnet":
            reason = (
                "MagNet: not implemented"
                if r["setting"]["defense"] == "magnet"
                else ("needs the MNIST training split\n  (only the test split is here)")
            )
            r.update(value=None, delta=None, verdict="not_run", reason=reason, run_id=None)
        if r["setting"]["model"] == "B" and r["dataset"] == "fashion_mnist":
            r.update(value=None, delta=None, verdict="not_run", reason="model B not attacked",
                     run_id=None)  # fmt: skip
    layout = {"Table 4": {"rows": ["attack", "model"], "columns": ["defense"]}}
    (st,) = source_tables("dg", recs, layout, ran=True)
    assert st.layout == "declared in repro.toml" and st.n_rows == len(recs)
    mnist, fmnist = st.tables
    assert (mnist.title, fmnist.title) == ("Table 4 · MNIST", "Table 4 · Fashion-MNIST")
    # nothing ran on MNIST: every printed row folded into the line
    assert mnist.rows == [] and len(mnist.hidden) == 6  # none/fgsm/cw_l2 x A/B
    assert mnist.not_run == 16 and mnist.n_rows == 16
    assert mnist.reasons == [
        ("needs the MNIST training split (only the test split is here)", 12),
        ("MagNet: not implemented", 4),
    ]
    # Fashion-MNIST: the rows of model A are shown, B's folded
    assert [label for label, _ in fmnist.columns] == ["none", "defense_gan_rec", "magnet"]
    assert [r.headers for r in fmnist.rows] == [["none", "A"], ["fgsm", "A"], ["cw_l2", "A"]]
    assert [r.headers for r in fmnist.hidden] == [["none", "B"], ["fgsm", "B"], ["cw_l2", "B"]]
    assert dict(fmnist.columns)["defense_gan_rec"] == "L 200 · R 10"
    assert fmnist.rows[1].note == "ε 0.3"
    clean = fmnist.rows[0].cells[0]
    assert len(clean) == 1 and len(clean[0].ids) == 2  # the repeated clean row prints once
    cell = fmnist.rows[1].cells[1][0]
    assert (cell.paper, cell.ours, cell.delta, cell.verdict_label) == (
        "0.9",
        "0.8",
        "−0.1",
        "not compared",
    )
    assert cell.scale == ""  # the table's scale, said once in its caption
    assert fmnist.scale == "small"
    magnet = fmnist.rows[1].cells[2][0]
    assert (magnet.verdict, magnet.ours) == ("not_run", "–")
    assert fmnist.rows[0].cells[1] == []  # no clean row under a defense: an empty cell


def test_before_any_run_every_row_shows_the_paper_number() -> None:
    recs = [r | {"value": None, "delta": None, "verdict": "not_run", "run_id": None,
                 "reason": "no run yet"} for r in table4()]  # fmt: skip
    (st,) = source_tables("dg", recs, {}, ran=False)
    for table in st.tables:
        assert table.hidden == [] and table.not_run == 0 and table.rows
        entries = [e for row in table.rows for cell in row.cells for e in cell]
        assert {e.verdict for e in entries} == {"pending"} and {e.paper for e in entries} == {"0.9"}


def test_measured_on_another_dataset_is_said_once() -> None:
    recs = [
        rec(f"r{i}", setting={"attack": a}, delta=None,
            reason="measured on mnist-test-split (paper: mnist)")
        for i, a in enumerate(("none", "fgsm", "pgd"))
    ]  # fmt: skip
    (table,) = source_tables("m", recs, {}, ran=True)[0].tables
    assert "measured on mnist-test-split (paper: mnist)" in table.caption
    entries = [e for row in table.rows for cell in row.cells for e in cell]
    assert {(e.delta, e.measured_on) for e in entries} == {("", "")}


# ----------------------------------------------------------------------------- charts


def test_nice_ticks_cover_the_range() -> None:
    assert nice_ticks(0, 100) == [0, 20, 40, 60, 80, 100]
    assert nice_ticks(0, 0.675) == [0.0, 0.2, 0.4, 0.6, 0.8]
    assert nice_ticks(-3, 17)[0] <= -3 and nice_ticks(-3, 17)[-1] >= 17


def test_scatter_puts_agreement_on_the_diagonal() -> None:
    points = [
        (rec("a", value=0.5, paper=0.5, verdict="match"), 50.0, 50.0, 3.0),
        (rec("b", value=0.2, paper=0.9, verdict="deviates"), 90.0, 20.0, 3.0),
        (rec("c", value=0.8, paper=0.7), 70.0, 80.0, 3.0),
    ]
    sc = scatter("s", "%", points)
    x0, y0, x1, y1 = sc.box
    assert x1 - x0 == y1 - y0  # square: the diagonal is y = x
    shapes = {
        tip.split(":")[0].removeprefix("row "): (kind, x, y) for kind, x, y, _, tip in sc.points
    }
    kind, x, y = shapes["a"]
    assert kind == "circle" and abs((x - x0) - (y1 - y)) < 1e-6  # on the diagonal
    kind, x, y = shapes["b"]
    assert kind == "diamond" and (y1 - y) < (x - x0)  # below: lower than the paper
    assert shapes["c"][0] == "square"
    assert sc.band and "± 3" in sc.band_label
    assert "3 rows: 1 match, 1 deviates, 1 not compared" in sc.label
    assert [v for _, v, _ in sc.counts] == ["match", "deviates", "not compared"]
    assert len(sc.table) == 3


def test_scatters_group_units_and_skip_rows_not_run() -> None:
    best = [
        rec("a"),
        rec("b", unit="percent", paper=88.0, value=80.0, tolerance=2.0),
        rec("c", unit="seconds", metric="seconds_per_image", paper=0.675, value=0.1),
        rec("d", value=None, verdict="not_run"),
    ]
    panels = scatters("x", best)
    assert [p.unit for p in panels] == ["accuracy, error or rate in %", "seconds"]
    assert len(panels[0].points) == 2 and len(panels[1].points) == 1
    assert len(scatters("x", [rec("d", value=None, verdict="not_run")])[0].points) == 0


def test_bar_counts_in_words_and_widths() -> None:
    b = bar({"match": 1, "deviates": 0, "not_compared": 2, "not_run": 1})
    assert b.total == 4 and b.label == "4 rows: 1 match, 2 not compared, 1 not run"
    assert sum(w for _, w, _, _, _ in b.segments) == pytest.approx(b.width, abs=0.05)


# ----------------------------------------------------------------------------- adaptive


def test_adaptive_metric_names() -> None:
    assert adaptive_target("adaptive.t4_fmnist_fgsm_a_defgan_rec.bpda_eot_pgd") == (
        "t4_fmnist_fgsm_a_defgan_rec",
        "bpda_eot_pgd",
    )
    assert adaptive_target("adaptive.row_only") is None
    assert adaptive_target("fmnist_A_clean_accuracy") is None


def test_adaptive_findings_both_conventions() -> None:
    best = {"t4_fmnist_fgsm_a_defgan_rec": rec("t4_fmnist_fgsm_a_defgan_rec", paper=0.879)}
    metrics = [
        {"name": "adaptive.t4_fmnist_fgsm_a_defgan_rec.bpda_eot_pgd", "value": 0.1},
        {"name": "adaptive_fmnist_a_rec_bpda_pgd_eps030_accuracy", "value": 0.2},  # older runs
        {"name": "adaptive_fmnist_a_orig_bpda_pgd_eps030_accuracy", "value": 0.25},
        {"name": "adaptive_fmnist_a_rec_clean_accuracy", "value": 0.85},  # not an attack
        {"name": "adaptive.no_such_row.pgd", "value": 0.3},
    ]
    by_row, found = adaptive_findings(metrics, best)
    assert [(f.attack, f.ours, f.anchored) for f in found] == [
        ("bpda_eot_pgd", "0.1", True),
        ("bpda_pgd (ε 0.3)", "0.2", True),
        ("bpda_pgd (ε 0.3)", "0.25", False),  # Table 4 has no Defense-GAN-Orig row
        ("pgd", "0.3", False),
    ]
    assert [f.ours for f in by_row["t4_fmnist_fgsm_a_defgan_rec"]] == ["0.1", "0.2"]
    assert found[0].paper == "0.879" and found[0].published == "0.8"
    assert found[2].row_id == ""  # a legacy name's guessed row that does not exist is not shown


def test_measurements_of_an_attack_stay_with_it() -> None:
    """`adaptive.<row>.<attack>.ci95_*` is the attack's interval and `.<what>` a detail of it,
    never another attack beside the row (the Defense-GAN run of record writes both)."""
    best = {"t4_fmnist_fgsm_a_defgan_rec": rec("t4_fmnist_fgsm_a_defgan_rec", paper=0.879)}
    base = "adaptive.t4_fmnist_fgsm_a_defgan_rec.bpda_eot_pgd"
    metrics = [
        {"name": f"{base}.ci95_low", "value": 0.0},
        {"name": f"{base}.ci95_high", "value": 0.175},
        {"name": base, "value": 0.075},
        {"name": f"{base}.detected", "value": 0.925},
        {"name": f"{base}.detected.ci95_low", "value": 0.85},  # an interval of a detail
        {"name": f"{base}.seconds", "value": 92.6},
        {"name": f"{base}_fresh_restarts", "value": 0.5},  # another attack
        {"name": "adaptive.t4_fmnist_fgsm_a_defgan_rec.no_attack", "value": 0.8},  # a baseline
        {"name": "adaptive.t4_fmnist_fgsm_a_defgan_rec.eps_sweep.seconds", "value": 133.4},
    ]
    by_row, found = adaptive_findings(metrics, best)
    assert [(f.attack, f.ours) for f in found] == [
        ("bpda_eot_pgd", "0.075"),
        ("bpda_eot_pgd_fresh_restarts", "0.5"),
    ]
    assert found[0].interval == "[0, 0.175]"
    assert found[0].details == "detected 0.925 · seconds 92.6"
    assert found[1].interval == "" and found[1].details == ""
    assert len(by_row["t4_fmnist_fgsm_a_defgan_rec"]) == 2


# ----------------------------------------------------------------------------- pages


@pytest.fixture
def site(catalog_db: tuple[str, Path], tmp_path: Path) -> tuple[Path, PublishReport]:
    url, runs_dir = catalog_db
    out = tmp_path / "site"
    return out, build(url, runs_dir, out)


def _plain(html: str) -> str:
    """Visible text of an HTML fragment (SVG titles left out), whitespace collapsed."""
    html = re.sub(r"<svg.*?</svg>", " ", html.replace("<wbr>", ""), flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).strip()


def test_paper_tables_in_their_printed_shape(site: tuple[Path, PublishReport]) -> None:
    out, _ = site
    html = paper_page(out, DG).read_text()
    sections = re.findall(r'<section aria-labelledby="(src-[^"]+)" class="source-table">', html)
    assert len(sections) == 2  # Table 4 and Table 13: every source of expected.csv
    t4 = html[html.index(f'<section aria-labelledby="{sections[0]}"') :]
    t4 = t4[: t4.index("</section>")]
    assert "declared in repro.toml" in t4 and "one table per dataset" in t4
    mnist = t4[: t4.index("Table 4 · Fashion-MNIST")]
    heads = [_plain(h) for h in re.findall(r'<th scope="col"[^>]*>(.*?)</th>', mnist)]
    assert heads == ["model", "attack", "none", "defense_gan_rec L 200 · R 10", "magnet"]
    row = re.search(r'<tr><th scope="row"[^>]*>A</th><th scope="row"[^>]*>fgsm(.*?)</tr>', mnist)
    assert row, "the MNIST row model A x fgsm"
    cells = re.findall(r'<td class="pc[^"]*">(.*?)</td>', row.group(1))
    assert len(cells) == 3  # one per defense
    none, rec_cell, magnet = (_plain(c) for c in cells)
    assert none.startswith("paper 0.217 ours 0.25 Δ +0.033 not compared")
    assert "measured on mnist-test-split" in none
    assert rec_cell == "paper 0.988 ours 0.93 Δ −0.058 not compared"
    assert magnet == "paper 0.191 not run"
    assert 'title="t4_mnist_fgsm_a_magnet: no MagNet implementation here' in mnist
    assert "1 of 3 rows not run: 1 no MagNet implementation here" in _plain(mnist)
    assert "L 200 · R 10" in mnist  # the defense's own setting, once, in its header
    # the paper's printed spread beside its number, on Fashion-MNIST
    assert "paper 0.896 ± 0.0017 ours 0.81" in _plain(t4)
    # where the numbers are printed, folded
    assert "arXiv 1805.06605v2 p.10 [P]" in t4
    # Table 13: nothing recorded, folded into one line that still holds the paper's table
    t13 = html[html.index(f'<section aria-labelledby="{sections[1]}"') :]
    t13 = t13[: t13.index("</section>")]
    assert re.search(r'<details class="notrun">\s*<summary><strong>Table 13</strong>', t13)
    assert "1 of 1 rows not run: 1 not recorded by the latest run of any scale" in _plain(t13)
    assert "<table" in t13 and "paper 0.675" in _plain(t13)
    assert 'class="prov-list"><li class="unverified">unverified: read off a blurry scan' in t13


def test_adaptive_attack_sits_beside_the_row_it_challenges(
    site: tuple[Path, PublishReport],
) -> None:
    out, _ = site
    html = paper_page(out, DG).read_text()
    fmnist = html[html.index("Table 4 · Fashion-MNIST") :]
    fmnist = fmnist[: fmnist.index("</table>")]
    assert "ours, adaptive bpda_pgd&lt;script&gt;window.__xss=1&lt;/script&gt;: <b>0.12</b>" in (
        fmnist.replace('<span class="lbl">', "").replace("</span>", "")
    )
    text = parse(paper_page(out, DG)).plain
    assert "Adaptive attacks (ours, not in the paper)" in text
    # the list groups our attacks under the row they challenge: its setting and numbers once
    assert "the paper's 0.896, ours under the paper's attack 0.81" in text
    assert "bpda_pgd<script>window.__xss=1</script>: 0.12" in text
    board = parse(out / "scoreboard.html").plain
    assert "bpda_pgd<script>window.__xss=1</script>: 0.12 vs paper 0.896" in board


def test_every_paper_with_a_run_has_its_scatter(site: tuple[Path, PublishReport]) -> None:
    out, _ = site
    for key, points in ((DG, 3), (FGSM, 2), (MADRY, 2)):
        html = paper_page(out, key).read_text()
        svg = re.search(
            r'<figure class="scatter" id="[^"]+">\s*<svg ([^>]+)>(.*?)</svg>', html, re.S
        )
        assert svg, key
        attrs, body = svg.groups()
        assert 'role="img"' in attrs and 'aria-label="Paper vs ours' in attrs, key
        assert "<title>" in body and "<desc>" in body and 'class="sc-diag"' in body, key
        assert 'class="sc-band"' in body, key  # the tolerance band
        assert len(re.findall(r'class="pt pt-', body)) == points, key
        assert f"The {points} plotted numbers" in html, key  # the data behind the plot
    fgsm = paper_page(out, FGSM).read_text()
    assert 'class="pt pt-match"' in fgsm and 'class="pt pt-deviates"' in fgsm
    # a reproduction whose only run failed, and a paper without one: no plot
    for key in (PAPERNOT,):
        assert 'class="scatter"' not in paper_page(out, key).read_text()


def test_index_leads_with_the_headline_numbers(site: tuple[Path, PublishReport]) -> None:
    out, _ = site
    html = (out / "index.html").read_text()
    leaders = html[html.index('<table class="leaders">') :]
    leaders = _plain(leaders[: leaders.index("</table>")])
    # Defense-GAN's declared headline; FGSM and Madry: their first measured row
    assert "paper 0.988 · ours 0.93 small not compared" in leaders
    assert "paper 89.4 · ours 90.1 full match" in leaders
    assert "paper 89.3 · ours 89.9 full match" in leaders
    assert leaders.count("of ") >= 3 and "1 of 2 hold" in leaders
    assert "Practical Black-Box" not in leaders  # its only run failed
    row = re.search(rf'<tr data-key="{DG}">.*?</tr>', html, re.S)
    assert row and "paper <b>0.988</b> · ours <b>0.93</b>" in row.group(0)
    assert 'class="vbar"' in row.group(0) and "claims 1/2 hold" in _plain(row.group(0))
    assert 'aria-label="5 rows: 3 not compared, 2 not run"' in row.group(0)


def test_scoreboard(site: tuple[Path, PublishReport]) -> None:
    out, report = site
    path = out / "scoreboard.html"
    text = parse(path).plain
    html = path.read_text()
    assert report.pages == len(list(out.rglob("*.html")))
    rows = re.findall(r"<tr>\s*<th scope=\"row\">(.*?)</tr>", html, re.S)
    assert len(rows) == 5  # every reproduction, method-only folders included
    dg = _plain(next(r for r in rows if "defense_gan" in r))
    assert "reproduced at reduced scale" in dg and "1 hold · 0 fail · 1 not evaluated" in dg
    assert "small 3 not compared · 2 not run" in dg and "smoke 2 not compared · 3 not run" in dg
    assert "2026-11-21 · full failed · NVIDIA H100 80GB HBM3" in dg
    madry = _plain(next(r for r in rows if "madry_pgd" in r))
    assert "full 2 match" in madry
    cw = _plain(next(r for r in rows if "carlini_wagner" in r))
    assert "method only" in cw and "never run" in cw
    assert "3 / 5 reproductions with a successful run" in text
    assert "2 / 4 claims hold · 1 fail" in text
    assert "3 / 4 rows compared at full match · 1 deviate" in text
    assert '<a href="scoreboard.html" aria-current="page">Scoreboard</a>' in html


def test_robustness_page_lines_up_every_model_under_the_same_attacks(
    site: tuple[Path, PublishReport],
) -> None:
    out, _ = site
    path = out / "robustness.html"
    html = path.read_text()
    rows = re.findall(r"<tr( class=\"flagged\")?>\s*<th scope=\"row\">(.*?)</tr>", html, re.S)
    assert len(rows) == 2  # the Madry run's two models; runs without the battery add nothing
    (flag_at, at), (flag_nat, nat) = sorted(rows, key=lambda r: "natural" in r[1])
    at_text = _plain(at)
    assert "madry_pgd · pgd_at" in at_text and "full" in at_text
    # columns in the battery's order; the interval beside PGD-100; missing attacks are dashes
    assert "98.5 89.9 – – 88.1 [86, 90.2] – 80.7 – – 80.7 +9.2" in at_text
    assert at_text.endswith("overestimates 41.5 (same batches)")
    # the cost column: same-batch timing first, else the epoch's time when it was trained
    assert _plain(nat).endswith("0 – 5.25 (when trained)")
    assert flag_at and "flagged: the paper's evaluation overestimates" in at_text
    assert not flag_nat and "madry_pgd · natural" in _plain(nat) and "flagged" not in _plain(nat)
    assert '<a href="robustness.html" aria-current="page">Robustness</a>' in html
    # the other pages link to it
    assert 'href="robustness.html"' in (out / "scoreboard.html").read_text()


def test_a_prefixed_robustness_name_takes_its_training_time() -> None:
    from types import SimpleNamespace

    from sitebuilder.robustness import robustness_rows

    metrics = [
        {"name": "robustness.fashion_mnist_pcl_at.worst", "value": 30.0},
        {"name": "robustness.fashion_mnist_pcl.worst", "value": 0.0},
        {"name": "robustness.fashion_mnist_softmax.worst", "value": 0.0},
        {"name": "cost.pcl_at.epoch_seconds_same_batches", "value": 12.5},
        {"name": "cost.at.epoch_seconds", "value": 99.0},  # a shorter fit loses to the longest
        {"name": "cost.pcl.epoch_seconds", "value": 3.0},
        {"name": "cost.natural.epoch_seconds", "value": 2.0},  # fits no name: not taken
    ]
    run = SimpleNamespace(summary={"metrics": metrics}, slug="pcl", scale="small", id="r1")
    cost = {r.model: r.cost for r in robustness_rows([run], {})}
    assert cost == {"fashion_mnist_pcl_at": "12.5 (same batches)",
                    "fashion_mnist_pcl": "3 (when trained)", "fashion_mnist_softmax": ""}  # fmt: skip


def test_gallery_groups_figures_by_run(site: tuple[Path, PublishReport]) -> None:
    out, _ = site
    html = paper_page(out, DG).read_text()
    galleries = re.findall(r'<details class="gallery"( open)?>(.*?)</details>', html, re.S)
    assert [(bool(o), "Small run" in g or "Smoke run" in g) for o, g in galleries] == [
        (True, True),
        (False, True),
    ]
    small = galleries[0][1]
    assert "Small run, 2026-11-21" in small and "2 figures" in small
    link = re.search(r'<a class="fig-link" href="([^"]+)"><img src="([^"]+)" alt="([^"]+)"', small)
    assert link and link.group(1) == link.group(2) and link.group(1).endswith("recon.png")
    assert link.group(3) == "Clean, adversarial and reconstructed digits"
    assert "Full size (6 × 4 px)" in small and "image file missing" in small
    assert "<script" not in small


def test_new_colours_meet_aa() -> None:
    """Text colours added for the results (scale tag, adaptive line, cell tints) pass 4.5:1 on
    the backgrounds they sit on."""
    pairs = [
        ("#6639ba", "#ffffff"),  # .pe-scale
        ("#6639ba", "#f0fbf3"),  # on a matching cell
        ("#82071e", "#fff4f3"),  # .pe-adaptive on a deviating cell
        ("#82071e", "#ffffff"),
        ("#57606a", "#f6f8fa"),  # repeated row header on the header background
        ("#57606a", "#f0fbf3"),
        ("#32383f", "#fff4f3"),  # delta
        ("#8a5300", "#ffffff"),  # unverified
    ]
    css = (Path(__file__).resolve().parents[2] / "site" / "static" / "style.css").read_text()
    for fg, bg in pairs:
        assert fg in css and bg in css, (fg, bg)
        assert _contrast(fg, bg) >= 4.5, (fg, bg)
