"""ONNX Runtime on the CPU as MIRAGE runs it: the text encoder's query and caption towers, the index's int8 scan."""

from __future__ import annotations

import os

import numpy as np


def cpu_session(model: str | bytes, threads: int | None = None, external: dict[str, np.ndarray] | None = None):
    """An inference session of `model` (a file path or serialised bytes) on `threads` threads (default and
    most: one per core). `external` supplies initializers that the model declares as external data: the
    runtime copies them once, where serialised bytes would cost a second copy and cap the model at 2 GB."""
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
