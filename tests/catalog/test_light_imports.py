"""`catalog list` / `search` start fast: the CLI's import path holds neither pandas nor torch nor
the site builder (they are imported inside the commands that need them)."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("pandas", "torch", "sitebuilder")


@pytest.mark.parametrize(
    "module", ["catalog.cli", "repro.cli", "catalog.schema", "catalog.compare"]
)
def test_cli_import_path_stays_light(module: str) -> None:
    code = f"import sys, {module}\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"{module} imports {out.stdout.strip()} at start-up"


def test_the_check_can_fail() -> None:
    """The probe above sees a heavy import when there is one (pandas imported on purpose)."""
    code = "import sys, catalog.compare, pandas\nprint('pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
