"""The retained heap: large blocks reused instead of faulted in anew, and the defaults back."""

import resource

import torch

from generator.run.heap import retained_heap


def faults_of_a_batch_loop() -> int:
    """Minor page faults of a loop that allocates and frees the same 64 MB tensor 20 times (torch
    takes it from malloc; numpy would ask for huge pages, which fault 512 times less)."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        block = torch.ones(16 << 20)  # 64 MB, over glibc's largest default mmap threshold
        del block
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def test_retained_heap_reuses_large_blocks_and_restores_the_defaults():
    pages = (64 << 20) // resource.getpagesize()
    plain = faults_of_a_batch_loop()
    with retained_heap():
        faults_of_a_batch_loop()  # glibc settles the heap's top over the first few blocks
        retained = faults_of_a_batch_loop()
    after = faults_of_a_batch_loop()
    assert plain >= 10 * pages  # each block faulted in anew
    assert retained <= 2 * pages  # reused
    assert after >= 10 * pages  # the defaults are back
