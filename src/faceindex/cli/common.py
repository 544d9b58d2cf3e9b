"""What every `faceindex` command shares: options, output, opening the Engine, and the one error boundary."""

from __future__ import annotations

import functools
import inspect
import json
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from faceindex.config import Settings
from faceindex.engine import Engine
from faceindex.errors import FaceIndexError

# Exit statuses, the same for every command (also shown by `faceindex --help`).
EXIT_OK = 0
EXIT_PARTIAL = 1
"""The command ran, but some of its input could not be used (a probe missing, unreadable or without a
face; files skipped by `add`, photos `enrol` could not use) or a check found problems (`audit verify`): the
output says which."""
EXIT_ERROR = 2
"""Nothing was done: bad usage, or an error (no such store, a refused operation, ...) with its message."""
EXIT_INTERRUPTED = 130
"""Ctrl-C (128 + SIGINT, as shells report it). Work already committed is kept."""

EXIT_CODES_HELP = (
    "Exit status: 0 done; 1 done in part: some input could not be used (a probe missing, unreadable or "
    "without a face, files skipped by add or enrol) or audit verify found problems, and the output says which; "
    "2 nothing done: usage error or an error message (e.g. no store at --store); 130 interrupted (Ctrl-C): "
    "work already committed is kept."
)

INTERRUPTED = "interrupted; committed work is kept, and the same command run again carries on from there"

console = Console(stderr=True)
"""Messages, progress and errors: stderr, so stdout holds only results (and only JSON with --json)."""
out = Console()
"""Results: stdout."""

StoreOpt = Annotated[Path | None, typer.Option("--store", envvar="FACEINDEX_STORE",
                                               help="Store directory (default ./faceindex-data).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
CatalogUrlOpt = Annotated[str | None, typer.Option(
    "--catalog-url", show_default=False,
    help="Catalog database: postgresql://user@host:5432/database, one database per store (default: the store's "
    "own catalog.sqlite). Same as FACEINDEX_CATALOG_URL.")]
VectorsUrlOpt = Annotated[str | None, typer.Option(
    "--vectors-url", show_default=False,
    help="Faceprints: faiss (default, in the store), a Milvus URI (http://host:19530) or a Milvus Lite path "
    "(*.db). Same as FACEINDEX_VECTORS_URL.")]
BACKEND_ENV = {"catalog_url": "FACEINDEX_CATALOG_URL", "vectors_url": "FACEINDEX_VECTORS_URL"}
"""The backend options and the environment variables they set: an option is exactly its variable, so every
Settings the command builds (the Engine's, the service's, eval's, worker processes') sees it."""
CaseOpt = Annotated[str | None, typer.Option("--case", help="Purpose or case reference (recorded in the audit log).")]


def open_engine(store: Path | None, *, write: bool = False, needs_store: bool = True, actor: str = "cli",
                **overrides: Any) -> Engine:
    """The Engine for one command, the one place commands open a store.

    `write=True` for commands that change what the store holds: only those may create a store, and opening
    for writing runs what a writer must (resumed erasures, retention). Reads never create a store: a missing
    one is a StoreNotFoundError, never an empty answer. `needs_store=False` (e.g. `embed`, which only runs the
    models) opens nothing. `overrides` are Settings fields (None = keep).
    """
    settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    if not needs_store:
        return Engine(store, settings, actor=actor)  # building an Engine touches no file
    return Engine.open(store, settings, mode="write" if write else "read", actor=actor)


def emit_json(obj: Any) -> None:
    """One JSON object on one line of stdout (JSON Lines when a command emits several)."""
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")


def say(*parts: str | tuple[str, str], err: bool = False) -> None:
    """Print a line literally: str parts are plain text, (text, style) parts styled; nothing is parsed as rich
    markup, so `pip install 'faceindex[eval]'` or a path like `2019 [scan]/a.jpg` prints as it is."""
    (console if err else out).print(Text.assemble(*parts))


def table(*headers: str, title: str | None = None) -> Table:
    """A rich table; fill it with `add_row` so that cells print literally.

    Every column folds a long cell onto more lines instead of cutting it with "…": a path, name or reason
    that is cut short cannot be checked or copied, and terminals (and CI logs) are often only 80 wide.
    """
    tbl = Table(title=None if title is None else Text(title))
    for header in headers:
        tbl.add_column(header, overflow="fold")
    return tbl


def add_row(tbl: Table, *cells: object) -> None:
    """Add a row whose cells are plain text (never rich markup: names and paths may hold brackets)."""
    tbl.add_row(*(Text(str(c)) for c in cells))


def report_error(exc: FaceIndexError) -> None:
    """The one way an error is shown: `error (code): message` on stderr, the message verbatim and unwrapped."""
    console.print(Text.assemble(("error", "red"), f" ({exc.code}): {exc.message}"), soft_wrap=True)


def usage_error(message: str) -> None:
    """A bad combination of options typer cannot check: the message, then EXIT_ERROR."""
    console.print(Text(message), soft_wrap=True)
    raise typer.Exit(EXIT_ERROR)


def partial_failure(message: str) -> None:
    """The command did what it could and printed it; `message` says what failed. Ends with EXIT_PARTIAL."""
    console.print(Text.assemble(("error", "red"), f": {message}"), soft_wrap=True)
    raise typer.Exit(EXIT_PARTIAL)


def use_backends(**urls: str | None) -> Callable[[], None]:
    """Set the backend variables (BACKEND_ENV) given as options; returns what puts the environment back."""
    saved = {env: os.environ.get(env) for name, env in BACKEND_ENV.items() if urls.get(name) is not None}
    for name, env in BACKEND_ENV.items():
        if urls.get(name) is not None:
            os.environ[env] = str(urls[name])

    def restore() -> None:
        for env, value in saved.items():
            if value is None:
                os.environ.pop(env, None)
            else:
                os.environ[env] = value

    return restore


def global_options(ctx: typer.Context, catalog_url: CatalogUrlOpt = None, vectors_url: VectorsUrlOpt = None) -> None:
    """Options before the command name (`faceindex --catalog-url URL add ...`), for every command."""
    ctx.call_on_close(use_backends(catalog_url=catalog_url, vectors_url=vectors_url))


def _with_backend_options(command: Callable[..., None], run: Callable[..., None]) -> None:
    """Give `run` (the wrapper of `command`) the --catalog-url and --vectors-url options too, so they may also
    follow the command name; typer reads the signature from `__signature__` and the hints from annotations."""
    signature = inspect.signature(command, eval_str=True)  # annotations evaluated in the command's module
    extra = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=hint)
             for name, hint in (("catalog_url", CatalogUrlOpt), ("vectors_url", VectorsUrlOpt))
             if name not in signature.parameters]
    params = list(signature.parameters.values())
    run.__signature__ = signature.replace(parameters=params + extra)
    run.__annotations__ = {p.name: p.annotation for p in run.__signature__.parameters.values()
                           if p.annotation is not inspect.Parameter.empty}


def guarded(command: Callable[..., None]) -> Callable[..., None]:
    """The error boundary every command runs inside: a FaceIndexError becomes its message and EXIT_ERROR,
    Ctrl-C a one-line message and EXIT_INTERRUPTED (no traceback in either case). Every command also takes
    --catalog-url and --vectors-url (BACKEND_ENV), in force while it runs."""

    @functools.wraps(command)  # typer reads the signature and annotations through __wrapped__
    def run(*args: Any, **kwargs: Any) -> None:
        restore = use_backends(catalog_url=kwargs.pop("catalog_url", None),
                               vectors_url=kwargs.pop("vectors_url", None))
        try:
            command(*args, **kwargs)
        except FaceIndexError as exc:
            report_error(exc)
            raise typer.Exit(EXIT_ERROR) from None
        except KeyboardInterrupt:
            console.print(Text(INTERRUPTED), soft_wrap=True)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except (typer.Abort, click.exceptions.Abort) as exc:  # a prompt ended by Ctrl-C or by the end of its input
            if isinstance(exc.__context__, KeyboardInterrupt):
                console.print(Text(INTERRUPTED), soft_wrap=True)
                raise typer.Exit(EXIT_INTERRUPTED) from None
            console.print(Text("no answer to the question (its input ended): nothing done; answer it, or give "
                               "--yes where the command has it"), soft_wrap=True)
            raise typer.Exit(EXIT_ERROR) from None
        finally:
            restore()

    _with_backend_options(command, run)
    return run


def add_commands(app: typer.Typer, commands: Iterable[Callable[..., None] | tuple[str, Callable[..., None]]]) -> None:
    """Register module-level command functions on `app`, each inside the error boundary. An item is a function
    (command named after it, `_` as `-`) or a (name, function) pair."""
    for item in commands:
        name, command = item if isinstance(item, tuple) else (None, item)
        app.command(name)(guarded(command))
