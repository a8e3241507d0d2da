"""Paper maps tell the truth: every name a paper module's `Map:` points to exists.

A paper module's docstring maps the paper's equations and algorithm steps to the code (STYLE.md:
"Eq. 6 (...) -> `project`"), so that a reader who knows the paper finds them. A map that names a
function that was renamed or never written sends that reader nowhere; this test reads every map
and fails on each name that does not resolve.

Which modules: every `repro/<slug>/*.py` of a paper folder (a folder with a `repro.toml`) except
`reproduce.py` (a notebook: importing it would run it). Each has a module docstring (the folder's
`__init__.py` included), and each except `claims.py` (checks of the paper's claims, no method) has
a `Map` section.

How a map is read:
1. The section starts at a line that begins, at column 0, with the word `Map` and ends with `:`
   (`Map:`, `Map from the paper to the code:`). It ends at the first blank line or at the next
   line at column 0 that is not a bullet (`Deviations:`).
2. Its entries are bullets (`- `, indented or not); continuation lines belong to the bullet above.
   Each entry reads `paper -> code` and must contain `->` (outside backticks).
3. The targets are the backticked spans after the entry's first `->`; there must be at least one.
   A span's name is its leading (dotted) identifier, so `repro.fgsm.fgsm(model, x', y)` names
   `repro.fgsm.fgsm`; a span that does not start with an identifier is an error.
4. A name resolves when attribute look-ups from the module find it (`project`,
   `Projection.best_of`, a submodule such as `models`), or, for a dotted name, when it is an
   absolute import path followed by attributes (`repro.train.train_classifier`).
5. Locals: spans written "`a` in `f`" or "`a` / `b` in `f`" (spans joined by `/`, then `in` and
   one span) name a variable or parameter of `f`: `f` must resolve, and each local must occur as
   a word in `f`'s source.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import types
from dataclasses import dataclass
from pathlib import Path

import pytest

import repro

REPRO = Path(repro.__file__).resolve().parent
NOT_IMPORTED = {"reproduce.py"}  # notebooks run top-level code
NO_MAP = {"claims.py"}  # the paper's claims as checks: no method to map

HEADER = re.compile(r"^Map\b.*:\s*$")
BULLET = re.compile(r"^\s*- ")
SPAN = re.compile(r"`([^`]+)`")
NAME = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")
LOCALS = re.compile(r"((?:`[^`]+`\s*/\s*)*`[^`]+`)\s+in\s+`([^`]+)`")


class MapError(ValueError):
    """A map that cannot be read by the rules of the module docstring."""


@dataclass(frozen=True)
class Target:
    """One name a map entry points to; `owner` is set for a local ("`a` in `owner`")."""

    name: str
    owner: str | None = None


def map_entries(doc: str) -> list[str] | None:
    """The entries of the docstring's Map section (each joined on one line), or None if none."""
    lines = doc.splitlines()
    start = next((i for i, line in enumerate(lines) if HEADER.match(line)), None)
    if start is None:
        return None
    entries: list[list[str]] = []
    for line in lines[start + 1 :]:
        if not line.strip() or (not line[0].isspace() and not BULLET.match(line)):
            break
        if BULLET.match(line):
            entries.append([])
        elif not entries:
            raise MapError(f"text before the first bullet of the map: {line.strip()!r}")
        entries[-1].append(line.strip().removeprefix("- "))
    if not entries:
        raise MapError("the Map section has no entries")
    return [" ".join(parts) for parts in entries]


def _after_arrow(entry: str) -> str:
    """The text after the first `->` that is not inside backticks."""
    pieces = re.split(r"(`[^`]*`)", entry)
    for i, piece in enumerate(pieces):
        if not piece.startswith("`") and "->" in piece:
            return piece.split("->", 1)[1] + "".join(pieces[i + 1 :])
    raise MapError(f"entry without '->': {entry!r}")


def map_targets(entry: str) -> list[Target]:
    """The names one entry points to (rule 3), with the owner of each local (rule 5)."""
    text = _after_arrow(entry)
    owners: dict[int, str] = {}
    for group in LOCALS.finditer(text):
        for span in SPAN.finditer(group.group(1)):
            owners[group.start(1) + span.start()] = group.group(2)
    targets = []
    for span in SPAN.finditer(text):
        name = NAME.match(span.group(1).strip())
        if name is None:
            raise MapError(f"`{span.group(1)}` is not a name (entry {entry!r})")
        owner = owners.get(span.start())
        owner_name = NAME.match(owner.strip()) if owner is not None else None
        targets.append(Target(name.group(0), owner_name.group(0) if owner_name else None))
    if not targets:
        raise MapError(f"entry names no code after '->': {entry!r}")
    return targets


def resolve(module: types.ModuleType, name: str) -> object | None:
    """The object `name` refers to from `module` (rule 4), or None."""
    candidates = [(module, name.split("."))]
    if "." in name:
        candidates.append((None, name.split(".")))
    if hasattr(module, "__path__"):  # a package: its submodules
        candidates.append((None, [*module.__name__.split("."), *name.split(".")]))
    for base, parts in candidates:
        if base is None:  # absolute: the longest importable prefix, then attributes
            for cut in range(len(parts), 0, -1):
                try:
                    base = importlib.import_module(".".join(parts[:cut]))
                except ImportError:
                    continue
                parts = parts[cut:]
                break
            if base is None:
                continue
        obj: object = base
        try:
            for part in parts:
                obj = getattr(obj, part)
        except AttributeError:
            continue
        return obj
    return None


def unresolved(module: types.ModuleType, doc: str) -> list[str]:
    """Every map target of `doc` that does not resolve in `module`, as readable problems."""
    entries = map_entries(doc)
    if entries is None:
        return ["no Map section"]
    problems = []
    for entry in entries:
        for target in map_targets(entry):
            if target.owner is None:
                if resolve(module, target.name) is None:
                    problems.append(f"`{target.name}` does not exist")
                continue
            owner = resolve(module, target.owner)
            if owner is None:
                continue  # reported once, as a name of its own
            source = inspect.getsource(owner)  # type: ignore[arg-type]
            if not re.search(rf"\b{re.escape(target.name)}\b", source):
                problems.append(f"`{target.name}` is not in `{target.owner}`")
    return problems


# --- the paper modules ------------------------------------------------------------------------


def paper_folders() -> list[Path]:
    return sorted(p.parent for p in REPRO.glob("*/repro.toml"))


def paper_modules() -> list[Path]:
    return sorted(
        path
        for folder in paper_folders()
        for path in folder.glob("*.py")
        if path.name not in NOT_IMPORTED
    )


def module_name(path: Path) -> str:
    parts = ["repro", path.parent.name]
    return ".".join(parts if path.stem == "__init__" else [*parts, path.stem])


def test_the_paper_modules_are_found() -> None:
    """Guards the glob: an empty list would make the parametrized test below vacuous."""
    found = {f"{p.parent.name}/{p.name}" for p in paper_modules()}
    assert {"defense_gan/projection.py", "defense_gan/gan.py", "fgsm/__init__.py"} <= found
    assert "defense_gan/reproduce.py" not in found


@pytest.mark.parametrize("folder", paper_folders(), ids=lambda p: p.name)
def test_every_paper_folder_has_an_init_with_a_docstring(folder: Path) -> None:
    init = folder / "__init__.py"
    assert init.is_file(), f"repro/{folder.name}: no __init__.py"
    assert ast.get_docstring(ast.parse(init.read_text())), f"repro/{folder.name}/__init__.py"


@pytest.mark.parametrize("path", paper_modules(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_name_a_paper_map_points_to_exists(path: Path) -> None:
    doc = ast.get_docstring(ast.parse(path.read_text()))
    where = f"{path.parent.name}/{path.name}"
    assert doc, f"{where}: no module docstring"
    if path.name in NO_MAP:
        return
    module = importlib.import_module(module_name(path))
    try:
        problems = unresolved(module, doc)
    except MapError as exc:
        pytest.fail(f"{where}: the map does not follow the rules: {exc}")
    assert not problems, f"{where} ({module.__name__}): " + "; ".join(problems)


# --- the parser itself ------------------------------------------------------------------------


def _fixture_module() -> types.ModuleType:
    """A module with one function and one class, to point maps at."""
    module = types.ModuleType("fake_paper")

    def project(x: int, steps: int) -> int:
        best_loss = x + steps
        return best_loss

    class Projection:
        def best_of(self) -> None: ...

    module.project = project  # type: ignore[attr-defined]
    module.Projection = Projection  # type: ignore[attr-defined]
    return module


GOOD_AND_BAD = """Fake paper.

Map:
- Eq. (6), min_z ||G(z) - x||^2 -> `project` (the loop over `steps` in `project`).
- keep the best restart -> `Projection.best_of`, `best_loss` / `steps` in `project`,
  and the toolkit's `repro.train.train_classifier(..., adversary=...)`.
- the restart selection -> `_select`
- the stop rule -> `patience` in `project`
Deviations:
- none -> `not_checked_here`
"""


def test_parser_accepts_good_names_and_reports_bad_ones() -> None:
    entries = map_entries(GOOD_AND_BAD)
    assert entries is not None and len(entries) == 4  # "Deviations:" ends the section
    assert map_targets(entries[1]) == [
        Target("Projection.best_of"),
        Target("best_loss", "project"),
        Target("steps", "project"),
        Target("project"),
        Target("repro.train.train_classifier"),
    ]
    assert unresolved(_fixture_module(), GOOD_AND_BAD) == [
        "`_select` does not exist",
        "`patience` is not in `project`",
    ]


def test_parser_rejects_maps_it_cannot_read() -> None:
    module = _fixture_module()
    assert unresolved(module, "Fake.\n\nDeviations: none.\n") == ["no Map section"]
    with pytest.raises(MapError, match="without '->'"):
        unresolved(module, "Fake.\n\nMap:\n- Eq. 1 is `project`\n")
    with pytest.raises(MapError, match="names no code"):
        unresolved(module, "Fake.\n\nMap:\n- Eq. 1 -> the projection\n")
    with pytest.raises(MapError, match="not a name"):
        unresolved(module, 'Fake.\n\nMap:\n- Eq. 1 -> `"A".."F"`\n')
    with pytest.raises(MapError, match="no entries"):
        unresolved(module, "Fake.\n\nMap:\nDeviations: none.\n")


def test_a_package_map_may_name_its_submodules() -> None:
    package = importlib.import_module("repro.defense_gan")
    assert resolve(package, "projection") is importlib.import_module("repro.defense_gan.projection")
    assert resolve(package, "no_such_module") is None
