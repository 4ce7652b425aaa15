"""AlexNet in Keras 3 and PyTorch: parity checks and benchmarks from one spec.

Run ``python bench.py --help`` for the commands; they live in the ``cli`` package, one module per group. This file
is the entry point of a checkout (``python bench.py``) and of the installed console script (``alexnet-bench``).
"""

from cli.app import app, main

__all__ = ["app", "main"]

if __name__ == "__main__":
    main()
