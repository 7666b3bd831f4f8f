import os

# One BLAS thread per process, unless the user chose otherwise: the analyses run in parallel
# as processes (--jobs), and BLAS threads on the small matrices of these models cost more
# than they save (measured in benchmarks/README.md). Set before numpy is imported.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from analysis.cli import main, quick_exit  # noqa: E402

quick_exit(main(own_process=True))
