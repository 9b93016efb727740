"""The retained heap: large blocks reused instead of faulted in anew, and the defaults back."""

import json
import resource
import subprocess
import sys

SCRIPT = """
import json, resource, torch
from generator.run.heap import retained_heap

def faults_of_a_batch_loop(mb=48):
    # an mb MB tensor allocated and freed 20 times (torch takes it from malloc; numpy would ask
    # for huge pages, which fault 512 times less)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        block = torch.ones(mb << 18)
        del block
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

plain = faults_of_a_batch_loop()
with retained_heap():
    faults_of_a_batch_loop()  # glibc settles the heap's top over the first few blocks
    retained = faults_of_a_batch_loop()
# larger than any block freed so far: a free one left inside the heap could serve it otherwise
after = faults_of_a_batch_loop(128)
print(json.dumps([plain, retained, after]))
"""


def test_retained_heap_reuses_large_blocks_and_restores_the_defaults():
    """In a fresh process, whose heap no earlier test has shaped (a block served from free
    memory already in the heap never reaches the mmap threshold)."""
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         check=True, timeout=120)
    plain, retained, after = json.loads(out.stdout.strip().splitlines()[-1])
    pages = (48 << 20) // resource.getpagesize()
    assert plain >= 10 * pages  # each block faulted in anew
    assert retained <= 2 * pages  # reused
    assert after >= 20 * 2 * pages  # the defaults are back: each 128 MB block mmapped anew
