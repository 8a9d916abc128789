# --- context the README leaves out: d with some churn ---
from shmkit.compat.zero_copy_ipc import ZeroCopyDict
d = ZeroCopyDict.create("monitored")
for i in range(100):
    d[f"k{i}"] = "x" * 200
for i in range(0, 100, 2):
    del d[f"k{i}"]
# --- "Monitoring & Statistics", verbatim ---
stats = d.stats()
print(f"Used slots: {stats['used_slots']}")
print(f"Load factor: {stats['load_factor']:.2%}")
print(f"Heap used: {stats['heap_used']} bytes")

gc_stats = d.gc_stats()
print(f"Free blocks: {gc_stats['total_free_blocks']}")
print(f"Free space: {gc_stats['total_free_space']} bytes")
d.close()
