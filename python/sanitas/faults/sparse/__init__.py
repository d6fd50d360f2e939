"""Concurrent (event-driven) fault propagation: each faulty row carries only where it differs from the good run.

This is the idea of concurrent fault simulation in logic test (Ulrich & Baker, 1974) applied to an INT8 CNN:
the fault-free activations of every node are known (``FastGolden.run``), so a faulty experiment (fault f on
input i, a *row*) is fully described by the list of elements whose value differs from the fault-free one.
Measured on INT8 ResNet-20 (digits), a single activation bit flip leaves 2-16 % of the elements of each
downstream tensor different (``benchmarks/bench_campaign.py --ablation`` prints the work done), so a
convolution only needs ``nnz(delta_in) x O x taps`` multiply-adds instead of a dense ``C x O x taps x H x W``:

* conv / linear: ``acc_faulty = wrap32(acc_clean + W * (x_faulty - x_clean))`` over the changed inputs only,
  scattered into the output positions they reach (channel-last order, so each tap adds a contiguous O-vector);
* act (requantisation), add, concat, max-pool, global sum, flatten: evaluated on the touched elements only;
* every kernel emits only elements whose faulty value differs from the fault-free one, so a row whose lists
  all become empty is proven masked and costs nothing further (early stop falls out of the representation).

Fusions (the graph pass ``sanitas.models.passes.fuse``, read by ``SparseNet``): a conv, add or linear whose only
consumer is a requantisation is evaluated with it (its accumulators are never listed), and a residual block's
``conv -> requantise -> add -> requantise`` is one conv kernel whose epilogue adds the other operand.

Arithmetic is exact with the golden model's semantics: integers in float32 where a per-layer bound proves every
partial sum below 2**24 (float64, exact below 2**53, otherwise; int64 in the element-wise kernels), accumulators
wrap to 32 bits where the bound says they can, requantisation is a shift with round half to even then
saturation (``golden.rounding``; ``rint(v * 2**-s)`` in floating point), max-pool pads with -inf.

A sparse tensor of R rows is ``(ptr, idx, val)``: CSR row pointers (R+1,), flat element indices and *faulty
values* (not deltas). Flat indices of 4-D tensors are channel-last, ``(h * W + w) * C + c``; 2-D tensors
(linear, gsum, flatten outputs) use their own index. Kernels are compiled by numba on first use (cached on
disk); ``available()`` is False when numba cannot be imported, and the engine then uses its dense torch path.

Modules: ``_jit`` (numba plumbing, list kernels), ``conv`` (the conv kernel and its tables), ``kernels`` (linear,
act, add, max-pool, global sum), ``net`` (``SparseNet``: per-node parameters, one kernel per graph op in the
``sparse`` kernel table), ``propagate`` (one chunk of faults from their faulted nodes to the logits).
"""
from ._jit import NO_REQUANT, Requant, available, k_blocks, k_cap, k_from_dense, k_merge, use_threads
from .conv import ConvFixed, ConvKernel, ConvTables, Epilogue, conv_tables, k_conv, k_conv_par
from .kernels import PoolTables, k_act, k_add, k_gsum, k_linear, k_maxpool, pool_tables
from .net import SPARSE, Call, ConvParams, LinearParams, PoolParams, SparseNet, chw_to_hwc_index, hwc

__all__ = ["available", "use_threads", "SparseNet", "SPARSE", "Call", "ConvParams", "LinearParams", "PoolParams",
           "ConvTables", "ConvKernel", "ConvFixed", "Epilogue", "PoolTables", "Requant", "NO_REQUANT", "hwc",
           "chw_to_hwc_index", "conv_tables", "pool_tables", "k_from_dense", "k_cap", "k_blocks", "k_merge",
           "k_conv", "k_conv_par", "k_linear", "k_act", "k_add", "k_maxpool", "k_gsum"]
