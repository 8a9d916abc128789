"""Run one example file as a script (``__name__ == "__main__"``) under a
given multiprocessing start method: ``python run_example.py fork|spawn FILE``."""
import multiprocessing
import runpy
import sys

multiprocessing.set_start_method(sys.argv[1])
runpy.run_path(sys.argv[2], run_name="__main__")
