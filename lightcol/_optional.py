"""Optional dependencies (extras): import them only where used, with an error that names the extra."""

from __future__ import annotations

import importlib
from types import ModuleType


def require(module: str, extra: str, feature: str | None = None) -> ModuleType:
    """Import ``module``; if it is not installed, raise ``ImportError`` saying which extra to install.

    ``feature`` names what needed it (default: ``lightcol[extra]``'s own name), for the message.
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        what = feature or f"lightcol's {extra} support"
        raise ImportError(
            f"{what} needs the optional package {module.split('.')[0]!r}, which is not installed "
            f"({e}); install it with: pip install 'lightcol[{extra}]'"
        ) from e
