"""Device figures: flash is the file, the planner reproduces TFLite Micro's arena plan to the
byte, TFLM's own arena adds its bookkeeping on top, full-integer models need a quarter of
the RAM, models TFLM cannot run fall back to the planner with a reason, and latency grows
with the work.

Every model is tiny and untrained (shapes are all that matter to memory; weights only to
the int8 calibration, which random data serves). The hand-computed plans below use TFLM's
steps: step 0 is the start of the invocation and operator i runs at step i + 1; a buffer
lives from the step that creates it to the step of its last reader (the last step for a
graph output); sizes are rounded up to 16 bytes.
"""

from __future__ import annotations

import math
import os
import sys

import numpy as np
import pytest

from objectives import device, tflite

ATTRS = {"flash_bytes", "ram_bytes", "ram_method", "planner_ram_bytes", "latency_ms",
         "latency_runs", "ram_note"}


def _convert(build, **kwargs) -> bytes:
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    return tflite.convert(build(tf.keras.layers, tf.keras.Input), **kwargs)


def _sequential(*layers):
    import tensorflow as tf

    return tf.keras.Sequential(list(layers))


def _conv_model(L, Input, *, batch_size=1, side=8, channels=1, filters=4):
    """Input(side, side, channels) → Conv2D(filters, 3, same) → Flatten → Dense(10)."""
    return _sequential(
        Input((side, side, channels), batch_size=batch_size),
        L.Conv2D(filters, 3, padding="same"),
        L.Flatten(),
        L.Dense(10),
    )


@pytest.fixture(scope="module")
def representative_x():
    return np.random.default_rng(0).standard_normal((32, 8, 8, 1)).astype(np.float32)


@pytest.fixture(scope="module")
def conv_float32() -> bytes:
    return _convert(_conv_model, quantization="float32")


@pytest.fixture(scope="module")
def conv_modes(representative_x) -> dict[str, bytes]:
    """The conv model in every TFLite mode; `int8_io` is int8 with int8 input and output."""
    flatbuffers = {
        mode: _convert(_conv_model, quantization=mode, representative_x=representative_x)
        for mode in tflite.TFLITE_MODES
    }
    flatbuffers["int8_io"] = _convert(
        _conv_model, quantization="int8", representative_x=representative_x, int8_io=True
    )
    return flatbuffers


# -- the planner, by hand ------------------------------------------------------------------


def test_plan_of_the_conv_model_is_the_hand_computed_2048_bytes(conv_float32):
    # Activations (float32, batch 1) and lifetimes; ops: 1 CONV_2D, 2 RESHAPE, 3 FULLY_CONN.
    #   input   1×8×8×1 × 4 =   256 B   steps 0–1  (graph input, read by op 1)
    #   conv    1×8×8×4 × 4 = 1,024 B   steps 1–2
    #   flatten 1×256   × 4 = 1,024 B   steps 2–3
    #   logits  1×10    × 4 =    40 B → 48 aligned, steps 3–3 (graph output)
    # Greedy, largest first, equal sizes in reverse tensor order:
    #   flatten at 0; conv overlaps it (step 2) → 1,024; input overlaps conv only (step 1)
    #   and fits below it → 0; logits overlap flatten only (step 3) → 1,024.
    # High water: 1,024 + 1,024 = 2,048 B, against 2,352 B for all four buffers apart.
    assert device.plan_arena(conv_float32) == 2048
    assert device.plan_arena(conv_float32, alignment=1) == 2048


def test_plan_reuses_a_dead_buffer_in_a_chain():
    # Input(16) → Dense(256) → Dense(32) → Dense(256), float32, batch 1:
    #   input 64 B steps 0–1; A 1,024 B steps 1–2; B 128 B steps 2–3; C 1,024 B steps 3–3.
    # A is dead when C is written, so C takes A's offset 0; B lives with both → 1,024;
    # the input lives with A only → 1,024 too. Peak 1,024 + 128 = 1,152 B, against
    # 64 + 1,024 + 128 + 1,024 = 2,240 B without reuse.
    def chain(L, Input):
        return _sequential(Input((16,), batch_size=1), L.Dense(256), L.Dense(32), L.Dense(256))

    flatbuffer = _convert(chain, quantization="float32")
    assert device.plan_arena(flatbuffer) == 1152
    assert device.plan_arena(flatbuffer) < 64 + 1024 + 128 + 1024


def test_plan_counts_a_dynamic_batch_as_one(conv_float32):
    dynamic = _convert(lambda L, Input: _conv_model(L, Input, batch_size=None),
                       quantization="float32")
    assert device.plan_arena(dynamic) == device.plan_arena(conv_float32) == 2048


def test_float16_weights_dequantized_at_run_time_count_as_activations(conv_modes):
    # The float16 model's DEQUANTIZE ops write the float32 weights into non-constant tensors
    # before the first conv; the dense kernel's (10×256×4 = 10,240 B) lives until the last op.
    assert device.plan_arena(conv_modes["float16"]) >= 2048 + 10 * 256 * 4


# -- TFLite Micro ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["float32", "int8", "int8_io"])
def test_planner_equals_the_head_of_tflite_micros_own_arena(conv_modes, mode):
    # TFLM's kernels for these models ask for no scratch buffers, so its head holds exactly
    # the planned activations. int8 with float I/O (576 B) only matches because equal sizes
    # are placed in reverse tensor order, as TFLM does; tensor order would give 512 B.
    flatbuffer = conv_modes[mode]
    arena, note = device._tflm_arena(flatbuffer, arena_size=1 << 20)
    assert note == ""
    assert arena.head == device.plan_arena(flatbuffer)
    assert arena.total == arena.head + arena.tail


def test_ram_is_tflite_micros_arena_with_its_bookkeeping(conv_float32):
    figures = device.measure(conv_float32, runs=3)
    assert figures.ram_method == "tflite-micro"
    assert figures.ram_note == ""
    assert figures.planner_ram_bytes == 2048
    # The tail — TFLM's bookkeeping — was 1,328 B with tflite-micro 0.dev20261023182759:
    # 8 TfLiteEvalTensors (192 B), 3 node-and-registration structs (192 B), 2 persistent
    # TfLiteTensors for input and output (128 B), kernels' op data (232 B) and the
    # allocator's own records. It grows with tensors and ops, not activations: allow 2 KiB.
    assert 2048 < figures.ram_bytes <= 2048 + 2048


@pytest.mark.parametrize(("mode", "reason"), [("float16", "DEQUANTIZE"),
                                              ("dynamic", "FULLY_CONNECTED")])
def test_models_tflite_micro_cannot_run_fall_back_to_the_planner(conv_modes, mode, reason):
    figures = device.measure(conv_modes[mode], runs=1)
    assert figures.ram_method == "greedy-planner"
    assert figures.ram_bytes == figures.planner_ram_bytes == device.plan_arena(conv_modes[mode])
    assert "tflite-micro could not run the model" in figures.ram_note
    assert reason in figures.ram_note


@pytest.mark.parametrize("mode", ["float16", "dynamic"])
def test_a_file_tflite_micro_cannot_run_gets_its_arena_estimated_on_the_float32_file(
        conv_modes, conv_float32, mode):
    """One meaning for `ram_bytes` in every mode: the arena TFLM needs. For a file it does
    not run, its planned tensors plus TFLM's overhead measured on the float32 file."""
    reference = device.measure(conv_float32, runs=1)
    figures = device.measure(conv_modes[mode], runs=1, float32_file=conv_float32)
    overhead = reference.ram_bytes - reference.planner_ram_bytes
    assert overhead > 0  # TFLM's bookkeeping is real
    assert figures.ram_method == device.ESTIMATED
    assert figures.ram_bytes == figures.planner_ram_bytes + overhead
    assert "estimated" in figures.ram_note
    # float16 says why its RAM is larger: the weights are dequantized into the arena
    assert (device.FLOAT16_NOTE in figures.ram_note) == (mode == "float16")


def test_without_tflite_micro_the_planner_answers(conv_float32, monkeypatch):
    monkeypatch.setattr(device, "_tflm_available", lambda: False)
    figures = device.measure(conv_float32, runs=1)
    assert (figures.ram_method, figures.ram_bytes) == ("greedy-planner", 2048)
    assert figures.ram_note == "tflite-micro is not installed"


def test_a_crashed_tflite_micro_child_is_reported_not_raised():
    note = device._failure_note("Didn't find op for builtin opcode 'FOO'\n", -11)
    assert note == ("tflite-micro could not run the model: "
                    "Didn't find op for builtin opcode 'FOO'; killed by signal 11")


def test_one_tflite_micro_child_serves_every_file_this_process_measures(conv_modes,
                                                                        conv_float32):
    """A worker's trials share one TFLM interpreter: no interpreter start per file, and a
    file TFLM cannot run (float16) does not end it."""
    first = device.measure(conv_float32, runs=1)
    child = device._TflmChild.process
    assert child is not None and child.poll() is None
    cannot = device.measure(conv_modes["float16"], runs=1)
    assert "could not run the model" in cannot.ram_note and "DEQUANTIZE" in cannot.ram_note
    again = device.measure(conv_float32, runs=1)
    assert device._TflmChild.process is child and child.poll() is None
    assert (again.ram_bytes, again.ram_method) == (first.ram_bytes, "tflite-micro")


def test_a_tflite_micro_child_that_died_is_replaced_for_the_next_file(conv_float32):
    import signal

    first = device.measure(conv_float32, runs=1)
    child = device._TflmChild.process
    child.send_signal(signal.SIGKILL)
    child.wait()
    after = device.measure(conv_float32, runs=1)
    assert device._TflmChild.process is not child
    assert (after.ram_bytes, after.ram_method) == (first.ram_bytes, "tflite-micro")


def test_tflite_micro_s_last_words_before_a_crash_reach_the_note(conv_float32, monkeypatch):
    """The C++ runtime aborting on a model ends the child mid-request: what it printed
    before (kept in the child's log file) names the cause."""
    dying = ("import os, sys\n"
             "sys.stdin.buffer.read(12)\n"
             "with open(sys.argv[1], 'wb') as log:\n"
             "    log.write(b\"Didn't find op for builtin opcode 'FOO'\\n\")\n"
             "os.abort()\n")
    monkeypatch.setattr(device._TflmChild, "program", (sys.executable, "-c", dying))
    monkeypatch.setattr(device._TflmChild, "process", None)
    arena, note = device._tflm_arena(conv_float32, arena_size=1 << 20)
    assert arena is None
    assert note == ("tflite-micro could not run the model: "
                    "Didn't find op for builtin opcode 'FOO'; killed by signal 6")
    assert device._TflmChild.process is None  # the next file starts a new child


# -- int8 -------------------------------------------------------------------------------------


def test_full_integer_activations_need_a_quarter_of_float32s(conv_modes):
    # With int8 input and output every activation is 1 byte instead of 4. Only the 16-byte
    # rounding keeps the ratio from being exactly ¼ (the 10 logits take 16 B as int8 and
    # 48 B as float32), one buffer in four here: ±10% allows it, while int16 or float
    # activations (ratio ½ or 1) fail.
    float32 = device.plan_arena(conv_modes["float32"])
    int8 = device.plan_arena(conv_modes["int8_io"])
    assert int8 / float32 == pytest.approx(0.25, rel=0.1)
    float_figures = device.measure(conv_modes["float32"], runs=1)
    int8_figures = device.measure(conv_modes["int8_io"], runs=1)
    assert int8_figures.ram_method == "tflite-micro"
    assert int8_figures.ram_bytes < float_figures.ram_bytes


# -- flash and latency ------------------------------------------------------------------------


def test_flash_is_the_flatbuffer_as_written(conv_float32, tmp_path):
    path = tmp_path / "model.tflite"
    tflite.save(conv_float32, path)
    figures = device.measure(conv_float32, runs=1)
    assert figures.flash_bytes == len(conv_float32) == os.path.getsize(path)


def test_latency_is_positive_finite_and_grows_with_the_work(conv_float32):
    # The small model: about 4.9k MACs, 2 µs per inference on the 2-core host. The big one:
    # 16×16×16 → 32 filters, about 1.26M MACs (260×), measured 42–58 µs. Asking for 5× keeps
    # a wide margin for a busy machine while failing a timer that measures nothing.
    big = _convert(lambda L, Input: _conv_model(L, Input, side=16, channels=16, filters=32),
                   quantization="float32")
    small_ms = device.measure(conv_float32, runs=30).latency_ms
    big_ms = device.measure(big, runs=30).latency_ms
    assert 0 < small_ms and math.isfinite(small_ms)
    assert big_ms > 5 * small_ms


# -- the API ----------------------------------------------------------------------------------


def test_attrs_are_the_field_names(conv_float32):
    figures = device.measure(conv_float32, runs=2, seed=1)
    attrs = figures.as_attrs()
    assert set(attrs) == ATTRS
    assert attrs["latency_runs"] == 2
    assert attrs["flash_bytes"] == len(conv_float32)


@pytest.mark.parametrize("runs", [0, -1])
def test_measure_rejects_fewer_than_one_run(conv_float32, runs):
    with pytest.raises(ValueError, match="runs must be at least 1"):
        device.measure(conv_float32, runs=runs)


def test_empty_flatbuffer_and_bad_alignment_are_rejected(conv_float32):
    with pytest.raises(ValueError, match="empty"):
        device.measure(b"")
    with pytest.raises(ValueError, match="alignment"):
        device.plan_arena(conv_float32, alignment=0)


def test_figures_reject_an_unknown_ram_method():
    with pytest.raises(ValueError, match="ram_method"):
        device.DeviceFigures(flash_bytes=1, ram_bytes=1, ram_method="guess",
                             planner_ram_bytes=1, latency_ms=1.0, latency_runs=1)
