"""The `recsys` command line.

Thread hygiene happens here, before numpy, BLAS, FAISS or implicit are imported: on a small
machine their thread pools oversubscribe the cores (see ARCHITECTURE.md section 6). Explicit
environment settings win over these defaults.
"""

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
