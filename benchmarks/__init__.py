"""catad's benchmark harness: `python -m benchmarks --help`. Problems in
benchmarks/models/*.catad, peers in benchmarks/tools/, report in docs/benchmarks.md."""
