import sys

from bench.cli.app import main

if __name__ == "__main__":  # guarded: spawned child processes (world build) import this module
    sys.exit(main())
