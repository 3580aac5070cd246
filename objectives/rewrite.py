"""Any Keras 2 CNN as the parent of the search; candidates are rewrites of its graph.

DESIGN §3 ("Parent models and transformations"): a study names a parent model and every
candidate is a transformation of it. This module reads the parent's functional graph once
(`analyze`) and writes new models from it (`transform`):

- Width scaling (MobileNet's α; Howard et al., 2017, arXiv:1704.04861): every channel
  group that may change is scaled to `search_spaces.families.scaled(channels, width)`.
  A *channel group* is a set of tensors whose channels must stay the same: the inputs and
  output of an `Add` (a residual block), a conv and the BatchNorm, ReLU and depthwise conv
  that follow it. Groups are found by union-find over the graph. The model's inputs and
  outputs, and everything touching a layer whose channels cannot be traced, keep their width.
- Inheritance from a trained parent: a narrower group keeps the channels whose filters
  have the largest L1 norm (Li et al., ICLR 2017, "Pruning Filters for Efficient
  ConvNets"), summed over every layer that writes the group so coupled layers keep the same
  channels; consumers, BatchNorm statistics and depthwise kernels keep the matching slices.
- Factorization (seed 002; Jaderberg et al., BMVC 2014; Tai et al., ICLR 2016, "Convolutional
  neural networks with low-rank regularization"): an n×n conv becomes an n×1 conv followed by
  a 1×n conv with no nonlinearity between, initialized from the truncated SVD of the trained
  kernel, the best approximation of its rank (Eckart–Young).

Only Keras 2 models with a functional graph (functional or `Sequential`) can be rewritten;
anything else raises `RewriteError`, a `UsageError`. The graph walk mirrors Keras'
`Functional._run_internal_graph` (`_nodes_by_depth`), a private attribute that is stable in
Keras 2.14, the only Keras this project runs (DESIGN §5).
"""

from __future__ import annotations

import copy
import math
import numbers
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np

from definitions.errors import UsageError
from search_spaces.families import scaled
from search_spaces.rule import is_offered

if TYPE_CHECKING:
    from tensorflow import keras

__all__ = [
    "ChannelGroup",
    "FactorizableConv",
    "ParentAnalysis",
    "PrunableLayer",
    "RewriteError",
    "analyze",
    "factorize_kernel",
    "offered_factorizations",
    "transform",
]


class RewriteError(UsageError):
    """The parent cannot be rewritten (not a Keras 2 model, no functional graph, …).

    The message names the model or layer and what to do instead."""


@dataclass(frozen=True)
class ChannelGroup:
    """Channels that must stay consistent across the layers that write or read them.

    Attributes:
        id: the group's index in `ParentAnalysis.groups`.
        channels: the parent's channel count.
        scalable: whether the width multiplier changes it.
        producers: the conv, dense and separable layers whose filters are these channels
            (more than one when an `Add` or another merge couples them).
        reason: why the group keeps its width (`None` when it is scalable).
    """

    id: int
    channels: int
    scalable: bool
    producers: tuple[str, ...]
    reason: str | None = None

    def at(self, width: float) -> int:
        """The channel count at `width` (the parent's count if the group is not scalable)."""
        return scaled(self.channels, width) if self.scalable else self.channels


@dataclass(frozen=True)
class PrunableLayer:
    """A layer whose filters or units the width multiplier may change.

    Attributes:
        name: the Keras layer name.
        kind: `Conv2D`, `Dense` or `SeparableConv2D` (its pointwise filters).
        channels: its filters or units in the parent.
        group: the `ChannelGroup.id` of its output channels.
        scalable: False for output layers and for layers next to an untraceable one.
    """

    name: str
    kind: str
    channels: int
    group: int
    scalable: bool


@dataclass(frozen=True)
class FactorizableConv:
    """A `Conv2D` with a square n×n kernel, n > 1, and groups == 1 (seed 002's m, n, c).

    Attributes:
        name: the Keras layer name.
        n: the kernel size.
        m: filters in the parent.
        c: input channels in the parent.
        group: the `ChannelGroup.id` of its filters.
        input_groups: the channel groups that make up its input channels, in order.
    """

    name: str
    n: int
    m: int
    c: int
    group: int
    input_groups: tuple[int, ...]


@dataclass(frozen=True)
class ParentAnalysis:
    """What `analyze` learned about a parent: what may shrink, what is coupled, what is not.

    Attributes:
        name: the parent model's name.
        trained: whether `transform(inherit=True)` copies its weights (an untrained parent's
            random weights carry nothing, so its children start fresh from their seed).
        prunable: every conv, dense and separable conv layer, input to output.
        groups: the channel groups; `PrunableLayer.group` and `FactorizableConv.group` index it.
        factorizable: the convs that may become n×1 + 1×n, input to output.
        blocked: `(layer name, reason)` for each layer whose channels cannot be traced; it is
            kept as it is, and the groups touching it keep their width.
        outputs: the prunable layers that keep their size because they feed a model output.
        model: the parent as a functional model (a `Sequential` is converted).
    """

    name: str
    trained: bool
    prunable: tuple[PrunableLayer, ...]
    groups: tuple[ChannelGroup, ...]
    factorizable: tuple[FactorizableConv, ...]
    blocked: tuple[tuple[str, str], ...]
    outputs: tuple[str, ...]
    model: Any = field(compare=False, repr=False)
    _graph: _Graph = field(compare=False, repr=False)

    def channels(self, group: int, *, width: float) -> int:
        """Channels of group `group` at `width`."""
        return self.groups[group].at(width)


@dataclass(frozen=True)
class _Layout:
    """The last axis of one tensor: `(group, channels)` segments, repeated `spatial` times.

    A `Concatenate` along channels makes several segments; a `Flatten` of an H×W×C map
    repeats the C channels H·W times (index `s·C + c`), which is how a Dense layer's kernel
    rows follow the conv before it."""

    segments: tuple[tuple[int, int], ...]
    spatial: int = 1

    @property
    def total(self) -> int:
        return sum(size for _, size in self.segments)


@dataclass(frozen=True)
class _Graph:
    """What `transform` needs from the analysis: nodes in order and each layer's role."""

    nodes: tuple
    roles: dict[str, str]
    inputs: dict[str, _Layout]
    groups: dict[str, int]


# Roles of a layer in the channel bookkeeping.
_CONV, _DENSE, _SEPARABLE = "conv", "dense", "separable"
_PASS, _MERGE, _CONCAT, _FLATTEN = "passthrough", "merge", "concat", "flatten"
_RESHAPE_CHANNELS, _RESHAPE_FLATTEN, _UNKNOWN = "reshape_channels", "reshape_flatten", "unknown"

_PASSTHROUGH_NAMES = (
    "BatchNormalization", "Activation", "ReLU", "LeakyReLU", "ELU", "Softmax",
    "ThresholdedReLU", "PReLU", "Dropout", "SpatialDropout2D", "GaussianNoise",
    "GaussianDropout", "AlphaDropout", "ActivityRegularization", "MaxPooling2D",
    "AveragePooling2D", "ZeroPadding2D", "Cropping2D", "UpSampling2D", "Resizing", "Rescaling",
    "CenterCrop", "DepthwiseConv2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D",
    "RandomFlip", "RandomTranslation", "RandomRotation", "RandomZoom", "RandomContrast",
    "RandomBrightness",
)
_MERGE_NAMES = ("Add", "Subtract", "Multiply", "Maximum", "Minimum", "Average")


@cache
def _known_roles() -> dict[type, str]:
    """Exact Keras classes → role (a subclass may change `call`, so it is unknown)."""
    from tensorflow.keras import layers

    roles = {layers.Conv2D: _CONV, layers.Dense: _DENSE, layers.SeparableConv2D: _SEPARABLE,
             layers.Concatenate: _CONCAT, layers.Flatten: _FLATTEN}
    for names, role in ((_PASSTHROUGH_NAMES, _PASS), (_MERGE_NAMES, _MERGE)):
        for name in names:
            cls = getattr(layers, name, None)
            if cls is not None:
                roles[cls] = role
    return roles


class _UnionFind:
    """Raw channel groups, merged when layers couple them; fixed ones keep their width."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.size: list[int] = []
        self.producers: list[list[str]] = []
        self.fixed: list[tuple[int, str]] = []

    def new(self, size: int, producer: str | None = None) -> int:
        self.parent.append(len(self.parent))
        self.size.append(size)
        self.producers.append([producer] if producer else [])
        return len(self.parent) - 1

    def find(self, g: int) -> int:
        while self.parent[g] != g:
            self.parent[g] = self.parent[self.parent[g]]
            g = self.parent[g]
        return g

    def union(self, a: int, b: int) -> None:
        a, b = self.find(a), self.find(b)
        if a != b:
            a, b = min(a, b), max(a, b)
            self.parent[b] = a
            self.producers[a].extend(self.producers[b])

    def fix(self, layout: _Layout, reason: str) -> None:
        self.fixed.extend((g, reason) for g, _ in layout.segments)


def _last_dim(tensor) -> int:
    shape = tensor.shape
    return int(shape[-1]) if shape.rank and shape.rank > 1 and shape[-1] is not None else 0


def _is_last_axis(axis, rank: int) -> bool:
    axes = list(axis) if isinstance(axis, list | tuple) else [axis]
    return len(axes) == 1 and axes[0] in (-1, rank - 1)


def _role(layer, node, shared: int) -> tuple[str, str | None]:
    """The layer's role, or `_UNKNOWN` and the reason its channels cannot be traced."""
    import tensorflow as tf

    kind = type(layer).__name__
    if isinstance(layer, tf.keras.Model):
        return _UNKNOWN, f"nested {kind} model; rewrite it on its own"
    if shared > 1:
        return _UNKNOWN, f"shared layer called {shared} times"
    role = _known_roles().get(type(layer))
    if role is None:
        if type(layer) is tf.keras.layers.Reshape:
            return _reshape_role(node)
        return _UNKNOWN, f"{kind} is not a layer the rewriter knows"
    if getattr(layer, "data_format", "channels_last") == "channels_first":
        return _UNKNOWN, f"{kind} with data_format='channels_first'"
    rank = node.keras_inputs[0].shape.rank if node.keras_inputs else 0
    if role == _CONV and layer.groups != 1:
        return _UNKNOWN, f"grouped Conv2D (groups={layer.groups})"
    if kind == "DepthwiseConv2D" and layer.depth_multiplier != 1:
        return _UNKNOWN, f"DepthwiseConv2D with depth_multiplier={layer.depth_multiplier}"
    if kind in ("BatchNormalization", "Softmax") and not _is_last_axis(layer.axis, rank):
        return _UNKNOWN, f"{kind} over axis {layer.axis}, not the channel axis"
    if role == _CONCAT and not _is_last_axis(layer.axis, rank):
        return _MERGE, None  # along a spatial axis every input shares the channels
    return role, None


def _reshape_role(node) -> tuple[str, str | None]:
    import tensorflow as tf

    source = node.keras_inputs[0].shape
    target = tf.nest.flatten(node.outputs)[0].shape
    known = all(d is not None for d in source[1:]) and all(d is not None for d in target[1:])
    if known and target.rank == 2 and source.rank > 2:
        return _RESHAPE_FLATTEN, None
    if known and target[-1] == source[-1]:
        return _RESHAPE_CHANNELS, None
    return _UNKNOWN, f"Reshape {tuple(source[1:])} -> {tuple(target[1:])} mixes the channels"


def _functional(model):
    """The model's functional graph, or `RewriteError` naming what it is instead."""
    import tensorflow as tf

    if not isinstance(model, tf.keras.Model):
        raise RewriteError(
            f"cannot rewrite a {type(model).__module__}.{type(model).__name__}: the parent must "
            "be a Keras 2 (tf.keras) functional or Sequential model"
        )
    if isinstance(model, tf.keras.Sequential):
        if not model.inputs:
            raise RewriteError(
                f"Sequential model {model.name!r} has no input shape; start it with "
                "tf.keras.Input(shape=...) or call model.build(input_shape) first"
            )
        return tf.keras.Model(model.inputs, model.outputs, name=model.name)
    if not getattr(model, "_is_graph_network", False):
        raise RewriteError(
            f"model {model.name!r} is a subclassed {type(model).__name__} without a functional "
            "graph; build the parent with the functional API or Sequential"
        )
    return model


def analyze(model: keras.Model, *, trained: bool = True) -> ParentAnalysis:
    """Walks the parent's graph: prunable layers, coupled channel groups, factorizable convs.

    Args:
        model: a Keras 2 functional or `Sequential` model (built).
        trained: whether its weights are worth inheriting; pass False for a freshly built
            parent, whose children `transform` then initializes from their seed.

    Channels flow through the graph as groups: a conv, dense or separable conv starts a
    group; BatchNorm, activations, pooling, padding, dropout and depthwise convs pass their
    input's group on; merges (`Add`, `Multiply`, …) join their inputs' groups; a channel
    `Concatenate` lists its inputs' groups; `Flatten` repeats them per position. The model's
    inputs and outputs keep their width, and so does every group that touches a layer the
    rewriter does not know (listed in `blocked`).

    Raises:
        RewriteError: not a Keras 2 model, or a model without a functional graph.
    """
    import tensorflow as tf

    graph_model = _functional(model)
    nodes = tuple(
        node
        for depth in sorted(graph_model._nodes_by_depth, reverse=True)
        for node in graph_model._nodes_by_depth[depth]
    )
    calls: dict[str, int] = {}
    for node in nodes:
        calls[node.layer.name] = calls.get(node.layer.name, 0) + 1
    uf = _UnionFind()
    layouts: dict[int, _Layout] = {}
    roles: dict[str, str] = {}
    inputs: dict[str, _Layout] = {}
    out_groups: dict[str, int] = {}
    blocked: dict[str, str] = {}

    for node in nodes:
        layer = node.layer
        outs = tf.nest.flatten(node.outputs)
        if node.is_input:
            size = _last_dim(outs[0])
            layouts[id(outs[0])] = layout = _Layout(((uf.new(size), size),))
            uf.fix(layout, "model input")
            roles[layer.name] = "input"
            continue
        ins = [layouts[id(t)] for t in node.keras_inputs]
        role, reason = _role(layer, node, calls[layer.name])
        out, reason = _trace(uf, layer, node, role, ins, reason)
        if out is None:
            role = _UNKNOWN
            blocked.setdefault(layer.name, reason)
            for layout in ins:
                uf.fix(layout, f"touches {layer.name} ({reason})")
            for t in outs:
                g = uf.new(_last_dim(t))
                layouts[id(t)] = layout = _Layout(((g, _last_dim(t)),))
                uf.fix(layout, f"output of {layer.name} ({reason})")
        else:
            layouts[id(outs[0])] = out
            if role in (_CONV, _DENSE, _SEPARABLE):
                out_groups[layer.name] = out.segments[0][0]
        roles[layer.name] = role
        if ins:
            inputs[layer.name] = ins[0]
    output_raw = []
    for t in graph_model.outputs:
        uf.fix(layouts[id(t)], "model output")
        output_raw.extend(g for g, _ in layouts[id(t)].segments)
    return _resolve(
        graph_model, trained, nodes, uf, roles, inputs, out_groups, blocked, output_raw
    )


def _trace(uf, layer, node, role, ins, reason):
    """The output layout of one call, or `(None, reason)` when its channels are lost."""
    if role == _UNKNOWN:
        return None, reason
    first = ins[0]
    if role in (_CONV, _DENSE, _SEPARABLE):
        size = layer.units if role == _DENSE else layer.filters
        return _Layout(((uf.new(size, layer.name), size),)), None
    if role == _PASS:  # element-wise or per-channel, so flattened tensors pass too
        return first, None
    if role in (_FLATTEN, _RESHAPE_FLATTEN):
        shape = node.keras_inputs[0].shape
        if shape.rank <= 2:
            return first, None
        if first.spatial != 1 or any(d is None for d in shape[1:-1]):
            return None, f"{type(layer).__name__} of a map with unknown spatial size"
        return _Layout(first.segments, math.prod(int(d) for d in shape[1:-1])), None
    if role == _RESHAPE_CHANNELS:
        if first.spatial != 1:
            return None, "Reshape of a flattened tensor"
        return first, None
    if role == _CONCAT:
        if any(layout.spatial != 1 for layout in ins):
            return None, "Concatenate of flattened tensors"
        return _Layout(tuple(s for layout in ins for s in layout.segments)), None
    # merge: the inputs' channels are added (multiplied, …) one to one.
    shapes = {(tuple(size for _, size in lay.segments), lay.spatial) for lay in ins}
    if len(shapes) != 1:
        return None, f"{type(layer).__name__} of inputs whose channels are split differently"
    for layout in ins[1:]:
        for (a, _), (b, _) in zip(first.segments, layout.segments, strict=True):
            uf.union(a, b)
    return first, None


def _resolve(model, trained, nodes, uf, roles, inputs, out_groups, blocked, output_raw):
    canon: dict[int, int] = {}
    for g in range(len(uf.parent)):
        canon.setdefault(uf.find(g), len(canon))
    reasons: dict[int, str] = {}
    for g, reason in uf.fixed:
        reasons.setdefault(canon[uf.find(g)], reason)
    groups = tuple(
        ChannelGroup(
            id=cid, channels=uf.size[root], scalable=cid not in reasons,
            producers=tuple(uf.producers[root]), reason=reasons.get(cid),
        )
        for root, cid in canon.items()
    )

    def resolved(layout: _Layout) -> _Layout:
        return _Layout(tuple((canon[uf.find(g)], s) for g, s in layout.segments), layout.spatial)

    inputs = {name: resolved(layout) for name, layout in inputs.items()}
    out_groups = {name: canon[uf.find(g)] for name, g in out_groups.items()}
    output_groups = {canon[uf.find(g)] for g in output_raw}
    prunable, factorizable = [], []
    for node in nodes:
        layer = node.layer
        role = roles[layer.name]
        if role not in (_CONV, _DENSE, _SEPARABLE):
            continue
        g = out_groups[layer.name]
        prunable.append(PrunableLayer(
            name=layer.name, kind=type(layer).__name__, channels=groups[g].channels, group=g,
            scalable=groups[g].scalable,
        ))
        if role == _CONV and layer.kernel_size[0] == layer.kernel_size[1] > 1:
            layout = inputs[layer.name]
            factorizable.append(FactorizableConv(
                name=layer.name, n=layer.kernel_size[0], m=groups[g].channels,
                c=layout.total, group=g,
                input_groups=tuple(gid for gid, _ in layout.segments),
            ))
    outputs = tuple(p.name for p in prunable if p.group in output_groups)
    return ParentAnalysis(
        name=model.name, trained=trained, prunable=tuple(prunable), groups=groups,
        factorizable=tuple(factorizable), blocked=tuple(blocked.items()), outputs=outputs,
        model=model, _graph=_Graph(nodes=nodes, roles=roles, inputs=inputs, groups=out_groups),
    )


def offered_factorizations(
    parent: ParentAnalysis | keras.Model, *, width: float, mode: str
) -> tuple[str, ...]:
    """The convs the search may factorize at `width`, input to output.

    The decision is `search_spaces.rule.is_offered` at the width-scaled m and c: `guided`,
    where n×1 + 1×n has fewer parameters than n×n (P1 = m(nc + nm + 2) < P0 = m(n²c + 1),
    about n > 1 + m/c; seed 002); `unguided`, every n×n conv with n > 1, so the benefit of
    the rule can be measured.
    """
    analysis = parent if isinstance(parent, ParentAnalysis) else analyze(parent)
    return tuple(
        conv.name for conv in analysis.factorizable
        if is_offered(n=conv.n, m=analysis.channels(conv.group, width=width),
                      c=sum(analysis.channels(g, width=width) for g in conv.input_groups),
                      mode=mode))


def factorize_kernel(kernel: np.ndarray, *, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """The n×1 and 1×n kernels whose composition best approximates an n×n kernel at `rank`.

    The n×n×c×m kernel K[h, w, c, m] is the (c·n)×(n·m) matrix M[(c, h), (w, m)]: the n×1
    conv sums over (c, h), the 1×n conv over (w, r). With M = U S Vᵀ, the first kernel
    (n×1×c×r) is U[:, :r]·√S and the second (1×n×r×m) is √S·Vᵀ[:r], the truncated SVD, the
    best rank-r approximation in Frobenius norm (Eckart–Young); at r = min(c·n, n·m) it
    is exact. A rank beyond that is padded with zero filters. Tai et al. (ICLR 2016) use
    this scheme for their low-rank layers.
    """
    n, n2, c, m = kernel.shape
    if n != n2:
        raise ValueError(f"kernel must be square, got {n}x{n2}")
    if rank < 1:
        raise ValueError(f"rank must be at least 1, got {rank}")
    matrix = np.transpose(kernel, (2, 0, 1, 3)).reshape(c * n, n * m).astype(np.float64)
    u, s, vt = np.linalg.svd(matrix, full_matrices=False)
    k = min(rank, s.size)
    root = np.sqrt(s[:k])
    a = np.zeros((c * n, rank))
    b = np.zeros((rank, n * m))
    a[:, :k] = u[:, :k] * root
    b[:k] = root[:, None] * vt[:k]
    first = a.reshape(c, n, rank).transpose(1, 0, 2)[:, None]
    second = b.reshape(rank, n, m).transpose(1, 0, 2)[None]
    return first.astype(kernel.dtype), second.astype(kernel.dtype)


def factorized_names(name: str, n: int) -> tuple[str, str]:
    """Keras layer names of the n×1 and 1×n halves of conv layer `name`."""
    return f"{name}_{n}x1", f"{name}_1x{n}"


def transform(
    parent: ParentAnalysis | keras.Model,
    *,
    width: float,
    factorize: tuple[str, ...] = (),
    inherit: bool = True,
    seed: int | None = None,
    activation_between: bool = False,
) -> keras.Model:
    """A new model: the parent with its channels scaled by `width` and `factorize` split.

    Every scalable channel group gets `scaled(channels, width)` channels, the same in every
    layer that writes or reads it; output layers keep the class count, so the output shape
    is the parent's. Each conv in `factorize` becomes `<name>_nx1` (vertical stride and
    dilation, r filters, no bias or activation) then `<name>_1xn` (horizontal stride and
    dilation, the layer's filters, bias and activation), with the layer's padding, so the
    output shape is unchanged. With no nonlinearity between, more than min(c·n, n·m)
    intermediate filters add parameters but no expressiveness, so r = min(m, c·n, n·m).

    Args:
        parent: a `ParentAnalysis` or a model to `analyze`.
        width: the width multiplier α (> 0).
        factorize: names of `FactorizableConv` layers.
        inherit: copy the weights of a trained parent: the top-L1 channels of each narrower
            group (Li et al., ICLR 2017), decided once per group; a factorized conv starts
            from the truncated SVD of its kept kernel (`factorize_kernel`). Channels a wider
            group adds start fresh, and their consumers' rows start at zero, so the child
            computes the parent's function. False, or an untrained parent: fresh weights.
        seed: seeds the fresh initialization (`tf.keras.utils.set_random_seed`).
        activation_between: the built-in families' layout (seed 002's notebook): r = m, and
            both halves get the layer's bias and activation, as `objectives.build` builds them.

    Raises:
        RewriteError: a bad width or a layer in `factorize` that cannot be factorized.
    """
    import tensorflow as tf

    analysis = parent if isinstance(parent, ParentAnalysis) else analyze(parent)
    _check_arguments(analysis, width=width, factorize=factorize)
    sizes = {g.id: g.at(width) for g in analysis.groups}
    copying = inherit and analysis.trained
    keep = _kept_channels(analysis, sizes) if copying else {}
    if seed is not None:
        tf.keras.utils.set_random_seed(seed)
    child, built = _rebuilt(analysis, sizes=sizes, factorize=set(factorize),
                            activation_between=activation_between)
    if copying:
        _inherit(analysis, built, keep, sizes)
    return child


def _check_arguments(analysis: ParentAnalysis, *, width: float,
                     factorize: tuple[str, ...]) -> None:
    """Raises `RewriteError` for a width that is not a positive number or a name in
    `factorize` that is no factorizable conv of the parent."""
    if isinstance(width, bool) or not (
        isinstance(width, numbers.Real) and math.isfinite(width) and width > 0
    ):
        raise RewriteError(f"width must be a positive number, got {width!r}")
    convs = {conv.name: conv for conv in analysis.factorizable}
    for name in factorize:
        if name not in convs:
            raise RewriteError(
                f"model {analysis.name!r} has no factorizable conv {name!r}; choose from "
                f"{', '.join(convs) or 'none'}"
            )


def _rebuilt(analysis: ParentAnalysis, *, sizes: dict, factorize: set[str],
             activation_between: bool) -> tuple[keras.Model, dict[str, list]]:
    """The parent's graph rebuilt node by node with fresh layers at the new widths
    (`_new_layers`), and those layers by the parent layer's name (for `_inherit`)."""
    import tensorflow as tf

    built: dict[str, list] = {}
    tensors: dict[int, Any] = {}
    for node in analysis._graph.nodes:
        layer = node.layer
        outs = tf.nest.flatten(node.outputs)
        if node.is_input:
            config = layer.get_config()
            tensors[id(outs[0])] = tf.keras.Input(
                batch_shape=config["batch_input_shape"], dtype=config["dtype"],
                sparse=config.get("sparse", False), ragged=config.get("ragged", False),
                name=layer.name,
            )
            continue
        if layer.name not in built:
            built[layer.name] = _new_layers(
                layer, analysis, sizes, factorize, activation_between
            )
        args, kwargs = tf.nest.map_structure(
            lambda t: tensors.get(id(t), t), (node.call_args, node.call_kwargs)
        )
        new = built[layer.name]
        y = new[1](new[0](args[0])) if len(new) == 2 else new[0](*args, **kwargs)
        for old, fresh in zip(outs, tf.nest.flatten(y), strict=True):
            tensors[id(old)] = fresh
    model = analysis.model
    ins = [tensors[id(t)] for t in model.inputs]
    outs = [tensors[id(t)] for t in model.outputs]
    child = tf.keras.Model(
        ins[0] if len(ins) == 1 else ins, outs[0] if len(outs) == 1 else outs, name=model.name
    )
    return child, built


def _new_layers(layer, analysis: ParentAnalysis, sizes, factorize, activation_between) -> list:
    """Fresh layer(s) for `layer` at the new widths (two for a factorized conv)."""
    graph = analysis._graph
    role = graph.roles[layer.name]
    cls = type(layer)
    if role == _UNKNOWN:
        try:
            return [cls.from_config(layer.get_config())]
        except (NotImplementedError, TypeError, ValueError):
            return [layer]  # a layer Keras cannot re-create is shared with the parent
    config = copy.deepcopy(layer.get_config())
    if role in (_CONV, _SEPARABLE):
        config["filters"] = sizes[graph.groups[layer.name]]
    elif role == _DENSE:
        config["units"] = sizes[graph.groups[layer.name]]
    elif role in (_RESHAPE_CHANNELS, _RESHAPE_FLATTEN):
        layout = graph.inputs[layer.name]
        channels = sum(sizes[g] for g, _ in layout.segments)
        target = list(config["target_shape"])
        if role == _RESHAPE_FLATTEN:
            spatial = math.prod(int(d) for d in layer.input_shape[1:-1])
            target = [spatial * channels]
        elif target[-1] != -1:
            target[-1] = channels
        config["target_shape"] = tuple(target)
    if role == _CONV and layer.name in factorize:
        return _factorized_pair(layer, config, analysis, sizes, activation_between)
    return [cls.from_config(config)]


def _factorized_pair(layer, config, analysis, sizes, activation_between) -> list:
    from tensorflow.keras import layers

    graph = analysis._graph
    n = layer.kernel_size[0]
    m = config["filters"]
    c = sum(sizes[g] for g, _ in graph.inputs[layer.name].segments)
    rank = m if activation_between else min(m, c * n, n * m)
    first_name, second_name = factorized_names(layer.name, n)
    (sv, sh), (dv, dh) = layer.strides, layer.dilation_rate
    first = dict(copy.deepcopy(config), name=first_name, filters=rank, kernel_size=(n, 1),
                 strides=(sv, 1), dilation_rate=(dv, 1), activity_regularizer=None)
    if not activation_between:
        first.update(activation="linear", use_bias=False)
    second = dict(config, name=second_name, kernel_size=(1, n), strides=(1, sh),
                  dilation_rate=(1, dh))
    return [layers.Conv2D.from_config(first), layers.Conv2D.from_config(second)]


def _filter_l1(layer) -> np.ndarray:
    """Sum of absolute kernel weights per output channel (Li et al., ICLR 2017)."""
    kernel = layer.pointwise_kernel if hasattr(layer, "pointwise_kernel") else layer.kernel
    kernel = np.abs(kernel.numpy())
    return kernel.reshape(-1, kernel.shape[-1]).sum(axis=0)


def _kept_channels(analysis: ParentAnalysis, sizes: dict[int, int]) -> dict[int, np.ndarray]:
    """Per group, the parent channels the child keeps, ascending.

    A narrower group keeps the channels with the largest L1 norm summed over all the layers
    that write the group, so coupled layers keep the same channels (ties: the lower index).
    """
    keep = {}
    for group in analysis.groups:
        new = sizes[group.id]
        if new >= group.channels:
            keep[group.id] = np.arange(group.channels)
            continue
        score = np.zeros(group.channels)
        for name in group.producers:
            score += _filter_l1(analysis.model.get_layer(name))
        keep[group.id] = np.sort(np.argsort(-score, kind="stable")[:new])
    return keep


def _channel_map(layout: _Layout, keep, sizes) -> tuple[np.ndarray, np.ndarray]:
    """(parent indices, child indices) of the kept channels along a tensor's last axis."""
    old_total = layout.total
    new_total = sum(sizes[g] for g, _ in layout.segments)
    src, dst = [], []
    for s in range(layout.spatial):
        old_offset, new_offset = s * old_total, s * new_total
        for g, size in layout.segments:
            src.append(old_offset + keep[g])
            dst.append(new_offset + np.arange(keep[g].size))
            old_offset += size
            new_offset += sizes[g]
    return np.concatenate(src), np.concatenate(dst)


def _embed(old: np.ndarray, base: np.ndarray, maps: dict, zero_axes: tuple[int, ...] = ()):
    """`base` with the parent's kept entries of `old` written at their child positions.

    `maps[axis] = (src, dst)`; along each axis in `zero_axes` the child positions no parent
    entry lands on (channels a wider group adds) are zeroed."""
    out = base.copy()
    for axis in zero_axes:
        mask = np.ones(out.shape[axis], dtype=bool)
        mask[maps[axis][1]] = False
        index = [slice(None)] * out.ndim
        index[axis] = mask
        out[tuple(index)] = 0
    src = [maps[a][0] if a in maps else np.arange(old.shape[a]) for a in range(old.ndim)]
    dst = [maps[a][1] if a in maps else np.arange(out.shape[a]) for a in range(old.ndim)]
    out[np.ix_(*dst)] = old[np.ix_(*src)]
    return out


def _inherit(analysis: ParentAnalysis, built: dict[str, list], keep, sizes) -> None:
    """Copies the parent's weights into the child, sliced to the kept channels."""
    graph = analysis._graph
    for node in graph.nodes:
        layer = node.layer
        new = built.get(layer.name)
        if not new or new[0] is layer or not layer.weights:
            continue
        role = graph.roles[layer.name]
        old = layer.get_weights()
        if role not in (_CONV, _DENSE, _SEPARABLE, _PASS):
            new[0].set_weights(old)
            continue
        into = _channel_map(graph.inputs[layer.name], keep, sizes)
        if role == _PASS:
            new[0].set_weights(_inherit_passthrough(layer, old, new[0].get_weights(), into))
            continue
        g = graph.groups[layer.name]
        out = (keep[g], np.arange(keep[g].size))
        if len(new) == 2:
            _inherit_factorized(layer, old, new, into, out)
            continue
        base = new[0].get_weights()
        bias = [_embed(old[-1], base[-1], {0: out})] if layer.use_bias else []
        if role == _DENSE:
            new[0].set_weights([_embed(old[0], base[0], {0: into, 1: out}, (0,)), *bias])
        elif role == _SEPARABLE:
            dm = layer.depth_multiplier
            wide = tuple(np.repeat(ix * dm, dm) + np.tile(np.arange(dm), ix.size) for ix in into)
            new[0].set_weights([
                _embed(old[0], base[0], {2: into}),
                _embed(old[1], base[1], {2: wide, 3: out}, (2,)),
                *bias,
            ])
        else:
            new[0].set_weights([_embed(old[0], base[0], {2: into, 3: out}, (2,)), *bias])


def _inherit_passthrough(layer, old, base, into) -> list:
    """Depthwise kernels, BatchNorm parameters and statistics, PReLU slopes: kept channels."""
    if type(layer).__name__ == "DepthwiseConv2D":  # kernel kh×kw×C×1, bias C
        return [_embed(w, b, {2 if w.ndim == 4 else 0: into})
                for w, b in zip(old, base, strict=True)]
    channels = int(layer.input_shape[-1])  # BatchNorm: four C vectors; PReLU: …×C or …×1
    return [
        _embed(w, b, {w.ndim - 1: into}) if w.shape[-1] == channels else w
        for w, b in zip(old, base, strict=True)
    ]


def _inherit_factorized(layer, old, new, into, out) -> None:
    """The two halves from the truncated SVD of the kept kernel; the bias on the second."""
    first, second = new
    n = layer.kernel_size[0]
    c, rank, m = first.kernel.shape[2], first.filters, second.filters
    kernel = _embed(old[0], np.zeros((n, n, c, m), old[0].dtype), {2: into, 3: out})
    k1, k2 = factorize_kernel(kernel, rank=rank)
    first.set_weights([k1, *([np.zeros(rank, k1.dtype)] if first.use_bias else [])])
    bias = [_embed(old[1], np.zeros(m, old[1].dtype), {0: out})] if layer.use_bias else []
    second.set_weights([k2, *bias])
