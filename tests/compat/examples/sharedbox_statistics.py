# --- context the README leaves out: shared_dict with some entries ---
from shmkit.compat.sharedbox import SharedDict
shared_dict = SharedDict("stats_dict")
for i in range(100):
    shared_dict[f"key{i:03d}"] = "v" * 100
# --- "Runtime Statistics" and "Sizing Recommendations", verbatim ---
stats = shared_dict.get_stats()
recommendations = shared_dict.recommend_sizing(target_entries=10000)
# --- "Best Practices" 1, verbatim ---
# Use recommend_sizing() to determine optimal segment size
recommendations = shared_dict.recommend_sizing(target_entries=50000)
optimal_size = recommendations['sizing_recommendation']['total_segment_size']
# --- the documented keys ---
print(sorted(stats), sorted(recommendations), stats["total_entries"], optimal_size > 50000 * 100)
shared_dict.close()
shared_dict.unlink()
