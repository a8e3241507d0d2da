"""`catalog.schema`: the one schema of expected.csv, repro.toml and the run records."""

from __future__ import annotations

from pathlib import Path

import pytest

from catalog.schema import (
    SchemaError,
    as_percent,
    read_expected,
    read_repro_toml,
    read_reproduction,
    validate_results,
)

ROOT = Path(__file__).resolve().parents[2]
HEADER = "id,source,dataset,metric,paper,tolerance,status,model,eps\n"


def folder(tmp_path: Path, toml: str, csv: str | None = None) -> Path:
    repro = tmp_path / "repro" / "demo"
    repro.mkdir(parents=True)
    (repro / "repro.toml").write_text(toml)
    if csv is not None:
        (repro / "expected.csv").write_text(csv)
    return repro


TOML = 'key = "k"\n[metrics]\naccuracy = "fraction"\n[scales.smoke]\nn = 1\n'


def test_every_reproduction_of_the_project_reads_with_units() -> None:
    for toml in sorted((ROOT / "repro").glob("*/repro.toml")):
        rep = read_reproduction(toml.parent, ROOT)
        assert rep.config.slug == toml.parent.name
        assert all(row.unit is not None for row in rep.expected), toml
    fgsm = read_reproduction(ROOT / "repro" / "fgsm", ROOT)
    assert {row.unit for row in fgsm.expected} == {"percent"}
    assert fgsm.config.needs_gpu  # read from [scales.full]
    assert fgsm.config.notebook


def test_settings_are_typed_and_described_columns_are_fields(tmp_path: Path) -> None:
    csv = (
        "id,source,dataset,metric,paper,tolerance,status,paper_std,model,eps,steps\n"
        "a,T1,mnist,accuracy,0.9,0.01,,0.02,A,0.30,40\n"
        "b,T1,mnist,accuracy,,,not_run: no CelebA,,B,,\n"
    )
    rep = read_reproduction(folder(tmp_path, TOML, csv), tmp_path)
    a, b = rep.expected
    assert a.setting == {"model": "A", "eps": 0.3, "steps": 40}
    assert (a.paper_std, a.status, a.unit) == (0.02, None, "fraction")
    assert (b.paper, b.tolerance, b.not_run_reason, b.setting) == (
        None,
        None,
        "no CelebA",
        {"model": "B"},
    )


@pytest.mark.parametrize(
    ("csv", "message"),
    [
        (HEADER + "a,T1,mnist,accuracy,,0.1,,A,\n", "row a: column 'paper' is empty"),
        (HEADER + "a,T1,mnist,accuracy,0.5,,,A,\n", "row a: column 'tolerance' is empty"),
        (
            HEADER + "a,T1,mnist,accuracy,inf,0.1,,A,\n",
            "row a: column 'paper': inf is not a finite",
        ),
        (HEADER + "a,T1,mnist,accuracy,0.5,0.1,skipped,A,\n", "column 'status'"),
        (HEADER + "a,T1,mnist,accuracy,0.5,0.1,,A,\x00\n", ":2: NUL byte"),
        (HEADER + f"a,{'T' * 121},mnist,accuracy,0.5,0.1,,A,\n", "longer than 120"),
        ("id,source\n", ":1: missing required column(s) dataset, metric, paper, tolerance"),
    ],
)
def test_bad_expected_rows_name_file_line_and_column(
    tmp_path: Path, csv: str, message: str
) -> None:
    path = tmp_path / "expected.csv"
    path.write_text(csv)
    with pytest.raises(SchemaError) as info:
        read_expected(path, "repro/demo/expected.csv")
    assert str(info.value).startswith("repro/demo/expected.csv:")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_a_metric_without_a_declared_unit_is_refused(tmp_path: Path) -> None:
    csv = HEADER + "a,T1,mnist,accuracy,0.9,0.01,,A,\nb,T1,mnist,error_pct,9,1,,A,\n"
    with pytest.raises(
        SchemaError, match=r"^repro/demo/expected.csv:3: metric 'error_pct' has no unit"
    ):
        read_reproduction(folder(tmp_path, TOML, csv), tmp_path)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            'key = "k"\n[metrics]\naccuracy = "percentage"\n',
            ":3: metric 'accuracy': unit 'percentage'",
        ),
        ('key = "k"\nusess = ["fgsm"]\n', ":2: unknown key 'usess'"),
        ('key = "k"\n[scales.huge]\nn = 1\n', ":2: unknown scale 'huge'"),
        ('title = "no key"\n', ": 'key' is missing (the paper's catalog key)"),
        ('slug = "other"\nkey = "k"\n', ":1: slug 'other' differs from its folder name 'demo'"),
        ('key = "k"\nnotebook = "yes"\n', ":2: notebook:"),
        ("key = [\n", ": invalid TOML"),
    ],
)
def test_bad_repro_toml_names_the_line(tmp_path: Path, toml: str, message: str) -> None:
    path = folder(tmp_path, toml) / "repro.toml"
    with pytest.raises(SchemaError) as info:
        read_repro_toml(path, "repro/demo/repro.toml")
    assert str(info.value).startswith("repro/demo/repro.toml")
    assert message in str(info.value)


def test_site_layout_must_name_rows_and_columns_that_exist(tmp_path: Path) -> None:
    csv = HEADER + "a,T1,mnist,accuracy,0.9,0.01,,A,0.3\n"
    good = (
        TOML + '[site]\nheadline = "a"\n[site.tables."T1"]\nrows = ["model"]\ncolumns = ["eps"]\n'
    )
    rep = read_reproduction(folder(tmp_path, good, csv), tmp_path)
    assert rep.config.site.headline == "a"
    assert rep.config.site.tables["T1"].columns == ["eps"]
    bad_headline = good.replace('headline = "a"', 'headline = "zz"')
    (tmp_path / "repro" / "demo" / "repro.toml").write_text(bad_headline)
    with pytest.raises(SchemaError, match=r"site\.headline 'zz' is not a row"):
        read_reproduction(tmp_path / "repro" / "demo", tmp_path)
    bad_column = good.replace('columns = ["eps"]', 'columns = ["defense"]')
    (tmp_path / "repro" / "demo" / "repro.toml").write_text(bad_column)
    with pytest.raises(SchemaError, match="'defense' is not a setting column"):
        read_reproduction(tmp_path / "repro" / "demo", tmp_path)


def test_results_are_normalised_and_checked() -> None:
    data = validate_results({"schema_version": 1, "rows": [{"id": "a", "value": 1}]})
    assert data["rows"] == [{"id": "a", "value": 1.0, "info": {}}]
    assert data["not_run"] == [] and data["figures"] == []
    with pytest.raises(SchemaError, match=r"metrics\[0\] \(t\)\.value"):
        validate_results({"schema_version": 1, "metrics": [{"name": "t", "value": None}]})
    with pytest.raises(SchemaError, match=r"value'?: expected a number or null, got True"):
        validate_results({"schema_version": 1, "rows": [{"id": "a", "value": True}]})


def test_units_convert_only_when_declared() -> None:
    assert as_percent(0.25, "fraction") == 25.0
    assert as_percent(25.0, "percent") == 25.0
    assert as_percent(0.25, "ratio") is None
    assert as_percent(0.25, None) is None
