"""The LR range test: sweep the learning rate up over one short run, read the loss, restore.

:func:`range_test` trains ``num_iter`` optimizer steps, one per rung of a ladder of learning
rates from ``start_lr`` to ``end_lr``, records the loss of every step, and stops early once
the loss diverges. Then it puts back everything the sweep touched and reads the curve:

- the part before the blow-up is smoothed with a running median and a centred moving
  average (zero lag): a causal moving average, as other range tests use, drags the curve to
  the right, towards larger LRs, and a window across the blow-up fills the valley before it;
- slopes are taken against log10(LR), the axis the ladder is uniform on;
- ``bounds.low`` is where the loss has started to fall, ``bounds.high`` a little before it
  climbs back past its minimum;
- ``suggestion`` is one learning rate for a constant-LR run, of ``total_steps`` steps when
  that is given (see :func:`read_curve` and :class:`~lrsearch.range_test.curve.Rule`).

What it restores, in a ``finally`` (so also after an exception mid-sweep): every parameter and
buffer of the model (BatchNorm statistics included, non-persistent buffers too), their
gradients, every module's train/eval mode, the optimizer's state and hyperparameters, the
torch, CUDA, NumPy and Python RNG states, the loader's own generator, and an AMP ``GradScaler``.
The copy lives in CPU memory: no temporary files, and no second copy of the weights on the GPU.

Modules: ``sweep`` (:func:`range_test`, its training loop, divergence watch and refinement),
``curve`` (:func:`read_curve`: smoothing, bounds, suggestion), ``snapshot`` (what is restored),
``result`` (the records). Import the public names from here.
"""

from __future__ import annotations

from lrsearch.range_test.curve import read_curve
from lrsearch.range_test.result import Doubt, RangeTestResult, Refinement, Sweep
from lrsearch.range_test.sweep import range_test

__all__ = ["Doubt", "RangeTestResult", "Refinement", "Sweep", "range_test", "read_curve"]
