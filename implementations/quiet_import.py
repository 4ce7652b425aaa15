"""Import TensorFlow (or Keras, which may import it) without its C++ start-up lines on stderr.

TensorFlow's native libraries log (e.g. "Could not find cuda drivers") before its log-level
setting is read, so TF_CPP_MIN_LOG_LEVEL cannot silence them. The import runs with file
descriptor 2 pointed at a temporary file; if the import fails, what it wrote is replayed.
Each module is imported this way once per process; a later call returns at once.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import sys
import tempfile


@functools.cache
def import_quietly(module: str) -> None:
    """Import ``module`` with stderr silenced; what it wrote is shown only if the import fails."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            importlib.import_module(module)
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    # Retracing notices from building many small models are noise for a benchmark's user (TensorFlow's logger; a
    # name no other library logs under).
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def import_tensorflow_quietly() -> None:
    import_quietly("tensorflow")
