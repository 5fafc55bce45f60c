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

__all__ = ["LightcolRerank", "LightcolRetriever"]

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
