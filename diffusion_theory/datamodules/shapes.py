"""The start-up shape check: a network's ``input_shape`` must equal the shape of one sample of the data.

A data module declares ``sample_shape`` (the shape of one sample, e.g. (N, d) for paper 2's sequences) and,
optionally, ``sample_shape_fields`` (the config fields behind it, e.g. ("N", "d")); a network with a fixed
input declares ``input_shape`` (the DiT). When both are declared and differ, the fit stops before any run
folder, W&B run or training step, with one message naming both fields. Either side may leave its attribute
out (the one-layer transformer of paper 1 takes any number of tokens): nothing is checked then.
"""

from __future__ import annotations

from typing import Any


class SampleShapeError(ValueError):
    """The network's input_shape differs from the data's sample shape."""


def check_sample_shape(datamodule: Any, network: Any) -> None:
    """Raise ``SampleShapeError`` if ``network.input_shape != datamodule.sample_shape`` (both declared)."""
    data_shape, net_shape = getattr(datamodule, "sample_shape", None), getattr(network, "input_shape", None)
    if data_shape is None or net_shape is None or tuple(data_shape) == tuple(net_shape):
        return
    fields = getattr(datamodule, "sample_shape_fields", None)
    if fields and len(fields) == len(data_shape):
        data_side = "[" + ", ".join(f"data.init_args.{f} = {v}" for f, v in zip(fields, data_shape)) + "]"
        hint = (
            f"; leave input_shape to follow the data: input_shape: "
            f'"[{", ".join("${data.init_args." + f + "}" for f in fields)}]"'
        )
    else:
        data_side, hint = f"{list(data_shape)}", ""
    raise SampleShapeError(
        f"model.init_args.network.init_args.input_shape = {list(net_shape)} must equal the shape of one data sample, "
        f"{type(datamodule).__name__}.sample_shape = {data_side}{hint}"
    )
