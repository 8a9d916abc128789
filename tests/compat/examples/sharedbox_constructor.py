from shmkit.compat.sharedbox import SharedDict

# Create a new shared dictionary
shared_dict = SharedDict("my_dict", size=64*1024*1024, max_keys=1000)

# Connect to existing shared dictionary
existing_dict = SharedDict("my_dict", create=False)

# Initialize with data
initial_data = {"key1": "value1", "key2": [1, 2, 3]}
shared_dict = SharedDict("initialized_dict", data=initial_data)
# --- what it made ---
print(existing_dict.is_closed(), sorted(shared_dict.items()))
for d in (existing_dict, shared_dict):
    d.close()
    d.unlink()
