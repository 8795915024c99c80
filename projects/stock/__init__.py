"""Daily stock prices: an LSTM forecasting the next day, scored beside persistence (tomorrow = today).

Its functions live in the conventional modules (data.py, model.py, evaluate.py, predict.py,
demo.py, settings.py), where ``common.registry`` finds and imports them only when needed.
"""
