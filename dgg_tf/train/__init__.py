"""The training machinery every stage shares, below the stages themselves (it imports
none of pretrain, siamese, training, pipeline, estimator, report or sweep):

* ``fit`` - seeded stateless batches as ``tf.data`` (``index_batches``), their noise,
  the StepLR schedule as a callback, ``LossTrainer`` / ``fit_epochs`` (one stage
  through Keras ``fit`` on a per-batch loss) and the input check of a stage;
* ``callbacks`` - ``TrainingError``, the per-epoch hook and the non-finite stop;
* ``checkpoint`` - the one checkpoint format of every stage (DGG run, autoencoder,
  Siamese), the optimizer state, the same-run check and the one resume function.

The per-step Keras metrics the network itself keeps live below, in
``dgg_tf.step_metrics`` (numerics: ``DGGNetwork`` uses them).
"""
