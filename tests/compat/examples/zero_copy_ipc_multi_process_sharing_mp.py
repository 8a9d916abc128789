# The "Multi-Process Sharing" example with each "Process N" block in a real
# process (the README runs them in one script); the blocks are verbatim.
import multiprocessing


def process_2(ready, read, updated):
    ready.wait()
    # Process 2: Attach and read
    from shmkit.compat.zero_copy_ipc import ZeroCopyDict

    d2 = ZeroCopyDict.attach("shared_dict")
    print(d2["counter"])  # Instantly sees 0
    read.set()
    updated.wait()
    print("process 2 sees", d2["counter"])


def process_3(ready, read, updated):
    read.wait()
    # Process 3: Update
    from shmkit.compat.zero_copy_ipc import ZeroCopyDict

    d3 = ZeroCopyDict.attach("shared_dict")
    d3["counter"] = 100  # d1 and d2 immediately see the update!
    updated.set()


if __name__ == "__main__":
    ready, read, updated = (multiprocessing.Event() for _ in range(3))
    procs = [multiprocessing.Process(target=f, args=(ready, read, updated))
             for f in (process_2, process_3)]
    for p in procs:
        p.start()
    # Process 1: Create and write
    from shmkit.compat.zero_copy_ipc import ZeroCopyDict

    d1 = ZeroCopyDict.create("shared_dict")
    d1["counter"] = 0
    ready.set()
    for p in procs:
        p.join()
        assert p.exitcode == 0, p.exitcode
    print("process 1 sees", d1["counter"])
    d1.close()
