"""The training machinery every stage shares, below the stages themselves (it imports
none of pretrain, siamese, training, pipeline, estimator, report or sweep):

* ``fit`` - seeded stateless batches as ``tf.data`` (``index_batches``), their noise,
  the StepLR schedule as a callback, ``LossTrainer`` / ``fit_epochs`` (one stage
  through Keras ``fit`` on a per-batch loss) and the input check of a stage;
* ``callbacks`` - ``TrainingError``, the per-epoch hook and the non-finite stop;
* ``metrics`` - the float64 per-step Keras metrics of ``fit`` and the contingency;
* ``checkpoint`` - the one checkpoint format of every stage (DGG run, autoencoder,
  Siamese), the optimizer state, the same-run check and the one resume function.

Nothing is imported here, so that ``dgg_tf.models`` can use ``train.metrics``
without loading the rest.
"""
