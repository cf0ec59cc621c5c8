"""Benchmark deploy-kit on this machine (Jetson, RTX, data-centre GPU or CPU): `deploy-kit benchmark`.

    python benchmarks/bench.py --model build/ [--images dir/] [--batch 1,4,8] [--backend ...]
        [--iterations N] [--warmup N] [--streams 2] [--out benchmarks/results/]
"""

import sys

from deploy_kit.cli import main

if __name__ == "__main__":
    sys.exit(main(["benchmark", *sys.argv[1:]]))
