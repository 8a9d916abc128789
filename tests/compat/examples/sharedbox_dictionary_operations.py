# --- context the README leaves out: shared_dict, key, value, default_value ---
from shmkit.compat.sharedbox import SharedDict
shared_dict = SharedDict("ops_dict")
key, value, default_value = "k", {"v": 1}, "default"
# --- "Basic Access", verbatim ---
# Set item
shared_dict[key] = value

# Get item
value = shared_dict[key]  # Raises KeyError if not found

# Get with default
value = shared_dict.get(key, default_value)

# Delete item
del shared_dict[key]  # Raises KeyError if not found

# Check if key exists
if key in shared_dict:
    # key exists
    pass

# Get length
num_items = len(shared_dict)
# --- "Iteration", verbatim (with a few keys in it) ---
shared_dict.update({"a": 1, "b": 2})
# Iterate over keys
for key in shared_dict:
    print(key)

# Get all keys
keys = shared_dict.keys()

# Get atomic snapshot of keys (locks all stripes)
keys = shared_dict.keys_atomic()

# Get all items
items = shared_dict.items()

# Get all values
values = shared_dict.values()
# --- what they returned ---
print(value, num_items, sorted(keys), sorted(items), sorted(values))
# --- "Connection Management", verbatim ---
# Close connection to shared memory (doesn't remove the segment)
shared_dict.close()

# Check if connection is closed
is_closed = shared_dict.is_closed()

# Remove shared memory segment entirely (call after close())
shared_dict.close()
shared_dict.unlink()
print(is_closed)
