"""Run a worker script under ``torchrun --standalone`` (gloo) for the distributed tests.

A launch can fail for reasons outside the code under test (a rendezvous port taken between
being chosen and bound, a worker starved on a loaded 2-core machine), and such a failure was
seen once in a full-suite run and never when rerun. So a failed launch is retried once, with a
warning that shows the first failure's output; a real bug fails both times (the workers are
deterministic) and the test fails with the output of both attempts.
"""
import os
import subprocess
import sys
import warnings


def run_torchrun(worker, *args, nproc: int = 2, timeout: int = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           str(worker), *map(str, args)]
    failures = []
    for _ in range(2):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        if proc.returncode == 0:
            if failures:
                warnings.warn(f"torchrun {worker.name} {args}: the first launch failed and the retry passed:\n"
                              + failures[0])
            return proc
        failures.append(f"torchrun failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    raise AssertionError("\n\n--- retry ---\n".join(failures))
