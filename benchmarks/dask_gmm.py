"""The GMM gradient over many points on a Dask cluster, against NumPy.

    python -m benchmarks.dask_gmm [--n 10000000] [--d 2] [--k 5] [--chunks 8]
                                  [--workers 2] [--scheduler tcp://host:8786]

The points are made on the workers (`dask.array.random`, chunked by rows), the
parameters are small Dask arrays; catad's array API module builds the graph
of `value_and_grad(gmm)` and Dask computes it on a `LocalCluster` (or the
scheduler given). The same gradient is computed by the NumPy backend on the
points gathered into this process, and on a sample of the first rows by both:
the script prints the times and the relative differences (they must be below
1e-10), as one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from benchmarks.problems import MODELS

SOURCE = "fn gmm_grad = value_and_grad(gmm, wrt = (alphas, means, icf));\n"


def relative_difference(a, b) -> float:
    (va, ga), (vb, gb) = a, b
    parts = [abs(float(va) - float(vb)) / max(1.0, abs(float(vb)))]
    parts += [float(np.max(np.abs(np.asarray(x) - y)) / max(1.0, float(np.max(np.abs(y)))))
              for x, y in zip(ga, gb)]
    return max(parts)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000_000)
    parser.add_argument("--d", type=int, default=2)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--chunks", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sample", type=int, default=100_000)
    parser.add_argument("--scheduler", default=None, help="a scheduler address (default: a LocalCluster)")
    args = parser.parse_args(argv)

    import dask
    import dask.array as da
    from dask.distributed import Client, LocalCluster

    import catad

    text = (MODELS.parent.parent / "examples" / "gmm.catad").read_text() + SOURCE
    portable = catad.compile(text, "gmm.catad", backend="array-api")
    numpy_module = catad.compile(text, "gmm.catad")
    n, d, k = args.n, args.d, args.k
    rng = np.random.default_rng(0)
    params = (rng.standard_normal(k), rng.standard_normal((k, d)),
              0.3 * rng.standard_normal((k, d + d * (d - 1) // 2)))
    result: dict = {"n": n, "d": d, "k": k, "chunks": args.chunks, "workers": args.workers}
    cluster = None if args.scheduler else LocalCluster(n_workers=args.workers, threads_per_worker=1,
                                                       dashboard_address=None)
    with Client(args.scheduler or cluster):
        points = da.random.default_rng(1).standard_normal((n, d), chunks=(-(-n // args.chunks), d))
        points = points.persist()  # made on the workers, once
        lazy_params = tuple(da.asarray(p) for p in params)
        scalars = (da.asarray(1.5), da.asarray(2))

        start = time.perf_counter()
        (distributed,) = dask.compute(portable.gmm_grad(*lazy_params, points, *scalars))
        result["dask_s"] = time.perf_counter() - start
        start = time.perf_counter()
        dask.compute(portable.gmm(*lazy_params, points, *scalars))
        result["dask_objective_s"] = time.perf_counter() - start

        sample = points[:args.sample]
        (on_sample,) = dask.compute(portable.gmm_grad(*lazy_params, sample, *scalars))
        gathered = points.compute()
    if cluster is not None:
        cluster.close()
    result["sample_difference"] = relative_difference(
        on_sample, numpy_module.gmm_grad(*params, gathered[:args.sample], 1.5, 2))
    start = time.perf_counter()
    local = numpy_module.gmm_grad(*params, gathered, 1.5, 2)
    result["numpy_s"] = time.perf_counter() - start
    result["full_difference"] = relative_difference(distributed, local)
    result["agree"] = bool(max(result["sample_difference"], result["full_difference"]) < 1e-10)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
