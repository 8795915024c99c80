import keras, sys, warnings
if len(sys.argv) > 2: import lossmod
try:
    m = keras.saving.load_model(sys.argv[1], safe_mode=True)
    print("compiled", m.compiled, m.loss, len(m.optimizer.variables))
except Exception as e: print("ERR", type(e).__name__, str(e)[:300])
