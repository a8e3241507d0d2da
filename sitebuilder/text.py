"""Text for people: numbers, deltas, durations and times as the pages print them; safe file names;
the folded text of the client-side search.

Numbers are formatted here and nowhere else, so the same value reads the same on every page.
"""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from typing import Any

from markupsafe import Markup, escape

from catalog.compare import parse_time

__all__ = [
    "fmt_date",
    "fmt_delta",
    "fmt_number",
    "fmt_paper",
    "fmt_pct",
    "fmt_seconds",
    "fmt_time",
    "safe_name",
    "search_text",
    "wbr",
]


def fmt_number(value: float | None, digits: int = 4) -> str:
    """A measured number with `digits` significant digits; an en dash for nothing."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if value == 0:
        return "0"
    text = f"{value:.{digits}g}"
    if "e" in text:
        text = f"{value:.{digits}e}"
    return text


def fmt_paper(value: float | None) -> str:
    """A paper's number as it was transcribed (up to 6 significant digits, no rounding noise)."""
    return fmt_number(value, 6)


def fmt_delta(value: float | None) -> str:
    """A signed difference (ours - paper) with a real minus sign; an en dash for nothing."""
    if value is None:
        return "–"
    text = fmt_number(abs(value))
    return "+" + text if value > 0 else ("−" + text if value < 0 else text)


def fmt_pct(value: float | None) -> str:
    """Accuracy in percent for the comparison: one decimal, two when the paper printed two."""
    if value is None:
        return "–"
    text = f"{value:.2f}"
    return text[:-1] if text.endswith("0") else text


def fmt_seconds(value: float | None) -> str:
    """Wall time for people: 42 s, 3 min 20 s, 2 h 05 min."""
    if value is None:
        return "–"
    seconds = round(value)
    if seconds < 60:
        return f"{value:.1f} s" if value < 10 else f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def fmt_time(value: Any) -> str:
    """A run's time to the minute, in UTC (`2026-11-21 04:00 UTC`); an en dash for nothing."""
    dt = parse_time(value)
    return dt.strftime("%Y-%m-%d %H:%M UTC") if dt else "–"


def fmt_date(value: Any) -> str:
    """A run's date (`2026-11-21`); empty for nothing."""
    dt = parse_time(value)
    return dt.strftime("%Y-%m-%d") if dt else ""


def safe_name(text: str) -> str:
    """A file name for a key/slug/run id: itself when already safe, else a cleaned form + hash."""
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,150}", text) and ".." not in text:
        return text
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")[:80] or "x"
    return f"{cleaned}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"


def search_text(*parts: str | None) -> str:
    """Lower-case, accent-free text for the client-side search (search.js folds the same way)."""
    text = " ".join(p for p in parts if p)
    if not text.isascii():
        text = unicodedata.normalize("NFD", text)
        text = re.sub("[\u0300-\u036f]", "", text)  # the range search.js strips
    return re.sub(r"\s+", " ", text.lower()).strip()


def wbr(text: Any) -> Markup:
    """Escape `text` and allow line breaks after `_`, `-` and `.` (long row ids and run ids)."""
    escaped = str(escape(str(text)))
    return Markup(re.sub(r"([_.-])", r"\1<wbr>", escaped))
