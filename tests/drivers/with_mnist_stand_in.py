"""Driver: run a script (an example) with the named dataset `mnist` read from scikit-learn's digits.

usage: python with_mnist_stand_in.py IDX_FOLDER SCRIPT [ARGS...]
IDX_FOLDER holds the four MNIST IDX files written by tests/realdata.py (write_digits_idx). The registry entry keeps
everything but its files (realdata.mnist_stand_in_source): real MNIST is not in a clone, and its checksum stays.
The script runs as `python SCRIPT ARGS` would run it (its own folder first on sys.path, __name__ == '__main__').
"""
import runpy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for realdata
import realdata  # noqa: E402
from visiontrain.data.registry import DATASETS  # noqa: E402

idx_folder, script, *args = sys.argv[1:]
DATASETS._items["mnist"] = realdata.mnist_stand_in_source(Path(idx_folder))
sys.argv = [script, *args]
sys.path[0] = str(Path(script).resolve().parent)
runpy.run_path(script, run_name="__main__")
