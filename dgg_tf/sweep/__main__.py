"""``python -m dgg_tf.sweep SWEEP_DIR NAME SEED``: run one cell (the sweep's subprocess)."""
import sys

from .run import main

sys.exit(main())
