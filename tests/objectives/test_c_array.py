"""The C++ source `export` writes for TensorFlow Lite for Microcontrollers, and the
resolver method named for each operator.

The array must hold the flatbuffer byte for byte, 16-byte aligned, with its length; the
header must declare both and give `kTensorArenaSize` only when it is a measured figure.
Where a C++ compiler is installed, the two files are compiled and linked with a small
program that checks the alignment, the length and every byte.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from objectives import c_array, micro

DATA = bytes(range(256)) * 3 + b"\x00\xff\x10"  # 771 bytes: not a whole number of rows


def parse_array(source: str) -> bytes:
    """The bytes of `g_model_data` as the .cc file spells them."""
    body = re.search(r"g_model_data\[\] = \{(.*?)\};", source, re.S)
    assert body, source[:300]
    return bytes(int(token, 16) for token in re.findall(r"0x([0-9a-f]{2})", body[1]))


def test_the_array_is_the_data_byte_for_byte_with_its_length(tmp_path):
    source, header = c_array.write(DATA, directory=tmp_path, arena_bytes=2048,
                                   arena_note="Measured.", comment="trial 3 of study s")
    text = source.read_text()
    assert parse_array(text) == DATA
    assert re.search(r"^alignas\(16\) const unsigned char g_model_data\[\] = \{$", text, re.M)
    assert f"const unsigned int g_model_data_len = {len(DATA)};" in text
    assert '#include "model_data.h"' in text
    assert "// trial 3 of study s" in text
    head = header.read_text()
    assert "extern const unsigned char g_model_data[];" in head
    assert "extern const unsigned int g_model_data_len;" in head
    assert "constexpr int kTensorArenaSize = 2048;" in head
    assert head.startswith("// trial 3") and "#define MODEL_DATA_H_" in head


def test_without_a_measured_arena_the_constant_is_left_out_and_the_header_says_why(tmp_path):
    _, header = c_array.write(DATA, directory=tmp_path, arena_bytes=None,
                              arena_note="TFLM does not run this float16 model.")
    head = header.read_text()
    assert "kTensorArenaSize =" not in head
    assert "// No kTensorArenaSize: TFLM does not run this float16 model." in head


def test_long_comments_are_wrapped_into_comment_lines():
    text = c_array.header_text(guard="G_H_", arena_bytes=None, arena_note="x " * 200)
    for line in text.splitlines():
        assert len(line) <= 95
        assert line.startswith(("//", "#", "extern")) or not line.strip()


@pytest.mark.parametrize("bad", [b"", None])
def test_an_empty_flatbuffer_is_refused(bad, tmp_path):
    with pytest.raises((ValueError, TypeError)):
        c_array.write(bad, directory=tmp_path, arena_bytes=None, arena_note="")


CHECK_PROGRAM = r"""
#include <cstdint>
#include <cstdio>
#include "model_data.h"
int main() {
  unsigned long sum = 0;
  for (unsigned int i = 0; i < g_model_data_len; ++i) sum = sum * 31 + g_model_data[i];
  std::printf("%u %d %lu %d\n", g_model_data_len,
              (int)(reinterpret_cast<std::uintptr_t>(g_model_data) % 16), sum,
              kTensorArenaSize);
  return 0;
}
"""


@pytest.mark.skipif(shutil.which("g++") is None, reason="no C++ compiler installed")
def test_the_files_compile_link_and_hold_the_bytes_aligned(tmp_path):
    c_array.write(DATA, directory=tmp_path, arena_bytes=4096, arena_note="Measured.")
    (tmp_path / "main.cc").write_text(CHECK_PROGRAM)
    build = subprocess.run(
        ["g++", "-std=c++17", "-Wall", "-Werror", "-o", str(tmp_path / "check"),
         str(tmp_path / "main.cc"), str(tmp_path / "model_data.cc")],
        capture_output=True, text=True, timeout=120,
    )
    assert build.returncode == 0, build.stderr
    ran = subprocess.run([str(tmp_path / "check")], capture_output=True, text=True, timeout=30)
    expected = 0
    for byte in DATA:
        expected = (expected * 31 + byte) % 2**64
    assert ran.stdout.split() == [str(len(DATA)), "0", str(expected), "4096"]


@pytest.mark.parametrize(("builtin", "method"), [
    ("CONV_2D", "AddConv2D"),
    ("FULLY_CONNECTED", "AddFullyConnected"),
    ("DEPTHWISE_CONV_2D", "AddDepthwiseConv2D"),
    ("MAX_POOL_2D", "AddMaxPool2D"),
    ("AVERAGE_POOL_2D", "AddAveragePool2D"),
    ("RESHAPE", "AddReshape"),
    ("SOFTMAX", "AddSoftmax"),
    ("QUANTIZE", "AddQuantize"),
    ("DEQUANTIZE", "AddDequantize"),
    ("ADD", "AddAdd"),
    ("MEAN", "AddMean"),
    ("RELU6", "AddRelu6"),
    ("L2_POOL_2D", "AddL2Pool2D"),
    ("BATCH_TO_SPACE_ND", "AddBatchToSpaceNd"),
    ("SELECT_V2", "AddSelectV2"),
    ("PADV2", "AddPadV2"),
    ("BATCH_MATMUL", "AddBatchMatMul"),
    ("UNIDIRECTIONAL_SEQUENCE_LSTM", "AddUnidirectionalSequenceLSTM"),
])
def test_each_builtin_gets_tflms_resolver_method(builtin, method):
    assert micro.resolver_method(builtin) == method
