from __future__ import annotations

import stat
from pathlib import Path

from levered.db.embedded_host import unreachable_ancestor

NOBODY = 65534


def test_finds_the_first_directory_another_user_cannot_enter(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    target = locked / "inner" / "data"
    target.mkdir(parents=True)
    tmp_path.chmod(0o755)
    locked.chmod(0o700)
    # tmp_path's own ancestors may be private (pytest's basetemp is 0700), so check relative
    blocked = unreachable_ancestor(target, NOBODY, {NOBODY})
    assert blocked is not None
    assert blocked == locked or locked.is_relative_to(blocked) or blocked in locked.parents


def test_owner_and_group_bits_are_honoured(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    st = private.stat()
    # The owner may enter even at 0700: the owner bits apply, not the "other" bits.
    assert unreachable_ancestor(private / "x", st.st_uid, {st.st_gid}) in (None, *private.parents)
    private.chmod(stat.S_IRWXU | stat.S_IXGRP)
    result = unreachable_ancestor(private / "x", NOBODY, {st.st_gid})
    assert result != private


def test_missing_tail_is_not_an_obstacle(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    assert unreachable_ancestor(tmp_path / "not" / "yet", 0, {0}) is None
