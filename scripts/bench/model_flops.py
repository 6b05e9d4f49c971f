#!/usr/bin/env python3
"""Multiply-accumulates per window of a Warble bundle's model (or an .onnx file), from its
graph with ONNX shape inference: Conv, ConvTranspose, MatMul and Gemm, which are nearly
all of a CNN's arithmetic (elementwise ops, norms and pooling are left out and said so).
The basis for estimating a station's cost on hardware we cannot run here.

Usage: PYTHONPATH=$(cat ~/.cache/warble/python-path) \
    python3 scripts/bench/model_flops.py models/demo/warble-demo-0.1.0.warble
"""

import io
import math
import sys
import tarfile

import onnx
from onnx import shape_inference


def load(path):
    if path.endswith(".onnx"):
        return onnx.load(path)
    with tarfile.open(path) as bundle:
        member = bundle.extractfile("model.onnx")
        if member is None:
            sys.exit(f"{path}: no model.onnx")
        return onnx.load(io.BytesIO(member.read()))


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    model = shape_inference.infer_shapes(load(sys.argv[1]))
    graph = model.graph
    shapes = {}
    for value in list(graph.value_info) + list(graph.input) + list(graph.output):
        dims = [d.dim_value if d.HasField("dim_value") else 1 for d in value.type.tensor_type.shape.dim]
        shapes[value.name] = dims
    for init in graph.initializer:
        shapes[init.name] = list(init.dims)
    macs, other, unknown = 0, 0, []
    for node in graph.node:
        out = shapes.get(node.output[0])
        if node.op_type in ("Conv", "ConvTranspose"):
            weight = shapes.get(node.input[1])
            if out is None or weight is None:
                unknown.append(node.name)
                continue
            # weight: (C_out, C_in / groups, kH, kW): each output element sums over the rest.
            macs += math.prod(out) * math.prod(weight[1:])
        elif node.op_type in ("MatMul", "Gemm"):
            a = shapes.get(node.input[0])
            if out is None or a is None:
                unknown.append(node.name)
                continue
            transposed = node.op_type == "Gemm" and any(
                attr.name == "transA" and attr.i == 1 for attr in node.attribute)
            k = a[-2] if transposed else a[-1]
            macs += math.prod(out) * k
        else:
            other += 1
    print(f"{sys.argv[1]}: {macs / 1e6:.1f} M multiply-accumulates per window "
          f"({2 * macs / 1e6:.1f} MFLOP; input {shapes.get(graph.input[0].name)}); "
          f"{other} other nodes not counted")
    if unknown:
        print(f"shapes unknown for {len(unknown)} node(s): {', '.join(unknown[:5])}")


if __name__ == "__main__":
    main()
