# --- context the README's snippets leave out: shm, item, value, process ---
from shmkit.compat.posix_shm import SharedMemory, Queue, Stack, HashMap, Bitset, Array
shm = SharedMemory("/snippets", 1 << 20)
item, value = "an item", {"a": 1}
def process():
    print("processed")
# --- the snippets of "Data Structures", in order ---
queue = Queue(shm, "my_queue", max_size=1000)
queue.push(item)
item = queue.pop()

stack = Stack(shm, "my_stack", max_size=1000)
stack.push(item)
item = stack.pop()

map = HashMap(shm, "my_map", max_entries=10000)
map["key"] = value
value = map["key"]
del map["key"]

bits = Bitset(shm, "my_bits", size=1000000)
bits.set(42)
bits.flip(100)
if bits.test(42):
    process()

arr = Array(shm, "my_array", size=1000)
arr[0] = 42.5
value = arr[0]
# --- what the snippets produced ---
print(item, value, bits.test(100), "key" in map)
shm.unlink()
