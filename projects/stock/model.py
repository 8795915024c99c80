"""The forecaster: stacked LSTMs over a window of days, scaling layers inside (uncompiled)."""

from __future__ import annotations

import keras
from keras import layers

from common.config import Config
from common.data import Splits


def build_model(config: Config, splits: Splits) -> keras.Model:
    """Builds the LSTM: raw features of ``data.window`` days in, the next day's target out.

    The scaling statistics of the training part (``splits.info["scaler"]``) are fixed into two
    ``Normalization`` layers: one standardises the inputs, the last one turns the network's
    standardised output back into the target's units. A saved model therefore takes the same
    unscaled windows in training, evaluation and forecasting, and carries its own scaler.

    The output layer starts at zero, so the untrained model forecasts the training period's mean
    change (the drift, next to persistence); training and early stopping then keep only what
    improves on that on validation. Started at random, it begins further off: on the S&P 500 its
    validation RMSE ended 1.001-1.005 times persistence's, against 0.999 started from zero.
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
    for index, units in enumerate(settings.lstm_units):
        last = index == len(settings.lstm_units) - 1
        x = layers.LSTM(units, return_sequences=not last, name=f"lstm_{index + 1}")(x)
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
    return keras.Model(inputs, outputs, name=f"lstm_{config.data.target}")
