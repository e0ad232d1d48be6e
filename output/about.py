"""Who made these files: the tool's name and version, quoted by the CLI, the report and the card."""

from __future__ import annotations

import functools

TOOL = "binauralize"


@functools.lru_cache(maxsize=1)
def tool_version() -> str:
    """The installed package's version (pyproject.toml); '0+unknown' when run from an uninstalled tree."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(TOOL)
    except PackageNotFoundError:
        return "0+unknown"
