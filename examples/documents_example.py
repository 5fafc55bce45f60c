#!/usr/bin/env python
"""RAGatouille's notebook workflow with lightcol: index long documents (split into passages that fit),
search with content and metadata, add, delete, reopen, and a LangChain retriever.

    python examples/documents_example.py [MODEL]        # LangChain part: pip install 'lightcol[langchain]'
"""

import tempfile
from pathlib import Path

from _shared import DOCUMENTS, QUERY, load_model
from lightcol import DocumentIndex

model = load_model()
long_document = " ".join(DOCUMENTS * 8)  # longer than the model's document length: split into passages
with tempfile.TemporaryDirectory() as tmp:
    path = Path(tmp) / "my-index"
    index = DocumentIndex.create(
        path, model, texts=[long_document, DOCUMENTS[2]], document_ids=["long", "dewey"],
        metadata=[{"source": "repeated"}, None], split_documents=True,
    )
    print(index)
    for r in index.search(QUERY, k=3):
        print(f"{r['rank']}  {r['score']:7.3f}  {r['document_id']}/{r['passage_id']}  {r['content'][:60]}...")
    index.add([DOCUMENTS[3]], document_ids=["onnx"])
    index.delete(["dewey"])
    index.close()
    index = DocumentIndex.open(path)  # the model recorded at creation
    print("by document:", [(r["document_id"], round(r["score"], 3)) for r in index.search(QUERY, k=3, by_document=True)])
    try:
        retriever = index.as_langchain_retriever(k=2)
    except ImportError as e:
        print(e)
    else:
        for doc in retriever.invoke(QUERY):
            print("langchain:", doc.metadata["document_id"], doc.page_content[:60])
