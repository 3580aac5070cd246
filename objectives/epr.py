"""Entropy Penalized Reparameterization (EPR) of plain Keras CNNs: the public face.

Implements Oktay, Ballé, Singh and Shrivastava, "Scalable Model Compression by Entropy
Penalized Reparameterization", ICLR 2020 (seed 004, the TensorFlow Compression tutorial),
for the models `objectives.build` makes. The pipeline, one keyword-only call per step::

    compressible = make_compressible(model, epr_lambda=10.0)   # same graph, EPR layers
    compressible.compile(...); compressible.fit(...)           # penalty is in the loss
    compressed = compress(compressible)                        # weights are bit strings
    payload_bytes(compressed); estimated_bits(compressible)
    save(compressed, "model.epr"); plain = load("model.epr")   # plain Keras model

`from objectives import epr; model = epr.load("model.epr")` is how a user reads an
exported `.epr` file (README). The work lives in one module per job, each importing only
those below it:

- `objectives.epr_maths`: a weight's coding, its Fourier latent, float16 steps,
  quantization and entropy model (the only `tensorflow_compression` import);
- `objectives.epr_forward`: the plain layers EPR wraps and how each computes;
- `objectives.epr_architecture`: the plain architecture a file holds, refused when it
  holds code, rebuilt with decoded weights;
- `objectives.epr_layers`: the compressible and compressed layers and models;
- `objectives.epr_compress`: the steps on a whole model (`make_compressible`, `compress`,
  `decompress`, `payload_bytes`, `estimated_bits`);
- `objectives.epr_file`: the `.epr` file format (`save`, `load`).
"""

from __future__ import annotations

from objectives.epr_compress import (
    compress,
    decompress,
    estimated_bits,
    make_compressible,
    payload_bytes,
)
from objectives.epr_file import load, save
from objectives.errors import EPRError

__all__ = [
    "EPRError",
    "compress",
    "decompress",
    "estimated_bits",
    "load",
    "make_compressible",
    "payload_bytes",
    "save",
]
