"""Notebook execution for the runner: papermill with a kernel forced to this interpreter, live
progress (each cell announced, the notebook's own bars echoed), the kernel's environment, and
SIGINT / SIGTERM handling that kills the kernel's process group at once.

Split from `repro.runner` (which re-exports what its callers use); `repro.runner`'s docstring
describes the behaviour.
"""

from __future__ import annotations

import logging
import math
import os
import re
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from repro import ReproError

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class _Stopped(KeyboardInterrupt):
    """Raised by the runner's signal handler once the kernel is dead; names the signal."""

    def __init__(self, signal_name: str) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name


def _kernel_manager_class(
    started: list[Any] | None = None, extra_args: list[str] | None = None
) -> type:
    """nbclient's kernel manager, with the `python3` kernelspec forced to `sys.executable` (and
    `extra_args` appended to the kernel's command line); each instance is appended to `started`
    (so that an interruption can kill its kernel)."""
    from jupyter_client.manager import AsyncKernelManager

    class SameInterpreterKernelManager(AsyncKernelManager):
        """Launch the kernel with the runner's own interpreter (the venv with torch)."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            if started is not None:
                started.append(self)

        @property
        def kernel_spec(self):  # type: ignore[override]
            spec = super().kernel_spec
            if spec is not None and spec.argv[1:3] == ["-m", "ipykernel_launcher"]:
                spec.argv = [sys.executable, *spec.argv[1:]]
            if spec is not None and extra_args:
                spec.argv = [*spec.argv, *(a for a in extra_args if a not in spec.argv)]
            return spec

    return SameInterpreterKernelManager


def _cell_titles(nb: Any) -> dict[int, str]:
    """1-based cell numbers (as papermill counts them after injecting the parameters cell) of code
    cells, with the first line worth showing."""
    titles: dict[int, str] = {}
    number = 0
    for cell in nb.cells:
        number += 1
        if cell.cell_type == "code":
            lines = [ln.strip() for ln in cell.source.splitlines()]
            first = next((ln for ln in lines if ln and not ln.startswith("#")), "")
            comment = next((ln.lstrip("# ") for ln in lines if ln.startswith("#")), "")
            titles[number] = (comment or first)[:70]
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            number += 1
            titles[number] = "(injected parameters)"
    titles[0] = str(number)  # total
    return titles


class _NotebookEcho(logging.Handler):
    """Echo papermill's `log_output` live: the notebook's own output raw (so tqdm's carriage
    returns redraw a bar in a terminal), a line per code cell, and papermill's warnings.

    When the stream is not a terminal (CI logs, nox), carriage-return redraws become lines, at most
    one every `throttle_s` seconds per bar, so the log shows progress without thousands of lines.
    """

    def __init__(self, stream: TextIO, titles: dict[int, str], throttle_s: float = 10.0) -> None:
        super().__init__(logging.INFO)
        self.stream = stream
        self.titles = titles
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.throttle_s = throttle_s
        self.last_frame = -math.inf
        self.at_line_start = True

    def _write(self, text: str) -> None:
        if not text:
            return
        self.stream.write(text)
        self.stream.flush()
        self.at_line_start = text.endswith(("\n", "\r"))

    def _line(self, text: str) -> None:
        if not self.at_line_start:
            self._write("\n")
        self._write(text + "\n")

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.funcName == "log_output_message":
                self._output(message)
            elif message.startswith("Executing Cell"):
                found = re.search(r"\d+", message)
                number = int(found.group()) if found else 0
                if number in self.titles:
                    self._line(f"── cell {number}/{self.titles[0]}: {self.titles[number]}")
            elif record.levelno >= logging.WARNING and not message.startswith("Ending Cell"):
                self._line(f"papermill: {message}")
        except Exception:
            self.handleError(record)

    def _output(self, text: str) -> None:
        if self.tty:
            self._write(text)
            return
        # Not a terminal: split redraws; keep complete lines, throttle bare redraw frames.
        for piece in re.split(r"(\r(?!\n))", text):
            if not piece or piece == "\r":
                continue
            if piece.endswith("\n"):
                self._line(piece.rstrip("\n"))
            elif time.monotonic() - self.last_frame >= self.throttle_s:
                self.last_frame = time.monotonic()
                self._line(piece)


def _notebook(source: Path) -> Any:
    """`reproduce.py` (Jupytext percent format) as a notebook with the `python3` kernelspec."""
    import jupytext

    try:
        nb = jupytext.read(source, fmt="py:percent")
    except Exception as exc:
        raise ReproError(f"{source}: cannot be read as a Jupytext notebook: {exc}") from exc
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata.setdefault("language_info", {"name": "python"})
    if not any("parameters" in c.get("metadata", {}).get("tags", []) for c in nb.cells):
        raise ReproError(f'{source}: no cell tagged parameters (# %% tags=["parameters"])')
    return nb


def _kill_kernels(managers: list[Any]) -> None:
    """SIGKILL each started kernel's process group (the launcher gives every kernel its own
    session): a kernel that is told to shut down mid-cell prints a traceback, a killed one nothing."""
    for manager in managers:
        provisioner = getattr(manager, "provisioner", None)
        process = getattr(provisioner, "process", None)
        if process is None or process.poll() is not None:
            continue
        try:
            pgid = getattr(provisioner, "pgid", None)
            if pgid and pgid != os.getpgrp() and hasattr(os, "killpg"):
                os.killpg(pgid, signal.SIGKILL)
            else:
                process.kill()
        except OSError:
            pass


@contextmanager
def _stop_on_signals(managers: list[Any]) -> Iterator[None]:
    """While the notebook runs, SIGINT and SIGTERM kill the kernel first, then raise `_Stopped`.

    A signal the process ignores (SIGINT in a background job) stays ignored; outside the main
    thread (where Python cannot install handlers) the defaults stay.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: Any) -> None:
        _kill_kernels(managers)
        raise _Stopped(signal.Signals(signum).name)

    saved = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous = signal.getsignal(sig)
        if previous is signal.SIG_IGN:
            continue
        saved[sig] = previous
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, previous in saved.items():
            signal.signal(sig, previous)


@contextmanager
def _kernel_environment(changes: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the kernel (it inherits the runner's environment) and put
    the runner's own back afterwards."""
    saved = {name: os.environ.get(name) for name in changes}
    os.environ.update(changes)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _execute(
    nb: Any,
    output: Path,
    parameters: dict[str, Any],
    cwd: Path,
    progress: bool,
    kernel_args: list[str] | None = None,
) -> str | None:
    """Run the notebook with papermill into `output`; the error text when it fails, else None.

    SIGINT/SIGTERM kill the kernel and raise `_Stopped` (see `_stop_on_signals`).
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    logger = logging.getLogger("papermill")
    handler = _NotebookEcho(sys.stderr, _cell_titles(nb)) if progress else None
    saved = (logger.level, logger.propagate)
    if handler is not None:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    managers: list[Any] = []
    try:
        with _stop_on_signals(managers):
            papermill.execute_notebook(
                nb,
                str(output),
                parameters=parameters,
                kernel_name="python3",
                cwd=str(cwd),
                log_output=progress,
                progress_bar=False,
                request_save_on_cell_execute=True,
                kernel_manager_class=_kernel_manager_class(managers, kernel_args),
            )
    except KeyboardInterrupt as exc:  # Ctrl-C before the handler was in place, or _Stopped
        _kill_kernels(managers)
        if isinstance(exc, _Stopped):
            raise
        raise _Stopped("SIGINT") from None
    except PapermillExecutionError as exc:
        trace = _ANSI.sub("", "\n".join(exc.traceback))
        return f"{exc.ename}: {exc.evalue} (cell {exc.exec_count})\n{trace}"
    except Exception:
        return f"the notebook could not be executed:\n{traceback.format_exc()}"
    finally:
        if handler is not None:
            logger.removeHandler(handler)
            logger.setLevel(saved[0])
            logger.propagate = saved[1]
    return None
