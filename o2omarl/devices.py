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
