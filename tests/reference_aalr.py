"""A slow, obviously-correct reading of Algorithm 1, written apart from aalr.policy.

It follows the paper's pseudocode top to bottom as one loop that pulls losses from an iterator,
with our defaults (windows of p+1 epochs; NaN acted on in the epoch it appears; L* back to the
initial loss on a phase-1 restart). Each epoch yields (lr_exponent_after, action).
``phase1_failure="rollback"`` (AALR+): every stable phase-1 epoch is saved, and a failure after one
restores it, halves and enters phase 2 with p=2.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator


def reference_decisions(
    losses: Iterable[float],
    initial_loss: float | None,
    *,
    phase1_patience: int = 10,
    window: str = "p+1",
    rollback: bool = False,
    phase1_failure: str = "restart",
) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    stream: Iterator[float] = iter(losses)
    k = 0
    best = initial_loss

    def bad(x: float) -> bool:
        return not math.isfinite(x)

    # Phase 1
    i = 0
    saved = False
    p = 1
    while i < phase1_patience:
        try:
            loss = next(stream)
        except StopIteration:
            return out
        if bad(loss) or (best is not None and loss > best):
            k -= 1
            if phase1_failure == "rollback" and saved:
                out.append((k, "restore_best"))
                p = 2
                break
            best = initial_loss
            i = 0
            out.append((k, "restore_initial"))
            continue
        best = loss
        i += 1
        if i == phase1_patience:
            k += 1
            out.append((k, "save_best"))
        elif phase1_failure == "rollback":
            saved = True
            out.append((k, "save_best"))
        else:
            out.append((k, "none"))
    # Phase 2
    while True:
        improved = False
        nan = False
        for _attempt in range(2):
            length = p + 1 if window == "p+1" else p
            for epoch_in_window in range(length):
                try:
                    loss = next(stream)
                except StopIteration:
                    return out
                if bad(loss):
                    nan = True
                    break
                if epoch_in_window < length - 1:
                    out.append((k, "none"))
            if nan:
                k -= 1
                p *= 2
                out.append((k, "restore_best"))
                break
            assert best is not None
            if loss < best:
                best = loss
                k += 1
                p = 1
                out.append((k, "save_best"))
                improved = True
                break
            if _attempt == 0:
                out.append((k, "none"))
        if nan or improved:
            continue
        k -= 1
        p *= 2
        out.append((k, "restore_best" if rollback else "none"))
