"""The shmkit command-line tool (placeholder until the CLI lands)."""
import sys


def main(argv=None) -> int:
    print("shmkit: the command-line tool is not built yet", file=sys.stderr)
    return 2
