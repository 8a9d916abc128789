# The "Example: Multi-Process Usage" with each process block in a real
# process; the blocks are verbatim except the producer's missing
# `import time` (the README's block uses time.time() without it).
import multiprocessing


def process_1(ready, done):
    # Process 1 (Producer)
    from shmkit.compat.sharedbox import SharedDict
    import numpy as np
    import time

    # Create and populate shared dictionary
    shared_dict = SharedDict("sensor_data", size=256*1024*1024, max_keys=10000)
    shared_dict["timestamp"] = time.time()
    shared_dict["readings"] = np.random.rand(1000)
    shared_dict["metadata"] = {"sensor_id": "temp_01", "location": "room_a"}
    ready.set()
    done.wait()


def process_2(ready, done):
    ready.wait()
    # Process 2 (Consumer)
    from shmkit.compat.sharedbox import SharedDict

    # Connect to existing shared dictionary
    shared_dict = SharedDict("sensor_data", create=False)
    timestamp = shared_dict["timestamp"]
    readings = shared_dict["readings"]  # NumPy array
    metadata = shared_dict["metadata"]  # Regular dict
    print(type(timestamp).__name__, type(readings).__name__, readings.shape, metadata)

    # Clean up (only in the creating process)
    shared_dict.close()
    shared_dict.unlink()
    done.set()


if __name__ == "__main__":
    ready, done = multiprocessing.Event(), multiprocessing.Event()
    procs = [multiprocessing.Process(target=f, args=(ready, done)) for f in (process_1, process_2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        assert p.exitcode == 0, p.exitcode
