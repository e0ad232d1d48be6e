"""Closest valid name for a typo'd stage, executor or command: errors that say what was meant."""

from __future__ import annotations

import difflib
from typing import Iterable


def closest(name: str, options: Iterable[str]) -> str | None:
    found = difflib.get_close_matches(str(name), [str(o) for o in options], n=1, cutoff=0.6)
    return found[0] if found else None


def did_you_mean(name: str, options: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest valid name, or '' when nothing is close."""
    match = closest(name, options)
    return f" (did you mean {match!r}?)" if match else ""
