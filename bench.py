"""AlexNet in Keras 3 and PyTorch: parity checks and benchmarks from one spec.

Run ``python bench.py --help`` for the commands; they live in the ``cli`` package, one module per group. This file
is the entry point of a checkout (``python bench.py``) and of the installed console script (``alexnet-bench``).
"""

import sys

try:
    from cli.app import app, main
except KeyboardInterrupt:  # Ctrl-C while the command line loads (typer, rich, framework plugins): as in a command
    sys.stderr.write("error: interrupted\n")
    sys.exit(130)

__all__ = ["app", "main"]

if __name__ == "__main__":
    main()
