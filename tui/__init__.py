"""The ``levered dashboard`` Textual app (imported only by that command)."""
