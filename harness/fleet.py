"""The fleet as real processes on this machine, with its own PostgreSQL and Kafka.

Services come from scripts/services.py with a private state dir (VIDJOBS_TEST_STATE), so
restarting them never disturbs anything else. Every vidjobs process runs in its own
session with its own log file; a killed process is restarted like a supervisor would.

Network: every process reaches PostgreSQL, Kafka and S3 through its own toxiproxy proxies
(`pg-<name>`, `kafka-<name>`, `s3-<name>`), so a fault can hit the whole fleet or cut one
process off. Kafka tells a client where the broker is, so the broker has one listener per
process, advertised at that process's proxy. The webhook dispatcher reaches the harness's
receiver through `hook`. In s3 mode each worker's scratch dir is a small tmpfs (mounted as
root; without root it stays a plain dir and the disk-full fault is not available).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from harness.toxiproxy import Toxiproxy

REPO = Path(__file__).resolve().parent.parent
SERVICES = REPO / "scripts" / "services.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Proc:
    role: str
    index: int
    argv: list[str]
    log_dir: Path
    popen: subprocess.Popen[bytes] | None = None
    incarnation: int = 0
    stopped: bool = False  # SIGSTOPped (a zombie in the making)
    proxies: dict[str, str] = field(default_factory=dict)  # service -> toxiproxy proxy name
    env: dict[str, str] = field(default_factory=dict)  # its own addresses (via its proxies)
    serving: int = 0  # the incarnation last seen serving (its log says it started work)

    @property
    def name(self) -> str:
        return f"{self.role}-{self.index}"

    @property
    def log(self) -> Path:
        return self.log_dir / f"{self.name}.{self.incarnation}.log"

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def is_serving(self, marker: str) -> bool:
        """Alive, not paused, and this incarnation's log has the line it logs once started."""
        if not self.alive() or self.stopped:
            return False
        if self.serving != self.incarnation:
            try:
                if marker not in self.log.read_text(errors="replace"):
                    return False
            except FileNotFoundError:
                return False
            self.serving = self.incarnation
        return True


@dataclass
class Fleet:
    run_dir: Path
    workers: int = 3
    relays: int = 2
    worker_concurrency: int = 4
    executor: str = "sleep"
    sleep_seconds: float = 0.2
    lease_seconds: float = 3.0
    env: dict[str, str] = field(default_factory=dict)
    procs: list[Proc] = field(default_factory=list)
    api_url: str = ""
    database_url: str = ""
    kafka: str = ""
    storage: str = "local"  # or "s3": blobs in a versitygw bucket, no shared directory
    s3: dict[str, str] = field(default_factory=dict)
    toxiproxy: Toxiproxy | None = None
    kafka_listeners: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> ports
    scratch_tmpfs: dict[str, Path] = field(default_factory=dict)  # worker name -> mount
    scratch_mb: int = 48
    proxy_ports: dict[str, int] = field(default_factory=dict)  # proxy name -> its port
    wrapper: str = ""  # harness.broken mode for the workers ("fence"/"drop"): a self-test

    def names(self) -> list[str]:
        """Every vidjobs process of the fleet, in start order."""
        return (
            ["api-0"]
            + [f"relay-{i}" for i in range(self.relays)]
            + [f"worker-{i}" for i in range(self.workers)]
            + ["reaper-0", "ledger-0", "webhooks-0"]
        )

    # --- services ------------------------------------------------------------------------

    def _services(self, command: str, extra: dict[str, str] | None = None) -> str:
        env = {**os.environ, "VIDJOBS_TEST_STATE": str(self.run_dir / "state"), **(extra or {})}
        for var in ("VIDJOBS_TEST_DATABASE_URL", "VIDJOBS_TEST_KAFKA_BOOTSTRAP",
                    "VIDJOBS_TEST_S3_ENDPOINT", "VIDJOBS_TEST_S3_ACCESS_KEY",
                    "VIDJOBS_TEST_S3_SECRET_KEY"):
            env.pop(var, None)
        out = subprocess.run(
            [sys.executable, str(SERVICES), command],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if out.returncode != 0:
            raise RuntimeError(f"services.py {command} failed: {out.stderr[-2000:]}")
        return out.stdout.strip()

    def start_services(self) -> None:
        self.toxiproxy = Toxiproxy(self._services("toxiproxy-start"))
        self.database_url = self._services("postgres-start")
        # Each process's Kafka proxy first (toxiproxy picks its port), so that the broker's
        # listener for that process can advertise it.
        self.proxy_ports = {}
        for name in self.names():
            real = free_port()
            adv = self.toxiproxy.create(f"kafka-{name}", f"127.0.0.1:{real}")
            self.kafka_listeners[name] = (real, adv)
            self.proxy_ports[f"kafka-{name}"] = adv
        spec = ",".join(
            f"{n.upper().replace('-', '_')}:{real}:{adv}"
            for n, (real, adv) in self.kafka_listeners.items()
        )
        self.kafka = self._services("kafka-start", {"VIDJOBS_TEST_KAFKA_LISTENERS": spec})
        if self.storage == "s3":  # a private versitygw: exports of its endpoint and keys
            exports = self._services("s3-start").splitlines()
            found = dict(line.removeprefix("export ").split("=", 1) for line in exports)
            self.s3 = {k: v.strip("'") for k, v in found.items()}
        self._make_proxies()

    def _make_proxies(self) -> None:
        assert self.toxiproxy is not None
        tp = self.toxiproxy
        pg = urlsplit(self.database_url)
        s3 = urlsplit(self.s3.get("VIDJOBS_TEST_S3_ENDPOINT", ""))
        for name in self.names():
            self.proxy_ports[f"pg-{name}"] = tp.create(f"pg-{name}", f"{pg.hostname}:{pg.port}")
            if self.storage == "s3":
                self.proxy_ports[f"s3-{name}"] = tp.create(f"s3-{name}", f"{s3.hostname}:{s3.port}")

    def proxy_webhooks(self, receiver_port: int) -> str:
        """The receiver's address as the dispatcher sees it: through the `hook` proxy."""
        assert self.toxiproxy is not None
        port = self.toxiproxy.create("hook", f"127.0.0.1:{receiver_port}")
        return f"http://127.0.0.1:{port}/hook"

    def proxies_of(self, service: str, roles: tuple[str, ...] = ()) -> list[str]:
        """The proxy names of one service (pg/kafka/s3) of every process, or of some roles."""
        return [
            p.proxies[service]
            for p in self.procs
            if service in p.proxies and (not roles or p.role in roles)
        ]

    def restart_postgres(self) -> None:
        self._services("postgres-restart")

    def restart_kafka(self) -> None:
        self._services("kafka-restart")

    def ensure_services(self) -> None:
        """PostgreSQL and Kafka up again (start reuses one that runs, on the same ports)."""
        self._services("postgres-start")
        self._services("kafka-start")

    def stop_services(self) -> None:
        self.unmount_scratch()
        for command in ("kafka-stop", "postgres-stop", "s3-stop", "toxiproxy-stop"):
            try:
                self._services(command)
            except RuntimeError as exc:
                print(f"warning: {exc}", file=sys.stderr)

    # --- vidjobs processes ---------------------------------------------------------------

    def configure(self, source_root: Path, webhook_env: dict[str, str] | None = None) -> None:
        webhook_env = webhook_env or {}
        port = free_port()
        self.api_url = f"http://127.0.0.1:{port}"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("VIDJOBS_")},
            "VIDJOBS_DATABASE_URL": self.database_url,
            "VIDJOBS_KAFKA_BOOTSTRAP": self.kafka,
            "VIDJOBS_KAFKA_TOPIC": f"harness.{self.run_dir.name}",
            "VIDJOBS_KAFKA_PARTITIONS": "6",
            "VIDJOBS_DATA_DIR": str(self.run_dir / "data"),
            "VIDJOBS_SOURCE_ROOTS": str(source_root),
            "VIDJOBS_LEASE_SECONDS": str(self.lease_seconds),
            "VIDJOBS_HEARTBEAT_SECONDS": "0.5",
            "VIDJOBS_POLL_SECONDS": "1",
            "VIDJOBS_FLEET_SWEEP_SECONDS": "2",
            "VIDJOBS_RETRY_BASE_SECONDS": "0.5",
            "VIDJOBS_RETRY_MAX_SECONDS": "2",
            "VIDJOBS_DEFAULT_MAX_ATTEMPTS": "10",
            "VIDJOBS_SHUTDOWN_GRACE_SECONDS": "5",
            "VIDJOBS_RATE_LIMIT_PER_SECOND": "0",
            "VIDJOBS_SLEEP_SECONDS": str(self.sleep_seconds),
            "PYTHONUNBUFFERED": "1",
            **webhook_env,
            **self.storage_env(),
        }
        logs = self.run_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        cli = [sys.executable, "-m", "workers.cli"]
        self.procs = [Proc("api", 0, [*cli, "serve", "--port", str(port)], logs)]
        self.procs += [Proc("relay", i, [*cli, "relay"], logs) for i in range(self.relays)]
        self.procs += [
            Proc(
                "worker",
                i,
                [
                    *cli,
                    "worker",
                    "--executor",
                    self.executor,
                    "--concurrency",
                    str(self.worker_concurrency),
                ],
                logs,
            )
            for i in range(self.workers)
        ]
        self.procs += [
            Proc("reaper", 0, [*cli, "reaper", "--interval", "0.5"], logs),
            Proc("ledger", 0, [*cli, "ledger"], logs),
            Proc("webhooks", 0, [*cli, "webhooks"], logs),
        ]
        if self.wrapper:  # a deliberately broken worker, for the checker's self-test
            for proc in self.by_role("worker"):
                proc.argv = [sys.executable, "-m", "harness.broken", self.wrapper, *proc.argv[3:]]
        for proc in self.procs:
            self._wire(proc)

    def _wire(self, proc: Proc) -> None:
        """The process's own addresses: its proxies, and a scratch tmpfs for a worker."""
        if self.toxiproxy is None:
            return
        ports = self.proxy_ports
        pg = urlsplit(self.database_url)
        netloc = pg.netloc.rsplit(":", 1)[0] + f":{ports[f'pg-{proc.name}']}"
        proc.proxies = {"pg": f"pg-{proc.name}", "kafka": f"kafka-{proc.name}"}
        proc.env = {
            "VIDJOBS_DATABASE_URL": urlunsplit(pg._replace(netloc=netloc)),
            "VIDJOBS_KAFKA_BOOTSTRAP": f"127.0.0.1:{ports[f'kafka-{proc.name}']}",
        }
        if self.storage == "s3":
            proc.proxies["s3"] = f"s3-{proc.name}"
            proc.env["VIDJOBS_S3_ENDPOINT_URL"] = f"http://127.0.0.1:{ports[f's3-{proc.name}']}"
            if proc.role == "worker":
                self._mount_scratch(proc)

    def _mount_scratch(self, proc: Proc) -> None:
        scratch = self.run_dir / "hosts" / proc.name / "tmp"
        scratch.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0:
            return
        out = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.scratch_mb}m,mode=0700", "tmpfs", str(scratch)],
            capture_output=True, text=True,
        )
        if out.returncode == 0:
            self.scratch_tmpfs[proc.name] = scratch
        else:
            print(f"warning: no tmpfs for {proc.name}'s scratch: {out.stderr.strip()}", file=sys.stderr)

    def scratch_dirs(self) -> list[Path]:
        """Where the processes keep scratch: each one's own (s3), or the shared store's."""
        if self.storage == "s3":
            return [self.run_dir / "hosts" / p.name / "tmp" for p in self.procs]
        return [self.run_dir / "data" / "blobs" / "tmp"]

    def unmount_scratch(self) -> None:
        for path in self.scratch_tmpfs.values():
            subprocess.run(["umount", "-l", str(path)], capture_output=True)
        self.scratch_tmpfs.clear()

    def storage_env(self) -> dict[str, str]:
        """Blobs in a directory every process reads (local), or in a bucket (s3): then each
        process has only its own data dir, as on separate machines."""
        if self.storage == "local":
            return {"VIDJOBS_STORAGE_URL": (self.run_dir / "data" / "blobs").as_uri()}
        return {
            "VIDJOBS_STORAGE_URL": f"s3://{self.bucket}/blobs",
            "VIDJOBS_S3_ENDPOINT_URL": self.s3["VIDJOBS_TEST_S3_ENDPOINT"],
            "AWS_ACCESS_KEY_ID": self.s3["VIDJOBS_TEST_S3_ACCESS_KEY"],
            "AWS_SECRET_ACCESS_KEY": self.s3["VIDJOBS_TEST_S3_SECRET_KEY"],
            "AWS_REGION": "us-east-1",
        }

    @property
    def bucket(self) -> str:
        return f"vjh-{self.run_dir.name.lower().replace('_', '-')}"[:63].rstrip("-")

    def vidjobs(self, *args: str) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "workers.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
        )
        if out.returncode != 0:
            raise RuntimeError(f"vidjobs {' '.join(args)} failed: {out.stderr[-2000:]}")
        return out.stdout.strip()

    def start(self, proc: Proc) -> None:
        proc.incarnation += 1
        host = self.run_dir / "hosts" / proc.name  # its own disk: scratch only
        with proc.log.open("wb") as log:
            proc.popen = subprocess.Popen(
                proc.argv,
                env={**self.env, **proc.env, "VIDJOBS_DATA_DIR": str(host)},
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        proc.stopped = False

    def start_all(self) -> None:
        for proc in self.procs:
            self.start(proc)

    def by_role(self, role: str) -> list[Proc]:
        return [p for p in self.procs if p.role == role]

    def kill(self, proc: Proc) -> None:
        """SIGKILL the whole process group: the process and anything it started."""
        if proc.popen is None:
            return
        if proc.stopped:
            os.killpg(proc.pid, signal.SIGCONT)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.popen.wait(10)

    def pause(self, proc: Proc) -> None:
        os.killpg(proc.pid, signal.SIGSTOP)
        proc.stopped = True

    def resume(self, proc: Proc) -> None:
        os.killpg(proc.pid, signal.SIGCONT)
        proc.stopped = False

    def workers_serving(self) -> bool:
        """Every worker process up and claiming (`vidjobs worker` logs its concurrency then)."""
        return all(p.is_serving(": concurrency ") for p in self.by_role("worker"))

    def active_relay(self) -> Proc | None:
        """The relay whose current incarnation says it holds the lock (latest line wins)."""
        for proc in self.by_role("relay"):
            if not proc.alive() or not proc.log.exists():
                continue
            text = proc.log.read_text(errors="replace")
            if text.rfind("relay is active") > text.rfind("standing by"):
                return proc
        return None

    def wait_api(self, timeout: float = 60) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.api_url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the API did not come up; see {self.procs[0].log}")

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.alive():
                if proc.stopped:
                    self.resume(proc)
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        deadline = time.monotonic() + 15
        for proc in self.procs:
            if proc.popen is not None:
                try:
                    proc.popen.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    self.kill(proc)
