"""Refuse a port that another process already serves on.

Granian binds with ``SO_REUSEPORT`` (that is how its workers share one port), so a second
server on a taken port used to start silently and the kernel split connections between two
databases. Before anything starts, :func:`claim_port` therefore:

1. takes an exclusive lock file for the (host, port) for the life of the process, so two
   Levered servers started at the same moment cannot both pass step 2;
2. binds a probe socket *without* ``SO_REUSEPORT``: Linux refuses it while any socket listens
   on the port, whoever owns it. ``SO_REUSEADDR`` is set so that connections left in
   ``TIME_WAIT`` by a server just stopped do not count as a holder (it never lets a bind
   share a listening port on Linux or macOS).

The probe is closed before the ASGI server binds; a foreign process that grabs the port in the
seconds between is not excluded, but a second Levered server is (its lock).
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import sys
import tempfile
from pathlib import Path
from typing import IO

from levered.errors import ConfigurationError

_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp


def claim_port(host: str, port: int) -> IO[str]:
    """Lock and probe ``host:port``; the returned file holds the lock until closed (or the
    process ends). Raises :class:`ConfigurationError` naming the port and, when this user can
    see it, the holder."""
    lock = _lock_file(host, port)
    try:
        _probe_bind(host, port)
    except BaseException:
        lock.close()
        raise
    return lock


def _lock_path(host: str, port: int) -> Path:
    return Path(tempfile.gettempdir()) / f"levered-port-{host.replace(':', '_')}-{port}.lock"


def running_server(host: str, port: int) -> int | None:
    """The pid of the Levered server holding ``host:port`` (its lock), None when none does."""
    path = _lock_path(host, port)
    if sys.platform == "win32" or not path.exists():
        return None
    import fcntl

    with path.open("r", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            words = handle.read().split()
            return int(words[-1]) if words and words[-1].isdigit() else None
        fcntl.flock(handle, fcntl.LOCK_UN)
        return None


def _lock_file(host: str, port: int) -> IO[str]:
    path = _lock_path(host, port)
    handle = path.open("a+", encoding="utf-8")
    if sys.platform == "win32":  # no fcntl there: the probe bind alone guards Windows
        return handle
    import fcntl

    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        other = handle.read().strip() or "another Levered server"
        handle.close()
        raise ConfigurationError(
            f"port {port} on {host} is taken: {other} is serving on it; stop it or pass "
            "--port (LEVERED_PORT) with a free port"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"Levered server pid {os.getpid()}\n")
    handle.flush()
    return handle


def _probe_bind(host: str, port: int) -> None:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise ConfigurationError(f"cannot bind {host}:{port}: {exc.strerror}") from None
    with socket.socket(family, kind, proto) as probe:
        if sys.platform != "win32":  # on Windows SO_REUSEADDR would let the probe steal it
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise ConfigurationError(f"cannot bind {host}:{port}: {exc.strerror}") from None
            holder = port_holder(port)
            raise ConfigurationError(
                f"port {port} is already in use"
                + (f" by {holder}" if holder else " by another process")
                + "; stop it or pass --port (LEVERED_PORT) with a free port"
            ) from None


def port_holder(port: int) -> str | None:
    """``pid N (command line)`` of a process listening on TCP ``port``, from ``/proc`` (Linux);
    None where that is not readable (another user's process, other systems)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table, encoding="ascii") as rows:
            next(rows, None)
            for row in rows:
                fields = row.split()
                if fields[3] == _LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return None
    with contextlib.suppress(OSError):
        for pid in filter(str.isdigit, os.listdir("/proc")):
            with contextlib.suppress(OSError):
                fds = Path("/proc", pid, "fd")
                if any(os.readlink(fds / fd) in inodes for fd in os.listdir(fds)):
                    cmdline = Path("/proc", pid, "cmdline").read_bytes()
                    command = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
                    return f"pid {pid} ({command[:120]})" if command else f"pid {pid}"
    return None
