"""Write a Foundry Local model folder (inference_model.json, the trained prompt) from the fine-tuned ONNX model.

A thin entry point: the code is in slm.export.foundry.
"""

import sys

try:
    from slm.export.foundry import main
except ModuleNotFoundError as error:  # run outside .venv, or before setup/install.py
    if error.name != "slm":  # slm is installed and one of its imports failed: show that error as it is
        raise
    sys.exit(f"ERROR: slm is not installed for {sys.executable}: run `python setup/install.py`, use .venv's python")

if __name__ == "__main__":
    sys.exit(main())
