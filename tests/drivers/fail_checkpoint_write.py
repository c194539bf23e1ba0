"""Driver: run `visiontrain train ...` with the Nth atomic file write sabotaged from outside the product code.

usage: python fail_checkpoint_write.py MODE N -- <train args>
MODE: 'half' writes half the bytes of the Nth checkpoint to its temp file, then dies like kill -9 (exit 137);
      'enospc' makes the Nth checkpoint write fail with errno ENOSPC (disk full).
"""
import errno
import os
import sys

import visiontrain._io as io_module
from visiontrain.cli import main

mode, target = sys.argv[1], int(sys.argv[2])
args = sys.argv[sys.argv.index("--") + 1:]
original = io_module.atomic_write_bytes
count = {"checkpoints": 0}


def sabotaged(path, data):
    if str(path).endswith(".pt") and "checkpoints" in str(path):
        count["checkpoints"] += 1
        if count["checkpoints"] == target:
            if mode == "enospc":
                raise OSError(errno.ENOSPC, "No space left on device")
            partial = path.parent / f".{path.name}.killed.tmp"
            with open(partial, "wb") as handle:
                handle.write(data[: len(data) // 2])
                handle.flush()
                os.fsync(handle.fileno())
            os._exit(137)
    return original(path, data)


io_module.atomic_write_bytes = sabotaged
sys.exit(main(args))
