"""Fixtures of the toolkit's tests: `tinyfake`, a tiny reproduction folder in a temporary project.

`tinyfake` records rows without training anything (no torch in its notebook), so an end-to-end run
through the runner costs only papermill's kernel start. Its rows cover every verdict rule:

    a_match          10.2 vs 10.0 ± 0.5       match at full
    b_far            scale param b vs 20 ± 1  deviates at full (b = 25)
    c_other_dataset  recorded on mnist-test-split -> not_compared
    d_unverified     provenance "unverified..." -> not_compared
    e_skipped        rec.not_run(...)          -> not_run with the notebook's reason
    f_never          never recorded            -> not_run "not recorded by the notebook"
    g_csv_not_run    status not_run in csv      -> not_run with the csv's reason

Setting `fail = true` in a scale of its repro.toml makes the notebook raise after recording a_match.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

REPRO_TOML = """\
slug = "tinyfake"
key = "2015_Goodfellow_I_p-iclr_ehae"
title = "Tiny fake reproduction (runner tests)"
datasets = ["mnist"]
uses = []

[metrics]
error_pct = "percent"
accuracy_pct = "percent"

[scales.smoke]
b = 25.0
fail = false

[scales.small]
b = 25.0
fail = false

[scales.full]
b = 25.0
fail = false
needs_gpu = true
"""

EXPECTED_CSV = """\
id,source,dataset,metric,paper,tolerance,provenance,status,model
a_match,Table 1,mnist,error_pct,10.0,0.5,arXiv p.1 [P],,cnn
b_far,Table 1,mnist,error_pct,20.0,1.0,arXiv p.1 [P],,cnn
c_other_dataset,Table 2,mnist,error_pct,30.0,1.0,arXiv p.2 [P],,cnn
d_unverified,Table 2,mnist,accuracy_pct,40.0,1.0,unverified: not checked,,cnn
e_skipped,Table 3,cifar10,error_pct,50.0,1.0,arXiv p.3 [P],,cnn
f_never,Table 3,mnist,error_pct,60.0,1.0,arXiv p.3 [P],,cnn
g_csv_not_run,Table 4,celeba,error_pct,70.0,1.0,arXiv p.4 [P],not_run: CelebA is not available,cnn
"""

CLAIMS_PY = """\
from repro.claims import Claim, Results


def _a_small(r: Results) -> tuple[bool, str]:
    return r["a_match"] < 15, f"a = {r['a_match']:.1f}"


def _b_above_a(r: Results) -> tuple[bool, str]:
    return r["b_far"] > r["a_match"], f"b {r['b_far']:.1f} vs a {r['a_match']:.1f}"


def _needs_f(r: Results) -> tuple[bool, str]:
    return r["f_never"] > 0, "f recorded"


CLAIMS = [
    Claim("a_small", "a stays below 15", _a_small),
    Claim("b_above_a", "b is above a", _b_above_a),
    Claim("needs_f", "f is positive", _needs_f),
]
"""

REPRODUCE_PY = """\
# %% [markdown]
# # Tiny fake reproduction

# %% tags=["parameters"]
scale = "smoke"
device = "cpu"
seed = 0
data_dir = None
out_dir = "."

# %%
# Record the first row
import sys

from repro.config import scale_params
from repro.record import Recorder

P = scale_params("tinyfake", scale)
rec = Recorder(out_dir)
rec.row("a_match", 10.2, dataset="mnist", python=sys.executable)

# %%
if P["fail"]:
    raise ValueError("boom: the fake notebook failed on purpose")
rec.row("b_far", P["b"])
rec.row("c_other_dataset", 31.0, dataset="mnist-test-split")
rec.row("d_unverified", 40.0)
rec.not_run("e_skipped", "CIFAR-10 is not available offline")
rec.metric("seed_used", seed)

# %%
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(2, 2))
ax.plot([0, 1], [0, 1])
rec.figure(fig, "line", "a line")
"""


def write_tinyfake(root: Path) -> Path:
    """Write `repro/tinyfake/` under a project root; return the folder."""
    folder = root / "repro" / "tinyfake"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "repro.toml").write_text(REPRO_TOML, encoding="utf-8")
    (folder / "expected.csv").write_text(EXPECTED_CSV, encoding="utf-8")
    (folder / "claims.py").write_text(CLAIMS_PY, encoding="utf-8")
    (folder / "reproduce.py").write_text(REPRODUCE_PY, encoding="utf-8")
    return folder


@pytest.fixture
def tinyfake(project: Path) -> Path:
    """`repro/tinyfake/` in the temporary project (ADVREPRO_ROOT, DATABASE_URL set)."""
    return write_tinyfake(project)


@pytest.fixture(scope="session")
def small_fashion_model():
    """`build(kind) -> (model, data)`: a seeded model trained briefly (3 epochs, lr 1e-2) on the
    first 1,000 Fashion-MNIST test images, in eval mode, and the whole test split for held-out
    images. `kind` is "cnn" (two strided convolutions) or "linear" (a softmax classifier).

    The attack tests share this one recipe; each call trains a fresh model, so no test sees another
    test's model (attacks must leave a model as they found it, but a test must not depend on it).
    """

    def build(kind: str):
        import torch
        from torch import nn

        from repro.data import load_dataset
        from repro.train import train_classifier

        data = load_dataset("fashion_mnist", "test")
        torch.manual_seed(0)
        if kind == "cnn":
            model = nn.Sequential(
                nn.Conv2d(1, 8, 5, stride=2),
                nn.ReLU(),
                nn.Conv2d(8, 16, 5, stride=2),
                nn.ReLU(),
                nn.Flatten(),
                nn.Linear(256, 10),
            )
        elif kind == "linear":
            model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
        else:
            raise ValueError(f"unknown model kind {kind!r}")
        train_classifier(
            model,
            data.x[:1000],
            data.y[:1000],
            epochs=3,
            batch_size=50,
            lr=1e-2,
            generator=torch.Generator().manual_seed(0),
            progress=False,
        )
        return model.eval(), data

    return build


def smoke_run(slug: str, out: Path) -> tuple[Any, dict[str, Any]]:
    """Run `slug` at smoke scale through the runner (papermill, recorder, catalog) and check what
    every reproduction's run must show: it succeeded and was stored, its rows start with
    expected.csv's in order, and its claims are the folder's. Returns (run result, summary)."""
    from repro.claims import load_claims
    from repro.config import repro_path
    from repro.expected import read_expected
    from repro.runner import run_reproduction

    result = run_reproduction(slug, scale="smoke", device="cpu", out=out)
    summary = result.summary
    assert summary["status"] == "succeeded", summary["error"]
    assert result.stored
    expected = [row.id for row in read_expected(repro_path(slug) / "expected.csv")]
    assert [r["id"] for r in summary["rows"]][: len(expected)] == expected
    assert [c["id"] for c in summary["claims"]] == [c.id for c in load_claims(repro_path(slug))]
    return result, summary
