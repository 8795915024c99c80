import numpy as np, keras, lossmod, sys
m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
loss = getattr(lossmod, sys.argv[1])
m.compile("adam", loss=loss, metrics=[keras.metrics.AUC(), keras.metrics.Precision()])
m.fit(np.random.rand(8,3), np.random.randint(0,2,(8,1)), verbose=0)
m.save(f"m_{sys.argv[1]}.keras")
import json, zipfile
print(json.loads(zipfile.ZipFile(f"m_{sys.argv[1]}.keras").read("config.json"))["compile_config"]["loss"])
