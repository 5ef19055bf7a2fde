"""Load figures for a running serve.py: aggregate tokens/s and latency under concurrent clients.

A thin entry point: the code is in slm.bench.serve_load.
"""

import sys

try:
    from slm.bench.serve_load import main
except ModuleNotFoundError as error:  # run outside .venv, or before setup/install.py
    if error.name != "slm":  # slm is installed and one of its imports failed: show that error as it is
        raise
    sys.exit(f"ERROR: slm is not installed for {sys.executable}: run `python setup/install.py`, use .venv's python")

if __name__ == "__main__":
    sys.exit(main())
