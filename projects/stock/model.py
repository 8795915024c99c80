"""The forecaster: a window of days through a recurrent or convolutional stack, scaling inside.

``model.cell`` picks the kind of network, with everything else (window, target, split,
schedule) the same, so the three lessons can be compared side by side:

- ``lstm``, ``gru``, ``simple_rnn``: recurrent layers read the window one day at a time,
  carrying a state; the LSTM and the GRU gate that state, the simple RNN does not.
- ``conv1d``: one-dimensional convolutions slide a filter of ``model.kernel_size`` days along
  the window, the image lesson applied to a series; the last one's outputs are flattened.
"""

from __future__ import annotations

import keras
from keras import layers

from common.core.config import Config
from common.kit.splits import Splits

RECURRENT_LAYERS = {"lstm": layers.LSTM, "gru": layers.GRU, "simple_rnn": layers.SimpleRNN}
CELLS = (*RECURRENT_LAYERS, "conv1d")


def build_model(config: Config, splits: Splits) -> keras.Model:
    """Builds the network: raw features of ``data.window`` days in, the next day's target out.

    The scaling statistics of the training part (``splits.info["scaler"]``) are fixed into two
    ``Normalization`` layers: one standardises the inputs, the last one turns the network's
    standardised output back into the target's units. A saved model therefore takes the same
    unscaled windows in training, evaluation and forecasting, and carries its own scaler.

    The output layer starts at zero, so the untrained model forecasts the training period's mean
    change (the drift, next to persistence); training and early stopping then keep only what
    improves on that on validation. Started at random, it begins further off: on the S&P 500 the
    LSTM's validation RMSE ended 1.001-1.005 times persistence's, against 0.999 started from zero.
    """
    scaler = splits.info["scaler"]
    settings = config.model
    n_features = len(scaler["feature_mean"])
    inputs = keras.Input(shape=(config.data.window, n_features), name="window")
    x = layers.Normalization(
        mean=scaler["feature_mean"].tolist(),
        variance=(scaler["feature_std"] ** 2).tolist(),
        name="scale_inputs",
    )(inputs)
    for index, units in enumerate(settings.units):
        last = index == len(settings.units) - 1
        name = f"{settings.cell}_{index + 1}"
        if settings.cell == "conv1d":
            # "causal" padding keeps every position's output on the days up to it, and the
            # window's length, so any number of layers fits any window.
            x = layers.Conv1D(units, settings.kernel_size, padding="causal", activation="relu", name=name)(x)
            if last:
                x = layers.Flatten(name="flatten")(x)
        else:
            # Each recurrent layer but the last hands the next one its whole sequence of states.
            x = RECURRENT_LAYERS[settings.cell](units, return_sequences=not last, name=name)(x)
        if settings.dropout > 0:
            x = layers.Dropout(settings.dropout)(x)
    # The last two layers compute in float32 even under a mixed-precision policy (train.precision).
    x = layers.Dense(1, kernel_initializer="zeros", name="scaled_target", dtype="float32")(x)
    outputs = layers.Normalization(
        mean=scaler["target_mean"],
        variance=scaler["target_std"] ** 2,
        invert=True,
        name="target",
        dtype="float32",
    )(x)
    return keras.Model(inputs, outputs, name=f"{settings.cell}_{config.data.target}")
