"""An embedded ColBERT index: PLAID-style compression, centroid candidate generation, one memory-mapped file."""

from lightcol.index.index import Index, MergePolicy

__all__ = ["Index", "MergePolicy"]
