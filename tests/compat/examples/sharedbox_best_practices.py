# --- context the README leaves out ---
from shmkit.compat.sharedbox import SharedDict
import numpy as np
optimal_size = 1 << 20
key, default_value = "missing", "default"
array = np.arange(12).reshape(3, 4).T
# --- "Best Practices" 2, verbatim, the consumer's block run while the
# creator's is between "use" and "close" ---
# Creating process
shared_dict = SharedDict("data", size=optimal_size)
# ... use shared_dict ...
creator = shared_dict

# Consumer processes
shared_dict = SharedDict("data", create=False)
# ... use shared_dict ...
# --- "Best Practices" 3 and 4, verbatim, in the consumer ---
try:
    value = shared_dict[key]
except KeyError:
    # Handle missing key
    value = default_value
# Ensure arrays are contiguous for optimal performance
if not array.flags.c_contiguous:
    array = np.ascontiguousarray(array)
shared_dict["array"] = array
print(value, creator["array"].tolist())
shared_dict.close()  # Don't unlink in consumer processes

shared_dict = creator
shared_dict.close()
shared_dict.unlink()  # Remove when done
# --- removed ---
try:
    SharedDict("data", create=False)
except FileNotFoundError:
    print("removed")
