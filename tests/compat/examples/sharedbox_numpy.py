# --- context the README leaves out: shared_dict ---
from shmkit.compat.sharedbox import SharedDict
shared_dict = SharedDict("np_dict")
# --- "NumPy Array Support", verbatim ---
import numpy as np

# Store NumPy arrays efficiently
shared_dict["matrix"] = np.array([[1, 2], [3, 4]])
shared_dict["vector"] = np.random.rand(1000)

# Arrays are automatically serialized/deserialized
matrix = shared_dict["matrix"]  # Returns np.ndarray
# --- what came back ---
print(type(matrix).__name__, matrix.tolist(), shared_dict["vector"].shape)
shared_dict.close()
shared_dict.unlink()
