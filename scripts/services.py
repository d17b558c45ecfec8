#!/usr/bin/env python3
"""Private PostgreSQL and Apache Kafka for the vidjobs integration tests.

Stdlib only, no project imports: it runs before the project is installed.

    python scripts/services.py postgres-start | postgres-stop | postgres-restart
    python scripts/services.py kafka-start | kafka-stop | kafka-restart
    python scripts/services.py s3-start | s3-stop
    python scripts/services.py toxiproxy-start | toxiproxy-stop | toxiproxy-build
    python scripts/services.py env | status | stop-all

State lives under ``<repo>/.vidjobs-test/`` (gitignored). ``*-start`` prints the address to
use on stdout (everything else goes to stderr) and reuses a service that is already running.
``env`` prints shell ``export`` lines for ``VIDJOBS_TEST_DATABASE_URL`` and
``VIDJOBS_TEST_KAFKA_BOOTSTRAP`` (and ``VIDJOBS_TEST_S3_ENDPOINT`` with its
``VIDJOBS_TEST_S3_ACCESS_KEY``/``VIDJOBS_TEST_S3_SECRET_KEY``: a versitygw S3 server on a posix
directory, built with ``go install`` into the cache once, like the Kafka jars); a service
that cannot start is reported as ``SKIPPING ... tests: <reason>`` unless
``VIDJOBS_REQUIRE_SERVICES=1``, which makes it fatal.
If one of those variables is already set, that external service is verified and used instead.
Exit codes: 0 ok, 1 a service failed, 3 a required program (PostgreSQL, java, mvn, go) is missing.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import glob
import hashlib
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
# VIDJOBS_TEST_STATE gives a second, independent set of services (the fault harness uses one
# so that restarting its PostgreSQL or Kafka never disturbs the test suite's).
STATE = Path(os.environ.get("VIDJOBS_TEST_STATE") or REPO / ".vidjobs-test").resolve()
KAFKA_DIR = STATE / "kafka"
POM = REPO / "scripts" / "kafka" / "pom.xml"
KAFKA_CHECK = REPO / "scripts" / "kafka" / "check.py"
HOST = "127.0.0.1"
DB_NAME, DB_USER = "vidjobs_test", "vidjobs"
PG_ENV, KAFKA_ENV = "VIDJOBS_TEST_DATABASE_URL", "VIDJOBS_TEST_KAFKA_BOOTSTRAP"
KAFKA_LISTENERS_ENV = "VIDJOBS_TEST_KAFKA_LISTENERS"
S3_ENV, S3_KEY_ENV, S3_SECRET_ENV = (
    "VIDJOBS_TEST_S3_ENDPOINT", "VIDJOBS_TEST_S3_ACCESS_KEY", "VIDJOBS_TEST_S3_SECRET_KEY")
S3_DIR = STATE / "s3"
VERSITYGW_MODULE = "github.com/versity/versitygw/cmd/versitygw@v1.8.0"
# The fault harness's proxy (Shopify toxiproxy); `go install` names the binary "server".
TOXIPROXY_MODULE = "github.com/Shopify/toxiproxy/v2/cmd/server@latest"
TOXIPROXY_DIR = STATE / "toxiproxy"
MISSING = 3


class ServiceError(Exception):
    """A service could not be started or stopped; ``code`` is the exit code to use."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def log(message: str) -> None:
    """Progress goes to stderr: stdout is reserved for addresses and export lines."""
    print(f"[services] {message}", file=sys.stderr, flush=True)


def run(cmd: list[str], *, user: str | None = None, cwd: Path | None = None,
        check: bool = True, capture: bool = False) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` (as ``user`` via runuser when given); its output goes to stderr."""
    if user:
        cmd = ["runuser", "-u", user, "--", *cmd]
    try:
        proc = subprocess.run(cmd, cwd=cwd, text=True, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE if capture else sys.stderr,
                              stderr=subprocess.PIPE if capture else sys.stderr)
    except FileNotFoundError as exc:
        raise ServiceError(f"{cmd[0]} not found: {exc}", MISSING) from None
    if check and proc.returncode != 0:
        detail = ((proc.stdout or "") + (proc.stderr or "")).strip()[-3000:] if capture else ""
        raise ServiceError(f"{shlex.join(cmd)} exited {proc.returncode}. {detail}".strip())
    return proc


def port_open(host: str, port: int, timeout: float = 2.0) -> bool:
    """True when something accepts TCP connections on host:port."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def port_free(port: int) -> bool:
    """True when we could listen on 127.0.0.1:port (SO_REUSEADDR, as servers do)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def locked(name: str) -> Iterator[None]:
    """Serialise concurrent start/stop calls for one service."""
    STATE.mkdir(parents=True, exist_ok=True)
    with open(STATE / f".{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def verify_external(name: str, value: str, host: str | None, port: int | None) -> str:
    """Accept an address given in the environment only if it answers on TCP."""
    if not host or not port or not port_open(host, port, timeout=5):
        raise ServiceError(f"{name} from the environment ({value}) is not reachable")
    log(f"using external {name}: {value}")
    return value


# --------------------------------------------------------------------------- PostgreSQL


def pg_bindir() -> Path:
    """The directory holding initdb, pg_ctl and psql (PATH first, newest Debian version next)."""
    found = shutil.which("initdb")
    candidates = [Path(found).resolve().parent] if found else []
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    versions.sort(key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit() else 0)
    candidates += [Path(p) for p in reversed(versions)]
    for bindir in candidates:
        if all((bindir / tool).exists() for tool in ("initdb", "pg_ctl", "psql")):
            return bindir
    raise ServiceError("PostgreSQL server binaries (initdb, pg_ctl, psql) not found on PATH or in "
                       "/usr/lib/postgresql/*/bin; install them with: "
                       "apt-get update && apt-get install -y postgresql-15", MISSING)


def pg_user() -> str | None:
    """PostgreSQL refuses to run as root: as root, the cluster belongs to the postgres user."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise ServiceError("running as root needs a 'postgres' OS user to own the cluster "
                           "(apt-get install -y postgresql-15 creates it)", MISSING) from None
    return "postgres"


def pg_home(user: str | None) -> Path:
    """Cluster home: in the state dir, or under /tmp if the postgres user can't reach it or the
    socket path would be too long."""
    home = STATE / "postgres"
    STATE.mkdir(parents=True, exist_ok=True)
    too_long = len(str(home / "run" / ".s.PGSQL.65535")) > 100
    if too_long or (user and run(["test", "-x", str(STATE)], user=user, check=False).returncode):
        digest = hashlib.sha256(str(STATE).encode()).hexdigest()[:12]
        home = Path(tempfile.gettempdir()) / f"vidjobs-test-{digest}" / "postgres"
    return home


class Postgres:
    """A private cluster: ``<home>/data``, sockets in ``<home>/run``, ``<home>/postgres.log``."""

    def __init__(self) -> None:
        self.bindir = pg_bindir()
        self.user = pg_user()
        self.home = pg_home(self.user)
        self.data, self.run_dir = self.home / "data", self.home / "run"
        self.conf, self.log = self.data / "vidjobs.conf", self.home / "postgres.log"

    def ctl(self, *args: str, check: bool = True, capture: bool = False
            ) -> subprocess.CompletedProcess[str]:
        """pg_ctl against our data dir, as the cluster's owner."""
        return run([str(self.bindir / "pg_ctl"), "-D", str(self.data), *args],
                   user=self.user, cwd=self.home, check=check, capture=capture)

    def running(self) -> bool:
        if not self.data.joinpath("PG_VERSION").exists():
            return False
        return self.ctl("status", check=False, capture=True).returncode == 0

    def port(self) -> int | None:
        match = self.conf.exists() and re.search(r"^port = (\d+)$", self.conf.read_text(), re.M)
        return int(match.group(1)) if match else None

    def url(self) -> str:
        return f"postgresql+asyncpg://{DB_USER}@{HOST}:{self.port()}/{DB_NAME}"

    def chown(self, path: Path) -> None:
        if self.user:
            shutil.chown(path, self.user, self.user)

    def init(self) -> None:
        """initdb a fresh cluster with trust auth and superuser ``vidjobs``."""
        shutil.rmtree(self.data, ignore_errors=True)
        for path in (self.home, self.run_dir):
            path.mkdir(parents=True, exist_ok=True)
            self.chown(path)
        log(f"initdb {self.data}")
        run([str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", DB_USER,
             "-E", "UTF8", "--locale=C", "--no-sync"], user=self.user, cwd=self.home, capture=True)
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write("\ninclude_if_exists = 'vidjobs.conf'\n")

    def write_conf(self, port: int) -> None:
        self.conf.write_text(
            f"listen_addresses = '{HOST}'\nport = {port}\n"
            f"unix_socket_directories = '{self.run_dir}'\n"
            "max_connections = 200\nshared_buffers = 128MB\nfsync = off\n"
        )
        self.chown(self.conf)

    def ensure_db(self) -> None:
        psql = [str(self.bindir / "psql"), "-h", HOST, "-p", str(self.port()), "-U", DB_USER,
                "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-tAc"]
        query = f"select 1 from pg_database where datname = '{DB_NAME}'"
        if run([*psql, query], capture=True).stdout.strip() != "1":
            run([*psql, f"create database {DB_NAME}"], capture=True)

    def start(self) -> str:
        with locked("postgres"):
            if not self.data.joinpath("PG_VERSION").exists():
                self.init()
            port = self.port()
            if self.running() and port:
                log(f"reusing running PostgreSQL on port {port}")
            else:
                if port is None or not port_free(port):
                    self.write_conf(free_port())
                started = time.monotonic()
                self.ctl("start", "-w", "-t", "90", "-l", str(self.log))
                log(f"PostgreSQL started in {time.monotonic() - started:.1f}s")
            self.ensure_db()
            return self.url()

    def stop(self) -> None:
        with locked("postgres"):
            if self.running():
                self.ctl("stop", "-m", "fast", "-w", "-t", "60")

    def restart(self) -> str:
        with locked("postgres"):
            if not self.running():
                raise ServiceError("no private PostgreSQL is running; use postgres-start")
            self.ctl("restart", "-m", "fast", "-w", "-t", "90", "-l", str(self.log))
            return self.url()


def postgres_start() -> str:
    """Use VIDJOBS_TEST_DATABASE_URL if set and reachable, else start/reuse the private cluster."""
    if external := os.environ.get(PG_ENV):
        parts = urlsplit(external)
        return verify_external(PG_ENV, external, parts.hostname, parts.port or 5432)
    return Postgres().start()


# --------------------------------------------------------------------------- Kafka


def java_bin() -> str:
    """A java of version 17 or newer (JAVA_HOME first, then PATH)."""
    home_java = Path(os.environ.get("JAVA_HOME") or "/nonexistent", "bin", "java")
    java = str(home_java) if home_java.exists() else shutil.which("java")
    hint = "install it with: apt-get update && apt-get install -y openjdk-17-jre-headless maven"
    if not java:
        raise ServiceError(f"java not found (Kafka needs Java 17+); {hint}", MISSING)
    banner = run([java, "-version"], capture=True).stderr
    match = re.search(r'version "(\d+)', banner)
    if not match or int(match.group(1)) < 17:
        raise ServiceError(f"{java} is not Java 17+ ({banner.strip()[:80]}); {hint}", MISSING)
    return java


def kafka_libs() -> Path:
    """The broker's classpath folder, resolved with Maven from scripts/kafka/pom.xml once."""
    pom = POM.read_bytes()
    version = re.search(rb"<kafka.version>([^<]+)</kafka.version>", pom)
    assert version, f"no <kafka.version> in {POM}"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    libs = cache / "vidjobs" / f"kafka-{version.group(1).decode()}" / "libs"
    stamp, digest = libs / ".pom-sha256", hashlib.sha256(pom).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return libs
    mvn = shutil.which("mvn")
    if not mvn:
        raise ServiceError("mvn not found (needed once to fetch the Kafka broker from Maven "
                           "Central); install it with: apt-get update && apt-get install -y maven",
                           MISSING)
    partial = libs.with_name("libs.partial")
    shutil.rmtree(partial, ignore_errors=True)
    log(f"resolving Kafka {version.group(1).decode()} with Maven into {libs} ...")
    started = time.monotonic()
    run([mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
         f"-DoutputDirectory={partial}", "-DincludeScope=runtime"], capture=True)
    (partial / ".pom-sha256").write_text(digest)
    shutil.rmtree(libs, ignore_errors=True)
    partial.rename(libs)
    log(f"resolved in {time.monotonic() - started:.1f}s")
    return libs


def read_props(path: Path) -> dict[str, str]:
    """Parse a Java .properties file (the simple key=value subset we write)."""
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, value in pairs if not key.startswith("#")}


class Kafka:
    """A single-node KRaft broker+controller under ``.vidjobs-test/kafka``."""

    def __init__(self) -> None:
        self.props = KAFKA_DIR / "server.properties"
        self.data, self.logs = KAFKA_DIR / "data", KAFKA_DIR / "logs"
        self.pidfile = KAFKA_DIR / "kafka.pid"

    def ports(self) -> tuple[int, int] | None:
        if not self.props.exists():
            return None
        props = read_props(self.props)
        return int(props["vidjobs.port"]), int(props["vidjobs.controller.port"])

    def pid(self) -> int | None:
        """The broker's pid if our broker is alive."""
        with contextlib.suppress(OSError, ValueError):
            pid = int(self.pidfile.read_text())
            if str(self.props).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        return None

    def write_props(self, port: int, cport: int) -> None:
        """server.properties and log4j2.properties from the templates in scripts/kafka/."""
        for name in ("server.properties", "log4j2.properties"):
            template = (POM.parent / f"{name}.template").read_text()
            values = {"host": HOST, "port": port, "cport": cport, "data": self.data}
            text = template.format(logs=self.logs, **values)
            if name == "server.properties":
                text = extra_listeners(text, os.environ.get(KAFKA_LISTENERS_ENV, ""))
            (KAFKA_DIR / name).write_text(text)

    def format(self, java: str, libs: Path) -> None:
        """Format the log dir with a new cluster id (static single-voter quorum)."""
        shutil.rmtree(self.data, ignore_errors=True)
        cluster_id = "-"
        while cluster_id.startswith("-"):  # an id starting with '-' would read as an option
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        run([java, "-Xmx256m", f"-Dlog4j2.configurationFile={KAFKA_DIR / 'log4j2.properties'}",
             "-cp", f"{libs}/*", "kafka.tools.StorageTool", "format", "--config",
             str(self.props), "--cluster-id", cluster_id], capture=True)

    def launch(self, java: str, libs: Path) -> subprocess.Popen[bytes]:
        """Start the broker detached (own session), logging into the state dir."""
        self.logs.mkdir(parents=True, exist_ok=True)
        cmd = [java, "-Xms256m", "-Xmx512m", "-XX:+UseG1GC", "-Djava.awt.headless=true",
               f"-Dlog4j2.configurationFile={KAFKA_DIR / 'log4j2.properties'}",
               f"-Dkafka.logs.dir={self.logs}", "-cp", f"{libs}/*", "kafka.Kafka", str(self.props)]
        with open(KAFKA_DIR / "kafka.out", "wb") as out:
            proc = subprocess.Popen(cmd, cwd=KAFKA_DIR, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self.pidfile.write_text(str(proc.pid))
        return proc

    def wait_ready(self, port: int, timeout: float = 120.0,
                   proc: subprocess.Popen[bytes] | None = None) -> None:
        """Wait for the listener, then for a real produce/consume round trip through aiokafka."""
        deadline = time.monotonic() + timeout
        while not port_open(HOST, port, timeout=1):
            if (proc.poll() is not None) if proc else (self.pid() is None):
                out = KAFKA_DIR / "kafka.out"
                tail = out.read_text(errors="replace")[-2000:] if out.exists() else ""
                raise ServiceError(f"Kafka exited during start-up; see {self.logs}/server.log "
                                   f"and {out}\n{tail}")
            if time.monotonic() > deadline:
                raise ServiceError(f"Kafka did not listen on {HOST}:{port} within {timeout:.0f}s")
            time.sleep(0.3)
        venv_python = REPO / ".venv" / "bin" / "python"
        python = str(venv_python) if venv_python.exists() else sys.executable
        left = max(deadline - time.monotonic(), 30.0)
        check = run([python, str(KAFKA_CHECK), f"{HOST}:{port}", "--timeout", f"{left:.0f}"],
                    check=False)
        if check.returncode == 4:
            log("aiokafka not importable here: skipped the produce/consume check")
        elif check.returncode != 0:
            raise ServiceError(f"Kafka on {HOST}:{port} failed the aiokafka round-trip check")

    def start(self, keep_ports: bool = False) -> str:
        java, libs = java_bin(), kafka_libs()
        with locked("kafka"):
            KAFKA_DIR.mkdir(parents=True, exist_ok=True)
            ports = self.ports()
            if ports and self.pid():
                log(f"reusing running Kafka on port {ports[0]}")
                self.wait_ready(ports[0], timeout=60)
                return f"{HOST}:{ports[0]}"
            deadline = time.monotonic() + (15 if keep_ports else 0)
            while ports and not all(map(port_free, ports)) and time.monotonic() < deadline:
                time.sleep(0.5)
            if ports is None or not all(map(port_free, ports)):
                if keep_ports and ports:
                    raise ServiceError(f"Kafka ports {ports} are taken by another process")
                ports = free_port(), free_port()
                while ports[1] == ports[0]:
                    ports = ports[0], free_port()
                self.write_props(*ports)
            if not (self.data / "meta.properties").exists():
                self.format(java, libs)
            started = time.monotonic()
            proc = self.launch(java, libs)
            try:
                self.wait_ready(ports[0], proc=proc)
            except BaseException:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                self.pidfile.unlink(missing_ok=True)
                raise
            log(f"Kafka ready in {time.monotonic() - started:.1f}s")
            return f"{HOST}:{ports[0]}"

    def stop(self) -> None:
        """SIGTERM the broker's process group (controlled shutdown), SIGKILL after 60 s."""
        with locked("kafka"):
            pid = self.pid()
            for sig, wait in ((signal.SIGTERM, 60.0), (signal.SIGKILL, 10.0)):
                if pid is None:
                    break
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, sig)
                deadline = time.monotonic() + wait
                while self.pid() and time.monotonic() < deadline:
                    time.sleep(0.2)
                pid = self.pid()
            self.pidfile.unlink(missing_ok=True)


def extra_listeners(props: str, spec: str) -> str:
    """Add the listeners of ``VIDJOBS_TEST_KAFKA_LISTENERS`` (``NAME:port:advertised_port,...``)
    to server.properties. A client that bootstraps on a listener is told that listener's
    advertised address, so each fault-harness process gets its own listener advertised at
    its own proxy (a partition of one process from Kafka then stays a partition)."""
    extra = [item.split(":") for item in spec.split(",") if item.strip()]
    if not extra:
        return props
    for item in extra:
        if len(item) != 3 or not re.fullmatch(r"[A-Z][A-Z0-9_]*", item[0]) or not all(
                part.isdigit() for part in item[1:]):
            raise ServiceError(f"{KAFKA_LISTENERS_ENV}: want NAME:port:advertised_port, got {item}")
    lines = []
    for line in props.splitlines():
        key = line.split("=", 1)[0]
        if key == "listeners":
            line += "".join(f",{n}://{HOST}:{p}" for n, p, _ in extra)
        elif key == "advertised.listeners":
            line += "".join(f",{n}://{HOST}:{a}" for n, _, a in extra)
        elif key == "listener.security.protocol.map":
            line += "".join(f",{n}:PLAINTEXT" for n, _, _ in extra)
        lines.append(line)
    return "\n".join(lines) + "\n"


def kafka_start() -> str:
    """Use VIDJOBS_TEST_KAFKA_BOOTSTRAP if set and reachable, else start/reuse our broker."""
    if external := os.environ.get(KAFKA_ENV):
        host, _, port = external.split(",")[0].rpartition(":")
        return verify_external(KAFKA_ENV, external, host, int(port) if port.isdigit() else None)
    return Kafka().start()


def kafka_restart() -> str:
    """Stop the private broker and start it again on the same ports and data."""
    kafka = Kafka()
    if kafka.pid() is None:
        raise ServiceError("no private Kafka is running; use kafka-start")
    kafka.stop()
    return kafka.start(keep_ports=True)


# --------------------------------------------------------------------------- S3 (versitygw)


def cache_bin() -> Path:
    """Where Go-built test binaries are kept across runs (like the Kafka jars)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "vidjobs" / "bin"


def go_bin() -> str:
    go = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists()
                                else None)
    if not go:
        raise ServiceError("go not found (needed once to build versitygw from the Go module "
                           "proxy); install Go 1.22+ into /usr/local/go or onto PATH", MISSING)
    return go


def go_built(name: str, module: str) -> Path:
    """A Go-built binary from the cache dir, built there with `go install` when missing."""
    binary = cache_bin() / name
    if binary.exists():
        return binary
    go = go_bin()
    with locked(f"{name}-build"):
        if binary.exists():  # another caller built it while we waited
            return binary
        cache_bin().mkdir(parents=True, exist_ok=True)
        log(f"building {name} ({module}) into {cache_bin()}; takes a while ...")
        started = time.monotonic()
        env = {**os.environ, "GOBIN": str(cache_bin())}
        proc = subprocess.run([go, "install", module], env=env, text=True,
                              stdin=subprocess.DEVNULL, capture_output=True)
        if proc.returncode != 0 or not binary.exists():
            raise ServiceError(f"go install {module} failed ({proc.returncode}): "
                               f"{(proc.stdout + proc.stderr).strip()[-2000:]}")
        log(f"built in {time.monotonic() - started:.0f}s")
    return binary


def versitygw_bin() -> Path:
    """The versitygw binary, built with `go install` into the cache dir when missing."""
    return go_built("versitygw", VERSITYGW_MODULE)


def toxiproxy_bin() -> Path:
    """The toxiproxy server binary (`go install` calls it "server"), built once."""
    return go_built("server", TOXIPROXY_MODULE)


class S3Server:
    """versitygw on a posix directory under ``.vidjobs-test/s3``; it creates no bucket."""

    def __init__(self) -> None:
        self.data, self.conf = S3_DIR / "data", S3_DIR / "server.env"
        self.pidfile = S3_DIR / "versitygw.pid"

    def config(self) -> dict[str, str]:
        if not self.conf.exists():
            return {}
        lines = self.conf.read_text().splitlines()
        return dict(line.split("=", 1) for line in lines if "=" in line)

    def pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError):
            pid = int(self.pidfile.read_text())
            if str(self.data).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        return None

    def endpoint(self, conf: dict[str, str]) -> str:
        return f"http://{HOST}:{conf['port']}"

    def start(self) -> dict[str, str]:
        binary = versitygw_bin()
        with locked("s3"):
            S3_DIR.mkdir(parents=True, exist_ok=True)
            conf = self.config()
            if conf and self.pid() and port_open(HOST, int(conf["port"])):
                log(f"reusing running versitygw on port {conf['port']}")
                return conf
            if not conf or not port_free(int(conf["port"])):
                conf = {"port": str(free_port()), "access_key": f"vj{uuid.uuid4().hex[:16]}",
                        "secret_key": uuid.uuid4().hex + uuid.uuid4().hex[:8]}
                self.conf.write_text("".join(f"{k}={v}\n" for k, v in conf.items()))
                self.conf.chmod(0o600)
            self.data.mkdir(parents=True, exist_ok=True)
            env = {**os.environ, "ROOT_ACCESS_KEY": conf["access_key"],
                   "ROOT_SECRET_KEY": conf["secret_key"]}
            with open(S3_DIR / "versitygw.out", "wb") as out:
                proc = subprocess.Popen([str(binary), "--port", f"{HOST}:{conf['port']}", "posix",
                                         str(self.data)], env=env, cwd=S3_DIR,
                                        stdin=subprocess.DEVNULL, stdout=out,
                                        stderr=subprocess.STDOUT, start_new_session=True)
            self.pidfile.write_text(str(proc.pid))
            deadline = time.monotonic() + 30
            while not port_open(HOST, int(conf["port"]), timeout=1):
                if proc.poll() is not None or time.monotonic() > deadline:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    tail = (S3_DIR / "versitygw.out").read_text(errors="replace")[-2000:]
                    raise ServiceError(f"versitygw did not listen on port {conf['port']}: {tail}")
                time.sleep(0.1)
            log(f"versitygw ready on {self.endpoint(conf)}")
            return conf

    def stop(self) -> None:
        with locked("s3"):
            pid = self.pid()
            for sig in (signal.SIGTERM, signal.SIGKILL):
                if pid is None:
                    break
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, sig)
                deadline = time.monotonic() + 10
                while self.pid() and time.monotonic() < deadline:
                    time.sleep(0.1)
                pid = self.pid()
            self.pidfile.unlink(missing_ok=True)


def s3_start() -> dict[str, str]:
    """{endpoint, access_key, secret_key}: the environment's server if set, else ours."""
    if external := os.environ.get(S3_ENV):
        parts = urlsplit(external)
        verify_external(S3_ENV, external, parts.hostname, parts.port or 80)
        return {"endpoint": external, "access_key": os.environ.get(S3_KEY_ENV, ""),
                "secret_key": os.environ.get(S3_SECRET_ENV, "")}
    server = S3Server()
    conf = server.start()
    return {"endpoint": server.endpoint(conf), "access_key": conf["access_key"],
            "secret_key": conf["secret_key"]}


def s3_exports() -> str:
    found = s3_start()
    return "\n".join(f"export {var}={shlex.quote(found[name])}" for var, name in (
        (S3_ENV, "endpoint"), (S3_KEY_ENV, "access_key"), (S3_SECRET_ENV, "secret_key")))


# --------------------------------------------------------------------------- toxiproxy


class Toxiproxy:
    """A toxiproxy server on 127.0.0.1 (its HTTP API on a free port) under the state dir."""

    def __init__(self) -> None:
        self.pidfile, self.portfile = TOXIPROXY_DIR / "server.pid", TOXIPROXY_DIR / "api.port"

    def pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError):
            pid = int(self.pidfile.read_text())
            if b"toxiproxy-marker" in Path(f"/proc/{pid}/environ").read_bytes():
                return pid
        return None

    def start(self) -> str:
        binary = toxiproxy_bin()
        with locked("toxiproxy"):
            TOXIPROXY_DIR.mkdir(parents=True, exist_ok=True)
            if self.pid() and self.portfile.exists():
                port = int(self.portfile.read_text())
                if port_open(HOST, port):
                    log(f"reusing running toxiproxy on port {port}")
                    return f"http://{HOST}:{port}"
            port = free_port()
            env = {**os.environ, "VIDJOBS_TOXIPROXY": f"toxiproxy-marker {TOXIPROXY_DIR}"}
            with open(TOXIPROXY_DIR / "server.out", "wb") as out:
                proc = subprocess.Popen([str(binary), "-host", HOST, "-port", str(port)],
                                        env=env, cwd=TOXIPROXY_DIR, stdin=subprocess.DEVNULL,
                                        stdout=out, stderr=subprocess.STDOUT,
                                        start_new_session=True)
            self.pidfile.write_text(str(proc.pid))
            self.portfile.write_text(str(port))
            deadline = time.monotonic() + 30
            while not port_open(HOST, port, timeout=1):
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = (TOXIPROXY_DIR / "server.out").read_text(errors="replace")[-2000:]
                    raise ServiceError(f"toxiproxy did not listen on port {port}: {tail}")
                time.sleep(0.1)
            log(f"toxiproxy ready on {HOST}:{port}")
            return f"http://{HOST}:{port}"

    def stop(self) -> None:
        with locked("toxiproxy"):
            pid = self.pid()
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                deadline = time.monotonic() + 10
                while self.pid() and time.monotonic() < deadline:
                    time.sleep(0.1)
            self.pidfile.unlink(missing_ok=True)


# --------------------------------------------------------------------------- commands


def cmd_env() -> int:
    """Start both services best-effort and print export lines for those that started."""
    require = os.environ.get("VIDJOBS_REQUIRE_SERVICES") == "1"
    status = 0
    services = (("postgres", PG_ENV, lambda: f"export {PG_ENV}={shlex.quote(postgres_start())}"),
                ("kafka", KAFKA_ENV, lambda: f"export {KAFKA_ENV}={shlex.quote(kafka_start())}"),
                ("s3", S3_ENV, s3_exports))
    for name, var, start in services:
        try:
            print(start(), flush=True)
        except ServiceError as exc:
            if var in os.environ:
                print(f"unset {var}", flush=True)
            if require:
                print(f"ERROR: {name} failed to start (VIDJOBS_REQUIRE_SERVICES=1): {exc}",
                      file=sys.stderr)
                status = status or exc.code
            else:
                print(f"SKIPPING {name} tests: {exc}", file=sys.stderr)
    return status


def cmd_status() -> int:
    """Report what is running (stderr-free, for humans)."""
    try:
        pg = Postgres()
        print(f"postgres: {pg.url() if pg.running() else 'stopped'}")
    except ServiceError as exc:
        print(f"postgres: unavailable ({exc})")
    kafka = Kafka()
    ports = kafka.ports()
    print(f"kafka: {f'{HOST}:{ports[0]}' if ports and kafka.pid() else 'stopped'}")
    s3 = S3Server()
    print(f"s3: {s3.endpoint(s3.config()) if s3.pid() else 'stopped'}")
    return 0


def stop_all() -> None:
    """Stop the private broker, S3 server and cluster; a missing PostgreSQL install is nothing
    to stop."""
    Kafka().stop()
    S3Server().stop()
    Toxiproxy().stop()
    try:
        pg = Postgres()
    except ServiceError:
        return
    pg.stop()


def main(argv: list[str] | None = None) -> int:
    commands = {
        "postgres-start": lambda: print(postgres_start()),
        "postgres-stop": lambda: Postgres().stop(),
        "postgres-restart": lambda: print(Postgres().restart()),
        "kafka-start": lambda: print(kafka_start()),
        "kafka-stop": lambda: Kafka().stop(),
        "kafka-restart": lambda: print(kafka_restart()),
        "s3-start": lambda: print(s3_exports()),
        "s3-stop": lambda: S3Server().stop(),
        "toxiproxy-start": lambda: print(Toxiproxy().start()),
        "toxiproxy-stop": lambda: Toxiproxy().stop(),
        "toxiproxy-build": lambda: print(toxiproxy_bin()),
        "stop-all": stop_all,
        "env": cmd_env,
        "status": cmd_status,
    }
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=sorted(commands))
    args = parser.parse_args(argv)
    try:
        result = commands[args.command]()
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
