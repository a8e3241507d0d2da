"""Writers of `papers/`: the folder lock and the file guard that keep files and catalog in step.

`bib_lock` serialises every command that reads `papers/` and then writes the database from what it
read (`catalog add`, `catalog sync`): two adds at once would each rewrite references.bib from the
same old text and one addition would be lost, and a `sync --prune` that read the files just before
an add wrote them would delete the paper the add had just stored. `FileGuard` puts files back when
the database part of a command fails, so `references.bib` and the catalog never disagree.
`signals_unwind` makes SIGTERM (a scheduler, `kill`, a closing terminal's shell) unwind a writer
the way Ctrl-C does, so the guard and the transaction get to put things back.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

from catalog import CatalogError
from catalog import bibwrite as bw
from catalog.config import project_root

__all__ = ["FileGuard", "Terminated", "bib_lock", "signals_unwind"]


class Terminated(BaseException):
    """SIGTERM, raised where the main thread is (like KeyboardInterrupt for SIGINT), so `with`
    blocks unwind: files restored, the transaction rolled back, locks released."""


@contextmanager
def signals_unwind() -> Iterator[None]:
    """Within the block, SIGTERM raises `Terminated` instead of killing the process outright
    (Python's default SIGTERM does no clean-up at all). SIGINT already raises KeyboardInterrupt.
    Outside the main thread signals cannot be handled, and the block runs unchanged."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, _frame: object) -> None:
        raise Terminated(signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def bib_lock(root: Path | None = None) -> Iterator[None]:
    """Hold the exclusive lock on `root/papers/` for the block (waiting for it as long as needed).

    Hold it around the whole command, database commit included: the lock only helps if the files a
    command read still describe the database when its transaction commits.

    An exclusive `flock` on the `papers/` folder itself: no lock file to leave behind, and it still
    works although each write replaces references.bib by a new file. Plain readers never wait. Each
    call opens its own descriptor, so the lock is not re-entrant: a thread or process holding it
    blocks every other holder, the same process included. Without `papers/` there is nothing to
    protect (the command reports the missing files itself).
    """
    root = Path(root) if root is not None else project_root()
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; concurrent writers stay racy there
        yield
        return
    try:
        fd = os.open(root / "papers", os.O_RDONLY)
    except FileNotFoundError:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


class FileGuard:
    """Files written during a command, restored to their old content if the command fails.

    Used around the database transaction: if anything after the atomic write fails (the database
    part included), every file is put back, so `references.bib` and the catalog never disagree.
    """

    def __init__(self) -> None:
        self._saved: dict[Path, bytes | None] = {}

    def __enter__(self) -> FileGuard:
        return self

    def write(self, path: Path, text: str) -> None:
        """Atomically replace `path`, remembering what it held first."""
        path = Path(path)
        try:
            old = path.read_bytes() if path.exists() else None
            bw.atomic_write(path, text)  # all or nothing: a failed write changed nothing
        except OSError as exc:  # read-only folder or file system, a folder in the way, disk full
            raise CatalogError(f"{path}: cannot write: {exc.strerror or exc}") from exc
        self._saved.setdefault(path, old)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            return
        for path, old in self._saved.items():
            if old is None:
                path.unlink(missing_ok=True)
            else:
                bw.atomic_write(path, old.decode("utf-8"))
