"""What one request may hold and how much may wait: the service's limits and their defaults (no imports)."""

from __future__ import annotations

from dataclasses import dataclass

#: Texts that may wait for a batch before requests get 503 (``--max-queue``).
MAX_QUEUE = 1024


@dataclass(frozen=True)
class Limits:
    """What one request may hold (``lightcol serve --max-body-bytes --max-texts --max-chars``)."""

    max_body_bytes: int = 16 << 20
    max_texts: int = 256
    max_chars: int = 200_000
