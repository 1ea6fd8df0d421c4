"""``python -m dgg_tf.report RUN_DIR [RUN_DIR ...] [--out DIR]`` (see ``cli``)."""
import sys

from .cli import main

sys.exit(main())
