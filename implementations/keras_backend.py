"""The one place ``KERAS_BACKEND`` gets its default.

Keras reads ``KERAS_BACKEND`` once, when it is first imported. The suite's commands, its worker processes and the
Keras builders all take the default from here, so no two places can disagree about it.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

DEFAULT_KERAS_BACKEND = "tensorflow"  # what `pip install -e '.[tensorflow]'` brings, and Keras' own default


def default_keras_backend(environ: MutableMapping[str, str] = os.environ) -> str:
    """``environ``'s Keras backend, set to the default where it names none."""
    return environ.setdefault("KERAS_BACKEND", DEFAULT_KERAS_BACKEND)
