# --- context the README leaves out: d ---
from shmkit.compat.zero_copy_ipc import ZeroCopyDict
d = ZeroCopyDict.create("faq_dict")
# --- "Q: Lock timeout issue?", verbatim ---
try:
    d["key"] = "value"
except TimeoutError:
    print("Lock timeout, possible zombie process")
    # Cleanup lock file
    # Retry operation
# --- "Q: How to improve concurrent performance?", verbatim ---
# 1. Batch operations to reduce lock frequency
d.update({"k1": "v1", "k2": "v2", "k3": "v3"})

# 2. Use sufficient heap_size to avoid frequent allocation
estimated_items, avg_size = 1000, 100   # (context: the README leaves these out)
heap_size = estimated_items * avg_size * 3

# 3. Different key operations can be parallel (hash to different slots)
print(sorted(d.keys()))
# --- "Q: How to cleanup shared memory?": normal cleanup, verbatim ---
# Normal cleanup
d.close()
