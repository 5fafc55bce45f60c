#!/usr/bin/env python
"""LanceDB with lightcol vectors: a multivector table, then a MaxSim search.

    pip install 'lightcol[lancedb]'
    python examples/lancedb_example.py [MODEL] [FOLDER]

The table lives in FOLDER (default: a temporary folder); LanceDB runs embedded, no server.
"""

import sys
import tempfile

import lancedb

from _shared import DOCUMENTS, QUERY, load_model
from lightcol.integrations import lancedb as lc

model = load_model()
db = lancedb.connect(sys.argv[2] if len(sys.argv) > 2 else tempfile.mkdtemp())
table = lc.create_table(db, "docs", model, documents=DOCUMENTS, mode="overwrite")
for row in lc.search(table, QUERY, model=model, limit=3):
    print(f"{row['score']:8.3f}  {row['id']}  {row['text']}")
