"""Minibatches over arrays, reshuffled every epoch from an explicit generator."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from trainlab.data._checks import positive_int, require_rng

__all__ = ["Batches"]


class Batches:
    """Iterable of ``(xb, yb)`` minibatches; each ``iter()`` is one epoch.

    With ``shuffle=True`` every epoch draws a fresh permutation ``rng.permutation(N)``
    and yields ``x[perm[i:i+B]]``, so a seeded generator gives the same sequence of
    epochs. Shuffled batches are new arrays (``np.take``); unshuffled batches are
    read-only views of ``x`` and ``y`` (no copy; copy them to modify in place).

    Args:
        x: inputs (N, ...).
        y: labels (N,) (or any array with N rows).
        batch_size: B > 0; the last batch holds ``N % B`` samples unless ``drop_last``.
        shuffle: reshuffle every epoch (default True); then ``rng`` is required.
        rng: ``numpy.random.Generator`` for the permutations.
        drop_last: drop a final batch smaller than B.

    ``len(batches)`` is the number of batches per epoch: ``N // B`` with ``drop_last``,
    else ``ceil(N / B)``.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, *, shuffle: bool = True,
                 rng: np.random.Generator | None = None, drop_last: bool = False) -> None:
        self.x, self.y = np.asarray(x), np.asarray(y)
        if self.x.ndim == 0 or self.y.ndim == 0:
            raise ValueError(
                f"x and y must have a first (sample) axis, got shapes {self.x.shape} and {self.y.shape}"
            )
        if len(self.x) != len(self.y):
            raise ValueError(f"y has {len(self.y)} rows but x has {len(self.x)}; they must match")
        self.batch_size = positive_int(batch_size, "batch_size")
        self.shuffle, self.drop_last = bool(shuffle), bool(drop_last)
        self.rng = require_rng(rng, "Batches(shuffle=True)") if self.shuffle else rng

    @property
    def num_samples(self) -> int:
        """N, the number of samples."""
        return len(self.y)

    def __len__(self) -> int:
        n, b = self.num_samples, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        stop = len(self) * self.batch_size
        if self.shuffle:
            order = self.rng.permutation(self.num_samples)
            for start in range(0, stop, self.batch_size):
                index = order[start:start + self.batch_size]
                yield np.take(self.x, index, axis=0), np.take(self.y, index, axis=0)
        else:
            for start in range(0, stop, self.batch_size):
                xb, yb = self.x[start:start + self.batch_size], self.y[start:start + self.batch_size]
                xb.flags.writeable = False
                yb.flags.writeable = False
                yield xb, yb

    def __repr__(self) -> str:
        return (f"Batches(num_samples={self.num_samples}, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, drop_last={self.drop_last}, batches={len(self)})")
