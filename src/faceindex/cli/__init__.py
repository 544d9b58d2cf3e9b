"""The `faceindex` command line: a thin typer adapter over the Engine, assembled from one module per topic.

`common` holds what commands share (options, output, opening the Engine, the error boundary); each other
module defines its commands at module level and a `register(app)` that adds them. Only this module knows
them all, and none of them imports it, so the CLI has no import cycle.
"""

from __future__ import annotations

import typer

from faceindex.cli import audit, evaluation, index, people, privacy, search, service
from faceindex.cli.common import EXIT_CODES_HELP, global_options

app = typer.Typer(help="Self-hosted face search over photo collections you lawfully hold.", no_args_is_help=True,
                  pretty_exceptions_enable=False, epilog=EXIT_CODES_HELP)
app.callback()(global_options)  # --catalog-url / --vectors-url before the command name

index.register(app)  # add, embed, stats, remove, reindex
search.register(app)  # search, verify
privacy.register(app)
audit.register(app)
service.register(app)
evaluation.register(app)
people.register(app)

__all__ = ["app"]
