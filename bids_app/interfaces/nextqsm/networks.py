"""Keras definitions of the two NeXtQSM networks (imports TensorFlow: load lazily).

Checkpoint compatibility
------------------------
The released NeXtQSM weights (``zdir_calc-HRbf-rmse-weights.weights.h5`` and
``zdir_calc-HR-vn-nets.weights.h5``) are Keras 3 ``.weights.h5`` files. Keras 3 does not store layer
names in them: it walks the object tree and builds each variable's path from **attribute names** and,
inside lists, from the **snake_case class name** of each layer numbered in order of appearance
(``cnn``, ``cnn_1``, …). A subclassed ``keras.Model`` also exposes its sub-layers through the
``layers`` property, which is visited before ``parts`` (attributes are walked in sorted order), so the
released files hold paths such as::

    encoder/cnn_3/layers/conv3d/vars/0            (3, 3, 3, 64, 128)
    decoder/cnn_5/layers/conv3d_transpose/vars/0  (3, 3, 3, 16, 64)
    last_conv/layers/conv3d/vars/0                (3, 3, 3, 32, 1)

This module is an independent re-implementation of the reference model code (PyPI ``nextqsm`` 1.0.6,
MIT; Cognolato et al. 2022, doi:10.1016/j.media.2022.102700) that keeps exactly what those paths depend
on: the class names ``UNet`` and ``CNN`` (both ``keras.Model`` subclasses), the attribute names
``encoder``, ``decoder``, ``last_conv`` and ``parts``, the layer types and their creation order. Do not
rename them or add layer-holding attributes to these classes, or the real checkpoints stop loading
(``tests/interfaces/test_nextqsm.py`` pins the paths).
"""

from __future__ import annotations

import tensorflow as tf

__all__ = ["CNN", "UNet", "build_unet"]

_MAX_FILTERS = 512


class CNN(tf.keras.Model):
    """One convolution (or stride-2 transposed convolution) followed by optional BN, activation, dropout."""

    def __init__(self, filters, kernel_size, *, strides=1, kernel_initializer="glorot_uniform",
                 batch_norm=False, activation=None, dropout=0.0, up=False):
        super().__init__()
        conv = tf.keras.layers.Conv3DTranspose if up else tf.keras.layers.Conv3D
        # The order of ``parts`` fixes the checkpoint paths and the computation: conv, BN, act, dropout.
        self.parts = [conv(filters=filters, kernel_size=kernel_size, strides=strides, padding="same",
                           kernel_initializer=kernel_initializer)]
        if batch_norm:
            self.parts.append(tf.keras.layers.BatchNormalization())
        if activation is not None:
            self.parts.append(activation())
        if dropout > 0.0:
            self.parts.append(tf.keras.layers.Dropout(dropout))

    def call(self, x, training=False):
        for layer in self.parts:
            x = layer(x, training=training)
        return x


class UNet(tf.keras.Model):
    """3-D U-Net with strided convolutions down and stride-2 transposed convolutions up.

    Encoder level ``i`` has ``min(starting_filters · 2**i, 512)`` filters; the first convolution of
    every level but the first has stride 2 (no pooling). Each decoder level starts with a stride-2
    transposed convolution whose output is concatenated with the encoder output of the same level.
    The input size along each axis must be a multiple of ``2**(n_layers - 1)``.
    """

    def __init__(self, n_classes, n_layers, starting_filters, *, kernel_size=3, kernel_initializer="he_normal",
                 batch_norm=False, activation=tf.keras.layers.ReLU, conv_per_layer=1):
        super().__init__()
        self.n_layers = int(n_layers)
        self.conv_per_layer = int(conv_per_layer)

        def filters(level):
            return min(starting_filters * 2 ** level, _MAX_FILTERS)

        self.encoder = []
        for level in range(self.n_layers):
            for j in range(self.conv_per_layer):
                self.encoder.append(CNN(filters(level), kernel_size, strides=2 if (j == 0 and level > 0) else 1,
                                        kernel_initializer=kernel_initializer,
                                        batch_norm=batch_norm and level > 0, activation=activation))
        self.decoder = []
        for level in range(self.n_layers - 2, -1, -1):
            for j in range(self.conv_per_layer):
                self.decoder.append(CNN(filters(level), kernel_size, strides=2 if j == 0 else 1,
                                        kernel_initializer=kernel_initializer, batch_norm=batch_norm,
                                        activation=activation, up=True))
        self.last_conv = CNN(n_classes, 3, kernel_initializer=kernel_initializer, activation=None)

    def call(self, x, training=False):
        skips = []
        for level in range(self.n_layers):
            for j in range(self.conv_per_layer):
                x = self.encoder[level * self.conv_per_layer + j](x, training=training)
            skips.append(x)
        for i, skip in enumerate(reversed(skips[:-1])):
            for j in range(self.conv_per_layer):
                x = self.decoder[i * self.conv_per_layer + j](x, training=training)
                if j == 0:
                    x = tf.concat([x, skip], axis=-1)
        return self.last_conv(x, training=training)


_ACTIVATIONS = {"relu": tf.keras.layers.ReLU}


def build_unet(params, *, prefix=""):
    """The U-Net described by the ``params.json`` keys ``{prefix}n_layers``, ``{prefix}starting_filters``, ….

    ``prefix=""`` gives the background-field network, ``prefix="vn_"`` the variational network's
    regulariser (which always has one convolution per level, as in the reference).
    """
    activation = params[f"{prefix}act_func"]
    if activation not in _ACTIVATIONS:
        raise ValueError(f"unsupported activation {activation!r} in params.json (known: {sorted(_ACTIVATIONS)})")
    conv_per_layer = params.get("conv_per_layer", 1) if prefix == "" else 1
    return UNet(1, params[f"{prefix}n_layers"], params[f"{prefix}starting_filters"],
                kernel_initializer=params[f"{prefix}kernel_initializer"],
                batch_norm=bool(params[f"{prefix}batch_norm"]),
                activation=_ACTIVATIONS[activation], conv_per_layer=conv_per_layer)
