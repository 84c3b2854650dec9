"""Human-readable coefficient summaries of a cmab posterior (for ``/models/{id}/state``).

Each column of the GLM gets a name built from the optimization's factors and levels — main
effects ``headline=Build better``, design pairs ``headline=Build better × cta=Try it``,
context interactions ``device=mobile × headline=Build better``, context mains
``device=mobile`` and the ``intercept`` — with its posterior mean and a 95 % interval
(mean ± 1.96 sd, the sd from the row norms of the Cholesky factor results draw from: with the
learned prior scales' uncertainty integrated out, :func:`levered.bandit.results.reported_chol`,
so these intervals agree with the results' and do not read the learned scales as known).
Coefficients are on the link scale: log-odds for bool rewards, standardized units for numeric
ones.
"""

from __future__ import annotations

import numpy as np

from levered.bandit.glm import design_of
from levered.bandit.posterior import Posterior
from levered.bandit.results import reported_chol
from levered.bandit.variants import VariantSpace
from levered.schemas.models import Coefficient

TOP_COEFFICIENTS = 50


def coefficient_names(posterior: Posterior, space: VariantSpace) -> list[tuple[str, str]]:
    """(name, kind) per column, in column order."""
    d = design_of(posterior)
    names: list[tuple[str, str]] = [("", "")] * d.n_features

    def level(f: int, i: int) -> str:
        factor = space.factors[f]
        return f"{factor.name}={factor.levels[i]}"

    for f, k in enumerate(d.level_counts):
        for i in range(d.first_level, k):
            names[int(d.main_idx[f, i])] = (level(f, i), "main")
    for p in range(d.pair_f.size):
        f, g = int(d.pair_f[p]), int(d.pair_g[p])
        for a in range(d.first_level, d.level_counts[f]):
            for b in range(d.first_level, d.level_counts[g]):
                names[int(d.pair_idx[p, a, b])] = (f"{level(f, a)} × {level(g, b)}", "pair")
    for c, (ctx_name, ctx_value) in enumerate(d.context_vocab):
        names[int(d.ctx_main_idx[c])] = (f"{ctx_name}={ctx_value}", "context")
        for f, k in enumerate(d.level_counts):
            for i in range(d.first_level, k):
                names[int(d.cd_idx[c, f, i])] = (
                    f"{ctx_name}={ctx_value} × {level(f, i)}",
                    "context_interaction",
                )
    names[d.intercept] = ("intercept", "intercept")
    return names


def summarize_coefficients(
    posterior: Posterior, space: VariantSpace, top: int = TOP_COEFFICIENTS
) -> list[Coefficient]:
    """The ``top`` coefficients by |mean|, intercept excluded (it only sets the base rate)."""
    mean = posterior.array("mean")
    chol = reported_chol(posterior) if posterior.model_type == "cmab" else posterior.array("chol")
    sd = np.sqrt(np.einsum("ij,ij->i", chol, chol))
    named = coefficient_names(posterior, space)
    order = [int(j) for j in np.argsort(-np.abs(mean)) if named[int(j)][1] != "intercept"]
    return [
        Coefficient(
            name=named[j][0],
            kind=named[j][1],
            mean=float(mean[j]),
            lo=float(mean[j] - 1.96 * sd[j]),
            hi=float(mean[j] + 1.96 * sd[j]),
        )
        for j in order[:top]
    ]


def prior_scales(posterior: Posterior, space: VariantSpace) -> dict[str, float] | None:
    """The learned block scales of a cmab version, keyed by factor names rather than the
    positional block names the posterior stores (``main:0`` → ``headline``)."""
    stored = posterior.meta.get("prior_scales")
    if posterior.model_type != "cmab" or not isinstance(stored, dict):
        return None
    names = [f.name for f in space.factors]
    out: dict[str, float] = {}
    for key, value in stored.items():
        kind, *rest = str(key).split(":")
        if kind == "main":
            label = names[int(rest[0])]
        elif kind == "pair":
            label = f"{names[int(rest[0])]} × {names[int(rest[1])]}"
        else:
            label = f"{rest[0]} × {names[int(rest[1])]}"
        out[label] = float(value)
    return out
