"""What DGG's first training step does to the pretrained classifier, on MNIST.

    python reproduce/first_step.py [--subset N] [--precision float32|mixed_bfloat16]
        [--seed 0] [--variant code|paper] [--data DIR] [--weights FILE]

Runs the pipeline's first stages (GMM init, classifier pretraining; no audit) and one
DGG step in a temporary directory, then prints: the full-pass ACC before and after the
step; the same after the step with the encoder, or the classifier, put back as it was
(which of the two the drop comes from); and, per encoder and classifier tensor, how far
Adam's first update moved it (PyTorch's Adam, as the original: m/sqrt(v) = g/|g| at
step 1, so every weight with a gradient moves by the learning rate). Nothing is kept.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

from dgg_tf.cli.commands import (MNIST_NEIGHBORS, MNIST_SIAMESE, CommandParser, UsageError,
                                 add_backend_argument, add_data_argument, add_subset_argument,
                                 add_weights_argument, mnist_source, non_negative_int,
                                 quiet_tensorflow, run_main, select_backend)
from dgg_tf.core.config import CHOICES


def build_parser():
    p = CommandParser(prog="reproduce/first_step.py", description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", choices=["code", "paper"], default="code",
                   help="config preset (default code)")
    add_subset_argument(p, "; the neighbours from the shipped Siamese network")
    p.add_argument("--precision", choices=CHOICES["precision"], default="float32",
                   help="default float32")
    p.add_argument("--seed", type=non_negative_int, default=0, help="config.seed (default 0)")
    add_data_argument(p)
    add_weights_argument(p)
    p.add_argument("--tf-log", action="store_true", help="show TensorFlow's own log messages")
    add_backend_argument(p)
    return p


def first_step_probe(x, y, parts=("encoder", "classifier")):
    """A Keras callback that, after the first step, prints the full-pass ACC with each of
    ``parts`` put back as before the step, and how far each of their tensors moved."""
    import keras
    import numpy as np

    from dgg_tf.numerics.evaluation import full_pass_scores

    def acc(model):
        scores = full_pass_scores(model, x, y)
        return f"{scores['full_acc']:.4f} ({scores['clusters_used']} clusters)"

    class FirstStep(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self.before = {p: [w.numpy() for w in getattr(self.model, p).weights] for p in parts}
            print(f"before the first step: full-pass ACC {acc(self.model)}")

        def on_train_batch_end(self, batch, logs=None):
            lr = float(self.model.optimizer.learning_rate)
            print(f"after it:              full-pass ACC {acc(self.model)}")
            for part in parts:
                weights = getattr(self.model, part).weights
                after = [w.numpy() for w in weights]
                for w, old in zip(weights, self.before[part]):
                    w.assign(old)
                print(f"  with the {part} as before: full-pass ACC {acc(self.model)}")
                for w, new in zip(weights, after):
                    w.assign(new)
            print(f"Adam's first update (learning rate {lr:g}), per tensor:")
            for part in parts:
                for w, old in zip(getattr(self.model, part).weights, self.before[part]):
                    moved = np.abs(w.numpy() - old)
                    print(f"  {w.path:28s} rms {np.sqrt(np.mean(old ** 2)):.4f}  moved by lr: "
                          f"{np.mean(np.isclose(moved, lr, rtol=0.01)):6.1%}  relative change "
                          f"{np.linalg.norm(w.numpy() - old) / np.linalg.norm(old):.3f}")
            self.model.stop_training = True
    return FirstStep()


def run(args):
    from dgg_tf.api.pipeline import run_dgg
    from dgg_tf.core.config import DGGConfig
    from dgg_tf.core.data import load_mnist
    from dgg_tf.stages.neighbors import subset_tables
    config = DGGConfig.preset(args.variant, seed=args.seed, precision=args.precision, epochs=1)
    if not os.path.exists(args.weights):
        raise UsageError(f"weights {args.weights} do not exist")
    x, y = load_mnist(mnist_source(args.data))
    neighbors = MNIST_NEIGHBORS
    if args.subset:
        if args.subset > len(x):
            raise UsageError(f"--subset must be in 1..{len(x)}, got {args.subset}")
        x, y = x[:args.subset], y[:args.subset]
        neighbors, _ = subset_tables(x, y, config, "siamese", MNIST_SIAMESE)
    print(f"{len(x)} images, {args.variant} preset, {args.precision}, seed {args.seed}")
    with tempfile.TemporaryDirectory() as workdir:
        run_dgg(config, x, y, neighbors=neighbors, weights=args.weights, audit=False,
                workdir=os.path.join(workdir, "run"), verbose=0, probe_steps=(),
                callbacks=[first_step_probe(x, y)])
    return 0


def main(argv=None):
    args = build_parser().parse_args(argv)
    if select_backend(args.backend):
        return 2
    quiet_tensorflow(args.tf_log)
    return run_main(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
