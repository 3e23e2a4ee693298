"""`make bench`: run every benchmark; results land in bench/results/.

python -m bench [--runs N] [--rounds R]
"""

from __future__ import annotations

import argparse

from bench import agent_loop

parser = argparse.ArgumentParser(prog="python -m bench")
parser.add_argument("--runs", type=int, default=300, help="runs per contender")
parser.add_argument("--rounds", type=int, default=6, help="interleaved rounds")
args = parser.parse_args()
agent_loop.main(args.runs, args.rounds)
