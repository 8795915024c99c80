# %% [markdown]
# # RNN, GRU, LSTM or a 1-D convolution on a stock series, beside persistence
#
# The classic stock tutorial feeds 60 days of prices to an LSTM and draws its forecast over the
# true prices: the two curves overlap, and the model looks brilliant. It is not: *tomorrow's
# price = today's* (**persistence**) draws the same picture, since a forecast one day ahead is
# never far from yesterday's price. A forecaster is worth something only if it beats
# persistence.
#
# This tutorial asks what a recurrent network adds on the S&P 500, daily closes 1999-2018 (they
# ship with the `arch` package, so it runs offline), and compares four kinds of network on the
# same windows, the same split and the same training:
#
# - a plain recurrent layer (`SimpleRNN`): reads the window day by day, carrying one state
#   vector, `h = tanh(W x + U h)`; its gradients fade over long windows;
# - an `LSTM`: the same loop with a cell state and three gates (input, forget, output) deciding
#   what to keep, so it can carry a signal across many days: the reason tutorials reach for it;
# - a `GRU`: two gates and no separate cell state, fewer weights, often as good;
# - a `Conv1D` stack: no state at all, filters sliding over a few days at a time (causal: a
#   day sees only the days before it).
#
# `TUTORIAL_SIZE=small` trains each network for one epoch; `full` trains each until its
# validation loss stops improving.

# %%
# Keras without the start-up lines TensorFlow prints on some CPUs: the first `import keras`,
# wherever it happens, is filtered (the command line and the tests do the same).
from common.keras_setup import quiet_keras_import

quiet_keras_import()

import os

import keras
import matplotlib.pyplot as plt
import pandas as pd

from common.core import registry
from common.training import steps
from projects.stock.data import load_series, make_splits
from projects.stock.evaluate import one_step_prices, price_scores

# The template draws its own plots into files; in a notebook, figures are drawn in the page.
# %matplotlib inline

SMALL = os.environ.get("TUTORIAL_SIZE", "full") == "small"
project = registry.get_project("stock")
config = project.load_config(None, [f"train.epochs={1 if SMALL else 30}"])

# %% [markdown]
# ## The series and its split
#
# The split is chronological: the model trains on the oldest 70% of the days, early stopping
# watches the next 10% (validation), and the last 20% is the test, never seen before scoring.
# Shuffling days across the split would let the model train on days after those it is tested
# on.

# %%
series = load_series(config)
print(series.source)
splits = make_splits(series, config)
days = splits.info["days"]

figure, axis = plt.subplots(figsize=(9, 3))
for part, colour in (("train", "tab:blue"), ("validation", "tab:orange"), ("test", "tab:green")):
    axis.plot(days[part]["dates"], days[part]["actual"], color=colour, label=part)
axis.set_ylabel(series.price_column)
axis.legend()
plt.show()

# %% [markdown]
# ## What the networks read: daily returns, scaled on the training days only
#
# Prices wander far outside the range they had in training (the S&P 500 of 2018 is above every
# training day). So each window holds `data.window` daily returns (`tomorrow / today - 1`), and
# the network predicts the next one, turned back into a price for scoring.
#
# The returns are standardised with a mean and standard deviation computed **from the training
# days alone**; statistics over the whole series would let the test period leak into the
# inputs. The model carries them inside, as `Normalization` layers, so a saved model takes raw
# windows.

# %%
scaler = splits.info["scaler"]
x_train, y_train = splits.train
all_returns = series.prices[1:] / series.prices[:-1] - 1
print(f"{len(x_train)} training windows of {config.data.window} days")
print(f"scaler from training days: mean {scaler['feature_mean'][0]:+.5f}, std {scaler['feature_std'][0]:.5f}")
print(f"over the whole series:     mean {all_returns.mean():+.5f}, std {all_returns.std():.5f}")

# %% [markdown]
# ## The baseline: persistence
#
# Persistence forecasts each test day's close as the close of the day before. Its RMSE is the
# yardstick: a model's `rmse_ratio` is its RMSE over persistence's, and below 1 beats it. The
# Diebold-Mariano test says whether a difference is more than chance.

# %%
test_days = days["test"]
persistence = price_scores(test_days["actual"], test_days["previous"], test_days["previous"])
print(f"persistence: RMSE {persistence['rmse']:.2f} points, MAE {persistence['mae']:.2f}")

# %% [markdown]
# ## Four networks, the same recipe
#
# Only `model.cell` changes. Each network ends in a `Dense(1)` that starts at zero, so before
# training every one forecasts the training period's average return: persistence plus the drift.
# Training then keeps what improves on that on validation (early stopping restores the best
# epoch).

# %%
forecasts, rows = {}, []
for cell in ("simple_rnn", "gru", "lstm", "conv1d"):
    keras.utils.set_random_seed(config.seed)
    cell_config = config.with_overrides([f"model.cell={cell}"])
    model = project.functions.build_model(cell_config, splits)
    steps.compile_model(model, cell_config, steps_per_epoch=len(x_train) // config.train.batch_size + 1)
    stop = keras.callbacks.EarlyStopping(
        patience=config.train.early_stopping_patience, restore_best_weights=True
    )
    history = model.fit(
        x_train,
        y_train,
        validation_data=splits.validation,
        epochs=cell_config.train.epochs,
        batch_size=cell_config.train.batch_size,
        callbacks=[stop],
        verbose=0,
    )
    forecasts[cell] = one_step_prices(model, splits.test[0], test_days["previous"], cell_config.data.target)
    scores = price_scores(test_days["actual"], forecasts[cell], test_days["previous"])
    rows.append(
        {
            "network": cell,
            "weights": model.count_params(),
            "epochs": len(history.history["loss"]),
            "rmse_ratio": scores["rmse_ratio"],
            "dm_p_value": scores["dm_p_value"],
            "direction right": scores["directional_accuracy"],
        }
    )

table = pd.DataFrame(rows).set_index("network")
table.loc["persistence"] = [0, 0, 1.0, 1.0, persistence["baseline_directional_accuracy"]]
table.round(4)

# %% [markdown]
# `direction right` is the share of test days whose move (up or down) the forecast got right;
# persistence predicts no move, so its figure is the share of up days, what "always up" gets.

# %%
figure, (bars, zoom) = plt.subplots(1, 2, figsize=(11, 3.5), gridspec_kw={"width_ratios": [1, 2]})
ratios = table["rmse_ratio"].drop("persistence")
bars.bar(ratios.index, ratios.to_numpy(), color="tab:purple")
bars.axhline(1.0, color="k", linestyle="--", label="persistence")
bars.set_ylim(min(0.98, ratios.min() - 0.005), max(1.02, ratios.max() + 0.005))
bars.set_ylabel("RMSE / persistence's")
bars.legend()

last = slice(-40, None)
zoom.plot(test_days["dates"][last], test_days["actual"][last], "k-", linewidth=2, label="actual")
zoom.plot(test_days["dates"][last], test_days["previous"][last], "k:", label="persistence")
for cell, forecast in forecasts.items():
    zoom.plot(test_days["dates"][last], forecast[last], linewidth=1, label=cell)
zoom.set_title("the last 40 test days")
zoom.legend(fontsize=8, ncol=2)
figure.autofmt_xdate()
plt.show()

# %% [markdown]
# ## What it says
#
# Every network lands within about a percent of persistence, and a Diebold-Mariano p-value
# above 0.05 says a difference is no more than chance gives: on daily returns of an index, the
# past 20 days hold almost nothing about tomorrow that a gated memory (LSTM, GRU), a plain one
# (SimpleRNN) or no memory at all (Conv1D) can use. The curves on the right hug persistence's:
# that is what a forecast "that follows the price so well" is.
#
# The LSTM earns its place on series whose past does say something about the future (seasonal
# demand, sensor readings, text); here it is the honest result that nothing beats tomorrow =
# today. `make train-stock` trains the project's LSTM with the full recipe and a Diebold-Mariano
# verdict, `python -m common train stock --set model.cell=gru` any other network, and
# `python -m common train stock --config projects/stock/classic.toml` the classic tutorial's
# recipe (the price itself as target), which does much worse than persistence.
