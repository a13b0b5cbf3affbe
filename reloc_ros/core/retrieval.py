"""Nearest-neighbour search over L2-normalised global descriptors (inner product = cosine).

* :class:`ExactIndex`: one matrix product and ``topk`` in torch, on the CPU or the GPU.
  Exact, and fast enough up to about 100k frames (see ``reloc_ros.tools.benchmark``).
* :class:`HNSWIndex`: faiss HNSW (approximate) for larger maps, when faiss is installed.

Both answer ``search(queries (B, C), k) -> (scores (B, k), indices (B, k))``, best first,
optionally restricted to a subset of the database (one scene of a multi-scene map).
"""

from __future__ import annotations

import numpy as np
import torch


class ExactIndex:
    """Exact inner-product search.

    Args:
        descriptors: (N, C) L2-normalised database descriptors.
        device: where the descriptors live and the product runs.
    """

    kind = "exact"

    def __init__(self, descriptors: torch.Tensor, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.db = descriptors.to(self.device, torch.float32).contiguous()

    def __len__(self) -> int:
        return len(self.db)

    def search(self, q: torch.Tensor, k: int, subset: torch.Tensor | None = None):
        """Top-k by inner product. ``subset``: database indices to search within."""
        q = q.to(self.device, torch.float32)
        db = self.db if subset is None else self.db[subset]
        k = min(k, len(db))
        scores, idx = (q @ db.T).topk(k, dim=1)
        if subset is not None:
            idx = subset.to(idx.device)[idx]
        return scores, idx


class HNSWIndex:
    """Approximate search with faiss' HNSW graph (inner-product metric).

    Args:
        descriptors: (N, C) L2-normalised database descriptors.
        m: HNSW neighbours per node; ef_search: search breadth (recall vs speed).
    """

    kind = "hnsw"

    def __init__(self, descriptors: torch.Tensor, m: int = 32, ef_search: int = 64, ef_construction: int = 80):
        try:
            import faiss  # lazy: optional (faiss-cpu), needed only by this index
        except ImportError as e:
            raise ImportError("the 'hnsw' index needs faiss (pip install faiss-cpu)") from e
        x = np.ascontiguousarray(descriptors.detach().cpu().numpy().astype(np.float32))
        self.index = faiss.IndexHNSWFlat(x.shape[1], m, faiss.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = ef_construction
        self.index.add(x)
        self.index.hnsw.efSearch = ef_search
        self.n = len(x)
        self.device = torch.device("cpu")

    def __len__(self) -> int:
        return self.n

    def search(self, q: torch.Tensor, k: int, subset: torch.Tensor | None = None):
        import faiss  # lazy: optional, as in __init__ (loaded by then: a dict lookup)

        qn = np.ascontiguousarray(q.detach().cpu().numpy().astype(np.float32))
        if subset is None:
            scores, idx = self.index.search(qn, min(k, self.n))
        else:  # restrict with an id selector (the graph still spans all frames)
            sel = faiss.IDSelectorBatch(subset.cpu().numpy().astype(np.int64))
            params = faiss.SearchParametersHNSW(sel=sel, efSearch=self.index.hnsw.efSearch)
            scores, idx = self.index.search(qn, min(k, len(subset)), params=params)
        return torch.from_numpy(scores), torch.from_numpy(idx.astype(np.int64))


INDEXES = {"exact": ExactIndex, "hnsw": HNSWIndex}


def build_index(kind: str, descriptors: torch.Tensor, device: torch.device | str = "cpu"):
    """An index by name: 'exact' (on ``device``) or 'hnsw' (faiss, CPU)."""
    if kind == "exact":
        return ExactIndex(descriptors, device)
    if kind == "hnsw":
        return HNSWIndex(descriptors)
    raise ValueError(f"unknown index {kind!r}; choose one of {sorted(INDEXES)}")
