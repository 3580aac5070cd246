"""The update decoder's size on a microcontroller (issue 32: ≤ 4 KB of Cortex-M4 code at
`-Os`), measured where Debian's `gcc-arm-none-eabi` is installed (`.ci/run` tries to
install it); elsewhere skipped, saying so."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from objectives import ota

ARM_GCC = shutil.which("arm-none-eabi-gcc")
ARM_SIZE = shutil.which("arm-none-eabi-size")
#: The issue's budget for the decoder's code on a Cortex-M4.
CODE_BUDGET = 4096
M4_FLAGS = ("-std=c99", "-mcpu=cortex-m4", "-mthumb", "-Os", "-Wall", "-Wextra", "-Werror")


@pytest.mark.skipif(ARM_GCC is None or ARM_SIZE is None,
                    reason="gcc-arm-none-eabi is not installed: the Cortex-M4 size is unmeasured")
def test_the_decoder_is_at_most_4_kb_of_cortex_m4_code_at_os(tmp_path):
    obj = tmp_path / "model_update.o"
    subprocess.run([ARM_GCC, *M4_FLAGS, "-c", "-o", str(obj),
                    str(ota.C_SOURCES / "model_update.c")], check=True, capture_output=True)
    sizes = subprocess.run([ARM_SIZE, str(obj)], check=True, capture_output=True, text=True)
    text, data, bss = (int(v) for v in sizes.stdout.splitlines()[1].split()[:3])
    print(f"model_update.c on Cortex-M4 -Os: {text} B of code, {data} B data, {bss} B bss")
    assert text <= CODE_BUDGET
    # no static RAM: everything lives in the caller's work buffer
    assert data == 0 and bss == 0
