from shmkit.compat.zero_copy_ipc import ZeroCopyDict
with ZeroCopyDict.create("temp_dict") as d:
    d["key"] = "value"
    # Auto cleanup
# --- the cleanup happened: the name is gone ---
try:
    ZeroCopyDict.attach("temp_dict")
except FileNotFoundError:
    print("cleaned up")
