"""MUVERA fixed-dimensional encodings: one long vector per document or query whose dot product approximates MaxSim.

Dhulipala et al., 2024. For each of ``r_reps`` repetitions, ``k_sim`` random hyperplanes (SimHash)
split the space into ``2**k_sim`` buckets; a document's vectors are averaged per bucket (a query's
are summed), an empty document bucket takes the vector of the nearest non-empty bucket (by Hamming
distance of bucket ids), and each bucket's vector is projected to ``dim_proj`` dimensions with a
random +-1 matrix. The encoding is the concatenation: ``r_reps * 2**k_sim * dim_proj`` numbers.

:class:`Muvera` takes FastEmbed's constructor, methods and attribute names and draws the same random
matrices from the same seed, so its encodings equal ``fastembed.postprocess.Muvera``'s (to float32
rounding) and both can fill one collection. It is vectorised over all vectors (and documents) at
once, where FastEmbed loops over vectors in Python.

:meth:`Muvera.fit` is lightcol's improvement, measured on CISI (see README): buckets learned by
spherical k-means on a sample of the corpus's vectors (one clustering per repetition) instead of random
hyperplanes, each bucket projected onto its own principal directions instead of a random +-1 matrix,
and document bucket means scaled to unit length (a bucket's mean of many tokens otherwise scores lower
than the best of them, which MaxSim takes). At FastEmbed's 10,240 dimensions its top 100 candidates hold
0.95-0.97 of exhaustive MaxSim's top 10 (FastEmbed's default: 0.87). A fitted encoder is data: save it
with :meth:`Muvera.save` next to the index it fed and :meth:`Muvera.load` it to encode queries.

Corpus-mean centring (``center=``, and ``Muvera.fit(..., center=True)``): the mean token vector of the
corpus is subtracted from every vector, of documents and queries alike, before they are bucketed and
projected. Recent ColBERT models (LateOn and its ModernBERT relatives) put nearly all token vectors in a
narrow cone, so random hyperplanes and projections barely separate them; LateOn's model card asks for
this centring before MUVERA. Keep the mean with the encoder (:meth:`save` stores it).

Use it to fetch candidates from any single-vector ANN index, then rerank them with exact MaxSim
(:func:`lightcol.maxsim.rank`). :data:`RECOMMENDED` (random, FastEmbed-compatible) and :data:`RECOMMENDED_FIT`
(fitted) are lightcol's measured settings (see README).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt

from lightcol import _kmeans, _validate
from lightcol.errors import ArgumentError, IndexFormatError, IndexVersionError, ShapeError

__all__ = ["Muvera", "RECOMMENDED", "RECOMMENDED_FIT", "FASTEMBED_DEFAULTS", "WEAVIATE_DEFAULTS", "NAMED_SETTINGS"]

#: FastEmbed's defaults (10,240 dimensions).
FASTEMBED_DEFAULTS: dict[str, int] = {"k_sim": 5, "dim_proj": 16, "r_reps": 20}
#: Weaviate's defaults (2,560 dimensions).
WEAVIATE_DEFAULTS: dict[str, int] = {"k_sim": 4, "dim_proj": 16, "r_reps": 10}
#: lightcol's recommended setting: 10,240 dimensions like FastEmbed's; on CISI its top 100 hold 90% of exhaustive
#: MaxSim's top 10 (FastEmbed's default: 87%), its top 200 96% (94%): fewer, smaller buckets, more repetitions.
RECOMMENDED: dict[str, int] = {"k_sim": 4, "dim_proj": 8, "r_reps": 80}
#: lightcol's recommended setting for :meth:`Muvera.fit` (10,240 dimensions): 64 learned buckets, 32 dims, 5 repetitions.
RECOMMENDED_FIT: dict[str, int] = {"k_sim": 6, "dim_proj": 32, "r_reps": 5}
#: The random settings by the names the CLI and :mod:`lightcol.ray` take.
NAMED_SETTINGS: dict[str, dict[str, int]] = {"recommended": RECOMMENDED, "fastembed": FASTEMBED_DEFAULTS}
#: Format version of :meth:`Muvera.save` files (2: with a centring vector; files without one stay 1).
_FORMAT = 2

#: |float32 SimHash product| below which its sign is recomputed in float64 (float32 error is ~1e-6 here).
_SIGN_EPS = 1e-4
#: Vectors encoded per vectorised step of the batch methods (bounds temporary memory).
_CHUNK_VECTORS = 8192


class Muvera:
    """Fixed-dimensional encodings (FDEs) of multi-vector embeddings, FastEmbed-compatible.

    :param dim: dimension of the input vectors (the model's ``embedding_size``).
    :param k_sim: SimHash hyperplanes per repetition (``2**k_sim`` buckets).
    :param dim_proj: dimensions per bucket after the random projection (``<= dim``).
    :param r_reps: repetitions.
    :param random_seed: seed of the random hyperplanes and projections (FastEmbed's draw order).
    :param center: a ``(dim,)`` vector subtracted from every input vector before encoding, usually the
        corpus's mean token vector (:meth:`corpus_mean`); ``None`` (default): FastEmbed's encoding.
    """

    def __init__(
        self, dim: int, k_sim: int = 5, dim_proj: int = 16, r_reps: int = 20, random_seed: int = 42,
        *, center: npt.ArrayLike | None = None,
    ) -> None:
        dim = _validate.integer("dim", dim, minimum=1)  # type: ignore[assignment]
        k_sim = _validate.integer("k_sim", k_sim, minimum=1)  # type: ignore[assignment]
        dim_proj = _validate.integer("dim_proj", dim_proj, minimum=1)  # type: ignore[assignment]
        r_reps = _validate.integer("r_reps", r_reps, minimum=1)  # type: ignore[assignment]
        if k_sim > 16:
            raise ArgumentError(f"k_sim must be <= 16 (2**k_sim buckets per repetition), got {k_sim}.")
        if dim_proj > dim:
            raise ArgumentError(f"Cannot project to a higher dimensionality (dim_proj={dim_proj} > dim={dim}).")
        self.dim, self.k_sim, self.dim_proj, self.r_reps = dim, k_sim, dim_proj, r_reps
        self.random_seed = random_seed
        rng = np.random.default_rng(random_seed)
        # same draws, same order as FastEmbed: r_reps (dim, k_sim) normals, then the +-1 projections
        planes = np.stack([rng.normal(size=(dim, k_sim)) for _ in range(r_reps)])  # (r, dim, k)
        projections = rng.choice([-1, 1], size=(r_reps, dim, dim_proj))  # (r, dim, p)
        #: (dim, r_reps * k_sim) hyperplane normals, all repetitions side by side
        self._planes = np.ascontiguousarray(planes.transpose(1, 0, 2).reshape(dim, r_reps * k_sim))  # float64: signs as FastEmbed's
        self._planes32 = self._planes.astype(np.float32)
        if dim_proj < dim:
            proj = projections.astype(np.float32) / np.float32(np.sqrt(dim_proj))
            self._proj: np.ndarray | None = np.ascontiguousarray(proj.transpose(1, 0, 2).reshape(dim, r_reps * dim_proj))
        else:
            self._proj = None  # FastEmbed keeps the bucket vectors as they are when dim_proj == dim
        b = 2**k_sim
        ids = np.arange(b)
        popcount = np.array([bin(x).count("1") for x in range(b)])
        hamming = popcount[ids[:, None] ^ ids[None, :]]
        #: (b, b) bucket order by Hamming distance then id: the fill order for empty buckets
        self._nearest = np.argsort(hamming, axis=1, kind="stable")
        #: fitted buckets (see :meth:`fit`): (dim, r_reps * 2**k_sim) centroids and (r_reps, 2**k_sim, dim, dim_proj) bases
        self._centroids: np.ndarray | None = None
        #: the vector subtracted from every input vector (corpus-mean centring), or ``None``
        self.center: np.ndarray | None = None if center is None else self._check_center(center)
        self._bases: np.ndarray | None = None

    def _check_center(self, center: npt.ArrayLike) -> np.ndarray:
        c = np.asarray(center)
        if c.shape != (self.dim,) or c.dtype.kind != "f" or not np.isfinite(c).all():
            raise ShapeError(
                f"center must be a finite float vector of shape ({self.dim},) (the corpus's mean token vector, "
                f"Muvera.corpus_mean(documents)); got shape {c.shape}, dtype {c.dtype}."
            )
        return np.array(c, dtype=np.float32, copy=True)  # the caller's array may change later

    @staticmethod
    def corpus_mean(documents: Iterable[npt.ArrayLike]) -> np.ndarray:
        """The mean token vector of ``documents`` (each ``(n, dim)``), accumulated in float64: the
        ``center`` for corpus-mean centring. Streams: only one document is held at a time."""
        total: np.ndarray | None = None
        count = 0
        for i, d in enumerate(documents):
            a = np.asarray(d)
            if a.ndim != 2 or a.dtype.kind != "f" or (total is not None and a.shape[1] != total.shape[0]):
                want = "(n_vectors, dim)" if total is None else f"(n_vectors, {total.shape[0]})"
                raise ShapeError(f"multivector {i} must be a float array of shape {want}; got shape {a.shape}, dtype {a.dtype}.")
            if total is None:
                total = np.zeros(a.shape[1], dtype=np.float64)
            total += a.sum(axis=0, dtype=np.float64)
            count += a.shape[0]
        if total is None or count == 0:
            raise ArgumentError("corpus_mean needs at least one vector.")
        return (total / count).astype(np.float32)

    @property
    def fitted(self) -> bool:
        """Whether the buckets were learned by :meth:`fit` (else FastEmbed's random SimHash)."""
        return self._centroids is not None

    @classmethod
    def fit(
        cls,
        documents: Iterable[npt.ArrayLike],
        k_sim: int = 6,
        dim_proj: int = 32,
        r_reps: int = 5,
        random_seed: int = 42,
        *,
        sample_size: int = 50_000,
        iters: int = 10,
        center: bool | npt.ArrayLike = False,
    ) -> Muvera:
        """A Muvera whose buckets are learned from ``documents`` (token vectors of the corpus, or a sample of it).

        Per repetition: ``2**k_sim`` spherical k-means centroids trained on up to ``sample_size`` vectors
        drawn from ``documents`` (a vector's bucket is its most similar centroid), and for each bucket the
        ``dim_proj`` leading principal directions of its training vectors (the projection). Documents are
        encoded as unit-length bucket means (empty buckets take the document's vector most similar to the
        centroid), queries as bucket sums, both projected. Deterministic for a given ``random_seed``.
        The result is not FastEmbed's encoding: keep it (:meth:`save`) to encode queries later.

        ``center=True``: subtract the mean of all of ``documents``' vectors (:meth:`corpus_mean`) from every
        vector before learning the buckets and encoding (corpus-mean centring); a ``(dim,)`` vector: that one.
        """
        docs = [np.asarray(d) for d in documents]
        if not docs:
            raise ArgumentError("Muvera.fit needs at least one document's vectors.")
        if docs[0].ndim != 2 or docs[0].shape[1] < 1:
            raise ShapeError(f"multivector 0 must be a float array of shape (n_vectors, dim), got shape {docs[0].shape}.")
        self = cls(docs[0].shape[1], k_sim=k_sim, dim_proj=dim_proj, r_reps=r_reps, random_seed=random_seed)
        sample_size = _validate.integer("sample_size", sample_size, minimum=1)  # type: ignore[assignment]
        iters = _validate.integer("iters", iters, minimum=1)  # type: ignore[assignment]
        x = np.concatenate([self._check(d, i) for i, d in enumerate(docs)]).astype(np.float32, copy=False)
        if center is not False and center is not None:
            if center is True:
                mean = x.astype(np.float64).mean(axis=0).astype(np.float32)
            else:
                mean = center  # type: ignore[assignment]
            self.center = self._check_center(mean)
            x = x - self.center
        b = 2**self.k_sim
        if x.shape[0] < b:
            raise ArgumentError(f"Muvera.fit needs at least 2**k_sim = {b} vectors to learn {b} buckets, got {x.shape[0]}.")
        rng = np.random.default_rng(random_seed)
        if x.shape[0] > sample_size:
            x = x[np.sort(rng.choice(x.shape[0], size=sample_size, replace=False))]
        centroids = np.empty((self.r_reps, b, self.dim), dtype=np.float32)
        bases = np.empty((self.r_reps, b, self.dim, self.dim_proj), dtype=np.float32)
        for r in range(self.r_reps):
            c = _kmeans.spherical_kmeans(x, b, iters, rng)
            members = _kmeans.assign(x, c)
            centroids[r] = c
            for j in range(b):
                m = x[members == j]
                if m.shape[0] < self.dim_proj:  # too few to span dim_proj directions: the whole sample's
                    m = x
                # uncentred principal directions: the subspace that keeps these vectors' dot products best
                bases[r, j] = np.linalg.svd(m.astype(np.float64), full_matrices=False)[2][: self.dim_proj].T
        self._centroids = np.ascontiguousarray(centroids.transpose(2, 0, 1).reshape(self.dim, self.r_reps * b))
        self._bases = bases
        return self

    # -- persistence -------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write this encoder (its parameters, and the learned buckets of a fitted one) to ``path`` (.npz), atomically."""
        # a file without a centring vector stays format 1, readable by lightcol versions before centring
        meta = {"format": _FORMAT if self.center is not None else 1, "dim": self.dim, "k_sim": self.k_sim,
                "dim_proj": self.dim_proj, "r_reps": self.r_reps, "random_seed": self.random_seed, "fitted": self.fitted}
        arrays: dict[str, np.ndarray] = {"meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)}
        if self.fitted:
            arrays["centroids"], arrays["bases"] = self._centroids, self._bases  # type: ignore[assignment]
        if self.center is not None:
            arrays["center"] = self.center
        path = os.fspath(path)
        tmp = f"{path}.tmp-{os.getpid()}"
        try:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Muvera:
        """A Muvera written by :meth:`save`; :class:`IndexFormatError` for another or damaged file."""
        try:
            with np.load(os.fspath(path), allow_pickle=False) as z:
                meta = json.loads(bytes(z["meta"]).decode())
                fitted = bool(meta["fitted"])
                centroids = np.asarray(z["centroids"], dtype=np.float32) if fitted else None
                bases = np.asarray(z["bases"], dtype=np.float32) if fitted else None
                center = np.asarray(z["center"]) if "center" in z.files else None
        except FileNotFoundError:
            raise
        except Exception as e:  # noqa: BLE001 - any damage is the same error
            raise IndexFormatError(f"{os.fspath(path)!r} is not a Muvera file written by Muvera.save ({e}).") from e
        if meta.get("format", 0) > _FORMAT:
            raise IndexVersionError(
                f"{os.fspath(path)!r} was written by a newer lightcol (Muvera format {meta['format']}); upgrade lightcol."
            )
        try:
            m = cls(meta["dim"], k_sim=meta["k_sim"], dim_proj=meta["dim_proj"], r_reps=meta["r_reps"],
                    random_seed=meta["random_seed"], center=center)
        except ShapeError as e:
            raise IndexFormatError(f"{os.fspath(path)!r}: its centring vector does not match its parameters ({e}).") from e
        if fitted:
            b = 2 ** m.k_sim
            if centroids.shape != (m.dim, m.r_reps * b) or bases.shape != (m.r_reps, b, m.dim, m.dim_proj):  # type: ignore[union-attr]
                raise IndexFormatError(f"{os.fspath(path)!r}: learned buckets do not match their parameters.")
            m._centroids, m._bases = centroids, bases
        return m

    # -- FastEmbed's API -------------------------------------------------------------------------
    @classmethod
    def from_multivector_model(
        cls, model: Any, k_sim: int = 5, dim_proj: int = 16, r_reps: int = 20, random_seed: int = 42,
        *, center: npt.ArrayLike | None = None,
    ) -> Muvera:
        """A Muvera for ``model``'s vectors (its ``embedding_size``); ``center`` as in the constructor."""
        return cls(dim=model.embedding_size, k_sim=k_sim, dim_proj=dim_proj, r_reps=r_reps, random_seed=random_seed,
                   center=center)

    @property
    def embedding_size(self) -> int:
        """Length of every encoding: ``r_reps * 2**k_sim * dim_proj``."""
        return self.r_reps * 2**self.k_sim * self.dim_proj

    def process_document(self, vectors: npt.ArrayLike) -> np.ndarray:
        """Encoding of one document's ``(n, dim)`` vectors: bucket means, empty buckets filled."""
        return self.process_documents([vectors])[0]

    def process_query(self, vectors: npt.ArrayLike) -> np.ndarray:
        """Encoding of one query's ``(n, dim)`` vectors: bucket sums, empty buckets left zero."""
        return self.process_queries([vectors])[0]

    def process(self, vectors: npt.ArrayLike, fill_empty_clusters: bool = True, normalize_by_count: bool = True) -> np.ndarray:
        """Encoding with explicit options (``process_document``: both on; ``process_query``: both off)."""
        return self._encode([vectors], fill_empty_clusters, normalize_by_count)[0]

    # -- batches -----------------------------------------------------------------------------------
    def process_documents(self, documents: Iterable[npt.ArrayLike]) -> np.ndarray:
        """Encodings of many documents at once: float32 array ``(n_documents, embedding_size)``."""
        return self._encode(documents, True, True)

    def process_queries(self, queries: Iterable[npt.ArrayLike]) -> np.ndarray:
        """Encodings of many queries at once: float32 array ``(n_queries, embedding_size)``."""
        return self._encode(queries, False, False)

    def __repr__(self) -> str:
        return (
            f"Muvera(dim={self.dim}, k_sim={self.k_sim}, dim_proj={self.dim_proj}, r_reps={self.r_reps}, "
            f"random_seed={self.random_seed}{', fitted=True' if self.fitted else ''}"
            f"{', centered=True' if self.center is not None else ''})"
        )

    # -- implementation ------------------------------------------------------------------------------
    def _check(self, v: npt.ArrayLike, k: int) -> np.ndarray:
        a = np.asarray(v)
        if a.ndim != 2 or a.dtype.kind != "f" or a.shape[1] != self.dim:
            raise ShapeError(
                f"multivector {k} must be a float array of shape (n_vectors, {self.dim}) for this Muvera(dim={self.dim}); "
                f"got shape {a.shape}, dtype {a.dtype}."
            )
        if a.shape[0] == 0:
            raise ShapeError(f"multivector {k} is empty: cannot encode zero vectors.")
        return a

    def _encode(self, items: Iterable[npt.ArrayLike], fill: bool, mean: bool) -> np.ndarray:
        docs = [self._check(v, k) for k, v in enumerate(items)]
        if self.center is not None:  # corpus-mean centring: documents and queries alike
            docs = [np.asarray(d, dtype=np.float32) - self.center for d in docs]
        out = np.zeros((len(docs), self.embedding_size), dtype=np.float32)
        # similar lengths together (less padding); chunks of about _CHUNK_VECTORS padded vectors
        order = sorted(range(len(docs)), key=lambda i: docs[i].shape[0])
        start = 0
        while start < len(order):
            end = start + 1
            while end < len(order) and (end - start + 1) * docs[order[end]].shape[0] <= _CHUNK_VECTORS:
                end += 1
            idx = order[start:end]
            chunk = np.empty((len(idx), self.embedding_size), dtype=np.float32)
            (self._encode_chunk_fitted if self.fitted else self._encode_chunk)([docs[i] for i in idx], fill, mean, chunk)
            out[idx] = chunk
            start = end
        return out

    def _encode_chunk(self, docs: list[np.ndarray], fill: bool, mean: bool, out: np.ndarray) -> None:
        """Encode documents padded to one length: bucket sums as one batched (bucket x token) @ (token x dim_proj) matmul."""
        r, b, k = self.r_reps, 2**self.k_sim, self.k_sim
        lengths = np.array([x.shape[0] for x in docs])
        n_docs, n_max = lengths.shape[0], int(lengths.max())
        flat = np.concatenate(docs).astype(np.float32, copy=False)  # (t, dim), no padding
        # SimHash signs: float32 products, the few within rounding of zero redone in float64 (FastEmbed's precision)
        prod = flat @ self._planes32
        signs = prod > 0
        unsure = np.flatnonzero((np.abs(prod) < _SIGN_EPS).any(axis=1))
        if unsure.shape[0]:
            signs[unsure] = (flat[unsure].astype(np.float64) @ self._planes) > 0
        bucket = np.zeros((flat.shape[0], r), dtype=np.int16)
        signs = signs.reshape(-1, r, k)
        for bit in range(k):
            bucket |= signs[..., bit].astype(np.int16) << bit
        valid = np.arange(n_max)[None, :] < lengths[:, None]  # (docs, tokens)
        padded = np.full((n_docs, n_max, r), -1, dtype=np.int16)
        padded[valid] = bucket
        # one-hot (docs, reps, buckets, tokens); padding tokens match no bucket
        onehot = padded.transpose(0, 2, 1)[:, :, None, :] == np.arange(b, dtype=np.int16)[None, None, :, None]
        counts = onehot.sum(axis=3)  # (docs, reps, buckets)
        if self._proj is not None:  # the projection is linear: project every vector, then sum per bucket
            width = self.dim_proj
            vals = np.zeros((n_docs, n_max, r * width), dtype=np.float32)
            vals[valid] = flat @ self._proj
        else:
            width = self.dim
            vals = np.zeros((n_docs, n_max, r * width), dtype=np.float32)
            vals[valid] = np.tile(flat, (1, r))
        per_rep = vals.reshape(n_docs, n_max, r, width).transpose(0, 2, 1, 3)  # (docs, reps, tokens, width) view
        sums = np.matmul(onehot.astype(np.float32), per_rep)  # (docs, reps, buckets, width)
        if mean:
            nz = counts > 0
            sums[nz] /= counts[nz][:, None]
        if fill:
            occupied = counts > 0
            di, ri, eb = np.nonzero(~occupied)  # every empty (doc, rep, bucket)
            if di.shape[0]:
                cand = self._nearest[eb]  # (e, b): buckets by Hamming distance, then id
                ok = occupied[di[:, None], ri[:, None], cand]
                nearest = cand[np.arange(cand.shape[0]), ok.argmax(axis=1)]
                first = onehot[di, ri, nearest].argmax(axis=1)  # its first token (argmax: the first True)
                sums[di, ri, eb] = per_rep[di, ri, first]
        out[:] = sums.reshape(n_docs, -1)

    def _encode_chunk_fitted(self, docs: list[np.ndarray], fill: bool, mean: bool, out: np.ndarray) -> None:
        """Fitted buckets: per-bucket sums in the input space, unit-length means (documents), per-bucket projection."""
        r, b = self.r_reps, 2**self.k_sim
        lengths = np.array([x.shape[0] for x in docs])
        n_docs, n_max = lengths.shape[0], int(lengths.max())
        valid = np.arange(n_max)[None, :] < lengths[:, None]  # (docs, tokens)
        padded = np.zeros((n_docs, n_max, self.dim), dtype=np.float32)
        padded[valid] = np.concatenate(docs)
        sims = padded @ self._centroids  # (docs, tokens, r * b)
        bucket = sims.reshape(n_docs, n_max, r, b).argmax(axis=3)
        bucket[~valid] = -1  # padding matches no bucket
        onehot = bucket.transpose(0, 2, 1)[:, :, None, :] == np.arange(b)[None, None, :, None]  # (docs, r, b, tokens)
        counts = onehot.sum(axis=3)
        sums = np.matmul(onehot.astype(np.float32), padded[:, None])  # (docs, r, b, dim)
        if mean:
            nz = counts > 0
            sums[nz] /= counts[nz][:, None]
        if fill:
            di, ri, eb = np.nonzero(counts == 0)
            if di.shape[0]:
                s = np.where(valid[:, :, None], sims, -np.inf)  # (docs, tokens, r * b)
                best = s[di, :, ri * b + eb].argmax(axis=1)  # the document's vector most similar to the centroid
                sums[di, ri, eb] = padded[di, best]
        if mean:  # documents: unit-length bucket vectors (MaxSim takes the best token, not the average)
            norms = np.linalg.norm(sums, axis=3, keepdims=True)
            np.divide(sums, norms, out=sums, where=norms > 0)
        proj = np.matmul(sums.transpose(1, 2, 0, 3), self._bases)  # (r, b, docs, dim_proj)
        out[:] = proj.transpose(2, 0, 1, 3).reshape(n_docs, -1)
