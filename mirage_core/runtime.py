"""ONNX Runtime on the CPU as MIRAGE runs it: the text encoder's query and caption towers, the index's int8 scan."""

from __future__ import annotations

import os

import numpy as np


def external_initializer(name: str, array: np.ndarray):
    """A graph initializer that only names `array` (as external data); pass the array to `cpu_session` in
    `external`. The runtime then copies it once, where serialised bytes would cost a second copy and cap the
    model at 2 GB."""
    from onnx import TensorProto, helper

    tensor = TensorProto(name=name, data_type=helper.np_dtype_to_tensor_dtype(array.dtype), dims=array.shape,
                         data_location=TensorProto.EXTERNAL)
    for key, value in (("location", name), ("offset", "0"), ("length", str(array.nbytes))):
        tensor.external_data.add(key=key, value=value)
    return tensor


def cpu_session(model: str | bytes, threads: int | None = None, external: dict[str, np.ndarray] | None = None):
    """An inference session of `model` (a file path or serialised bytes) on `threads` threads (default and
    most: one per core), with the arrays of its `external_initializer`s by name in `external`."""
    import onnxruntime

    cores = os.cpu_count() or 1
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = min(threads or cores, cores)
    options.log_severity_level = 3
    # no arena: it would keep the peak of the largest caption batch (index build) for the life of the app
    options.enable_cpu_mem_arena = False
    # idle threads sleep rather than spin: they would take the cores from the next step of the query path
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if external:
        options.add_external_initializers(
            list(external), [onnxruntime.OrtValue.ortvalue_from_numpy(array) for array in external.values()])
    return onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
