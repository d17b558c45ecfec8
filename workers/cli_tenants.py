"""`vidjobs tenant ...`: create, list, revoke and re-token tenants; grant and revoke S3
source prefixes. The composition root is imported per command (`vidjobs --help` stays light)."""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from jobs.settings import get_settings
from workers import loop

tenant_app = typer.Typer(help="Manage tenants.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)


def _grant(name: str, prefix: str, revoke: bool) -> str:
    from jobs import grants

    async def act(conn: Any, tenant: Any) -> str:
        if revoke:
            if not await grants.revoke_source(conn, tenant.id, prefix):
                raise LookupError(f"{name} has no grant of {prefix}")
            return grants.normalized_prefix(prefix)
        return str(await grants.grant_source(conn, tenant.id, prefix))

    return str(_by_name(name, act))


@tenant_app.command("grant-source")
def tenant_grant_source(name: str, prefix: str) -> None:
    """Let a tenant use objects under s3://bucket/prefix/ as sources."""
    console.print(f"{name} may read {_grant(name, prefix, revoke=False)}")


@tenant_app.command("revoke-source")
def tenant_revoke_source(name: str, prefix: str) -> None:
    """Take back a grant-source (jobs already accepted keep their pinned version)."""
    console.print(f"{name} may no longer read {_grant(name, prefix, revoke=True)}")


@tenant_app.command("create")
def tenant_create(
    name: str,
    max_in_flight: Annotated[int | None, typer.Option(help="cap on pending+running jobs")] = None,
    max_running: Annotated[
        int | None, typer.Option(min=1, help="cap on running jobs (fair share beside it)")
    ] = None,
) -> None:
    """Create a tenant and print its API token (shown only this once)."""
    from jobs.errors import InvalidRequest
    from jobs.tenants import create_tenant

    async def main() -> str:
        from workers import compose

        c = compose.build(get_settings())
        try:
            async with c.db.transaction() as conn:
                _, token = await create_tenant(conn, name, max_in_flight, max_running=max_running)
            return token
        finally:
            await c.close()

    try:
        token = loop.run(main())
    except InvalidRequest as exc:
        err.print(f"error: {exc.message}")
        raise typer.Exit(2) from None
    console.print(token)


def _by_name(name: str, act: Any) -> Any:
    """Run `act(conn, tenant)` in one transaction; an unknown name is exit 2."""
    from jobs.tenants import tenant_by_name

    async def main() -> Any:
        from workers import compose

        c = compose.build(get_settings())
        try:
            async with c.db.transaction() as conn:
                tenant = await tenant_by_name(conn, name)
                if tenant is None:
                    raise LookupError(f"no tenant named {name!r}")
                return await act(conn, tenant)
        finally:
            await c.close()

    try:
        return loop.run(main())
    except (LookupError, ValueError) as exc:
        err.print(f"error: {exc}")
        raise typer.Exit(2) from None


@tenant_app.command("list")
def tenant_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every tenant, its caps and how many live tokens it has."""
    from jobs.tenants import list_tenants

    async def main() -> list[Any]:
        from workers import compose

        c = compose.build(get_settings())
        try:
            async with c.db.transaction() as conn:
                return await list_tenants(conn)
        finally:
            await c.close()

    rows = loop.run(main())
    if as_json:
        print(json.dumps([dataclasses.asdict(r) for r in rows], indent=2))
        return
    table = Table("name", "id", "max_in_flight", "max_running", "live tokens")
    for r in rows:
        table.add_row(
            r.name, r.id, str(r.max_in_flight or "-"), str(r.max_running or "-"), str(r.live_tokens)
        )
    console.print(table)


@tenant_app.command("revoke")
def tenant_revoke(name: str) -> None:
    """Revoke every token of a tenant: refused from the next request on (jobs are kept)."""
    from jobs.tenants import revoke_tokens

    n = _by_name(name, lambda conn, t: revoke_tokens(conn, t.id))
    console.print(f"revoked {n} token(s) of {name}")


@tenant_app.command("token")
def tenant_token(name: str) -> None:
    """Issue a new token for a tenant (printed only this once)."""
    from jobs.tenants import issue_token

    console.print(_by_name(name, lambda conn, t: issue_token(conn, t.id)))
