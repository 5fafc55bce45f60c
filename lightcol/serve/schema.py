"""The service's JSON shapes as pydantic models, for the OpenAPI document (``GET /openapi.json``).

They document; they do not validate (:mod:`lightcol.serve.requests` does, with the library's error
types and messages). Needs pydantic, which FastAPI brings (``lightcol[serve]``).
"""

from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EmbedRequest(_Body):
    texts: list[str] = Field(description="Texts to embed (at most --max-texts, each at most --max-chars characters).")
    kind: Literal["document", "query"] = Field(
        "document", description="'document': truncated at the model's document length, padding and (per the model's "
                                "rules) punctuation dropped; 'query': padded with mask tokens to the query length.")
    encoding: Literal["float", "base64"] = Field(
        "float", description="'float': nested lists; 'base64': {shape, dtype, data} with the little-endian float32 "
                             "bytes (about 5x smaller, exact).")


class Base64Array(BaseModel):
    shape: list[int] = Field(description="[tokens, dim]")
    dtype: Literal["float32"] = "float32"
    data: str = Field(description="base64 of the array's little-endian bytes, row-major")


class EmbedResponse(BaseModel):
    model: str
    dim: int
    embeddings: list[Union[list[list[float]], Base64Array]] = Field(  # noqa: UP007 - pydantic schema
        description="One (tokens x dim) matrix per text, in input order: L2-normalised token vectors.")
    n_tokens: list[int] = Field(description="Vectors (rows) per text.")


class TokenCountRequest(_Body):
    texts: list[str]
    kind: Literal["document", "query"] = "document"
    include_extension: bool = Field(
        False, description="Add the document/query marker (queries: count the whole query length).")


class TokenCountResponse(BaseModel):
    model: str
    n_tokens: list[int] = Field(description="Tokens per text after truncation ([CLS] text [SEP]).")
    total: int


class RerankRequest(_Body):
    query: str
    documents: list[str] = Field(description="Candidates to score against the query (MaxSim).")
    top_n: int | None = Field(None, ge=0, description="Return the best top_n only (default: all).")


class RerankResult(BaseModel):
    index: int = Field(description="Position of the document in the request.")
    score: float = Field(description="MaxSim score.")


class RerankResponse(BaseModel):
    model: str
    results: list[RerankResult] = Field(description="Best first; ties broken by lower index.")


class SearchRequest(_Body):
    query: str
    k: int = Field(10, ge=1, description="Results to return.")
    where: dict[str, Any] | None = Field(
        None, description="Metadata filters (a DocumentIndex whose search supports them; 400 otherwise).")
    by_document: bool = Field(False, description="DocumentIndex: each document once, its best passage standing for it.")
    mode: Literal["maxsim", "keyword", "hybrid"] | None = Field(
        None, description="DocumentIndex: MaxSim, BM25 keywords, or both fused (default: the library's, hybrid).")
    alpha: float | None = Field(None, ge=0, le=1, description="DocumentIndex, mode hybrid: weight of MaxSim (0..1).")
    fusion: Literal["relative", "rrf"] | None = Field(None, description="DocumentIndex, mode hybrid: score fusion.")
    highlights: bool | None = Field(None, description="DocumentIndex: add each passage's best-matching spans.")


class SearchResult(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: Any = Field(description="Document id.")
    score: float
    content: str | None = Field(None, description="DocumentIndex: the passage's text.")
    document_id: Any = Field(None, description="DocumentIndex: the document's id (same as id).")
    passage_id: int | None = Field(None, description="DocumentIndex: the passage's id.")
    rank: int | None = Field(None, description="DocumentIndex: 1-based rank.")
    metadata: dict[str, Any] | None = Field(None, description="DocumentIndex: the document's metadata, if any.")


class SearchResponse(BaseModel):
    model: str
    results: list[SearchResult] = Field(description="Best first.")


class AddDocumentsRequest(_Body):
    texts: list[str] = Field(description="Documents (split into passages as the index was created to).")
    ids: list[Union[str, int]] | None = Field(  # noqa: UP007
        None, description="One unique id per text (default: a hash of the text).")
    metadata: list[dict[str, Any] | None] | None = Field(None, description="One object (or null) per text.")


class AddDocumentsResponse(BaseModel):
    ids: list[Union[str, int]]  # noqa: UP007
    documents: int = Field(description="Documents in the index now.")


class DeleteDocumentsRequest(_Body):
    ids: list[Union[str, int]]  # noqa: UP007


class DeleteDocumentsResponse(BaseModel):
    deleted: list[Union[str, int]]  # noqa: UP007
    documents: int = Field(description="Documents in the index now.")


class ModelInfo(BaseModel):
    model: str
    dim: int
    query_length: int
    document_length: int
    model_variant: str | None
    rules: dict[str, Any]
    batching: bool
    max_batch_tokens: int
    batch_workers: int = Field(description="Batches of each kind that run at once on the one model.")
    max_queue: int
    limits: dict[str, int]
    index: dict[str, Any] | None = Field(None, description="The index opened at start: type, path, documents.")


class Status(BaseModel):
    status: str


class ErrorDetail(BaseModel):
    type: str = Field(description="The error's type, as the Python library names it (ArgumentError, ...).")
    message: str


class ErrorResponse(BaseModel):
    error: ErrorDetail


REQUEST_MODELS = (EmbedRequest, TokenCountRequest, RerankRequest, SearchRequest, AddDocumentsRequest,
                  DeleteDocumentsRequest)
