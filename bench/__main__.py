"""`make bench`: run every benchmark; results land in bench/results/.

python -m bench [--runs N] [--rounds R]
"""

from __future__ import annotations

import argparse

from bench import agent_loop, dispatch, mcp, memory, sandboxes, serving, telemetry

BENCHMARKS = ("agent_loop", "serving", "sandboxes", "mcp", "telemetry", "dispatch", "memory")
parser = argparse.ArgumentParser(prog="python -m bench")
parser.add_argument("--runs", type=int, default=300, help="runs per contender")
parser.add_argument("--rounds", type=int, default=6, help="interleaved rounds")
parser.add_argument("--sandbox-runs", type=int, default=200, help="runs per sandbox measure")
parser.add_argument("--mcp-runs", type=int, default=400, help="calls per MCP measure")
parser.add_argument("--telemetry-runs", type=int, default=600, help="runs per telemetry mode")
parser.add_argument("--dispatch-runs", type=int, default=1000, help="runs per dispatch measure")
parser.add_argument("--burst", type=int, default=1000, help="runs at once in the serving burst")
parser.add_argument("only", nargs="*", help=f"{', '.join(BENCHMARKS)} (default: all)")
args = parser.parse_args()
unknown = set(args.only) - set(BENCHMARKS)
if unknown:
    parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
if not args.only or "agent_loop" in args.only:
    agent_loop.main(args.runs, args.rounds)
if not args.only or "serving" in args.only:
    serving.main(args.burst)
if not args.only or "sandboxes" in args.only:
    sandboxes.main(args.sandbox_runs)
if not args.only or "mcp" in args.only:
    mcp.main(args.mcp_runs)
if not args.only or "telemetry" in args.only:
    telemetry.main(args.telemetry_runs)
if not args.only or "dispatch" in args.only:
    dispatch.main(args.dispatch_runs)
if not args.only or "memory" in args.only:
    memory.main()
