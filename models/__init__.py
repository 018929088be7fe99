"""Compact Keras models, training, TFLite export and the LiteRT runtime.

Importing this package (and ``models.spec``, ``models.manifest``, ``models.runtime``) never
imports TensorFlow: the always-on agent uses those. ``models.families``' builders,
``models.training`` and ``models.export`` import TensorFlow/Keras and belong to the training
process only.
"""
