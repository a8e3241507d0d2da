"""Provisioning for the runner: before a notebook starts, download the datasets it needs that are
nowhere on this machine (`repro run`; `--offline` / `REPRO_OFFLINE=1` forbids it). Finding, checking
and loading data is `repro.data`; this module only decides what to fetch and reports what it did.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from repro import data as _data

__all__ = ["Provided", "provide"]


@dataclass(frozen=True)
class Provided:
    """What `provide` did for one dataset: `present` (found in a root), `downloaded` (now in the
    user cache), or `missing` (`detail` says why it could not be fetched)."""

    name: str
    status: str
    detail: str = ""


def provide(
    names: list[str] | tuple[str, ...],
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
) -> list[Provided]:
    """Make each dataset of `names` available, downloading the missing ones when allowed.

    A dataset is downloaded (both splits; only the test split for `mnist-test-split`) into the user
    cache when it is in none of `data_roots(data_dir)`, `download` is true, `REPRO_OFFLINE` is not
    set, and its host accepts a connection within `repro.data.ONLINE_TIMEOUT_S` seconds. Never raises for a
    dataset that stays missing: the caller decides (the runner warns, and the notebook records the
    rows as not run or fails with `DataUnavailable`). Names this module does not know (a dataset a
    notebook supplies itself) are left out of the answer.
    """
    answers: list[Provided] = []
    for name in dict.fromkeys(names):
        if _data._ALIASES.get(name, name) not in _data.DATASETS:
            continue
        if _data.available(name, data_dir):
            answers.append(Provided(name, "present"))
            continue
        spec = _data.DATASETS[_data._canonical(name)]
        if not download or _data.offline():
            why = "downloading is forbidden (--offline / REPRO_OFFLINE=1)"
            answers.append(Provided(name, "missing", f"not found, and {why}"))
            continue
        if not _data._reachable(spec.host, spec.port):
            answers.append(
                Provided(
                    name,
                    "missing",
                    f"not found, and {spec.host} did not answer within {_data.ONLINE_TIMEOUT_S:g} s",
                )
            )
            continue
        try:
            for split in ["test"] if name == "mnist-test-split" else _data.SPLITS:
                _data._download(spec, split)
        except _data.DataUnavailable as exc:
            answers.append(Provided(name, "missing", str(exc)))
            continue
        if not _data.available(name, data_dir):
            answers.append(
                Provided(
                    name, "missing", f"downloaded into {_data._user_data_root()} but not found"
                )
            )
            continue
        answers.append(
            Provided(name, "downloaded", f"into {_data._user_data_root()} from {spec.host}")
        )
    return answers
