"""What starts Keras: picking the backend (``--backend``, the Keras way, before Keras is
first imported) and starting TensorFlow without its C++ start-up lines. Importing this
module loads neither Keras nor TensorFlow: these functions exist to start them at the
right moment, which is why each imports them inside."""
from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import sys

#: The Keras backends dgg_tf runs on, and what installs each.
BACKENDS = {"tensorflow": "pip install -e .", "jax": "pip install -e '.[jax]'"}


def keras_backend():
    """The Keras backend this process will run on, read as Keras reads it
    (``KERAS_BACKEND``, else ``$KERAS_HOME/keras.json``, else TensorFlow), without
    starting Keras."""
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    path = os.path.join(os.environ.get("KERAS_HOME", os.path.expanduser("~/.keras")),
                        "keras.json")
    try:
        with open(path) as f:
            return json.load(f).get("backend", "tensorflow")
    except (OSError, ValueError):
        return "tensorflow"


def select_backend(name):
    """Make ``name`` the Keras backend, the Keras way (``KERAS_BACKEND``, set before
    Keras is first imported; subprocesses inherit it). ``None`` keeps the environment's.
    Returns 0, or 2 after one ``error:`` line: the backend is not installed, or Keras
    already runs another one in this process."""
    if name is None:
        return 0
    if "keras" in sys.modules:
        import keras  # lazy: already imported; only to ask which backend it runs
        if keras.backend.backend() != name:
            print(f"error: --backend {name}: Keras already runs on "
                  f"{keras.backend.backend()} in this process", file=sys.stderr)
            return 2
    if importlib.util.find_spec(name) is None:
        print(f"error: --backend {name}: {name} is not installed ({BACKENDS[name]})",
              file=sys.stderr)
        return 2
    os.environ["KERAS_BACKEND"] = name
    return 0


@contextlib.contextmanager
def _stderr_to_devnull():
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def quiet_tensorflow(show=False):
    """Start TensorFlow without its C++ start-up log lines (oneDNN, CUDA probing), which
    it writes before honouring TF_CPP_MIN_LOG_LEVEL; later ones are filtered by that
    variable. For the scripts only: ``import dgg_tf`` changes no environment variable.
    ``show=True`` (--tf-log) leaves everything as TensorFlow has it."""
    if show:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with _stderr_to_devnull():
        import keras  # lazy: keras starts its backend on import: here, quietly
        if keras.backend.backend() != "tensorflow":
            return
        import tensorflow as tf  # lazy: the point is to start it here, quietly
        tf.config.list_physical_devices()


def start_tensorflow_quietly():
    """For the estimator: start TensorFlow, if nobody has, without its C++ start-up lines
    (CUDA probing, oneDNN notices) unless the user set ``TF_CPP_MIN_LOG_LEVEL``; the
    environment is left as it was (TensorFlow reads the level once, at start-up)."""
    if "keras" in sys.modules or "TF_CPP_MIN_LOG_LEVEL" in os.environ:
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    try:
        quiet_tensorflow()
    finally:
        del os.environ["TF_CPP_MIN_LOG_LEVEL"]


@contextlib.contextmanager
def retracing_notices_off():
    """Silence TensorFlow's Python WARNINGs (its "N calls triggered tf.function
    retracing" notices) for a block: every stage of a fit builds and calls its own Keras
    functions, so the notices are expected there and mean nothing to the user. Errors
    still show; the logger's level is restored after."""
    logger = logging.getLogger("tensorflow")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


#: JAX locks its persistent compilation cache, each read and each write, only when the
#: cache has a size limit (it may then evict) and the filelock package is installed.
#: Processes that share one cache folder get this limit, far above what they write
#: (megabytes), so that none reads an entry another is still writing (JAX would warn and
#: compile it again).
SHARED_JAX_CACHE_BYTES = 8 << 30


def shared_jax_cache(env, folder):
    """Point the processes started with ``env`` (a dict, changed and returned) at one
    JAX compilation cache, ``folder``, unless ``env`` names one already; locked where
    JAX can lock it (filelock installed, no size limit set by the user)."""
    env.setdefault("JAX_COMPILATION_CACHE_DIR", folder)
    if importlib.util.find_spec("filelock") is not None:
        env.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(SHARED_JAX_CACHE_BYTES))
    return env
