"""Where an attribution statement reads an optimization's exposures.

Levered's own ``warehouse.exposures``, or a table of the customer's in their connected
PostgreSQL read through a column mapping (:func:`levered.db.native_exposures.exposures`). The
statements of :mod:`levered.db.attribution` and :mod:`levered.db.cell_passes` take one of these
and are otherwise the same SQL.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final


@dataclass(frozen=True)
class Exposures:
    """Where a statement reads an optimization's exposures: Levered's own table, or a table of
    the customer's in their connected PostgreSQL (:mod:`levered.db.native_exposures`)."""

    relation: str
    """SQL of a relation with ``optimization_id``, ``anonymous_id``, ``variant_number``,
    ``context``, ``holdout`` and ``"timestamp"``."""
    key: str = "x.ctid"
    """What tells one exposure row (alias ``x``) from another with the same columns. A
    customer's view has no ``ctid``: a constant groups credits by the exposure's columns, which
    is the same, since the last-touch probe picks one of equal rows every time."""
    arrivals: bool = True
    """The relation has ``received_at`` and transaction ids, so late events can be found; a
    customer's table has neither (each pass re-reads the reload buffer instead)."""
    row_key: str = "x.ctid"
    """What names one exposure row to match it with its credits (the observations page): a
    customer's rows are named by their columns, as text."""
    row_key_type: str = "tid"
    variant: str = "x.variant"
    """The variant as JSON; NULL on a customer's table (the caller names it by its number)."""
    subject: str = "the reward metric's SQL"
    """What a failing attribution statement is said to have failed on: over a customer's
    table, a bad row there (text that is not JSON) fails it as the metric would."""

    def for_page(self) -> Exposures:
        """These exposures with credits keyed by :attr:`row_key` (the observations page)."""
        return replace(self, key=self.row_key)


MANAGED_EXPOSURES: Final = Exposures("warehouse.exposures")
