"""`vidjobs tenant ...`: create tenants, grant and revoke S3 source prefixes."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from jobs.settings import get_settings
from workers import compose, loop

tenant_app = typer.Typer(help="Manage tenants.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)


def _grant(name: str, prefix: str, revoke: bool) -> str:
    from jobs import grants
    from jobs.tenants import tenant_by_name

    async def main() -> str:
        c = compose.build(get_settings())
        try:
            async with c.db.transaction() as conn:
                tenant = await tenant_by_name(conn, name)
                if tenant is None:
                    raise LookupError(f"no tenant named {name!r}")
                if revoke:
                    if not await grants.revoke_source(conn, tenant.id, prefix):
                        raise LookupError(f"{name} has no grant of {prefix}")
                    return grants.normalized_prefix(prefix)
                return await grants.grant_source(conn, tenant.id, prefix)
        finally:
            await c.close()

    try:
        return loop.run(main())
    except (LookupError, ValueError) as exc:
        err.print(f"error: {exc}")
        raise typer.Exit(2) from None


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
) -> None:
    """Create a tenant and print its API token (shown only this once)."""
    from jobs.errors import InvalidRequest
    from jobs.tenants import create_tenant

    async def main() -> str:
        c = compose.build(get_settings())
        try:
            async with c.db.transaction() as conn:
                _, token = await create_tenant(conn, name, max_in_flight)
            return token
        finally:
            await c.close()

    try:
        token = loop.run(main())
    except InvalidRequest as exc:
        err.print(f"error: {exc.message}")
        raise typer.Exit(2) from None
    console.print(token)
