#!/usr/bin/env python
"""Qdrant with lightcol vectors: a MaxSim multivector collection, upsert, query.

    pip install 'lightcol[qdrant]'
    python examples/qdrant_example.py [MODEL] [QDRANT_URL]

Without QDRANT_URL it runs in qdrant-client's local mode (in memory, no server); with it, e.g.
``http://localhost:6333`` (``docker run -p 6333:6333 qdrant/qdrant``), against a Qdrant server.
"""

import sys

from qdrant_client import QdrantClient

from _shared import DOCUMENTS, QUERY, load_model
from lightcol.integrations import qdrant

model = load_model()
client = QdrantClient(url=sys.argv[2]) if len(sys.argv) > 2 else QdrantClient(":memory:")
if client.collection_exists("lightcol-example"):
    client.delete_collection("lightcol-example")
qdrant.create_collection(client, "lightcol-example", model)
qdrant.upsert(client, "lightcol-example", documents=DOCUMENTS, ids=range(len(DOCUMENTS)), model=model)
for point in qdrant.query(client, "lightcol-example", QUERY, model=model, limit=3):
    print(f"{point.score:8.3f}  {point.id}  {point.payload['text']}")
