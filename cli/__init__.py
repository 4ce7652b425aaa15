"""The command line, one module per group of commands (``app`` assembles them; ``bench.py`` runs it).

Each command parses its options, builds one request or calls one function of the suite with them by keyword, and
renders what comes back. Options several commands share are declared once (``cli.options``); the consoles, the
one-line errors and the steps every command takes alike are in ``cli.common``. Frameworks are imported only by the
commands that need them, so listing variants or asking for help is instant.
"""
