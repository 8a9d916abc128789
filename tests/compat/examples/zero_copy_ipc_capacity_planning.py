from shmkit.compat.zero_copy_ipc import ZeroCopyDict
# Estimate required space
avg_key_size = 10    # bytes
avg_value_size = 100 # bytes
num_items = 1000

heap_size = num_items * (avg_key_size + avg_value_size) * 2  # 2x safety margin
# = 1000 * 110 * 2 = 220KB

d = ZeroCopyDict.create(
    "my_dict",
    max_items=1000,
    heap_size=220*1024
)
# --- it holds what it was planned for ---
for i in range(num_items):
    d[f"key{i:07d}"] = "v" * avg_value_size
print(len(d))
d.close()
