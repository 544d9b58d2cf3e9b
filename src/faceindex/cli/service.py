"""Commands of the REST service: `serve` and `keys create|list|revoke`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from faceindex.cli.common import (
    EXIT_ERROR,
    JsonOpt,
    StoreOpt,
    add_commands,
    add_row,
    emit_json,
    open_engine,
    out,
    say,
    table,
)


def base_url(host: str, port: int, tls: bool) -> str:
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"{'https' if tls else 'http'}://{shown}:{port}"


def serve(
    store: StoreOpt = None,
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

    from faceindex.service.app import create_app
    from faceindex.service.config import ServiceConfig
    from faceindex.service.keys import KeyStore
    from faceindex.service.logs import configure_logging
    from faceindex.service.schema import ensure_service_schema
    from faceindex.service.server import bind_refusal, is_loopback, uvicorn_options

    tls = ssl_certfile is not None
    url = base_url(host, port, tls)
    engine = open_engine(store, write=True, actor="service")
    try:
        ensure_service_schema(engine)  # the service's tables, before its keys are read
        keys = KeyStore(engine)
        # The service owns the rule (the initial-admin key, whose secret nobody holds, does not count).
        if (refusal := bind_refusal(host, keys)) is not None:
            say((refusal, "red"), err=True)
            raise typer.Exit(EXIT_ERROR)
        if not is_loopback(host) and not tls:
            say(("warning", "yellow"), ": serving plain HTTP beyond this machine; keys and session cookies cross the "
                "network unencrypted. Use --ssl-certfile/--ssl-keyfile or a TLS reverse proxy.", err=True)
        token = keys.bootstrap_login()
        config = ServiceConfig(**({"allowed_folders": allow_folder} if allow_folder else {}))
        application = create_app(engine, config)
        say("faceindex serving store ", (str(Path(engine.settings.store).resolve()), "bold"),
            f" at {url} (API docs {url}/docs)", err=True)
        if token:
            # Plain echo, not rich: the link must never be wrapped or cut at the terminal width.
            typer.echo("No API key has been used on this store yet. Log in as admin with this one-time link "
                       f"(valid 24 h):\n\n    {url}/login?token={token}\n", err=True)
        configure_logging()
        uvicorn.run(application, host=host.strip("[]"), port=port, log_config=None, access_log=False,
                    ssl_certfile=str(ssl_certfile) if ssl_certfile else None,
                    ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None, **uvicorn_options(config))
    finally:
        engine.close()


def keys_create(
    role: Annotated[str, typer.Option(help="admin, curator, searcher, auditor or privacy-officer.")],
    name: Annotated[str, typer.Option(help="Who or what uses the key (unique).")],
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an API key and print it once (only its hash is stored)."""
    from faceindex.service.keys import KeyStore
    from faceindex.service.schema import ensure_service_schema

    with open_engine(store, write=True) as engine:
        ensure_service_schema(engine)
        key, secret = KeyStore(engine).create(name, role)
    if as_json:
        emit_json({"id": key.id, "name": key.name, "role": key.role, "key": secret})
        return
    say(f"created {key.role} key ", (key.name, "bold"), "; it is shown this once, store it now:", err=True)
    typer.echo(secret)


def keys_list(store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """List API keys (names, roles, hints; never secrets)."""
    from faceindex.service.keys import KeyStore
    from faceindex.service.schema import ensure_service_schema

    with open_engine(store) as engine:
        keys = KeyStore(engine).list() if ensure_service_schema(engine) else []  # an older read-only store: none
    if as_json:
        emit_json([{**k.__dict__, "active": k.active} for k in keys])
        return
    tbl = table("id", "name", "role", "key", "created", "last used", "revoked")
    for k in keys:
        add_row(tbl, k.id, k.name, k.role, k.hint, k.created_at, k.last_used_at or "never", k.revoked_at or "")
    out.print(tbl)


def keys_revoke(key: Annotated[str, typer.Argument(help="Key name or id.")], store: StoreOpt = None) -> None:
    """Revoke a key: its requests and browser sessions stop working at once."""
    from faceindex.service.keys import KeyStore
    from faceindex.service.schema import ensure_service_schema

    with open_engine(store, write=True) as engine:
        ensure_service_schema(engine)
        revoked = KeyStore(engine).revoke(key)
    say(f"revoked {revoked.role} key {revoked.name}")


def register(app: typer.Typer) -> None:
    add_commands(app, [serve])
    keys_app = typer.Typer(help="API keys of the REST service (only their hashes are stored).", no_args_is_help=True)
    add_commands(keys_app, [("create", keys_create), ("list", keys_list), ("revoke", keys_revoke)])
    app.add_typer(keys_app, name="keys")
