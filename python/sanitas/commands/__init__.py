"""Subcommands of the ``sanitas`` CLI: one module each, ``add_parser(sub)`` + ``run(args) -> dict``."""
