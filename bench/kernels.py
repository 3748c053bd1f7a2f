"""What bounds FaceNet's speed on this CPU: each FaceNet build under each interpreter path, beside the
float32 rate the CPU gives a tuned matrix product.

    .venv/bin/python -m bench.kernels [--repeat 30]

Every FaceNet .tflite in models/ runs on 1 thread and on all cores, three ways: the interpreter's
default (XNNPACK), XNNPACK with its latest features (its dynamically quantised int8 paths), and the
built-in kernels without XNNPACK. Each way prints ms per embedding (p50) and the multiply-accumulates per
second it reaches (MACs from bench.opcount). The yardstick is numpy's BLAS float32 matrix product on the
same threads, which is what this CPU's FMA units give well-tuned code. When FaceNet float32 already runs
near it, only integer dot-product instructions (x86 VNNI, ARM asimddp/i8mm) or a smaller model
can make an embedding much faster. Writes bench/results/kernels.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from bench.common import ROOT, SMOKE_HELP, default_model, machine, measure, smoke_mode, write
from bench.opcount import count_macs
from edge.inference.tflite import resolve_threads

PATHS = ("xnnpack (default)", "xnnpack, latest features", "built-in kernels, no xnnpack")


def interpreter(model: Path, threads: int, path: str):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    options = {"num_threads": threads}
    if path == "xnnpack, latest features":
        options["experimental_default_delegate_latest_features"] = True
    elif path == "built-in kernels, no xnnpack":
        options["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    runner = Interpreter(model_path=str(model), **options)
    runner.allocate_tensors()
    tensor = runner.get_input_details()[0]
    rng = np.random.default_rng(0)  # the time does not depend on what the face looks like
    if np.issubdtype(tensor["dtype"], np.integer):
        info = np.iinfo(tensor["dtype"])
        data = rng.integers(info.min, info.max, tensor["shape"], dtype=tensor["dtype"])
    else:
        data = rng.standard_normal(tensor["shape"]).astype(tensor["dtype"])
    runner.set_tensor(tensor["index"], data)
    return runner


def blas_gmacs(threads: int, repeat: int, size: int = 1024) -> float:
    """float32 multiply-accumulates per second (billions) of numpy's BLAS on threads threads."""
    from threadpoolctl import threadpool_limits

    a = np.random.default_rng(0).standard_normal((size, size)).astype(np.float32)
    with threadpool_limits(limits=threads):
        p50 = measure(lambda: a @ a, repeat)["p50_ms"]
    return size ** 3 / (p50 / 1000) / 1e9


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = parser.parse_args(argv)
    models = sorted((ROOT / "models").glob("facenet-*.tflite"))
    if smoke_mode(args.smoke):
        args.repeat, models = 2, [m for m in models if m == default_model()]
    if not models:
        print("no FaceNet model in models/: run scripts/bootstrap", file=sys.stderr)
        return 2
    host = machine()
    result: dict = {"machine": host, "blas_float32_gmac_per_s": {}, "models": {}}
    print(f"host: {host['cores']} cores {host['machine']}, SIMD {' '.join(host['simd']) or 'unknown'}")
    thread_counts = sorted({1, resolve_threads(0)})
    for threads in thread_counts:
        rate = result["blas_float32_gmac_per_s"][threads] = round(blas_gmacs(threads, args.repeat), 1)
        print(f"numpy BLAS float32 matrix product, {threads} thread(s): {rate:6.1f} GMAC/s")
    for model in models:
        macs = count_macs(model)[0]
        rows = result["models"][model.stem] = {"gmac": round(macs / 1e9, 4)}
        print(f"\n{model.name} ({macs / 1e9:.2f} GMAC)")
        for path in PATHS:
            for threads in thread_counts:
                runner = interpreter(model, threads, path)
                p50 = measure(runner.invoke, args.repeat)["p50_ms"]
                rate = macs / (p50 / 1000) / 1e9
                share = rate / result["blas_float32_gmac_per_s"][threads]
                rows[f"{path}, {threads} thread(s)"] = {"p50_ms": p50, "gmac_per_s": round(rate, 1),
                                                        "of_blas_float32": round(share, 2)}
                print(f"  {path:30} {threads} thread(s) {p50:7.2f} ms  {rate:6.1f} GMAC/s  "
                      f"({share:.0%} of BLAS float32)")
    print(f"\nwrote {write('kernels', result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
