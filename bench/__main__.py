# The guard matters: anyio's workers and multiprocessing's spawned children re-import the
# parent's __main__ (as __mp_main__), which must not start another benchmark.
if __name__ == "__main__":
    import os
    import sys

    from bench.cli import main

    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # A peer that hung leaves threads that interpreter exit would join forever
    # (concurrent.futures joins its manager threads at exit): the results are written, leave.
    os._exit(code)
