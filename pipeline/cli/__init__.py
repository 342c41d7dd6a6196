"""The `newsflow` command line: `commands` parses and dispatches; one module per command group."""

from pipeline.cli.commands import main

__all__ = ["main"]
