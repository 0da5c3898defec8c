"""kgooglenet.data.malloc: large freed buffers are reused, not faulted in again; the user's own setting wins."""

import json
import os
import subprocess
import sys

import pytest

# 20 buffers of 40 MiB (above glibc's adaptive limit of 32 MiB), each filled, then freed; minor page faults counted
# before and after reuse_freed_memory(), in a fresh process (mallopt is process-wide)
SCRIPT = r"""
import ctypes, ctypes.util, json, resource
from kgooglenet.data.malloc import reuse_freed_memory
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
def faults(n=40 << 20):
    start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        p = libc.malloc(n)
        ctypes.memset(p, 1, n)
        libc.free(p)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start
before = faults()
done = reuse_freed_memory()
print(json.dumps({"before": before, "done": done, "again": reuse_freed_memory(), "after": faults()}))
"""


def _run(**env):
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_freed_buffers_are_reused_after_reuse_freed_memory():
    r = _run()
    assert r["done"] and r["again"]
    # 20 x 40 MiB in 4 KiB pages is ~205k faults when every buffer is a new mapping; reused: ~1 buffer's worth
    assert r["before"] > 5 * r["after"], r


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_the_users_own_malloc_setting_is_kept():
    r = _run(MALLOC_TRIM_THRESHOLD_="131072")
    assert r["done"] is False and r["again"] is False
    assert r["after"] > r["before"] / 2, r  # nothing changed: still a fresh mapping per buffer
