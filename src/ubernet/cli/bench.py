"""``ubernet bench <benchmark>``: speed (issue #3) and training memory (issue #5) benchmarks.

Each benchmark is a sub-subcommand: an ``add_<name>_parser`` and a ``run_<name>`` function below, registered in
:data:`BENCHMARKS` at the end of the file (adding one, e.g. ``synth``, is two functions and one line). The
measuring code lives in ``ubernet.bench`` (usable from Python as well); nothing here imports torch before a
benchmark actually runs, so ``ubernet --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ubernet.cli.runtime import add_precision_option, start
from ubernet.errors import ConfigError

#: the memory benchmark's backward modes (ubernet.bench.memory.MODES; repeated to keep torch out of --help)
MEMORY_MODES = "summed,bounded,bounded_nockpt"
#: the paper's test image with --config: short side 621 (its test setting), width 931 = 621 · 3/2 (PASCAL-like)
PAPER_SIZE = "621x931"


def _say(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def _trunk_options(items: list[str]) -> dict[str, Any]:
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--trunk-option expects KEY=VALUE (e.g. output_stride=16), got {item!r}")
        out[key] = yaml.safe_load(value)
    return out


def _add_model_options(p: argparse.ArgumentParser, *, trunk: str, size: int, rect: bool = False) -> None:
    p.add_argument("--json", type=Path, metavar="FILE", help="write the full result as JSON here")
    p.add_argument("--trunk", default=None if rect else trunk,
                   help=f"trunk name (default {trunk}; vgg16, resnet50, mobilenet_v2)")
    p.add_argument("--trunk-option", action="append", default=[], metavar="KEY=VALUE",
                   help="trunk builder option, repeatable (e.g. output_stride=16)")
    if rect:
        p.add_argument("--size", default=None, metavar="S|HxW",
                       help=f"image size, square S or height x width (default {size}; with --config "
                            f"{PAPER_SIZE}: short side 621, the paper's test setting, at PASCAL's 3:2 aspect)")
    else:
        p.add_argument("--size", type=int, default=size, help=f"square image side S (default {size})")
    p.add_argument("--scales", default=None if rect else "1,0.5,0.25",
                   help="image pyramid scales (default 1,0.5,0.25, the paper's)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    add_precision_option(p, default_help="the config's train.precision with --config, else auto" if rect else "auto")
    if rect:
        p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                       help="channels-last model and input (default: the config's train.channels_last, else "
                            "on when the precision is bf16)")


def _spec(args: argparse.Namespace, tasks: dict[str, dict[str, Any]]) -> Any:
    from ubernet.bench.common import ModelSpec, parse_scales

    return ModelSpec(trunk=args.trunk, trunk_options=_trunk_options(args.trunk_option), tasks=tasks,
                     scales=parse_scales(args.scales))


def _write_json(path: Path | None, result: dict[str, Any]) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")
        _say(f"wrote {path}")


# --- speed ----------------------------------------------------------------------------------------------------
def add_speed_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, metavar="FILE",
                   help="take the network (trunk, pyramid, tasks incl. detection) and the precision (train.precision, "
                        "train.channels_last) from a training config, e.g. configs/paper-vgg16.yaml; then also "
                        "time predict() per frame, count the trunk's FLOPs and compare with a matrix product")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides (with --config)")
    _add_model_options(p, trunk="vgg16", size=321, rect=True)
    p.add_argument("--repeats", type=int, default=5, help="timed rounds; medians over these (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    p.add_argument("--single", action=argparse.BooleanOptionalAction, default=None,
                   help="also time one whole network per task (default: on, off with --config)")
    p.add_argument("--flops", action=argparse.BooleanOptionalAction, default=None,
                   help="count the trunk's conv FLOPs and time a matrix product (default: on with --config)")
    p.add_argument("--matmul-size", type=int, default=4096, help="side n of the n×n matrix product (4096)")
    p.add_argument("--profile", action="store_true",
                   help="also profile: the heads (top operators), and with --config one whole predict() call "
                        "(CPU time per phase, operator kind and operator) and the trunk's convolutions one by one")


def speed_config(args: argparse.Namespace) -> Any:
    """The :class:`~ubernet.bench.speed.SpeedConfig` of ``ubernet bench speed`` arguments (config, then flags)."""
    from ubernet.bench.common import DENSE_TASKS, ModelSpec, parse_scales, parse_size, spec_from_config
    from ubernet.bench.speed import SpeedConfig

    if args.config is not None:
        from ubernet.config import load_config

        cfg = load_config(args.config, args.overrides)
        spec = spec_from_config(cfg)
        requested, channels_last = cfg.train.precision, cfg.train.channels_last
        size = PAPER_SIZE
    else:
        if args.overrides:
            raise ConfigError(f"key=value overrides need --config; got {' '.join(args.overrides)}")
        spec = ModelSpec(tasks=dict(DENSE_TASKS))
        requested, channels_last, size = "auto", None, "321"
    if args.trunk is not None:
        spec.trunk = args.trunk
    if args.trunk_option:
        spec.trunk_options = {**spec.trunk_options, **_trunk_options(args.trunk_option)}
    if args.scales is not None:
        spec.scales = parse_scales(args.scales)
    precision = start("bench speed", args.precision or requested)
    channels_last = channels_last if args.channels_last is None else args.channels_last
    paper = args.config is not None
    return SpeedConfig(model=spec, size=parse_size(args.size or size), repeats=args.repeats, warmup=args.warmup,
                       bf16=precision.bf16, channels_last=channels_last, threads=args.threads,
                       single=not paper if args.single is None else args.single, predict=paper,
                       flops=paper if args.flops is None else args.flops, matmul_size=args.matmul_size,
                       runtime=precision.record())


def run_speed(args: argparse.Namespace) -> int:
    from ubernet.bench.profile import conv_layer_table, profile_heads, profile_predict
    from ubernet.bench.speed import run_speed as measure

    cfg = speed_config(args)
    result = measure(cfg, progress=_say)
    if cfg.runtime is not None and "cpu" in cfg.runtime:
        cfg.runtime["cpu"]["threads"] = result.get("threads", cfg.runtime["cpu"]["threads"])  # --threads applied
    result["runtime"] = cfg.runtime
    if args.config is not None:
        result["config"] = str(args.config)
        result["overrides"] = list(args.overrides)
    if args.profile:
        _say("profiling the heads")
        result["head_profile"] = profile_heads(cfg)
        if cfg.predict:
            _say("profiling one predict() call")
            result["predict_profile"] = profile_predict(cfg)
        if cfg.flops:
            _say("timing the trunk's convolutions one by one")
            result["conv_layers"] = conv_layer_table(cfg)
    _write_json(args.json, result)
    _print_speed(result)
    return 0


def _print_speed(result: dict[str, Any]) -> None:
    h, w = result["size"]
    print(f"{result['trunk']} {result['trunk_options']} {h}x{w} (padded {result['padded_size'][0]}x"
          f"{result['padded_size'][1]}) scales {result['scales']} precision={'bf16' if result['bf16'] else 'fp32'} "
          f"channels_last={result['channels_last']} threads={result['threads']}")
    print("  medians            wall s    CPU s")
    print(f"  trunk only        {result['seconds_trunk']:7.3f}  {result['cpu_seconds_trunk']:7.3f}")
    print(f"  all {len(result['tasks'])} tasks       {result['seconds_all_tasks']:7.3f}  "
          f"{result['cpu_seconds_all_tasks']:7.3f}   all/trunk {result['ratio_all_tasks_to_trunk']:.2f} "
          f"(CPU {result['ratio_all_tasks_to_trunk_cpu']:.2f}), target <= 1.3")
    if "seconds_predict" in result:
        print(f"  predict() / frame {result['seconds_predict']:7.3f}  {result['cpu_seconds_predict']:7.3f}   "
              f"predict/trunk {result['ratio_predict_to_trunk']:.2f} (CPU {result['ratio_predict_to_trunk_cpu']:.2f})"
              f", target <= 0.35 s/frame; detections per frame {result.get('detections_per_frame')}")
    if "seconds_single_task_sum" in result:
        print(f"  single-task sum   {result['seconds_single_task_sum']:7.3f}  "
              f"{result['cpu_seconds_single_task_sum']:7.3f}   single/multi {result['ratio_single_to_multi']:.2f} "
              f"(CPU {result['ratio_single_to_multi_cpu']:.2f}), target >= 5")
    for name, sec in result["seconds_heads"].items():
        print(f"    head {name:<20} {sec:7.3f}  {result['cpu_seconds_heads'][name]:7.3f}")
    if "trunk_conv_gflops" in result:
        print(f"  trunk conv {result['trunk_conv_gflops']:.1f} GFLOP/frame "
              f"(by scale {', '.join(f'{g:.1f}' for g in result['trunk_conv_gflops_by_scale'])}): "
              f"{result['trunk_conv_tflops_cpu']:.3f} TFLOP/s per CPU s vs {result['matmul_size']}² matmul "
              f"{result['matmul_tflops_cpu']:.3f}: ratio {result['ratio_conv_to_matmul_throughput_cpu']:.2f} "
              f"(wall {result['ratio_conv_to_matmul_throughput']:.2f}), target >= 0.6")
    for row in result.get("head_profile", []):
        print(f"    {row['op']:<40} {row['self_seconds']:.3f} s  {100 * row['share']:.0f}%  ({row['calls']} calls)")
    prof = result.get("predict_profile")
    if prof:
        print(f"  predict() profile, CPU s per phase (total {prof['total_cpu_seconds']:.3f}):")
        for row in prof["by_phase"]:
            print(f"    {row['name']:<48} {row['cpu_seconds']:7.3f}  {100 * row['share']:4.1f}%")
        print("  by operator kind:")
        for row in prof["by_category"]:
            print(f"    {row['name']:<48} {row['cpu_seconds']:7.3f}  {100 * row['share']:4.1f}%")
        print("  top operators:")
        for row in prof["top_ops"][:15]:
            print(f"    {row['phase'][:34]:<34} {row['op']:<24} {row['cpu_seconds']:7.3f}  "
                  f"{100 * row['share']:4.1f}%  ({row['calls']} calls)")


# --- memory ---------------------------------------------------------------------------------------------------
def add_memory_parser(p: argparse.ArgumentParser) -> None:
    _add_model_options(p, trunk="mobilenet_v2", size=321)
    p.add_argument("--tasks", default="1,2,4,7,14", help="numbers of tasks T to sweep (default 1,2,4,7,14)")
    p.add_argument("--modes", default=MEMORY_MODES, help=f"backward modes (default {MEMORY_MODES})")
    p.add_argument("--steps", type=int, default=3, help="timed training steps per configuration (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first (default 1)")
    p.add_argument("--batch", type=int, default=1, help="images per step (default 1, as the paper)")
    p.add_argument("--no-detection", action="store_true",
                   help="use copies of dense tasks instead of the detection task for T >= 7")
    p.add_argument("--only", metavar="TASK", default=None,
                   help="homogeneous tasks: TASK and T-1 copies of it (isolates the effect of T from the mix of "
                        "head sizes)")
    p.add_argument("--plot", type=Path, metavar="PNG", help="memory vs T plot (default: next to --json)")
    p.add_argument("--no-sweep", action="store_true", help="skip the sweep over T (e.g. only --cap-mib)")
    p.add_argument("--no-lazy", action="store_true", help="skip the lazy-evaluation timing")
    p.add_argument("--no-step-times", action="store_true",
                   help="skip timing the modes alternating in one process (7 tasks)")
    p.add_argument("--cap-mib", type=float, default=None,
                   help="also search the largest square image whose 7-task step fits this much memory growth")
    p.add_argument("--cap-range", default="128,2048", help="cap search range of S, LO,HI (default 128,2048)")
    p.add_argument("--cap-granularity", type=int, default=16, help="cap search precision in pixels (default 16)")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds allowed per child process")


def run_memory(args: argparse.Namespace) -> int:
    from ubernet.bench.common import DENSE_TASKS, paper_tasks, parse_ints
    from ubernet.bench.memory import MemoryConfig
    from ubernet.bench.memory import run_memory as measure
    from ubernet.bench.plot import plot_memory

    lo, hi = parse_ints(args.cap_range, "--cap-range")[:2]
    tasks = paper_tasks(detection=not args.no_detection)
    if args.only is not None:
        if args.only not in DENSE_TASKS:
            raise ConfigError(f"--only takes a dense task ({', '.join(DENSE_TASKS)}), got {args.only!r}")
        tasks = {args.only: tasks[args.only]}
    precision = start("bench memory", args.precision)
    cfg = MemoryConfig(model=_spec(args, tasks), size=args.size,
                       tasks=parse_ints(args.tasks, "--tasks"), modes=[m for m in args.modes.split(",") if m],
                       steps=args.steps, warmup=args.warmup, batch=args.batch, threads=args.threads,
                       bf16=precision.bf16, timeout=args.timeout)
    result = measure(cfg, sweep=not args.no_sweep, cap_mib=args.cap_mib, lazy=not args.no_lazy,
                     step_times=not args.no_step_times, progress=_say, lo=lo, hi=hi,
                     granularity=args.cap_granularity)
    plot = args.plot or (args.json.with_suffix(".png") if args.json else None)
    if plot is not None and result["results"]:
        plot_memory(result, plot)
        result["plot"] = str(plot)
        _say(f"wrote {plot}")
    result["runtime"] = precision.record()
    _write_json(args.json, result)
    _print_memory(result)
    return 0


def _print_memory(result: dict[str, Any]) -> None:
    print(f"{result['trunk']} {result['size']}x{result['size']} scales {result['scales']}")
    for r in result["results"]:
        if r["ok"]:
            print(f"  T={r['tasks']:>2} {r['mode']:<15} peak {r['peak_mib']:8.0f} MiB  step {r['step_seconds']:.2f} s"
                  f" (CPU {r.get('step_cpu_seconds') or float('nan'):.2f} s)")
        else:
            print(f"  T={r['tasks']:>2} {r['mode']:<15} failed: {r.get('error')}")
    for k, v in result.get("ratios", {}).items():
        if v is not None:
            print(f"  {k:<40} {v:.3f}")
    cap = result.get("cap")
    if cap:
        print(f"  cap {cap['cap_mib']:.0f} MiB, {cap['tasks']} tasks: largest S summed {cap['summed']['size']}, "
              f"bounded {cap['bounded']['size']}, pixel ratio {cap['pixel_ratio']}")
    alt = result.get("step_times_alternating")
    if alt and alt.get("ok"):
        secs = ", ".join(f"{m} {v:.2f} s" for m, v in alt["step_seconds"].items())
        ratios = ", ".join(f"{m} {v:.2f}" for m, v in alt.get("ratios_to_summed", {}).items())
        cpu = ", ".join(f"{m} {v:.2f}" for m, v in alt.get("cpu_ratios_to_summed", {}).items())
        print(f"  step times, {alt['tasks']} tasks, alternating in one process: {secs}; / summed: {ratios} "
              f"(CPU time: {cpu})")
    lazy = result.get("lazy")
    if lazy and lazy.get("ok"):
        print(f"  lazy: labelled for {lazy['labelled_tasks']} {lazy['step_seconds_labelled_one']:.2f} s vs all "
              f"{lazy['tasks']} {lazy['step_seconds_labelled_all']:.2f} s: ratio {lazy['time_ratio']:.2f} "
              f"(CPU time ratio {lazy['cpu_time_ratio']:.2f})")


# --- command ----------------------------------------------------------------------------------------------------
#: benchmark -> (one-line help, parser builder, runner)
BENCHMARKS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {
    "speed": ("inference time: trunk only, all tasks, one network per task",
              add_speed_parser, run_speed),
    "memory": ("training peak memory and step time vs number of tasks, summed vs bounded backward",
               add_memory_parser, run_memory),
}


def add_parser(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="benchmark", metavar="BENCHMARK")
    for name, (help_, add, _) in BENCHMARKS.items():
        add(sub.add_parser(name, help=help_, description=help_))


def run(args: argparse.Namespace) -> int:
    if getattr(args, "benchmark", None) is None:
        raise ConfigError(f"name a benchmark: ubernet bench {{{','.join(BENCHMARKS)}}} ...")
    return BENCHMARKS[args.benchmark][2](args)
