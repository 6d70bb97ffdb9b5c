"""Check ``range_test`` on a CUDA model, by hand (CI has no GPU).

    python scripts/check_cuda_range_test.py

On a model with BatchNorm and about 270 MB of weights on the GPU, it checks that:

1. after a normal sweep, an AMP (fp16 GradScaler) sweep and a sweep that raises halfway, every
   parameter, buffer, optimizer state tensor, the CUDA and CPU RNG states and the scaler are
   bit-for-bit what they were, and still on the GPU;
2. the snapshot costs no GPU memory: the sweep's peak GPU memory above the model is what a
   plain training step needs, where torch-lr-finder (which keeps its copy with the model)
   needs a second copy of the weights on top;
3. wall time, ours vs torch-lr-finder, same model, data and num_iter, interleaved.

Prints a table and the command. Needs a CUDA GPU, lrsearch importable, torch-lr-finder.
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import time
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lrsearch import range_test

MB = 2**20


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2)
        )
        self.wide = nn.Linear(32 * 14 * 14, 8192)  # the bulk of the weights
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(8192, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.wide(self.features(x).flatten(1)))


def data(seed: int = 0) -> DataLoader[tuple[torch.Tensor, ...]]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4096, 1, 28, 28, generator=g)
    teacher = torch.randn(28 * 28, 10, generator=g)
    y = (x.flatten(1) @ teacher).argmax(1)
    return DataLoader(TensorDataset(x, y), batch_size=128, shuffle=True, generator=g)


def setup(optimizer: str = "sgd") -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = Net().cuda()
    opt: torch.optim.Optimizer
    if optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=1e-7, momentum=0.9)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=1e-7)
    # Two real steps, so the optimizer has state to restore.
    for x, y in list(data(1))[:2]:
        opt.zero_grad()
        nn.functional.cross_entropy(model(x.cuda()), y.cuda()).backward()
        opt.step()
    return model, opt


def fingerprint(model: nn.Module, opt: torch.optim.Optimizer) -> dict[str, Any]:
    state = {
        f"opt/{i}/{k}": v.detach().clone()
        for i, s in opt.state.items()
        for k, v in s.items()
        if isinstance(v, torch.Tensor)
    }
    return {
        **{f"p/{n}": p.detach().clone() for n, p in model.named_parameters()},
        **{f"b/{n}": b.detach().clone() for n, b in model.named_buffers()},
        **state,
        "lrs": [g["lr"] for g in opt.param_groups],
        "cuda_rng": torch.cuda.get_rng_state(),
        "cpu_rng": torch.get_rng_state(),
        "devices": {str(p.device) for p in model.parameters()},
    }


def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    for key in a:
        va, vb = a[key], b[key]
        if isinstance(va, torch.Tensor):
            if va.device != vb.device or not torch.equal(va, vb):
                print(f"  differs: {key}")
                return False
        elif va != vb:
            print(f"  differs: {key}: {va} != {vb}")
            return False
    return True


def peak_above(fn: Any) -> tuple[Any, float]:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    out = fn()
    torch.cuda.synchronize()
    return out, (torch.cuda.max_memory_allocated() - base) / MB


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device")
        return 1
    from torch_lr_finder import LRFinder

    crit = nn.CrossEntropyLoss()
    rows: list[tuple[str, str]] = []
    model, opt = setup()
    weights_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / MB
    rows.append(("weights on the GPU", f"{weights_mb:.0f} MB"))

    before = fingerprint(model, opt)
    result, ours_peak = peak_above(lambda: range_test(model, opt, crit, data(), num_iter=100))
    rows.append(("restored after a sweep", str(same(before, fingerprint(model, opt)))))
    rows.append(("sweep", f"{result.num_iter_run} steps, {result.sweeps[0].stop_reason}"))
    rows.append(("suggestion / bounds", f"{result.suggestion:.3g} / {result.bounds}"))

    def one_training_pass() -> None:
        for x, y in list(data())[:3]:
            opt.zero_grad()
            crit(model(x.cuda()), y.cuda()).backward()
            opt.step()

    _, train_peak = peak_above(one_training_pass)
    model, opt = setup()

    calls = {"n": 0}

    def failing(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] == 37:
            raise RuntimeError("injected")
        return crit(out, target)

    before = fingerprint(model, opt)
    with contextlib.suppress(RuntimeError):
        range_test(model, opt, failing, data())
    rows.append(("restored after an exception", str(same(before, fingerprint(model, opt)))))

    model, opt = setup("adam")
    scaler = torch.amp.GradScaler("cuda")
    before, scaler_before = fingerprint(model, opt), scaler.state_dict()
    amp_result = range_test(model, opt, crit, data(), scaler=scaler)
    restored = same(before, fingerprint(model, opt)) and scaler.state_dict() == scaler_before
    rows.append(("restored after an fp16 AMP sweep (Adam)", str(restored)))
    rows.append(("AMP sweep", f"{amp_result.num_iter_run} steps, {amp_result.suggestion:.3g}"))

    model, opt = setup()

    def tlf() -> None:
        finder = LRFinder(model, opt, crit, device="cuda")
        finder.range_test(data(), end_lr=10, num_iter=100)
        finder.reset()

    _, tlf_peak = peak_above(tlf)
    rows.append(("extra GPU memory, one plain training pass", f"{train_peak:.0f} MB"))
    rows.append(("extra GPU memory, ours (peak)", f"{ours_peak:.0f} MB"))
    rows.append(("extra GPU memory, torch-lr-finder (peak)", f"{tlf_peak:.0f} MB"))

    ours_s, tlf_s, sweep_s = [], [], []
    for _ in range(5):
        model, opt = setup()
        torch.cuda.synchronize()
        t = time.perf_counter()
        timed = range_test(model, opt, crit, data(), num_iter=100)
        torch.cuda.synchronize()
        ours_s.append(time.perf_counter() - t)
        sweep_s.append(timed.sweeps[0].seconds)
        model, opt = setup()
        torch.cuda.synchronize()
        t = time.perf_counter()
        tlf()
        torch.cuda.synchronize()
        tlf_s.append(time.perf_counter() - t)
    ratio = statistics.median(o / t for o, t in zip(ours_s, tlf_s, strict=True))
    rows.append(("wall time ours / torch-lr-finder (median of 5)", f"{ratio:.2f}"))
    rows.append(
        (
            "  ours (of which the sweep), torch-lr-finder",
            f"{statistics.median(ours_s):.3f} s ({statistics.median(sweep_s):.3f} s), "
            f"{statistics.median(tlf_s):.3f} s",
        )
    )

    width = max(len(k) for k, _ in rows)
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    print(f"command: python {' '.join(sys.argv)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
