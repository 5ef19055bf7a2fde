"""Check your data file and split it into the training and held-out files.

A thin entry point: the code is in slm.train.prepare.
"""

import sys

try:
    from slm.train.prepare import main
except ModuleNotFoundError as error:  # run outside .venv, or before setup/install.py
    if error.name != "slm":  # slm is installed and one of its imports failed: show that error as it is
        raise
    sys.exit(f"ERROR: slm is not installed for {sys.executable}: run `python setup/install.py`, use .venv's python")

if __name__ == "__main__":
    sys.exit(main())
