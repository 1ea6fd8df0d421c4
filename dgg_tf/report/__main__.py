"""``python -m dgg_tf.report RUN_DIR [RUN_DIR ...] [--out DIR]`` (see ``cli``)."""
import sys

from dgg_tf.cli.report import main

sys.exit(main())
