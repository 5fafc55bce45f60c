"""LlamaIndex: a MaxSim node postprocessor (reranker) and a retriever over a collection or index.

    from lightcol.integrations.llama_index import LightcolRerank, LightcolRetriever

    rerank = LightcolRerank(model=model, top_n=5)
    best = rerank.postprocess_nodes(nodes, query_str="what is late interaction?")

    retriever = LightcolRetriever(source=collection, model=model, nodes=texts_by_id, similarity_top_k=5)
    results = retriever.retrieve("what is late interaction?")

No torch: llama-index-core only. ``NodeWithScore.score`` is lightcol's MaxSim.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from lightcol._optional import require
from lightcol.integrations._common import Searchable, check_top_n, lookup, query_vectors

__all__ = ["LightcolRerank", "LightcolRetriever", "LightcolDocumentIndexRetriever", "where_from_filters"]

_FEATURE = "lightcol.integrations.llama_index"
_bridge = require("llama_index.core.bridge.pydantic", "llama-index", _FEATURE)
_types = require("llama_index.core.postprocessor.types", "llama-index", _FEATURE)
_retrievers = require("llama_index.core.base.base_retriever", "llama-index", _FEATURE)
_schema = require("llama_index.core.schema", "llama-index", _FEATURE)


class LightcolRerank(_types.BaseNodePostprocessor):  # type: ignore[misc, name-defined]
    """Rerank ``NodeWithScore``s by MaxSim with a :class:`~lightcol.LateInteractionTextEmbedding`:
    the ``top_n`` best, best first, ``score`` set to MaxSim."""

    model: Any = _bridge.Field(description="a lightcol LateInteractionTextEmbedding")
    top_n: int = _bridge.Field(default=5, description="how many nodes to keep")
    batch_size: int = _bridge.Field(default=64, description="texts per ONNX Runtime call")

    @_bridge.field_validator("top_n")
    @classmethod
    def _check_top_n(cls, v: int) -> int:
        return check_top_n(v)

    @classmethod
    def class_name(cls) -> str:
        return "LightcolRerank"

    def _postprocess_nodes(self, nodes: list[Any], query_bundle: Any = None) -> list[Any]:
        if query_bundle is None:
            raise ValueError("LightcolRerank needs the query: pass query_bundle= or query_str=")
        if not nodes:
            return []
        texts = [n.node.get_content(metadata_mode=_schema.MetadataMode.EMBED) for n in nodes]
        idx, scores = self.model.rerank(query_bundle.query_str, texts, k=self.top_n, batch_size=self.batch_size)
        return [_schema.NodeWithScore(node=nodes[i].node, score=float(s)) for i, s in zip(idx.tolist(), scores.tolist(), strict=True)]


class LightcolRetriever(_retrievers.BaseRetriever):  # type: ignore[misc, name-defined]
    """The ``similarity_top_k`` best nodes of a :class:`~lightcol.MultiVectorCollection` or
    ``lightcol.Index`` (anything with ``search(query_vectors, k)``).

    ``nodes`` maps a result id to a node or a text (a mapping, a sequence indexed by position, or a
    function); a text becomes a ``TextNode`` whose ``id_`` is the id.
    """

    def __init__(
        self,
        source: Searchable,
        model: Any,
        nodes: Mapping[Any, Any] | Sequence[Any] | Callable[[Any], Any],
        similarity_top_k: int = 10,
        **kwargs: Any,
    ) -> None:
        self._source = source
        self._model = model
        self._nodes = nodes
        self._top_k = check_top_n(similarity_top_k)
        super().__init__(**kwargs)

    def _retrieve(self, query_bundle: Any) -> list[Any]:
        out = []
        for doc_id, score in self._source.search(query_vectors(self._model, query_bundle.query_str), k=self._top_k):
            node = lookup(self._nodes, doc_id)
            if isinstance(node, str):
                node = _schema.TextNode(text=node, id_=str(doc_id))
            out.append(_schema.NodeWithScore(node=node, score=float(score)))
        return out


_OPERATORS = {"==": "$eq", ">": "$gt", "<": "$lt", "!=": "$ne", ">=": "$gte", "<=": "$lte", "in": "$in",
              "nin": "$nin", "any": "$in", "contains": "$eq"}


def where_from_filters(filters: Any) -> dict[str, Any] | None:
    """LlamaIndex ``MetadataFilters`` as a lightcol ``where`` dict (a dict is returned as it is).

    Operators ``== != > >= < <= in nin`` map to ``$eq $ne $gt $gte $lt $lte $in $nin``; ``any`` (a
    list field holding any of the values) to ``$in``, ``contains`` (holding the value) to ``$eq``,
    ``all`` to an ``$and`` of ``$eq``s, ``is_empty`` to ``$exists: false``; conditions ``and or not``
    to ``$and $or $not``. Text matching has no equivalent and raises :class:`~lightcol.FilterError`.
    """
    from lightcol.errors import FilterError

    if filters is None or isinstance(filters, dict):
        return filters
    if hasattr(filters, "filters"):  # MetadataFilters
        parts = [where_from_filters(f) for f in filters.filters]
        condition = getattr(getattr(filters, "condition", None), "value", "and") or "and"
        if not parts:
            return {}
        if condition == "not":
            return {"$not": parts[0] if len(parts) == 1 else {"$and": parts}}
        return parts[0] if len(parts) == 1 else {f"${condition}": parts}
    op = getattr(filters.operator, "value", filters.operator)
    if op == "all":
        values = filters.value if isinstance(filters.value, list) else [filters.value]
        return {"$and": [{filters.key: {"$eq": v}} for v in values]}
    if op == "is_empty":
        return {filters.key: {"$exists": False}}
    if op not in _OPERATORS:
        raise FilterError(f"LlamaIndex filter operator {op!r} on {filters.key!r} has no lightcol equivalent; use one "
                          f"of {', '.join(sorted(_OPERATORS))}, all, is_empty.")
    return {filters.key: {_OPERATORS[op]: filters.value}}


class LightcolDocumentIndexRetriever(_retrievers.BaseRetriever):  # type: ignore[misc, name-defined]
    """Passages of a :class:`~lightcol.DocumentIndex` (``index.as_llama_index_retriever()``) as
    ``NodeWithScore``s: a ``TextNode`` (id: the passage id; metadata: the document's plus
    ``document_id`` and ``passage_id``) scored as :meth:`~lightcol.DocumentIndex.search` scores it.

    ``filters``: LlamaIndex ``MetadataFilters`` (see :func:`where_from_filters`) or a ``where`` dict;
    ``search_kwargs``: more :meth:`~lightcol.DocumentIndex.search` options (``mode``, ``alpha``...).
    """

    def __init__(self, index: Any, similarity_top_k: int = 10, filters: Any = None,
                 search_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self._index = index
        self._top_k = check_top_n(similarity_top_k)
        self._where = where_from_filters(filters)
        self._search_kwargs = dict(search_kwargs or {})
        super().__init__(**kwargs)

    def _retrieve(self, query_bundle: Any) -> list[Any]:
        out = []
        for r in self._index.search(query_bundle.query_str, self._top_k, where=self._where, **self._search_kwargs):
            meta = {**r.get("document_metadata", {}), "document_id": r["document_id"], "passage_id": r["passage_id"]}
            node = _schema.TextNode(text=r["content"], id_=str(r["passage_id"]), metadata=meta)
            out.append(_schema.NodeWithScore(node=node, score=float(r["score"])))
        return out
