"""Updates relative to a base file (format version 4): the Python and C decoders rebuild a
fine-tuned model's int8 file from its base bit for bit, from an update a fraction of the
plain one; a wrong or missing base is refused with its code (`ERR_BASE`) by both; a plain
update's bytes are those of format 3 before relative updates existed."""

from __future__ import annotations

import hashlib
import random
import subprocess
from pathlib import Path

import pytest

import tests.objectives.test_ota as plain_tests
from objectives import ota, ota_stream
from objectives.ota_coder import ERR_CORRUPT, OTAEncoder
from objectives.ota_stream import BASE, BYTE_TREE, INT8, RAW, SAME, Section

needs_gcc = plain_tests.needs_gcc
KERNEL = plain_tests.KERNEL
KERNEL_BYTES = 8 * KERNEL[0] * KERNEL[1] * KERNEL[2]  # `_gaussian_kernels(8)`
ota_decode = plain_tests.ota_decode  # the fixture: the host program under ASan/UBSan


@pytest.fixture(scope="module")
def fine_tuned() -> tuple[bytes, bytes]:
    """(base, new): the int8 device files of the tiny conv model trained, then fine-tuned
    one more epoch at a tenth of the rate (as `run --finalists` fine-tunes a trial)."""
    import tensorflow as tf

    from objectives import tflite

    x, y = plain_tests._data()
    model = plain_tests._conv_model()
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-2), loss=tf.keras.losses.
                  SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=32, epochs=3, verbose=0)
    base = tflite.convert_for_device(model, quantization="int8", representative_x=x[:64])
    model.optimizer.learning_rate.assign(1e-3)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    new = tflite.convert_for_device(model, quantization="int8", representative_x=x[:64])
    return base, new


def _relative_update_of(plan: list[Section], data: bytes, base: bytes) -> bytes:
    """The update of `data` relative to `base`, coded in the sections of `plan`."""
    encoder = OTAEncoder()
    assert ota_stream.run(encoder, length=len(data), window=1024, plan=plan, data=data,
                          base=base) == data
    stream = encoder.finish()
    header = ota.Header(window_log2=10, work_bytes=ota.work_bytes(10),
                        device_length=len(data), stream_length=len(stream),
                        sha256=hashlib.sha256(data).digest(), base_length=len(base),
                        base_sha256=hashlib.sha256(base).digest())
    return header.pack() + stream


def _base_mode_file() -> tuple[list[Section], bytes, bytes]:
    """(plan, new, base): 40 raw bytes, an 80-byte `SAME` run, and int8 kernels
    (`KERNEL_BYTES` each) in both base modes, a step from the base's here and there."""
    rng = random.Random(0)
    base_kernels = plain_tests._gaussian_kernels(8)
    changed = bytes((b + rng.choice((0, 0, 0, 1, -1))) & 0xFF for b in base_kernels)
    head, same = bytes(range(40)), b"flatbuffer structure" * 4
    base = head + same + base_kernels + base_kernels
    data = bytes(reversed(head)) + same + changed + changed
    geometry = {"taps": KERNEL[0], "width": KERNEL[1], "height": KERNEL[2]}
    plan = [Section(kind=RAW, length=len(head), tokens=ota.lz77_tokens(
                data, 0, len(head), window=1024, rep=[1])),
            Section(kind=SAME, length=len(same)),
            Section(kind=INT8, length=len(changed), mode=BASE, **geometry),
            Section(kind=INT8, length=len(changed), mode=BASE | BYTE_TREE, **geometry)]
    return plan, data, base


def _decode_with(program: Path, update: bytes, tmp: Path, base: bytes | None
                 ) -> tuple[int, Path, str]:
    """`ota_decode update out [base]`: exit code, the output path, standard error."""
    (tmp / "in.update").write_bytes(update)
    (tmp / "base.tflite").write_bytes(base or b"")
    out = tmp / "out.tflite"
    done = subprocess.run([str(program), str(tmp / "in.update"), str(out),
                           *([str(tmp / "base.tflite")] if base is not None else [])],
                          capture_output=True, text=True, timeout=60)
    return done.returncode, out, done.stderr


# -- Python ------------------------------------------------------------------------------


def test_a_fine_tuned_file_relative_to_its_base_decodes_bit_for_bit_from_a_fraction(
        fine_tuned):
    base, new = fine_tuned
    plain = ota.encode_update(new)
    relative = ota.encode_update(new, base=base, verify=True)
    assert ota.decode_update(relative, base=base) == new
    header = ota.read_header(relative)
    assert header.relative and header.base_length == len(base)
    assert header.base_sha256 == hashlib.sha256(base).digest()
    # measured: 1,717 bytes relative against 6,570 plain (0.26) for the 9,496-byte file
    assert len(relative) < 0.4 * len(plain), (len(relative), len(plain))


def test_a_file_relative_to_itself_is_its_header_and_a_few_bytes():
    data = plain_tests._gaussian_kernels(40)
    relative = ota.encode_update(data, base=data)
    assert len(relative) <= ota.RELATIVE_HEADER_BYTES + 16, len(relative)
    assert ota.decode_update(relative, base=data) == data


def test_both_base_modes_and_same_sections_decode_bit_for_bit():
    plan, data, base = _base_mode_file()
    assert ota.decode_update(_relative_update_of(plan, data, base), base=base) == data


def test_the_encoder_picks_the_base_prediction_for_weights_near_the_bases(monkeypatch):
    _, data, base = _base_mode_file()
    picked = []
    choose = ota_stream._choose_mode
    monkeypatch.setattr(ota_stream, "_choose_mode",
                        lambda *a, **k: picked.append(choose(*a, **k)) or picked[-1])
    plan = [Section(kind=RAW, length=120, tokens=ota.lz77_tokens(data, 0, 120, window=1024,
                                                                 rep=[1])),
            *(Section(kind=INT8, length=KERNEL_BYTES, taps=KERNEL[0], width=KERNEL[1],
                      height=KERNEL[2]) for _ in range(2))]
    relative = _relative_update_of(plan, data, base)
    assert picked[0] & BASE and picked[1] & BASE, picked
    # measured: 558 bytes relative to the base, 1,988 plain
    assert len(relative) < 0.5 * len(ota.encode_update(data)), len(relative)


def test_a_wrong_or_missing_base_is_refused_with_its_code(fine_tuned):
    base, new = fine_tuned
    relative = ota.encode_update(new, base=base)
    for wrong in (None, new, base[:-1], plain_tests._flip(base, 100)):
        with pytest.raises(ota.UpdateError) as refused:
            ota.decode_update(relative, base=wrong)
        assert refused.value.code == ota.ERR_BASE, str(refused.value)


def test_a_plain_update_is_the_same_bytes_as_before_relative_updates():
    # digests of format 3's updates, computed with the encoder before version 4 existed
    plan, data = plain_tests._every_mode_file()
    assert hashlib.sha256(plain_tests._update_of(plan, data)).hexdigest() == (
        "3ed23a5bbb77ae80adac96b68d0229751fa148f7d0dc2864622a161504a456fd")
    rng = random.Random(0)
    raw = bytes(rng.randrange(4) for _ in range(3000)) + b"abc" * 500 + bytes(200)
    update = ota.encode_update(raw, window_log2=8)
    assert update[4] == ota.FORMAT_VERSION == 3
    assert hashlib.sha256(update).hexdigest() == (
        "7bd88924cd8e56836631ba9f2871d45bfc20d47561e72188a299d23888993043")
    assert ota.decode_update(update, base=b"any base is ignored") == raw


def test_a_same_section_past_the_bases_end_or_an_odd_base_mode_is_corrupt(monkeypatch):
    plan, data, base = _base_mode_file()
    update = _relative_update_of(plan[:2], data[:120], base=base[:120])
    short = base[:50]  # the SAME section runs from byte 40 to 120
    header = ota.read_header(update).__dict__
    patched = ota.Header(**{**header, "base_length": len(short),
                            "base_sha256": hashlib.sha256(short).digest()})
    with pytest.raises(ota.UpdateError) as refused:
        ota.decode_update(patched.pack() + update[ota.RELATIVE_HEADER_BYTES:], base=short)
    assert refused.value.code == ERR_CORRUPT
    odd = [*plan[:2], Section(**{**plan[2].__dict__, "mode": BASE | 1})]
    monkeypatch.setattr(ota_stream, "RELATIVE_MODES", (*ota_stream.RELATIVE_MODES, BASE | 1))
    update = _relative_update_of(odd, data[:120 + KERNEL_BYTES], base)
    monkeypatch.undo()
    with pytest.raises(ota.UpdateError) as refused:
        ota.decode_update(update, base=base)
    assert refused.value.code == ERR_CORRUPT


# -- C -----------------------------------------------------------------------------------


@needs_gcc
def test_the_c_decoder_rebuilds_a_fine_tuned_file_from_its_base(ota_decode, fine_tuned,
                                                                 tmp_path):
    base, new = fine_tuned
    code, out, stderr = _decode_with(ota_decode, ota.encode_update(new, base=base), tmp_path,
                                     base)
    assert code == 0, stderr
    assert out.read_bytes() == new


@needs_gcc
def test_the_c_decoder_rebuilds_both_base_modes_and_same_sections(ota_decode, tmp_path):
    plan, data, base = _base_mode_file()
    code, out, stderr = _decode_with(ota_decode, _relative_update_of(plan, data, base),
                                     tmp_path, base)
    assert code == 0, stderr
    assert out.read_bytes() == data


@needs_gcc
def test_the_c_decoder_refuses_a_wrong_or_missing_base_and_writes_no_file(
        ota_decode, fine_tuned, tmp_path):
    base, new = fine_tuned
    relative = ota.encode_update(new, base=base)
    for wrong in (None, new, base[:-1], plain_tests._flip(base, 100)):
        code, out, stderr = _decode_with(ota_decode, relative, tmp_path, wrong)
        assert code == 1 and f"(error {ota.ERR_BASE})" in stderr, stderr
        assert not out.exists()


@needs_gcc
def test_the_c_decoder_refuses_flipped_relative_updates_never_a_wrong_file(
        ota_decode, fine_tuned, tmp_path):
    base, new = fine_tuned
    relative = ota.encode_update(new, base=base)
    rng = random.Random(2)
    for _ in range(30):
        at = rng.randrange(ota.RELATIVE_HEADER_BYTES, len(relative))
        code, out, stderr = _decode_with(ota_decode, plain_tests._flip(relative, at,
                                                                       rng.randrange(8)),
                                         tmp_path, base)
        assert code == 1 and "no file written" in stderr, (at, stderr)
        assert not out.exists()
