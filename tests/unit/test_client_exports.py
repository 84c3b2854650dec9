"""``from levered.client import serve`` is the function the README shows, not the submodule."""

from __future__ import annotations

import inspect

from levered.client import AsyncServeClient, ServeClient, aserve, serve
from levered.client.serve import Served


def test_serve_is_the_one_shot_function() -> None:
    assert inspect.isfunction(serve) and serve.__module__ == "levered.client.serve"
    assert inspect.iscoroutinefunction(aserve)
    assert ServeClient.__name__ == "ServeClient" and AsyncServeClient.__name__ == "AsyncServeClient"
    assert Served.__name__ == "Served"
