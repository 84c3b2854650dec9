"""A trained model's posterior as one immutable, serializable value.

Stored in the model-version row as msgpack (msgspec): numpy arrays travel as raw little-endian
bytes with dtype and shape, so a 500-feature Cholesky factor is ~2 MB, decoded without copies
through Python lists. ``kind`` says how to read ``arrays``:

- ``beta`` (mab, bool): ``alpha``, ``beta`` per variant — Beta(1 + successes, 1 + failures).
- ``nig`` (mab, numeric): ``mu``, ``kappa``, ``alpha``, ``beta`` per variant —
  Normal-Inverse-Gamma (BDA3 §3.3).
- ``laplace_logistic`` / ``laplace_gaussian`` (cmab): ``mean`` (p,) and ``chol`` (p, p), the
  lower Cholesky factor of the Laplace covariance; the columns follow
  :class:`levered.bandit.design.Design` built from ``level_counts`` and ``context_vocab``.
  Numeric rewards are modelled standardized: reward = ``y_mean`` + ``y_scale`` · η.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
import numpy as np
import numpy.typing as npt

Kind = Literal["beta", "nig", "laplace_logistic", "laplace_gaussian"]
ContextScalar = str | bool | int | float


class ArrayData(msgspec.Struct, frozen=True):
    dtype: str
    shape: list[int]
    data: bytes

    @classmethod
    def of(cls, array: npt.NDArray[Any]) -> ArrayData:
        arr = np.ascontiguousarray(array)
        dtype = arr.dtype.newbyteorder("<")
        return cls(dtype.str, list(arr.shape), arr.astype(dtype, copy=False).tobytes())

    def to_numpy(self) -> npt.NDArray[Any]:
        out = np.frombuffer(self.data, dtype=np.dtype(self.dtype)).reshape(self.shape)
        return np.ascontiguousarray(out.astype(out.dtype.newbyteorder("="), copy=True))


class Posterior(msgspec.Struct, frozen=True):
    kind: Kind
    reward_type: Literal["bool", "numeric"]
    level_counts: list[int]
    arrays: dict[str, ArrayData]
    context_vocab: list[tuple[str, ContextScalar]] = msgspec.field(default_factory=list)
    y_mean: float = 0.0
    y_scale: float = 1.0
    meta: dict[str, Any] = msgspec.field(default_factory=dict)

    @property
    def model_type(self) -> Literal["mab", "cmab"]:
        return "mab" if self.kind in ("beta", "nig") else "cmab"

    @property
    def n_variants(self) -> int:
        return int(np.prod(self.level_counts))

    def array(self, name: str) -> npt.NDArray[np.float64]:
        return self.arrays[name].to_numpy()

    def encode(self) -> bytes:
        return _ENCODER.encode(self)

    @staticmethod
    def decode(data: bytes) -> Posterior:
        return _DECODER.decode(data)


def make_posterior(
    kind: Kind,
    reward_type: Literal["bool", "numeric"],
    level_counts: tuple[int, ...] | list[int],
    arrays: dict[str, npt.NDArray[Any]],
    **extra: Any,
) -> Posterior:
    return Posterior(
        kind=kind,
        reward_type=reward_type,
        level_counts=[int(k) for k in level_counts],
        arrays={name: ArrayData.of(a) for name, a in arrays.items()},
        **extra,
    )


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(Posterior)
