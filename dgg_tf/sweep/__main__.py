"""``python -m dgg_tf.sweep SWEEP_DIR NAME SEED``: run one cell (the sweep's subprocess)."""
import sys

from dgg_tf.core.stopping import watch_parent

# first, before TensorFlow or JAX load (seconds): a cell never outlives its sweep
if not watch_parent():
    sys.exit(143)                   # the sweep is already gone: nothing to run for

from dgg_tf.sweep.run import main  # noqa: E402  (after watch_parent, on purpose)

sys.exit(main())
