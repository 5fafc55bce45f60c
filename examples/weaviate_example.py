#!/usr/bin/env python
"""Weaviate with lightcol vectors: a self-provided multi-vector collection, insert, near_vector.

    pip install 'lightcol[weaviate]'
    python examples/weaviate_example.py [MODEL] [--server]

With ``--server`` it talks to a local Weaviate >= 1.29 (``weaviate.connect_to_local()``, e.g.
``docker run -p 8080:8080 -p 50051:50051 cr.weaviate.io/semitechnologies/weaviate``); without it,
it prints the collection config and the first object as the client would send them.
"""

import sys

from _shared import DOCUMENTS, QUERY, load_model
from lightcol.integrations import weaviate as lw

model = load_model([a for a in sys.argv if a != "--server"])
if "--server" not in sys.argv:
    from weaviate.collections.classes.config import _CollectionConfigCreate

    print("collection config:", _CollectionConfigCreate(**lw.collection_config("Docs"))._to_dict())
    first = next(lw.data_objects(DOCUMENTS, model=model, show_progress=False))[0]
    vectors = first.vector["colbert"]
    print(f"object {first.uuid}: {first.properties}, colbert: {len(vectors)} x {len(vectors[0])} floats")
    raise SystemExit(0)

import weaviate  # noqa: E402

with weaviate.connect_to_local() as client:
    if client.collections.exists("LightcolExample"):
        client.collections.delete("LightcolExample")
    docs = lw.create_collection(client, "LightcolExample")
    lw.insert(docs, DOCUMENTS, model=model)
    for obj in lw.query(docs, QUERY, model=model, limit=3).objects:
        print(f"{obj.metadata.distance:8.3f}  {obj.properties['doc_id']}  {obj.properties['text']}")
