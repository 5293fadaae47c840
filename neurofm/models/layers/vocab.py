"""Embeddings indexed by string ids (units, sessions), saved with the checkpoint, extendable.

Row 0 is reserved for padding and stays zero. New words get fresh rows drawn like the first
ones, so a pretrained model can take new units and sessions (few-shot adaptation) and drop the
ones it no longer needs, while every kept word keeps its learned row.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from neurofm.errors import InvalidDataError

PAD = "<pad>"


class VocabEmbedding(nn.Module):
    """An ``nn.Embedding`` whose rows are named by strings.

    Parameters
    ----------
    dim : int
        Embedding size.
    words : iterable of str, optional
        Initial vocabulary.
    init_scale : float
        Standard deviation of new rows.
    name : str
        What the words are (``"unit"``, ``"session"``), for error messages.
    """

    def __init__(
        self, dim: int, words: Iterable[str] = (), init_scale: float = 0.02, name: str = "word"
    ) -> None:
        super().__init__()
        self.dim, self.init_scale, self.name = dim, init_scale, name
        #: Changes whenever words may have been given other rows (or new ones): whoever keeps
        #: looked-up rows (the tokenizer, per recording) looks again when it differs.
        self.generation = 0
        self.words: list[str] = [PAD]
        self.lookup: dict[str, int] = {PAD: 0}
        self.weight = nn.Parameter(torch.zeros(1, dim))
        self.extend(words)

    def __len__(self) -> int:
        return len(self.words) - 1

    def __contains__(self, word: object) -> bool:
        return word in self.lookup and word != PAD

    @property
    def vocab(self) -> list[str]:
        return self.words[1:]

    def extend(self, words: Iterable[str]) -> list[str]:
        """Add unknown words with fresh rows; returns those added (known ones are kept)."""
        new = [w for w in dict.fromkeys(str(w) for w in words) if w not in self.lookup]
        if not new:
            return []
        if PAD in new:
            raise InvalidDataError(f"{self.name} id {PAD!r} is reserved for padding")
        rows = torch.randn(len(new), self.dim, device=self.weight.device) * self.init_scale
        self.weight = nn.Parameter(torch.cat([self.weight.data, rows.to(self.weight.dtype)]))
        for w in new:
            self.lookup[w] = len(self.words)
            self.words.append(w)
        self.generation += 1
        return new

    def subset(self, words: Sequence[str]) -> None:
        """Keep only ``words`` (in this order), with their learned rows."""
        idx = self.index(words)
        self.weight = nn.Parameter(torch.cat([self.weight.data[:1], self.weight.data[idx]]))
        self.words = [PAD, *map(str, words)]
        self.lookup = {w: i for i, w in enumerate(self.words)}
        self.generation += 1

    def index(self, words: Sequence[str]) -> np.ndarray:
        """Row numbers of ``words``; unknown words raise an error naming a few of them."""
        try:
            return np.fromiter((self.lookup[w] for w in words), dtype=np.int64, count=len(words))
        except KeyError:
            unknown = [w for w in words if w not in self.lookup]
            raise InvalidDataError(
                f"{len(unknown)} {self.name} id(s) not in the model's vocabulary, e.g. "
                f"{unknown[:3]}; extend the vocabulary (fine-tuning) to add them"
            ) from None

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        # padding_idx: row 0 gets no gradient, so it stays exactly zero (it starts zero and
        # weight decay of zero is zero).
        return nn.functional.embedding(index, self.weight, padding_idx=0)

    # The vocabulary travels in the state dict as a list of strings (weights_only-safe).
    def get_extra_state(self) -> Any:
        return {"words": list(self.words)}

    def set_extra_state(self, state: Any) -> None:
        self.words = list(state["words"])
        self.lookup = {w: i for i, w in enumerate(self.words)}
        self.generation += 1

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001
        # Adopt the checkpoint's vocabulary size before the weight is copied in.
        extra = state_dict.get(prefix + "_extra_state")
        weight = state_dict.get(prefix + "weight")
        if extra is not None and weight is not None and weight.shape != self.weight.shape:
            self.weight = nn.Parameter(torch.empty_like(weight, device=self.weight.device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"{len(self)} {self.name}s, dim={self.dim}"
