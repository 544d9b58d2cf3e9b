"""CLI commands of the REST service: `serve` and `keys create|list|revoke` (registered on the main app).

No `from __future__ import annotations` here: typer reads the option annotations at run time, and they
name `cli`, which is only in scope inside `register` (it imports the main CLI module lazily).
"""

import ipaddress
from pathlib import Path
from typing import Annotated

import typer

from faceindex.errors import FaceIndexError


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses; any other name or address counts as reachable from outside."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def base_url(host: str, port: int, tls: bool) -> str:
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"{'https' if tls else 'http'}://{shown}:{port}"


def register(app: typer.Typer) -> None:
    """Add the service commands to the main `faceindex` app."""
    from faceindex import cli

    keys_app = typer.Typer(help="API keys of the REST service (only their hashes are stored).", no_args_is_help=True)
    app.add_typer(keys_app, name="keys")

    @app.command()
    def serve(
        store: cli.StoreOpt = None,
        host: Annotated[str, typer.Option(help="Address to listen on. Anything but loopback needs an admin key.")]
        = "127.0.0.1",
        port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
        allow_folder: Annotated[list[Path] | None, typer.Option(
            help="Server folder curators may register for ingest (repeatable). Default: none.")] = None,
        ssl_certfile: Annotated[Path | None, typer.Option(help="TLS certificate (PEM) to serve HTTPS.")] = None,
        ssl_keyfile: Annotated[Path | None, typer.Option(help="TLS private key (PEM).")] = None,
    ) -> None:
        """Run the REST API and web UI (OpenAPI at /openapi.json, interactive docs at /docs)."""
        import uvicorn

        from faceindex.engine import Engine
        from faceindex.service.app import create_app
        from faceindex.service.config import ServiceConfig
        from faceindex.service.keys import KeyStore
        from faceindex.service.logs import configure_logging

        tls = ssl_certfile is not None
        url = base_url(host, port, tls)
        try:
            engine = Engine.open(store, cli.Settings(), actor="service", mode="write")  # serving writes
        except FaceIndexError as exc:
            cli.fail(exc)
        try:
            keys = KeyStore(engine)
            if not is_loopback(host) and keys.count_active("admin") == 0:
                cli.console.print(f"[red]refusing to listen on {host}[/red]: a non-loopback address needs at least one "
                                  "admin key. Create one with `faceindex keys create --role admin --name NAME`.")
                raise typer.Exit(2)
            if not is_loopback(host) and not tls:
                cli.console.print("[yellow]warning[/yellow]: serving plain HTTP beyond this machine; keys and "
                                  "session cookies cross the network unencrypted. Use --ssl-certfile/--ssl-keyfile "
                                  "or a TLS reverse proxy.")
            token = keys.bootstrap_login()
            config = ServiceConfig(**({"allowed_folders": allow_folder} if allow_folder else {}))
            application = create_app(engine, config)
            cli.console.print(f"faceindex serving store [bold]{Path(engine.settings.store).resolve()}[/bold] at {url} "
                              f"(API docs {url}/docs)", soft_wrap=True)
            if token:
                # Plain echo, not rich: the link must never be wrapped or cut at the terminal width.
                typer.echo("No API key has been used on this store yet. Log in as admin with this one-time link "
                           f"(valid 24 h):\n\n    {url}/login?token={token}\n", err=True)
            configure_logging()
            uvicorn.run(application, host=host.strip("[]"), port=port, log_config=None, access_log=False,
                        ssl_certfile=str(ssl_certfile) if ssl_certfile else None,
                        ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None)
        finally:
            engine.close()

    @keys_app.command("create")
    def keys_create(
        role: Annotated[str, typer.Option(help="admin, curator, searcher, auditor or privacy-officer.")],
        name: Annotated[str, typer.Option(help="Who or what uses the key (unique).")],
        store: cli.StoreOpt = None,
        as_json: cli.JsonOpt = False,
    ) -> None:
        """Create an API key and print it once (only its hash is stored)."""
        from faceindex.service.keys import KeyStore

        try:
            with cli.open_engine(store) as engine:
                key, secret = KeyStore(engine).create(name, role)
        except FaceIndexError as exc:
            cli.fail(exc)
        if as_json:
            cli.emit_json({"id": key.id, "name": key.name, "role": key.role, "key": secret})
            return
        cli.console.print(f"created {key.role} key [bold]{key.name}[/bold]; it is shown this once, store it now:")
        typer.echo(secret)

    @keys_app.command("list")
    def keys_list(store: cli.StoreOpt = None, as_json: cli.JsonOpt = False) -> None:
        """List API keys (names, roles, hints; never secrets)."""
        from rich.table import Table

        from faceindex.service.keys import KeyStore

        try:
            with cli.open_engine(store) as engine:
                keys = KeyStore(engine).list()
        except FaceIndexError as exc:
            cli.fail(exc)
        if as_json:
            cli.emit_json([{**k.__dict__, "active": k.active} for k in keys])
            return
        table = Table("id", "name", "role", "key", "created", "last used", "revoked")
        for k in keys:
            table.add_row(str(k.id), k.name, k.role, k.hint, k.created_at, k.last_used_at or "never",
                          k.revoked_at or "")
        cli.out.print(table)

    @keys_app.command("revoke")
    def keys_revoke(key: Annotated[str, typer.Argument(help="Key name or id.")], store: cli.StoreOpt = None) -> None:
        """Revoke a key: its requests and browser sessions stop working at once."""
        from faceindex.service.keys import KeyStore

        try:
            with cli.open_engine(store) as engine:
                revoked = KeyStore(engine).revoke(key)
        except FaceIndexError as exc:
            cli.fail(exc)
        cli.out.print(f"revoked {revoked.role} key {revoked.name}")
