"""Read ONNX initialisers as torch tensors (weights only: the graph is never executed).

The offline critics are PyTorch modules written from the structure of their ONNX graphs; their weights
are read once, at load time, from the graph initialisers by name. Int8 block-quantised weights
(``DequantizeLinear`` with ``block_size``) are folded back to float32 here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pada.errors import PadaError


class OnnxWeights:
    """Initialisers of one ONNX file, by name, plus the attributes of its ``DequantizeLinear`` nodes."""

    def __init__(self, path: str | Path):
        import onnx
        from onnx import numpy_helper

        self.path = Path(path)
        try:
            model = onnx.load(str(self.path))
        except Exception as exc:  # noqa: BLE001 - any parse failure is a bad weight file
            raise PadaError(f"{self.path}: not a readable ONNX file ({type(exc).__name__}: {exc})") from None
        self.arrays: dict[str, np.ndarray] = {
            init.name: numpy_helper.to_array(init) for init in model.graph.initializer
        }
        self.dequant: dict[str, dict[str, int]] = {}
        for node in model.graph.node:
            if node.op_type == "DequantizeLinear":
                attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
                self.dequant[node.input[0]] = {
                    "axis": int(attrs.get("axis", 1)),
                    "block_size": int(attrs.get("block_size", 0)),
                }

    def array(self, name: str) -> np.ndarray:
        if name not in self.arrays:
            raise PadaError(f"{self.path}: initialiser {name!r} missing; not the expected model file")
        return self.arrays[name]

    def tensor(self, name: str, shape: tuple[int, ...] | None = None) -> torch.Tensor:
        """Float32 tensor of initialiser ``name`` (reshaped to ``shape`` when given)."""
        t = torch.from_numpy(np.ascontiguousarray(self.array(name)).astype(np.float32))
        if shape is not None:
            if t.numel() != int(np.prod(shape)):
                raise PadaError(f"{self.path}: {name!r} has {t.numel()} values, expected shape {shape}")
            t = t.reshape(shape)
        return t

    def dequantized(self, base: str, shape: tuple[int, ...] | None = None) -> torch.Tensor:
        """Fold ``<base>_quantized``/``_scales``/``_zero_point`` (block-wise int8) to a float32 tensor.

        ``DequantizeLinear`` with ``block_size`` b along ``axis``: ``y = (q - zp[blk]) * scale[blk]``,
        where element ``k`` along the axis belongs to block ``k // b`` (scales have the same shape as
        ``q`` except ``ceil(n / b)`` along the axis). Without ``block_size`` the scale is per-axis.
        """
        qname = base + "_quantized"
        q = self.array(qname).astype(np.float64)
        scale = self.array(base + "_scales").astype(np.float64)
        zp = self.array(base + "_zero_point").astype(np.float64)
        info = self.dequant.get(qname, {"axis": 1, "block_size": 0})
        axis, block = info["axis"] % q.ndim, info["block_size"]
        if block > 0:
            scale = np.repeat(scale, block, axis=axis).take(range(q.shape[axis]), axis=axis)
            zp = np.repeat(zp, block, axis=axis).take(range(q.shape[axis]), axis=axis)
        elif scale.ndim == 1 and scale.size > 1:
            bshape = [1] * q.ndim
            bshape[axis] = -1
            scale, zp = scale.reshape(bshape), zp.reshape(bshape)
        t = torch.from_numpy(((q - zp) * scale).astype(np.float32))
        if shape is not None:
            t = t.reshape(shape)
        return t
