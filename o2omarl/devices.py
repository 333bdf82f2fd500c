"""Choosing the torch device for learners: `auto` takes a GPU when there is one."""

from __future__ import annotations


def resolve_device(device: str, say=print) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        say("no CUDA device is available; running the learner on the CPU")
        return "cpu"
    return device


def limit_torch_threads() -> int:
    """One intra-op thread by default (O2OMARL_TORCH_THREADS overrides).

    The learner's ops are small and the env steps in JAX's own threads: measured on 2 cores, a
    GRU unroll + backward took 30 ms with 1 thread but 3,100 ms with 2 while another process
    kept one core busy (OpenMP workers spin-wait for a descheduled peer). One thread never
    falls off that cliff, and parallel runs scale by processes instead.
    """
    import os

    import torch

    n = int(os.environ.get("O2OMARL_TORCH_THREADS", "1"))
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n
