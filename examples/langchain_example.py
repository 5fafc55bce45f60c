#!/usr/bin/env python
"""LangChain with lightcol: rerank candidate Documents by MaxSim, and retrieve from a collection.

    pip install 'lightcol[langchain]'
    python examples/langchain_example.py [MODEL]
"""

from langchain_core.documents import Document

from _shared import DOCUMENTS, QUERY, load_model
from lightcol import MultiVectorCollection
from lightcol.integrations.langchain import LightcolReranker, LightcolRetriever

model = load_model()
candidates = [Document(page_content=t, metadata={"source": i}) for i, t in enumerate(DOCUMENTS)]
for doc in LightcolReranker(model=model, top_n=2).compress_documents(candidates, QUERY):
    print(f"rerank    {doc.metadata['relevance_score']:8.3f}  {doc.page_content}")

collection = MultiVectorCollection()
collection.add(range(len(DOCUMENTS)), model.embed(DOCUMENTS))
retriever = LightcolRetriever(source=collection, model=model, documents=DOCUMENTS, k=2)
for doc in retriever.invoke(QUERY):
    print(f"retrieve  {doc.metadata['relevance_score']:8.3f}  {doc.page_content}")
