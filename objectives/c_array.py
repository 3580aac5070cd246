"""A TFLite flatbuffer as C++ source for TensorFlow Lite for Microcontrollers (TFLM).

A microcontroller has no file system: the model is compiled into the firmware as a byte
array, as TFLM's own examples do (`xxd -i`). `write` makes the two files a TFLM project
copies in:

- `model_data.cc`: `alignas(16) const unsigned char g_model_data[] = {0x.., ...};` (TFLM
  reads the flatbuffer in place and requires 16-byte alignment) and
  `const unsigned int g_model_data_len`, the flatbuffer's size in bytes;
- `model_data.h`: the `extern` declarations, and `constexpr int kTensorArenaSize`, the
  tensor arena that TFLM's interpreter measured for this very model (`objectives.device`,
  `ram_method == "tflite-micro"`). Where TFLM does not run the model (float16 and
  dynamic-range models), the constant is left out and a comment says why: a size the
  runtime never confirmed would only fail later, on the device.

Pure Python (no TensorFlow): the bytes are written as they are, twelve to a line.
"""

from __future__ import annotations

from pathlib import Path

from objectives.files import write_atomically

ARRAY_NAME = "g_model_data"
LENGTH_NAME = "g_model_data_len"
ARENA_NAME = "kTensorArenaSize"
#: TFLM reads tensors in place from the flatbuffer and needs it 16-byte aligned.
ALIGNMENT = 16
BYTES_PER_LINE = 12
STEM = "model_data"


def source_text(data: bytes, *, header: str, comment: str = "") -> str:
    """The `.cc` file: the flatbuffer bytes as a 16-byte aligned array and its length.

    It includes `header`, whose `extern` declarations give both constants external
    linkage (a namespace-scope `const` is internal in C++ otherwise)."""
    if not data:
        raise ValueError("cannot write an empty flatbuffer as a C array")
    rows = (
        "    " + ", ".join(f"0x{byte:02x}" for byte in data[i : i + BYTES_PER_LINE]) + ","
        for i in range(0, len(data), BYTES_PER_LINE)
    )
    return (
        f"{_comment_lines(comment)}"
        f'#include "{header}"\n\n'
        f"alignas({ALIGNMENT}) const unsigned char {ARRAY_NAME}[] = {{\n"
        + "\n".join(rows)
        + f"\n}};\nconst unsigned int {LENGTH_NAME} = {len(data)};\n"
    )


def header_text(*, guard: str, arena_bytes: int | None, arena_note: str,
                comment: str = "") -> str:
    """The `.h` file: the array's declarations and `kTensorArenaSize` = `arena_bytes`, or,
    when `arena_bytes` is None, no constant and `arena_note` saying why."""
    if arena_bytes is not None and arena_bytes < 1:
        raise ValueError(f"arena_bytes must be positive, not {arena_bytes}")
    if arena_bytes is None:
        arena = _comment_lines(f"No {ARENA_NAME}: {arena_note}")
    else:
        arena = (
            _comment_lines(f"{arena_note} Declare it as: alignas({ALIGNMENT}) uint8_t "
                           f"tensor_arena[{ARENA_NAME}];")
            + f"constexpr int {ARENA_NAME} = {arena_bytes};\n"
        )
    return (
        f"{_comment_lines(comment)}"
        f"#ifndef {guard}\n#define {guard}\n\n"
        f"// The TFLite flatbuffer, {ALIGNMENT}-byte aligned: tflite::GetModel({ARRAY_NAME}).\n"
        f"extern const unsigned char {ARRAY_NAME}[];\n"
        f"extern const unsigned int {LENGTH_NAME};\n\n"
        f"{arena}\n#endif  // {guard}\n"
    )


def write(
    data: bytes, *, directory: Path, arena_bytes: int | None, arena_note: str,
    comment: str = "", stem: str = STEM,
) -> tuple[Path, Path]:
    """Writes `<stem>.cc` and `<stem>.h` for `data` into `directory` (each atomically);
    returns their paths (see `source_text` and `header_text`)."""
    directory = Path(directory)
    header = directory / f"{stem}.h"
    source = directory / f"{stem}.cc"
    guard = "".join(c if c.isalnum() else "_" for c in stem).upper() + "_H_"
    write_atomically(header, header_text(guard=guard, arena_bytes=arena_bytes,
                                    arena_note=arena_note, comment=comment))
    write_atomically(source, source_text(data, header=header.name, comment=comment))
    return source, header


def _comment_lines(text: str) -> str:
    """`text` as `//` comment lines (none for empty text), each at most about 90 wide."""
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > 88:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    if line:
        lines.append(line)
    return "".join(f"// {line}\n" for line in lines)
