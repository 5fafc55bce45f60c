"""Glue between lightcol and the vector stores and RAG frameworks people use.

One module per target, each an optional extra (nothing here is imported by ``import lightcol``):

* :mod:`lightcol.integrations.qdrant` (``lightcol[qdrant]``): multivector collections with MaxSim.
* :mod:`lightcol.integrations.lancedb` (``lightcol[lancedb]``): multivector tables (cosine).
* :mod:`lightcol.integrations.weaviate` (``lightcol[weaviate]``): self-provided multi-vectors.
* :mod:`lightcol.integrations.langchain` (``lightcol[langchain]``): reranker and retriever.
* :mod:`lightcol.integrations.llama_index` (``lightcol[llama-index]``): node postprocessor and retriever.

Every store ranks exactly as lightcol's exhaustive MaxSim: lightcol's rows are unit-norm, so a
store's cosine between token vectors equals their dot product.
"""
