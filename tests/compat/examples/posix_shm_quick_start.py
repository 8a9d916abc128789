from shmkit.compat.posix_shm import SharedMemory, Queue, HashMap, Bitset

# Create shared memory segment
shm = SharedMemory("/my_shared_mem", size=10*1024*1024)  # 10MB

# Create a lock-free queue
queue = Queue(shm, "task_queue", max_size=1000)

# Producer process
queue.push({"task": "process_data", "id": 42})

# Consumer process (can be different process)
if not queue.empty():
    task = queue.pop()
    print(f"Processing: {task}")

# Create a shared hash map
cache = HashMap(shm, "cache", max_entries=10000)
cache["user:123"] = {"name": "Alice", "score": 95.5}

# Create a bitset for flags
flags = Bitset(shm, "flags", size=1000000)
flags.set(42)
if flags.test(42):
    print("Flag 42 is set")
