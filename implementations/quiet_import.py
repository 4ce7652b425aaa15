"""Import TensorFlow without its C++ start-up lines on stderr.

TensorFlow's native libraries log (e.g. "Could not find cuda drivers") before its log-level
setting is read, so TF_CPP_MIN_LOG_LEVEL cannot silence them. The import runs with file
descriptor 2 pointed at a temporary file; if the import fails, what it wrote is replayed.
"""

from __future__ import annotations

import os
import sys
import tempfile


def import_tensorflow_quietly() -> None:
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    # Retracing notices from building many small models are noise for a benchmark's user.
    tensorflow.get_logger().setLevel("ERROR")
