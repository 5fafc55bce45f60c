#!/usr/bin/env python
"""LlamaIndex with lightcol: rerank NodeWithScores by MaxSim, and retrieve from a collection.

    pip install 'lightcol[llama-index]'
    python examples/llama_index_example.py [MODEL]
"""

from llama_index.core.schema import NodeWithScore, TextNode

from _shared import DOCUMENTS, QUERY, load_model
from lightcol import MultiVectorCollection
from lightcol.integrations.llama_index import LightcolRerank, LightcolRetriever

model = load_model()
nodes = [NodeWithScore(node=TextNode(text=t), score=0.0) for t in DOCUMENTS]
for n in LightcolRerank(model=model, top_n=2).postprocess_nodes(nodes, query_str=QUERY):
    print(f"rerank    {n.score:8.3f}  {n.node.get_content()}")

collection = MultiVectorCollection()
collection.add(range(len(DOCUMENTS)), model.embed(DOCUMENTS))
for n in LightcolRetriever(collection, model, DOCUMENTS, similarity_top_k=2).retrieve(QUERY):
    print(f"retrieve  {n.score:8.3f}  {n.node.get_content()}")
