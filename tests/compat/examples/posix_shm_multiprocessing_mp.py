from multiprocessing import Process
from shmkit.compat.posix_shm import SharedMemory, Queue

def producer(shm_name):
    shm = SharedMemory(shm_name, 0)  # Attach to existing
    queue = Queue(shm, "tasks")
    
    for i in range(100):
        queue.push(f"task_{i}")

def consumer(shm_name):
    shm = SharedMemory(shm_name, 0)  # Attach to existing
    queue = Queue(shm, "tasks")
    
    while True:
        if not queue.empty():
            task = queue.pop()
            print(f"Processing: {task}")
        else:
            break

# Main process
shm = SharedMemory("/work_queue", 10*1024*1024)
queue = Queue(shm, "tasks", max_size=1000)

# Start workers
p1 = Process(target=producer, args=("/work_queue",))
p2 = Process(target=consumer, args=("/work_queue",))

p1.start()
p2.start()

p1.join()
p2.join()

# Cleanup
shm.unlink()
