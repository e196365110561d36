"""A PostgreSQL 15 server of the test's own (Debian's /usr/lib/postgresql/15/bin), in a fresh
temporary directory on a free loopback port, with trust authentication for user `fleetmq`.

PostgreSQL refuses to run as root, and CI runs as root: then the cluster belongs to `nobody`
and every server command runs through `runuser -u nobody`. Nothing here sleeps to synchronise:
`pg_ctl -w` waits for the server, and callers wait for rows with `harness.wait_for`.
"""

import os
import pathlib
import shutil
import subprocess
import tempfile
from typing import List, Optional

import psycopg

from harness import free_port

PG_BIN = pathlib.Path(os.environ.get("FLEETMQ_PG_BIN", "/usr/lib/postgresql/15/bin"))
USER = "fleetmq"


def available() -> bool:
    return (PG_BIN / "initdb").exists()


class PostgresProcess:
    def __init__(self):
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="fleetmq-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.run_as: List[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "nobody")
            self.run_as = ["runuser", "-u", "nobody", "--"]
        self._run([str(PG_BIN / "initdb"), "-D", str(self.data), "-U", USER, "--auth=trust",
                   "-E", "UTF8", "--no-sync", "--no-instructions"])
        self.start()

    @property
    def url(self) -> str:
        return f"postgres://{USER}@127.0.0.1:{self.port}/postgres"

    def _run(self, args: List[str], timeout: float = 60):
        done = subprocess.run(self.run_as + args, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
                              cwd=str(self.dir))
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}):\n"
                               f"{done.stdout.decode(errors='replace')}\n{self.log()}")

    def start(self):
        """Starts (or restarts) the server and waits until it accepts connections."""
        opts = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                f"-c full_page_writes=off")
        self._run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-o", opts,
                   "-l", str(self.dir / "log"), "-w", "-t", "60", "start"])

    def stop(self):
        """Stops the server (fast: open connections are cut) and waits until it is down."""
        self._run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t", "60",
                   "stop"])

    def log(self) -> str:
        try:
            return (self.dir / "log").read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def query(self, sql: str, params: Optional[tuple] = None) -> list:
        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def count(self, table: str, where: str = "true", params: Optional[tuple] = None) -> int:
        """Rows of `table`, 0 while it does not exist yet."""
        try:
            return self.query(f"SELECT count(*) FROM {table} WHERE {where}", params)[0][0]
        except psycopg.errors.UndefinedTable:
            return 0

    def partitions(self, table: str) -> List[str]:
        rows = self.query(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = %s ORDER BY 1", (table,))
        return [r[0] for r in rows]

    def destroy(self):
        try:
            self.stop()
        except (RuntimeError, subprocess.TimeoutExpired):
            pass
        shutil.rmtree(self.dir, ignore_errors=True)
