"""`vidjobs operator create NAME`: an operator token for the console (every tenant, the fleet)."""

from __future__ import annotations

import typer
from rich.console import Console

from jobs.settings import get_settings
from workers import loop

operator_app = typer.Typer(help="Manage console operators.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)


@operator_app.command("create")
def operator_create(name: str) -> None:
    """Create an operator and print its console token (shown only this once)."""
    from jobs.console.auth import create_operator
    from jobs.errors import InvalidRequest

    async def main() -> str:
        from workers import compose

        c = compose.build(get_settings())
        try:
            async with c.db.transaction() as conn:
                return await create_operator(conn, name)
        finally:
            await c.close()

    try:
        token = loop.run(main())
    except InvalidRequest as exc:
        err.print(f"error: {exc.message}")
        raise typer.Exit(2) from None
    console.print(token)
