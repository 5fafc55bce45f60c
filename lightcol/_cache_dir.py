"""Where lightcol keeps files: the cache folder of downloaded models and of files derived from them.

``cache_dir=`` when given, else ``$LIGHTCOL_CACHE_PATH``, else ``$XDG_CACHE_HOME/lightcol``, else
``~/.cache/lightcol`` (the environment is read at call time).
"""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variable naming the cache folder.
CACHE_ENV = "LIGHTCOL_CACHE_PATH"


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/lightcol`` if ``XDG_CACHE_HOME`` is set, else ``~/.cache/lightcol``."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "lightcol"


def resolve_cache_dir(cache_dir: str | os.PathLike[str] | None) -> Path:
    """``cache_dir`` if given, else ``$LIGHTCOL_CACHE_PATH``, else :func:`default_cache_dir` (absolute)."""
    if cache_dir is not None and str(cache_dir) != "":
        chosen = Path(cache_dir)
    elif os.environ.get(CACHE_ENV):
        chosen = Path(os.environ[CACHE_ENV])
    else:
        chosen = default_cache_dir()
    return chosen.expanduser().absolute()
