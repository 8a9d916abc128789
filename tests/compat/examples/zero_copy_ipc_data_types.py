# --- context the README leaves out: d ---
from shmkit.compat.zero_copy_ipc import ZeroCopyDict
d = ZeroCopyDict.create("types_dict")
# --- "Supported Data Types", verbatim ---
# ✅ Basic types
d["int"] = 42
d["float"] = 3.14
d["str"] = "hello"
d["bool"] = True
d["bytes"] = b"data"

# ✅ Container types
d["list"] = [1, 2, 3]
d["dict"] = {"nested": "value"}
d["tuple"] = (1, 2, 3)
d["set"] = {1, 2, 3}

# ✅ Custom objects
class Point:
    def __init__(self, x, y):
        self.x = x
        self.y = y

d["point"] = Point(10, 20)

# ❌ Not supported
# File objects, sockets, lambdas, threading.Lock
# --- everything reads back ---
print(sorted((k, v) for k, v in d.items() if k != "point" and k != "set"), d["set"], d["point"].x, d["point"].y)
d.close()
