"""LangChain: a MaxSim reranker (document compressor) and a retriever over a collection or index.

    from lightcol.integrations.langchain import LightcolReranker, LightcolRetriever

    reranker = LightcolReranker(model=model, top_n=5)
    best = reranker.compress_documents(candidates, "what is late interaction?")

    retriever = LightcolRetriever(source=collection, model=model, documents=texts_by_id, k=5)
    docs = retriever.invoke("what is late interaction?")

No torch: langchain-core only. Scores are lightcol's MaxSim, in ``metadata["relevance_score"]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lightcol._optional import require
from lightcol.integrations._common import Searchable, check_top_n, lookup, query_vectors

__all__ = ["LightcolReranker", "LightcolRetriever", "LightcolDocumentIndexRetriever"]

_FEATURE = "lightcol.integrations.langchain"
_documents = require("langchain_core.documents", "langchain", _FEATURE)
_compressor = require("langchain_core.documents.compressor", "langchain", _FEATURE)
_retrievers = require("langchain_core.retrievers", "langchain", _FEATURE)
_pydantic = require("pydantic", "langchain", _FEATURE)
Document = _documents.Document


def _scored(doc: Any, score: float, **extra: Any) -> Any:
    """A copy of ``doc`` with ``relevance_score`` (and ``extra``) in its metadata."""
    return Document(page_content=doc.page_content, metadata={**doc.metadata, **extra, "relevance_score": score}, id=doc.id)


class LightcolReranker(_compressor.BaseDocumentCompressor):  # type: ignore[misc, name-defined]
    """Rerank documents by MaxSim with a :class:`~lightcol.LateInteractionTextEmbedding`: the ``top_n``
    best, best first, each with ``metadata["relevance_score"]``."""

    model: Any
    top_n: int = 3
    batch_size: int = 64

    model_config = _pydantic.ConfigDict(arbitrary_types_allowed=True)

    @_pydantic.field_validator("top_n")
    @classmethod
    def _check_top_n(cls, v: int) -> int:
        return check_top_n(v)

    def compress_documents(self, documents: Sequence[Any], query: str, callbacks: Any = None) -> Sequence[Any]:
        docs = list(documents)
        if not docs:
            return []
        idx, scores = self.model.rerank(query, [d.page_content for d in docs], k=self.top_n, batch_size=self.batch_size)
        return [_scored(docs[i], float(s)) for i, s in zip(idx.tolist(), scores.tolist(), strict=True)]


class LightcolRetriever(_retrievers.BaseRetriever):  # type: ignore[misc, name-defined]
    """The ``k`` best documents of a :class:`~lightcol.MultiVectorCollection` or ``lightcol.Index``
    (anything with ``search(query_vectors, k)``) for a query text.

    ``documents`` maps a result id to a ``Document`` or a text: a mapping, a sequence (ids are
    positions) or a function. Each result has ``id`` set to the lightcol id and
    ``metadata["relevance_score"]``.
    """

    source: Any
    model: Any
    documents: Any
    k: int = 4

    model_config = _pydantic.ConfigDict(arbitrary_types_allowed=True)

    @_pydantic.field_validator("k")
    @classmethod
    def _check_k(cls, v: int) -> int:
        return check_top_n(v)

    def _get_relevant_documents(self, query: str, *, run_manager: Any = None) -> list[Any]:
        source: Searchable = self.source
        out = []
        for doc_id, score in source.search(query_vectors(self.model, query), k=self.k):
            doc = lookup(self.documents, doc_id)
            if isinstance(doc, str):
                doc = Document(page_content=doc, id=str(doc_id))
            out.append(_scored(doc, float(score), id=doc_id))
        return out




def _where(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``search_kwargs`` for :meth:`DocumentIndex.search`: LangChain's ``filter`` is lightcol's ``where``."""
    from lightcol.errors import ArgumentError

    out = dict(kwargs)
    if "filter" in out:
        if out.get("where") is not None:
            raise ArgumentError("give the metadata filter as filter= or where=, not both.")
        out["where"] = out.pop("filter")
    out.pop("k", None)
    return out


class LightcolDocumentIndexRetriever(_retrievers.BaseRetriever):  # type: ignore[misc, name-defined]
    """Passages of a :class:`~lightcol.DocumentIndex` for a query text (``index.as_langchain_retriever()``).

    ``search_kwargs`` go to :meth:`~lightcol.DocumentIndex.search` (``filter``/``where``, ``mode``,
    ``alpha``, ``by_document``...; ``"k"`` there sets ``k``, as in LangChain's vector-store retrievers);
    keyword arguments of ``invoke`` override them for one call: ``retriever.invoke(q, filter={"lang": "en"})``.
    Each ``Document`` has the passage as ``page_content``, its document's metadata plus ``document_id``,
    ``passage_id`` and ``relevance_score`` as ``metadata``, and ``id`` the passage id.
    """

    index: Any
    k: int = 4
    search_kwargs: dict[str, Any] = _pydantic.Field(default_factory=dict)

    model_config = _pydantic.ConfigDict(arbitrary_types_allowed=True)

    @_pydantic.field_validator("k")
    @classmethod
    def _check_k(cls, v: int) -> int:
        return check_top_n(v)

    def _get_relevant_documents(self, query: str, *, run_manager: Any = None, **kwargs: Any) -> list[Any]:
        k = check_top_n(kwargs.get("k", self.search_kwargs.get("k", self.k)))
        options = {**_where(self.search_kwargs), **_where(kwargs)}
        out = []
        for r in self.index.search(query, k, **options):
            meta = {**r.get("document_metadata", {}), "document_id": r["document_id"], "passage_id": r["passage_id"],
                    "relevance_score": r["score"]}
            if "highlights" in r:
                meta["highlights"] = r["highlights"]
            out.append(Document(page_content=r["content"], metadata=meta, id=str(r["passage_id"])))
        return out
