"""``ubernet export --checkpoint C --onnx FILE``: the dense tasks as one ONNX graph, checked against torch."""

from __future__ import annotations

import argparse

from ubernet.cli.tables import add_weights_arg
from ubernet.errors import UbernetError


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True)
    add_weights_arg(p)
    p.add_argument("--onnx", required=True, help="output .onnx file")
    p.add_argument("--size", type=int, nargs=2, default=(128, 128), metavar=("H", "W"),
                   help="example input size used for tracing (multiples of the trunk's coarsest stride)")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--precision", choices=("auto", "fp32"), default="auto",
                   help="the graph's precision: fp32 (auto = fp32: the graph is traced and checked in fp32)")


def run(args: argparse.Namespace) -> int:
    from ubernet.export import export_onnx
    from ubernet.hardware import Precision, announce, cpu_info
    from ubernet.run import load_model

    announce("export", Precision("fp32", args.precision, "ONNX graphs are traced and checked in fp32", cpu=cpu_info()))
    model, _ = load_model(args.checkpoint, weights=args.weights)
    diffs = export_onnx(model, args.onnx, size=tuple(args.size), opset=args.opset)
    print(f"wrote {args.onnx}")
    if not diffs:
        print("onnxruntime not installed: export not checked (pip install onnxruntime)")
        return 0
    for n, d in diffs.items():
        print(f"  {n}: max |onnxruntime - torch| = {d:.2e}")
    worst = max(diffs.values())
    if not worst <= 1e-4:  # a NaN difference (a non-finite output on either side) fails too
        raise UbernetError(f"ONNX output differs from torch by {worst:.2e} (> 1e-4 or not a number)")
    return 0
