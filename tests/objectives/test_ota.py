"""model.update: the Python and C decoders rebuild real device files bit for bit, refuse
truncated and corrupt updates with an error code (and write no file), and the update of
an EPR-trained model's int8 file is well below gzip -9 of it."""

from __future__ import annotations

import gzip
import hashlib
import lzma
import random
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from objectives import ota
from objectives.ota_coder import ERR_CORRUPT, ERR_TRUNCATED

GCC = shutil.which("gcc")
needs_gcc = pytest.mark.skipif(GCC is None, reason="gcc is not installed (.ci/run installs "
                               "it): the C decoder is not compiled")
C_FLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror"]


def _conv_model():
    """8×8×1 → conv 8@3×3 → depthwise 3×3 → conv 8@1×1 → dense 10: every kernel kind."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    layers = tf.keras.layers
    return tf.keras.Sequential([
        tf.keras.Input((8, 8, 1)), layers.Conv2D(8, 3, padding="same", activation="relu"),
        layers.DepthwiseConv2D(3, padding="same"), layers.Conv2D(8, 1, activation="relu"),
        layers.Flatten(), layers.Dense(10)])


def _data(n: int = 256) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.random((n, 8, 8, 1), dtype=np.float32)
    return x, (x[:, :4].mean(axis=(1, 2, 3)) * 10).astype(np.int64) % 10


@pytest.fixture(scope="module")
def device_files() -> dict[str, bytes]:
    """The tiny model as the tool converts it, int8 and float32."""
    from objectives import tflite

    x, _ = _data(64)
    model = _conv_model()
    return {mode: tflite.convert_for_device(model, quantization=mode, representative_x=x)
            for mode in ("int8", "float32")}


@pytest.fixture(scope="module")
def epr_int8(tmp_path_factory) -> bytes:
    """The int8 device file of an EPR-trained model (trained, saved, loaded, converted as
    `export` converts an EPR trial's)."""
    import tensorflow as tf

    from objectives import epr, tflite

    x, y = _data()
    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential([
        tf.keras.Input((8, 8, 1)), tf.keras.layers.Conv2D(16, 3, activation="relu"),
        tf.keras.layers.Conv2D(16, 3, activation="relu"), tf.keras.layers.Flatten(),
        tf.keras.layers.Dense(10)])
    compressible = epr.make_compressible(model, epr_lambda=20.0)
    compressible.compile(optimizer=tf.keras.optimizers.Adam(1e-2), loss=tf.keras.losses.
                         SparseCategoricalCrossentropy(from_logits=True))
    compressible.fit(x, y, batch_size=32, epochs=3, verbose=0)
    path = tmp_path_factory.mktemp("epr") / "model.epr"
    epr.save(epr.compress(compressible), path)
    return tflite.convert_for_device(epr.load(path), quantization="int8",
                                     representative_x=x[:64])


# -- Python ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["int8", "float32"])
def test_an_update_decodes_to_the_device_file_bit_for_bit(device_files, mode):
    data = device_files[mode]
    update = ota.encode_update(data)
    assert ota.decode_update(update) == data
    assert ota.read_header(update).sha256 == hashlib.sha256(data).digest()
    kinds = ota.section_summary(data)
    assert kinds["int8" if mode == "int8" else "float"] > len(data) // 4, kinds


def test_any_bytes_round_trip_as_raw_sections():
    rng = random.Random(0)
    data = bytes(rng.randrange(4) for _ in range(3000)) + b"abc" * 500 + bytes(200)
    update = ota.encode_update(data, window_log2=8)
    assert ota.section_summary(data)["raw"] == len(data)
    assert ota.decode_update(update) == data
    assert len(update) < len(data) // 3


def test_an_epr_trained_int8_file_codes_well_below_gzip(epr_int8):
    update = ota.encode_update(epr_int8, verify=True)
    gzip9 = len(gzip.compress(epr_int8, compresslevel=9, mtime=0))
    xz9 = len(lzma.compress(epr_int8, preset=9 | lzma.PRESET_EXTREME))
    # measured: 3,179 bytes, 0.82 of gzip -9 (3,854) and 0.94 of xz -9 (3,400) of the
    # 8,680-byte file, 3,504 bytes of which are flatbuffer structure (names, quantization)
    assert len(update) < 0.88 * gzip9, (len(update), gzip9)
    assert len(update) <= xz9, (len(update), xz9)
    assert ota.ota_bytes(epr_int8) == len(update)


def _flip(data: bytes, at: int, bit: int = 0) -> bytes:
    changed = bytearray(data)
    changed[at] ^= 1 << bit
    return bytes(changed)


def test_a_truncated_or_corrupt_update_is_refused_with_its_code(device_files):
    update = ota.encode_update(device_files["int8"])
    cases = {
        ERR_TRUNCATED: [update[:n] for n in (0, 47, 48, 60, len(update) // 2, len(update) - 1)],
        ota.ERR_BAD_HEADER: [b"ZZZZ" + update[4:]],
        ota.ERR_VERSION: [_flip(update, 4, 1)],
        ota.ERR_CHECKSUM: [_flip(update, 20)],
        ERR_CORRUPT: [update + b"\0"],
    }
    for code, updates in cases.items():
        for changed in updates:
            with pytest.raises(ota.UpdateError) as refused:
                ota.decode_update(changed)
            assert refused.value.code == code, (code, str(refused.value))


def test_every_flipped_stream_byte_is_refused_never_a_wrong_file(device_files):
    update = ota.encode_update(device_files["int8"])
    rng = random.Random(1)
    for _ in range(40):
        changed = _flip(update, rng.randrange(ota.HEADER_BYTES, len(update)), rng.randrange(8))
        with pytest.raises(ota.UpdateError):
            ota.decode_update(changed)


def test_float_zero_values_are_one_decision_and_distances_whole_values():
    from objectives.ota_coder import OTAEncoder
    from objectives.ota_stream import FLOAT, ZERO_VALUE, Section, run

    rng = np.random.default_rng(0)
    values = rng.choice(rng.normal(size=8).astype(np.float32), size=600)
    values[rng.random(600) < 0.5] = 0.0
    data = values.tobytes()
    tokens = ota.lz77_tokens(data, 0, len(data), window=1024, rep=[1], value_bytes=4)
    assert tokens.count(ZERO_VALUE) > 40
    assert all(distance % 4 == 0 for size, distance in tokens if size > 0)
    encoder = OTAEncoder()
    plan = [Section(kind=FLOAT, length=len(data), width=4, tokens=tokens)]
    assert run(encoder, length=len(data), window=1024, plan=plan, data=data) == data
    stream = encoder.finish()
    # 600 values of 8 kinds, half of them zero: measured 380 bytes, 5 bits a value
    assert len(stream) < 420, len(stream)
    header = ota.Header(window_log2=10, work_bytes=ota.work_bytes(10),
                        device_length=len(data), stream_length=len(stream),
                        sha256=hashlib.sha256(data).digest())
    assert header.pack()[4] == ota.FORMAT_VERSION == 2


# -- C -----------------------------------------------------------------------------------


def _sanitizers(tmp: Path) -> list[str]:
    """-fsanitize=address,undefined when this gcc can link it, else nothing."""
    probe = tmp / "probe.c"
    probe.write_text("int main(void) { return 0; }\n")
    flags = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
    done = subprocess.run([GCC, *flags, str(probe), "-o", str(tmp / "probe")],
                          capture_output=True)
    return flags if done.returncode == 0 else []


@pytest.fixture(scope="module")
def ota_decode(tmp_path_factory) -> Path:
    """The host program, built as CI builds it, from the sources an export copies."""
    if GCC is None:
        pytest.skip("gcc is not installed (.ci/run installs it)")
    folder = tmp_path_factory.mktemp("c")
    ota.write_decoder_sources(folder)
    program = folder / "ota_decode"
    subprocess.run([GCC, *C_FLAGS, "-O1", *_sanitizers(folder), "-o", str(program),
                    str(folder / "ota_decode.c"), str(folder / "model_update.c")],
                   check=True, capture_output=True)
    return program


def _decode(program: Path, update: bytes, tmp: Path) -> tuple[int, Path, str]:
    (tmp / "in.update").write_bytes(update)
    out = tmp / "out.tflite"
    done = subprocess.run([str(program), str(tmp / "in.update"), str(out)],
                          capture_output=True, text=True, timeout=60)
    return done.returncode, out, done.stderr


@needs_gcc
@pytest.mark.parametrize("mode", ["int8", "float32"])
def test_the_c_decoder_rebuilds_the_device_file_bit_for_bit(ota_decode, device_files, mode,
                                                            tmp_path):
    data = device_files[mode]
    code, out, stderr = _decode(ota_decode, ota.encode_update(data), tmp_path)
    assert code == 0, stderr
    assert out.read_bytes() == data


@needs_gcc
def test_the_c_decoder_rebuilds_an_epr_trained_file(ota_decode, epr_int8, tmp_path):
    code, out, stderr = _decode(ota_decode, ota.encode_update(epr_int8), tmp_path)
    assert code == 0, stderr
    assert out.read_bytes() == epr_int8


@needs_gcc
def test_the_c_decoder_refuses_a_stream_longer_than_its_file_without_stalling(
        ota_decode, device_files, tmp_path):
    data = device_files["int8"]
    update = ota.encode_update(data)
    header = ota.read_header(update)
    longer = ota.Header(window_log2=header.window_log2, work_bytes=header.work_bytes,
                        device_length=header.device_length,
                        stream_length=header.stream_length + 500, sha256=header.sha256)
    changed = longer.pack() + update[ota.HEADER_BYTES:] + bytes(range(250)) * 2
    with pytest.raises(ota.UpdateError) as refused:
        ota.decode_update(changed)
    assert refused.value.code == ERR_CORRUPT
    code, out, stderr = _decode(ota_decode, changed, tmp_path)
    assert code == 1 and "corrupt" in stderr, stderr
    assert not out.exists()


@needs_gcc
def test_the_c_decoder_refuses_truncated_and_flipped_updates_and_writes_no_file(
        ota_decode, device_files, tmp_path):
    update = ota.encode_update(device_files["int8"])
    rng = random.Random(2)
    cuts = [update[:n] for n in (0, 47, 48, 53, len(update) // 2, len(update) - 1)]
    flips = [_flip(update, rng.randrange(len(update)), rng.randrange(8)) for _ in range(30)]
    for changed in [*cuts, *flips, update + b"\0"]:
        code, out, stderr = _decode(ota_decode, changed, tmp_path)
        assert code == 1, stderr
        assert "no file written" in stderr and "runtime error" not in stderr
        assert not out.exists() and not out.with_name(out.name + ".part").exists()


def _state_bytes(compiler: list[str], tmp: Path) -> int:
    """`sizeof(struct mu_decoder)` as `compiler` lays it out: the size of a probe array
    in the object file (nm -S), so a cross compiler needs no target to run on."""
    probe = tmp / "size.c"
    probe.write_text(f'#include "{ota.C_SOURCES / "model_update.c"}"\n'
                     "char mu_probe[sizeof(struct mu_decoder)];\n")
    subprocess.run([*compiler, *C_FLAGS, "-c", "-o", str(tmp / "size.o"), str(probe)],
                   check=True, capture_output=True)
    nm = shutil.which(Path(compiler[0]).name.replace("gcc", "nm")) or "nm"
    listing = subprocess.run([nm, "-S", str(tmp / "size.o")], capture_output=True,
                             text=True, check=True).stdout
    return next(int(line.split()[1], 16) for line in listing.splitlines()
                if line.endswith(" mu_probe"))


def _thirty_two_bit_compiler(tmp: Path) -> list[str] | None:
    """A compiler for a 32-bit target: arm-none-eabi-gcc (Cortex-M4) or gcc -m32."""
    arm = shutil.which("arm-none-eabi-gcc")
    if arm:
        return [arm, "-mcpu=cortex-m4", "-mthumb", "-Os"]
    probe = tmp / "m32.c"
    probe.write_text("#include <stdint.h>\nuint32_t x;\n")
    done = subprocess.run([GCC, "-m32", "-c", "-o", str(tmp / "m32.o"), str(probe)],
                          capture_output=True)
    return [GCC, "-m32"] if done.returncode == 0 else None


@needs_gcc
def test_the_decoder_state_is_at_most_2_kb_on_64_and_32_bit_targets(tmp_path):
    # measured: 1,984 bytes on x86-64, 1,976 on Cortex-M4 (probabilities: 1,632 bytes)
    assert ota.STATE_BYTES == 2048
    assert _state_bytes([GCC], tmp_path) <= ota.STATE_BYTES
    compiler = _thirty_two_bit_compiler(tmp_path)
    if compiler is None:
        pytest.skip("no 32-bit compiler (arm-none-eabi-gcc or gcc -m32) is installed")
    assert _state_bytes(compiler, tmp_path) <= ota.STATE_BYTES
