"""The ONNX Runtime session options each lane's session is built with."""

from __future__ import annotations

import onnxruntime as ort

from workers.embedding.onnx_encoder import session_options


def test_pool_spins_within_a_pass_and_stops_after_it() -> None:
    options = session_options(2)
    assert options.intra_op_num_threads == 2
    assert options.inter_op_num_threads == 1
    assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    assert options.get_session_config_entry("session.force_spinning_stop") == "1"


def test_threads_unset_keeps_the_runtime_default() -> None:
    assert session_options(None).intra_op_num_threads == 0  # 0: one per physical core
