"""The `vidjobs` client commands, on the Python client (`vidjobs.Client`).

Exit codes: 0 done; 1 the server refused the request (or a batch item, or the job failed
while waiting); 2 bad input on this side (a file that is not JSON, a bad setting); 3 the
server could not be reached; 4 a wait timed out. Errors are one line on stderr (plus the
server's details, which name the JSON paths).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from jobs.settings import CREDENTIALS, get_settings
from vidjobs import Client, Job, Progress, errors

console = Console()
err = Console(stderr=True)

Json = Annotated[bool, typer.Option("--json", help="print JSON instead of text")]
EXIT_REFUSED, EXIT_INPUT, EXIT_UNREACHABLE, EXIT_TIMEOUT = 1, 2, 3, 4


def connection() -> tuple[str, str]:
    """Server URL and token: from VIDJOBS_API_URL/VIDJOBS_API_TOKEN, else the data dir."""
    settings = get_settings()
    url, token = settings.api_url, settings.api_token
    path = settings.data_dir / CREDENTIALS
    if (not url or not token) and path.is_file():
        saved = json.loads(path.read_text())
        url = url or saved.get("url")
        token = token or saved.get("token")
    if not url or not token:
        err.print(
            "error: no server to talk to: run `vidjobs up` (it saves its URL and token in the "
            "data dir), or set VIDJOBS_API_URL and VIDJOBS_API_TOKEN"
        )
        raise typer.Exit(EXIT_INPUT)
    return url, token


def fail(exc: Exception) -> NoReturn:
    """One line for the error (and the server's details): never a traceback."""
    if isinstance(exc, TimeoutError):
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(EXIT_TIMEOUT)
    err.print(f"error: {exc}", markup=False, highlight=False)
    if (
        isinstance(exc, errors.VidjobsError)
        and exc.details
        and not isinstance(exc, errors.TransportError)
    ):
        err.print_json(data=exc.details)
    code = EXIT_UNREACHABLE if isinstance(exc, errors.TransportError) else EXIT_REFUSED
    raise typer.Exit(code)


def call(what: Callable[[Client], Any]) -> Any:
    url, token = connection()
    try:
        with Client(url, token, user_agent="vidjobs-cli") as vj:
            return what(vj)
    except (errors.VidjobsError, TimeoutError) as exc:
        fail(exc)


def show_job(job: Job, as_json: bool, **extra: Any) -> None:
    if as_json:
        print(json.dumps({**job.raw, **extra}, indent=2))
        return
    console.print(
        f"{job.key}  [bold]{job.status}[/]  progress {job.progress:.0%}  "
        f"attempts {job.attempts}/{job.max_attempts}"
    )
    if job.error:
        console.print(f"error: {job.error.code}: {job.error.message}", markup=False)
    if job.output and job.output.get("digest"):
        console.print(f"output: {job.output['digest']} ({job.output.get('size')} bytes)")


def _read_edit(file: Path) -> Any:
    try:
        return json.loads(file.read_text())
    except ValueError as exc:
        err.print(f"error: {file} is not valid JSON: {exc}", markup=False)
        raise typer.Exit(EXIT_INPUT) from None


def _with_options(edit: Any, priority: int | None, run_at: str | None) -> Any:
    def one(item: Any) -> Any:
        if not isinstance(item, dict):
            return item
        return {
            **item,
            **({"priority": priority} if priority is not None else {}),
            **({"run_at": run_at} if run_at is not None else {}),
        }

    return [one(e) for e in edit] if isinstance(edit, list) else one(edit)


def submit(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    wait: Annotated[bool, typer.Option(help="wait until the job ends")] = False,
    as_json: Json = False,
    on_duplicate: Annotated[str, typer.Option(help="return_existing or reject")] = (
        "return_existing"
    ),
    idempotency_key: str | None = None,
    priority: Annotated[int | None, typer.Option(help="overrides the file's priority")] = None,
    run_at: Annotated[str | None, typer.Option(help="RFC 3339 time to start at")] = None,
    timeout: Annotated[float, typer.Option(help="seconds --wait waits")] = 3600.0,
) -> None:
    """Submit an edit request from a JSON file (a JSON list: up to 1,000, as one batch)."""
    edit = _with_options(_read_edit(file), priority, run_at)
    if isinstance(edit, list):
        _submit_batch(edit, wait, as_json, on_duplicate, idempotency_key, timeout)
        return

    def go(vj: Client) -> tuple[Job, bool]:
        job = vj.submit(edit, on_duplicate=on_duplicate, idempotency_key=idempotency_key)
        return (vj.wait(job.key, timeout=timeout) if wait else job), job.replayed

    job, replayed = call(go)
    if as_json:
        show_job(job, True, replayed=replayed)
    else:
        what = "duplicate: existing job" if replayed else "submitted"
        console.print(f"{what} {job.key} ({job.status})")
    if wait and job.status != "succeeded":
        raise typer.Exit(EXIT_REFUSED)


def _submit_batch(
    edits: list[Any],
    wait: bool,
    as_json: bool,
    on_duplicate: str,
    idempotency_key: str | None,
    timeout: float,
) -> None:
    def go(vj: Client) -> list[Any]:
        items = vj.submit_many(edits, on_duplicate=on_duplicate, idempotency_key=idempotency_key)
        if wait:
            return [
                (i, vj.wait(i.job.key, timeout=timeout) if i.job is not None else None)
                for i in items
            ]
        return [(i, i.job) for i in items]

    results = call(go)
    failed = any(i.error is not None or (wait and j.status != "succeeded") for i, j in results)
    if as_json:
        out = [
            {"status": i.status, "job": j.raw}
            if j is not None
            else {
                "status": i.status,
                "error": {
                    "code": i.error.code,
                    "message": i.error.message,
                    "details": i.error.details,
                },
            }
            for i, j in results
        ]
        print(json.dumps({"results": out}, indent=2))
    else:
        for n, (i, j) in enumerate(results):
            if j is not None:
                what = {201: "submitted", 200: "duplicate: existing job"}.get(i.status, "")
                console.print(f"[{n}] {what} {j.key} ({j.status})")
            else:
                console.print(f"[{n}] error {i.status}: {i.error}", markup=False)
    if failed:
        raise typer.Exit(EXIT_REFUSED)


def status(key: str, as_json: Json = False) -> None:
    """Show one job by its key."""
    show_job(call(lambda vj: vj.get(key)), as_json)


def list_jobs(
    status: Annotated[str | None, typer.Option("--status")] = None,
    limit: int = 50,
    as_json: Json = False,
) -> None:
    """List your jobs, newest first."""
    page = call(lambda vj: vj.list(status=status, limit=limit))
    if as_json:
        print(
            json.dumps(
                {"jobs": [j.raw for j in page.jobs], "next_cursor": page.next_cursor}, indent=2
            )
        )
        return
    table = Table("key", "status", "progress", "attempts", "created")
    for job in page.jobs:
        table.add_row(
            job.key,
            job.status,
            f"{job.progress:.0%}",
            str(job.attempts),
            job.raw.get("created_at") or "",
        )
    console.print(table)


def cancel(key: str, as_json: Json = False) -> None:
    """Cancel a job: a pending one at once, a running one at its next heartbeat."""
    show_job(call(lambda vj: vj.cancel(key)), as_json)


def retry(key: str, as_json: Json = False) -> None:
    """Run a failed or cancelled job again (attempts reset)."""
    show_job(call(lambda vj: vj.retry(key)), as_json)


def events(
    key: str,
    follow: Annotated[bool, typer.Option(help="keep printing until the job ends")] = False,
    as_json: Json = False,
) -> None:
    """A job's lifecycle events, in order (with --follow, as they happen)."""

    def go(vj: Client) -> None:
        for item in vj.follow(key) if follow else vj.events(key):
            if isinstance(item, Progress):
                if not as_json:
                    console.print(f"progress {item.progress:.0%} ({item.status})", markup=False)
                continue
            when = item.created_at.isoformat() if item.created_at else None
            if as_json:
                print(
                    json.dumps(
                        {
                            "event_id": item.event_id,
                            "type": item.type,
                            "created_at": when,
                            "data": item.data,
                        }
                    ),
                    flush=True,
                )
            else:
                console.print(f"{when or ''}  {item.type}", markup=False)

    call(go)


def upload(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    media_type: str = "application/octet-stream",
    as_json: Json = False,
) -> None:
    """Upload a source file; prints its digest (use {"digest": ...} in an edit)."""
    src = call(lambda vj: vj.upload(file, media_type=media_type))
    if as_json:
        print(json.dumps({"digest": src.digest, "size": src.size, "probe": src.probe}, indent=2))
    else:
        print(src.digest)


def tasks(key: str, as_json: Json = False) -> None:
    """A job's tasks: status, attempts, what each waits for, and whether it was reused."""
    found = call(lambda vj: vj.tasks(key))
    if as_json:
        print(json.dumps({"tasks": [t.raw for t in found]}, indent=2))
        return
    table = Table("name", "kind", "status", "progress", "attempts", "waits for", "reused")
    for t in found:
        table.add_row(
            t.name, t.kind, t.status, f"{t.progress:.0%}", str(t.attempts),
            ", ".join(t.depends_on), "yes" if t.reused else "",
        )
    console.print(table)


def download(
    key: str,
    path: Annotated[
        Path | None, typer.Argument(help="where to save it (default: KEY[-NAME].EXT, or KEY/)")
    ] = None,
    output: Annotated[str | None, typer.Option(help="the named output (outputs[].name)")] = None,
    package: Annotated[bool, typer.Option(help="every file of the package into PATH/")] = False,
    as_json: Json = False,
) -> None:
    """Save a job's output, a named output or its package (resumes a broken transfer; every
    file is checked against its digest)."""

    def go(vj: Client) -> list[Path]:
        if package:
            return vj.download_package(key, path or Path(key))
        target = path
        if target is None:
            spec = vj.get(key).spec
            outs = {o.get("name"): o for o in spec.get("outputs") or [] if isinstance(o, dict)}
            chosen = outs.get(output, {}) if output else spec.get("output") or {}
            ext = str(chosen.get("container") or "bin")
            target = Path(f"{key}-{output}.{ext}" if output else f"{key}.{ext}")
        return [vj.download(key, target, output=output)]

    saved = call(go)
    if as_json:
        files = [{"path": str(p), "size": p.stat().st_size} for p in saved]
        print(json.dumps({"key": key, "files": files} if package else {"key": key, **files[0]}))
    else:
        for p in saved:
            print(p)


def register(app: typer.Typer) -> None:
    """Add the client commands to the `vidjobs` command."""
    app.command()(submit)
    app.command()(status)
    app.command("jobs")(list_jobs)
    app.command()(cancel)
    app.command()(retry)
    app.command()(events)
    app.command()(upload)
    app.command()(download)
    app.command()(tasks)
