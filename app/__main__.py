import os

# numpy's OpenBLAS starts a thread per core as it loads and, after a product big enough
# to share out (an explanation's map, app/inference/explanation.py), keeps them spinning
# on the cores the decoding threads and inference workers need: the server sizes its own
# pools. OpenBLAS reads this once, as numpy loads, so it is set before anything imports it.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from app.cli import main

main()
