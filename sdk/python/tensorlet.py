"""Idiomatic Python over tensorlet's WIT ABI (``tensorlet:ml@0.2.0``).

Build a plugin with componentize-py; this module wraps the bindings it generates
(``wit_world``), so it only imports inside such a build:

* ``Tensor`` wraps the host ``tensor`` resource: NumPy-style operators that
  broadcast (``a + b``, ``x @ w``, ``-t``, ``t * 0.5``), ``shape``, reductions,
  softmax and the rest. Every op runs on the host; only ``Tensor.from_list`` and
  ``Tensor.tolist`` copy data across the component boundary. The N-D ops of ABI
  0.2 work on any rank: i64 tensors (``Tensor.from_i64``, ``cast``), batched
  ``matmul_t``, ``permute``/``slice``/``pad``/``flatten``…, ``gather`` and
  ``embedding``, ``conv2d``/``max_pool2d``/``layer_norm``/``batch_norm``/``dropout``
  and the losses (``cross_entropy``, ``mse_loss``…), each differentiable on the host.
* Errors are exceptions. A host ``result`` error (a bad shape, say) raises
  ``TensorletError``; any exception that escapes ``fit``, ``transform``,
  ``init``, ``step``, ``predict`` or ``forward`` becomes the plugin's WIT ``result`` error,
  so the host reports its message instead of trapping.
* ``Params`` is the host-owned state (fitted statistics, model parameters) as
  ordered named tensors. ``config`` arrives as a ``dict`` parsed from JSON.
* Gradients are the host's: ``loss.grad(params)`` returns ``Params`` holding
  d loss / d p for each parameter the host watches (those it passed to ``step``
  or, in training mode, to ``forward``); ``t.watch(name)`` watches any other
  tensor. A refusal (the loss does not depend on a parameter, say) raises
  ``TensorletError`` with the host's message.
* ``Model`` is a model that is only its forward pass: the host computes the loss,
  its gradients and the optimizer's update, and predicts with the softmax of the
  same ``forward``.
* ``export_preprocessor`` / ``export_trainer`` / ``export_predictor`` /
  ``export_model`` turn a class written against these types into the export class
  componentize-py looks for.
"""

from __future__ import annotations

import enum
import json
import math
import struct
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from componentize_py_types import Err
from wit_world.imports import tensor as _wit

__all__ = [
    "TensorletError",
    "Tensor",
    "Params",
    "Dtype",
    "UnaryOp",
    "BinaryOp",
    "ScalarOp",
    "Activation",
    "Reduction",
    "DataSpec",
    "Task",
    "Mode",
    "StepOutput",
    "Preprocessor",
    "Trainer",
    "Predictor",
    "Model",
    "export_preprocessor",
    "export_trainer",
    "export_predictor",
    "export_model",
    "derive_seed",
    "f32",
    "config_keys",
]

Number = Union[int, float]


class TensorletError(Exception):
    """A plugin error: a host op refused its inputs, or the plugin gave up."""


def _call(f, *args):
    """Calls a WIT function that returns ``result<_, string>``; raises on error."""
    try:
        return f(*args)
    except Err as e:
        raise TensorletError(str(e.value)) from None


def _shape(shape: Union[int, Sequence[int]]) -> List[int]:
    if isinstance(shape, int):
        return [shape]
    return [int(d) for d in shape]


def _flatten(data: Any, convert=float, what: str = "Tensor.from_list") -> Tuple[List[Any], List[int]]:
    """Flattens nested lists row-major (each element through ``convert``) and
    infers their shape."""
    if not isinstance(data, (list, tuple)):
        return [convert(data)], []
    if not data:
        return [], [0]
    parts = [_flatten(d, convert, what) for d in data]
    inner = parts[0][1]
    if any(s != inner for _, s in parts):
        raise TensorletError(f"{what}: nested lists are ragged")
    return [v for flat, _ in parts for v in flat], [len(data)] + inner


def _int(value: Any) -> int:
    """An integer element of an i64 tensor: an ``int``, or a float that is one."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise TensorletError(f"Tensor.from_i64: {value!r} is not an integer")


#: Element types (``Tensor.dtype``, ``Tensor.cast``): ``Dtype.F32``, ``Dtype.I64``.
Dtype = _wit.Dtype
#: The unary maps of ``Tensor.map``: ``UnaryOp.RELU``, ``UnaryOp.EXP``, …
UnaryOp = _wit.UnaryOp
#: The element-wise ops of ``Tensor.binary``: ``BinaryOp.MAXIMUM``, ``BinaryOp.LT``, …
BinaryOp = _wit.BinaryOp
#: The tensor-and-scalar ops of ``Tensor.scalar_op``: ``ScalarOp.POW``, …
ScalarOp = _wit.ScalarOp
#: The activations of ``Tensor.activate``: ``Activation.GELU``, ``Activation.SILU``, …
Activation = _wit.Activation
#: How a loss combines its values: ``Reduction.MEAN``, ``Reduction.SUM``, ``Reduction.NONE``.
Reduction = _wit.Reduction


def _enum(kind, value: Any, what: str):
    """A WIT enum case from the case itself or its name (``"mean"``, ``"gelu-tanh"``)."""
    if isinstance(value, kind):
        return value
    if isinstance(value, str):
        try:
            return kind[value.upper().replace("-", "_")]
        except KeyError:
            pass
    names = ", ".join(repr(m.name.lower()) for m in kind)
    raise TensorletError(f"{what}: {value!r} is not one of {names}")


def _pair(value: Union[int, Sequence[int]], what: str) -> Tuple[int, int]:
    """(height, width) from one number for both or a pair."""
    if isinstance(value, int):
        return (value, value)
    pair = tuple(int(v) for v in value)
    if len(pair) != 2:
        raise TensorletError(f"{what} must be a number or a (height, width) pair, got {value!r}")
    return pair  # type: ignore[return-value]


def _handle(value: Optional["Tensor"]) -> Optional[_wit.Tensor]:
    return None if value is None else value.handle


class Tensor:
    """An immutable tensor held by the host, f32 (or i64: class indices, token ids,
    the indices of ``gather``). Every op returns a new tensor."""

    __slots__ = ("handle",)

    def __init__(self, handle: _wit.Tensor):
        #: The raw WIT resource, for calling the bindings directly.
        self.handle = handle

    # Constructors -------------------------------------------------------

    @staticmethod
    def from_list(data: Any, shape: Optional[Sequence[int]] = None) -> "Tensor":
        """A tensor from nested lists (shape inferred) or a flat list and ``shape``."""
        if shape is None:
            flat, inferred = _flatten(data)
            shape = inferred
        else:
            flat = [float(v) for v in data]
        return Tensor(_call(_wit.Tensor.from_list, _shape(shape), flat))

    @staticmethod
    def scalar(value: Number) -> "Tensor":
        """A tensor of shape ``[1]``."""
        return Tensor.full([1], value)

    @staticmethod
    def zeros(shape: Union[int, Sequence[int]]) -> "Tensor":
        return Tensor(_call(_wit.Tensor.zeros, _shape(shape)))

    @staticmethod
    def ones(shape: Union[int, Sequence[int]]) -> "Tensor":
        return Tensor.full(shape, 1.0)

    @staticmethod
    def full(shape: Union[int, Sequence[int]], value: Number) -> "Tensor":
        return Tensor(_call(_wit.Tensor.fill, _shape(shape), float(value)))

    @staticmethod
    def randn(shape: Union[int, Sequence[int]], mean: Number = 0.0, std: Number = 1.0, seed: int = 0) -> "Tensor":
        """Normal samples; the same seed gives the same tensor on every host."""
        return Tensor(_call(_wit.Tensor.random_normal, _shape(shape), float(mean), float(std), int(seed)))

    @staticmethod
    def rand(shape: Union[int, Sequence[int]], low: Number = 0.0, high: Number = 1.0, seed: int = 0) -> "Tensor":
        """Uniform samples in ``[low, high)``."""
        return Tensor(_call(_wit.Tensor.random_uniform, _shape(shape), float(low), float(high), int(seed)))

    # Shape and data ------------------------------------------------------

    @property
    def shape(self) -> Tuple[int, ...]:
        return tuple(self.handle.shape())

    @property
    def ndim(self) -> int:
        return len(self.handle.shape())

    @property
    def size(self) -> int:
        """Number of elements."""
        return self.handle.numel()

    def __len__(self) -> int:
        shape = self.handle.shape()
        if not shape:
            raise TypeError("len() of a 0-d tensor")
        return shape[0]

    def tolist(self) -> List[float]:
        """The data, flat and row-major (copies it out of the host)."""
        return self.handle.to_list()

    def item(self) -> float:
        """The value of a one-element tensor."""
        data = self.handle.to_list()
        if len(data) != 1:
            raise TensorletError(f"item() needs exactly one element; shape is {list(self.shape)}")
        return data[0]

    def __repr__(self) -> str:
        return f"Tensor(shape={list(self.shape)})"

    # Linear algebra and layout -------------------------------------------

    def matmul(self, rhs: "Tensor") -> "Tensor":
        return Tensor(_call(self.handle.matmul, rhs.handle))

    def __matmul__(self, rhs: "Tensor") -> "Tensor":
        return self.matmul(rhs)

    @property
    def T(self) -> "Tensor":
        """Transpose of a 2-D tensor."""
        return Tensor(_call(self.handle.transpose))

    def reshape(self, *shape: Union[int, Sequence[int]]) -> "Tensor":
        dims = _shape(shape[0]) if len(shape) == 1 else _shape(shape)  # type: ignore[arg-type]
        return Tensor(_call(self.handle.reshape, dims))

    # Arithmetic (tensors broadcast like NumPy; numbers apply to every element)

    def _binary(self, op: str, rhs: Union["Tensor", Number]) -> "Tensor":
        if isinstance(rhs, Tensor):
            return Tensor(_call(getattr(self.handle, op), rhs.handle))
        if not isinstance(rhs, (int, float)):
            return NotImplemented  # type: ignore[return-value]
        v = float(rhs)
        if op == "add":
            return Tensor(self.handle.add_scalar(v))
        if op == "sub":
            return Tensor(self.handle.add_scalar(-v))
        if op == "mul":
            return Tensor(self.handle.mul_scalar(v))
        return Tensor(self.handle.mul_scalar(1.0 / v))

    def __add__(self, rhs):
        return self._binary("add", rhs)

    def __sub__(self, rhs):
        return self._binary("sub", rhs)

    def __mul__(self, rhs):
        return self._binary("mul", rhs)

    def __truediv__(self, rhs):
        return self._binary("div", rhs)

    def __radd__(self, lhs):
        return self._binary("add", lhs)

    def __rmul__(self, lhs):
        return self._binary("mul", lhs)

    def __rsub__(self, lhs):
        if not isinstance(lhs, (int, float)):
            return NotImplemented
        return Tensor(self.handle.map(_wit.UnaryOp.NEG).add_scalar(float(lhs)))

    def __rtruediv__(self, lhs):
        if not isinstance(lhs, (int, float)):
            return NotImplemented
        return Tensor.full(list(self.shape), lhs) / self

    def __neg__(self) -> "Tensor":
        return self.map(_wit.UnaryOp.NEG)

    def __abs__(self) -> "Tensor":
        return self.map(_wit.UnaryOp.ABS)

    # Element-wise maps ----------------------------------------------------

    def map(self, op: _wit.UnaryOp) -> "Tensor":
        return Tensor(self.handle.map(op))

    def relu(self) -> "Tensor":
        return self.map(_wit.UnaryOp.RELU)

    def relu_mask(self) -> "Tensor":
        """1 where the input is > 0, else 0 (the gradient mask of ``relu``)."""
        return self.map(_wit.UnaryOp.RELU_MASK)

    def sigmoid(self) -> "Tensor":
        return self.map(_wit.UnaryOp.SIGMOID)

    def tanh(self) -> "Tensor":
        return self.map(_wit.UnaryOp.TANH)

    def exp(self) -> "Tensor":
        return self.map(_wit.UnaryOp.EXP)

    def log(self) -> "Tensor":
        """Natural logarithm."""
        return self.map(_wit.UnaryOp.LOG)

    def sqrt(self) -> "Tensor":
        return self.map(_wit.UnaryOp.SQRT)

    def square(self) -> "Tensor":
        return self.map(_wit.UnaryOp.SQUARE)

    # Reductions and the rest ---------------------------------------------

    def _reduce(self, op: _wit.ReduceOp, axis: int, keepdims: bool) -> "Tensor":
        return Tensor(_call(self.handle.reduce, op, axis, keepdims))

    def sum(self, axis: int, keepdims: bool = False) -> "Tensor":
        return self._reduce(_wit.ReduceOp.SUM, axis, keepdims)

    def mean(self, axis: int, keepdims: bool = False) -> "Tensor":
        return self._reduce(_wit.ReduceOp.MEAN, axis, keepdims)

    def max(self, axis: int, keepdims: bool = False) -> "Tensor":
        return self._reduce(_wit.ReduceOp.MAX, axis, keepdims)

    def min(self, axis: int, keepdims: bool = False) -> "Tensor":
        return self._reduce(_wit.ReduceOp.MIN, axis, keepdims)

    def argmax(self, axis: int, keepdims: bool = False) -> "Tensor":
        """Index of the largest element along ``axis``, as f32 (first one on ties)."""
        return Tensor(_call(self.handle.argmax, axis, keepdims))

    def softmax(self, axis: int) -> "Tensor":
        return Tensor(_call(self.handle.softmax, axis))

    def log_softmax(self, axis: int) -> "Tensor":
        return Tensor(_call(self.handle.log_softmax, axis))

    def one_hot(self, classes: int) -> "Tensor":
        """``[n]`` class indices -> ``[n, classes]``."""
        return Tensor(_call(self.handle.one_hot, classes))

    def concat(self, rhs: "Tensor", axis: int = 0) -> "Tensor":
        return Tensor(_call(self.handle.concat, rhs.handle, axis))

    def __getitem__(self, rows: Union[slice, Sequence[int]]) -> "Tensor":
        """Rows: ``t[a:b]`` (a contiguous slice) or ``t[[3, 1, 2]]`` (gathered)."""
        if isinstance(rows, slice):
            start, stop, step = rows.indices(len(self))
            if step != 1:
                raise TensorletError("row slices take no step; gather rows with a list of indices")
            return Tensor(_call(self.handle.slice_rows, start, max(start, stop)))
        if isinstance(rows, int):
            raise TensorletError("index rows with a slice (t[i:i+1]) or a list of indices")
        return Tensor(_call(self.handle.gather_rows, [int(i) for i in rows]))

    # Gradients (computed by the host) -------------------------------------

    def watch(self, name: str) -> "Tensor":
        """A watched copy of this tensor, named ``name``: ``grad_of`` can
        differentiate with respect to it. Raises when ``name`` is already watched."""
        return Tensor(_call(self.handle.watch, name))

    def grad(self, params: Union["Params", Iterable[str]]) -> "Params":
        """The gradients of this one-element tensor (a loss) with respect to each
        entry of ``params`` the host watches (the parameters it passed in), as
        ``Params`` with the same names and shapes. Entries named ``opt.…``
        (optimizer state) are skipped. Raises ``TensorletError`` with the host's
        message when the loss does not depend on an entry, or only through an op
        without a gradient (``argmax``, ``one_hot``, ``relu_mask``)."""
        names = [n for n in params if not n.startswith(_OPTIMIZER_PREFIX)]
        if not names:
            raise TensorletError(
                "grad: no parameters to differentiate with respect to (every entry is "
                "`opt.…` state, or there are none)"
            )
        return self.grad_of(names)

    def grad_of(self, names: Iterable[str] = ()) -> "Params":
        """The gradients of this one-element tensor with respect to the watched
        tensors ``names``, in that order (every watched tensor when empty)."""
        return Params.from_wit(_call(self.handle.grad, [str(n) for n in names]))

    # N-D ops (ABI 0.2): dtypes ---------------------------------------------

    @staticmethod
    def from_i64(data: Any, shape: Optional[Sequence[int]] = None) -> "Tensor":
        """An i64 tensor (class indices, token ids, the indices of ``gather``) from
        nested lists of integers (shape inferred) or a flat list and ``shape``."""
        if shape is None:
            flat, inferred = _flatten(data, _int, "Tensor.from_i64")
            shape = inferred
        else:
            flat = [_int(v) for v in data]
        return Tensor(_call(_wit.Tensor.from_i64_list, _shape(shape), flat))

    @staticmethod
    def arange(n: int) -> "Tensor":
        """``0, 1, …, n - 1`` as an i64 tensor ``[n]`` (positions)."""
        return Tensor.from_i64(list(range(n)), [n])

    @property
    def dtype(self) -> "Dtype":
        """The element type, ``Dtype.F32`` or ``Dtype.I64``."""
        return self.handle.dtype()

    def tolist_i64(self) -> List[int]:
        """The data as integers, flat and row-major; raises when an f32 element is
        not an integer."""
        return _call(self.handle.to_i64_list)

    def cast(self, dtype: Union["Dtype", str]) -> "Tensor":
        """This tensor as ``dtype`` (``Dtype.I64`` or ``"i64"``, ``Dtype.F32`` or
        ``"f32"``). No gradient flows through a cast."""
        return Tensor(_call(self.handle.cast, _enum(Dtype, dtype, "cast")))

    # N-D ops: linear algebra and element-wise -------------------------------

    def matmul_t(self, rhs: "Tensor", transpose_self: bool = False, transpose_rhs: bool = False) -> "Tensor":
        """Batched matrix product over the last two axes (leading axes broadcast),
        transposing either operand's last two axes first without a copy:
        ``q.matmul_t(k, transpose_rhs=True)`` is ``q·kᵀ``."""
        return Tensor(_call(self.handle.matmul_transposed, rhs.handle, transpose_self, transpose_rhs))

    def binary(self, op: Union["BinaryOp", str], rhs: "Tensor") -> "Tensor":
        """An element-wise binary op (``BinaryOp`` or its name) with broadcasting."""
        return Tensor(_call(self.handle.binary, _enum(BinaryOp, op, "binary"), rhs.handle))

    def _compare(self, op: "BinaryOp", rhs: Union["Tensor", Number]) -> "Tensor":
        other = rhs if isinstance(rhs, Tensor) else Tensor.scalar(rhs)
        return Tensor(_call(self.handle.binary, op, other.handle))

    def maximum(self, rhs: Union["Tensor", Number]) -> "Tensor":
        """Element-wise maximum with a tensor (broadcast) or a number."""
        if isinstance(rhs, Tensor):
            return self._compare(BinaryOp.MAXIMUM, rhs)
        return self.scalar_op(ScalarOp.MAX, rhs)

    def minimum(self, rhs: Union["Tensor", Number]) -> "Tensor":
        """Element-wise minimum with a tensor (broadcast) or a number."""
        if isinstance(rhs, Tensor):
            return self._compare(BinaryOp.MINIMUM, rhs)
        return self.scalar_op(ScalarOp.MIN, rhs)

    def __pow__(self, rhs: Union["Tensor", Number]) -> "Tensor":
        """``t ** 2`` (a number exponent) or ``a ** b`` (element-wise, broadcast)."""
        if isinstance(rhs, Tensor):
            return self._compare(BinaryOp.POW, rhs)
        if not isinstance(rhs, (int, float)):
            return NotImplemented  # type: ignore[return-value]
        return self.scalar_op(ScalarOp.POW, rhs)

    def eq(self, rhs: Union["Tensor", Number]) -> "Tensor":
        """1 where ``self == rhs``, else 0 (a mask, f32)."""
        return self._compare(BinaryOp.EQ, rhs)

    def ne(self, rhs: Union["Tensor", Number]) -> "Tensor":
        """1 where ``self != rhs``, else 0."""
        return self._compare(BinaryOp.NE, rhs)

    def lt(self, rhs: Union["Tensor", Number]) -> "Tensor":
        """1 where ``self < rhs``, else 0."""
        return self._compare(BinaryOp.LT, rhs)

    def le(self, rhs: Union["Tensor", Number]) -> "Tensor":
        """1 where ``self <= rhs``, else 0."""
        return self._compare(BinaryOp.LE, rhs)

    def gt(self, rhs: Union["Tensor", Number]) -> "Tensor":
        """1 where ``self > rhs``, else 0."""
        return self._compare(BinaryOp.GT, rhs)

    def ge(self, rhs: Union["Tensor", Number]) -> "Tensor":
        """1 where ``self >= rhs``, else 0."""
        return self._compare(BinaryOp.GE, rhs)

    def scalar_op(self, op: Union["ScalarOp", str], value: Number) -> "Tensor":
        """An op with the number ``value`` on every element (``ScalarOp`` or its name)."""
        return Tensor(_call(self.handle.scalar, _enum(ScalarOp, op, "scalar_op"), float(value)))

    def leaky_relu(self, slope: Number = 0.01) -> "Tensor":
        """``x`` where ``x > 0``, else ``slope·x``."""
        return self.scalar_op(ScalarOp.LEAKY_RELU, slope)

    def activate(self, op: Union["Activation", str]) -> "Tensor":
        """An activation (``Activation`` or its name) on every element."""
        return Tensor(_call(self.handle.activate, _enum(Activation, op, "activate")))

    def gelu(self, approximate: str = "none") -> "Tensor":
        """GELU, ``x·Φ(x)``; ``approximate="tanh"`` for the tanh form (PyTorch's
        ``GELU(approximate=…)``)."""
        if approximate not in ("none", "tanh"):
            raise TensorletError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
        return self.activate(Activation.GELU if approximate == "none" else Activation.GELU_TANH)

    def silu(self) -> "Tensor":
        """SiLU, ``x·sigmoid(x)``."""
        return self.activate(Activation.SILU)

    def softplus(self) -> "Tensor":
        """``ln(1 + eˣ)``, without overflow."""
        return self.activate(Activation.SOFTPLUS)

    def clamp(self, low: Optional[Number] = None, high: Optional[Number] = None) -> "Tensor":
        """Every element limited to ``low..=high`` (``None``: unbounded on that side)."""
        lo = float("-inf") if low is None else float(low)
        hi = float("inf") if high is None else float(high)
        return Tensor(_call(self.handle.clamp, lo, hi))

    def select(self, mask: "Tensor", otherwise: "Tensor") -> "Tensor":
        """This tensor where ``mask`` is nonzero, ``otherwise`` elsewhere (all three
        broadcast; NumPy's ``where(mask, self, otherwise)``)."""
        return Tensor(_call(self.handle.select, mask.handle, otherwise.handle))

    def masked_fill(self, mask: "Tensor", value: Number) -> "Tensor":
        """``value`` where ``mask`` (broadcast) is nonzero: a causal mask before a softmax."""
        return Tensor(_call(self.handle.masked_fill, mask.handle, float(value)))

    def cumsum(self, axis: int, reverse: bool = False) -> "Tensor":
        """Running sums along ``axis``, from the end when ``reverse``."""
        return Tensor(_call(self.handle.cumsum, axis, reverse))

    # N-D ops: shape ---------------------------------------------------------

    def permute(self, *axes: Union[int, Sequence[int]]) -> "Tensor":
        """The axes reordered: output axis i is input axis ``axes[i]``
        (``t.permute(0, 2, 1)`` or ``t.permute([0, 2, 1])``)."""
        order = _shape(axes[0]) if len(axes) == 1 else _shape(axes)  # type: ignore[arg-type]
        return Tensor(_call(self.handle.permute, order))

    def slice(self, axis: int, start: int, end: int, step: int = 1) -> "Tensor":
        """Elements ``start..end`` along ``axis``, every ``step``-th."""
        return Tensor(_call(self.handle.slice, axis, start, end, step))

    @staticmethod
    def concat_all(parts: Sequence["Tensor"], axis: int = 0) -> "Tensor":
        """The tensors ``parts`` joined along ``axis`` (all other axes equal)."""
        return Tensor(_call(_wit.Tensor.concat_all, [p.handle for p in parts], axis))

    def pad(self, pads: Sequence[Tuple[int, int]], value: Number = 0.0) -> "Tensor":
        """Padded with ``value``: ``pads[i]`` is (before, after) for axis i, one
        pair per axis."""
        pairs = [(int(a), int(b)) for a, b in pads]
        return Tensor(_call(self.handle.pad, pairs, float(value)))

    def flatten(self, start: int = 0, end: Optional[int] = None) -> "Tensor":
        """Axes ``start..=end`` (default: to the last axis) merged into one."""
        last = self.ndim - 1 if end is None else end
        return Tensor(_call(self.handle.flatten, start, last))

    def squeeze(self, axis: int) -> "Tensor":
        """Axis ``axis``, which must have size 1, removed."""
        return Tensor(_call(self.handle.squeeze, axis))

    def unsqueeze(self, axis: int) -> "Tensor":
        """A new axis of size 1 at ``axis``."""
        return Tensor(_call(self.handle.unsqueeze, axis))

    def broadcast_to(self, shape: Union[int, Sequence[int]]) -> "Tensor":
        """Broadcast to ``shape`` (NumPy rules)."""
        return Tensor(_call(self.handle.broadcast_to, _shape(shape)))

    # N-D ops: indexing (indices: an i64 Tensor, or lists of integers) --------

    def index_select(self, axis: int, indices: Union["Tensor", Sequence[int]]) -> "Tensor":
        """The entries at the 1-D ``indices`` along ``axis``."""
        return Tensor(_call(self.handle.index_select, axis, _indices(indices).handle))

    def embedding(self, ids: Union["Tensor", Sequence[Any]]) -> "Tensor":
        """Rows of this table ``[vocab, dim]`` at ``ids`` (any shape):
        ``ids.shape + [dim]``. An id outside ``0..vocab`` raises, naming it."""
        return Tensor(_call(self.handle.embedding, _indices(ids).handle))

    def gather(self, axis: int, indices: Union["Tensor", Sequence[Any]]) -> "Tensor":
        """PyTorch's ``gather``: ``out[..., i, ...] = self[..., indices[..., i, ...], ...]``
        along ``axis`` (``indices`` of the same rank)."""
        return Tensor(_call(self.handle.gather, axis, _indices(indices).handle))

    def scatter_add(self, axis: int, indices: Union["Tensor", Sequence[Any]], src: "Tensor") -> "Tensor":
        """This tensor plus ``src`` added at ``indices`` along ``axis`` (PyTorch's
        ``scatter_add``)."""
        return Tensor(_call(self.handle.scatter_add, axis, _indices(indices).handle, src.handle))

    def index_add(self, axis: int, indices: Union["Tensor", Sequence[int]], src: "Tensor") -> "Tensor":
        """This tensor plus the slices of ``src`` added at the 1-D ``indices`` along
        ``axis`` (PyTorch's ``index_add``)."""
        return Tensor(_call(self.handle.index_add, axis, _indices(indices).handle, src.handle))

    # N-D ops: layers ---------------------------------------------------------

    def conv2d(
        self,
        weight: "Tensor",
        bias: Optional["Tensor"] = None,
        stride: Union[int, Sequence[int]] = 1,
        padding: Union[int, Sequence[int]] = 0,
        dilation: Union[int, Sequence[int]] = 1,
        groups: int = 1,
    ) -> "Tensor":
        """2-D convolution of NCHW input with ``weight`` ``[out, in / groups, kh, kw]``
        and ``bias`` ``[out]``; ``stride``, ``padding`` and ``dilation`` are a number
        or a (height, width) pair. The defaults are PyTorch's."""
        options = _wit.Conv2dOptions(
            _pair(stride, "conv2d: stride"),
            _pair(padding, "conv2d: padding"),
            _pair(dilation, "conv2d: dilation"),
            int(groups),
        )
        return Tensor(_call(self.handle.conv2d, weight.handle, _handle(bias), options))

    def conv1d(
        self,
        weight: "Tensor",
        bias: Optional["Tensor"] = None,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        groups: int = 1,
    ) -> "Tensor":
        """1-D convolution of ``[batch, channels, length]`` with ``weight``
        ``[out, in / groups, k]`` and ``bias`` ``[out]``."""
        options = _wit.Conv1dOptions(int(stride), int(padding), int(dilation), int(groups))
        return Tensor(_call(self.handle.conv1d, weight.handle, _handle(bias), options))

    @staticmethod
    def _pool(what: str, kernel, stride, padding) -> _wit.Pool2dOptions:
        k = _pair(kernel, f"{what}: kernel")
        s = k if stride is None else _pair(stride, f"{what}: stride")
        return _wit.Pool2dOptions(k, s, _pair(padding, f"{what}: padding"))

    def max_pool2d(
        self,
        kernel: Union[int, Sequence[int]],
        stride: Union[int, Sequence[int], None] = None,
        padding: Union[int, Sequence[int]] = 0,
    ) -> "Tensor":
        """Maximum over each window of an NCHW tensor; ``stride`` defaults to
        ``kernel`` (PyTorch's default). Padding never wins."""
        return Tensor(_call(self.handle.max_pool2d, Tensor._pool("max_pool2d", kernel, stride, padding)))

    def avg_pool2d(
        self,
        kernel: Union[int, Sequence[int]],
        stride: Union[int, Sequence[int], None] = None,
        padding: Union[int, Sequence[int]] = 0,
    ) -> "Tensor":
        """Mean over each window of an NCHW tensor; padding counts in the divisor."""
        return Tensor(_call(self.handle.avg_pool2d, Tensor._pool("avg_pool2d", kernel, stride, padding)))

    def global_avg_pool(self) -> "Tensor":
        """``[batch, channels, ...] -> [batch, channels]``: the mean over the rest."""
        return Tensor(_call(self.handle.global_avg_pool))

    def layer_norm(
        self,
        axes: int = 1,
        weight: Optional["Tensor"] = None,
        bias: Optional["Tensor"] = None,
        eps: Number = 1e-5,
    ) -> "Tensor":
        """Normalized over the last ``axes`` axes (biased variance), then
        ``· weight + bias`` when given (each shaped like those axes)."""
        return Tensor(_call(self.handle.layer_norm, axes, _handle(weight), _handle(bias), float(eps)))

    def batch_norm(
        self,
        running_mean: "Tensor",
        running_var: "Tensor",
        weight: Optional["Tensor"] = None,
        bias: Optional["Tensor"] = None,
        train: bool = False,
        momentum: Number = 0.1,
        eps: Number = 1e-5,
    ) -> "Tensor":
        """Batch normalization per channel of ``[batch, channels, ...]``. The running
        statistics are ``state.…`` params as ``forward`` received them: with
        ``train`` the batch's statistics normalize and the host keeps the running
        ones updated; otherwise the running ones normalize."""
        return Tensor(
            _call(
                self.handle.batch_norm,
                _handle(weight),
                _handle(bias),
                running_mean.handle,
                running_var.handle,
                bool(train),
                float(momentum),
                float(eps),
            )
        )

    def dropout(self, p: Number, seed: int) -> "Tensor":
        """Each element zeroed with probability ``p``, the rest scaled by
        ``1/(1 - p)``; the host mixes ``seed`` with the training step, so every
        step draws a new mask. Apply it only in ``Mode.TRAIN``."""
        return Tensor(_call(self.handle.dropout, float(p), int(seed)))

    # N-D ops: losses (this tensor holds the predictions or logits) ------------

    def cross_entropy(
        self,
        target: "Tensor",
        axis: int = 1,
        weights: Optional["Tensor"] = None,
        label_smoothing: Number = 0.0,
        ignore_index: Optional[int] = None,
        reduction: Union["Reduction", str] = "mean",
    ) -> "Tensor":
        """Cross-entropy of these logits along the class axis ``axis`` against class
        indices (i64, or f32 integers) or probabilities (the logits' shape).
        ``weights`` is ``[classes]``; targets equal to ``ignore_index`` count for
        nothing. The defaults are PyTorch's."""
        return Tensor(
            _call(
                self.handle.cross_entropy,
                target.handle,
                axis,
                _handle(weights),
                float(label_smoothing),
                None if ignore_index is None else int(ignore_index),
                _enum(Reduction, reduction, "cross_entropy: reduction"),
            )
        )

    def bce_with_logits(self, target: "Tensor", reduction: Union["Reduction", str] = "mean") -> "Tensor":
        """Binary cross-entropy of these logits against probabilities (broadcast)."""
        r = _enum(Reduction, reduction, "bce_with_logits: reduction")
        return Tensor(_call(self.handle.bce_with_logits, target.handle, r))

    def mse_loss(self, target: "Tensor", reduction: Union["Reduction", str] = "mean") -> "Tensor":
        """Squared error against ``target`` (broadcast)."""
        return Tensor(_call(self.handle.mse_loss, target.handle, _enum(Reduction, reduction, "mse_loss: reduction")))

    def l1_loss(self, target: "Tensor", reduction: Union["Reduction", str] = "mean") -> "Tensor":
        """Absolute error against ``target`` (broadcast)."""
        return Tensor(_call(self.handle.l1_loss, target.handle, _enum(Reduction, reduction, "l1_loss: reduction")))

    def huber_loss(
        self, target: "Tensor", delta: Number = 1.0, reduction: Union["Reduction", str] = "mean"
    ) -> "Tensor":
        """Huber loss against ``target`` with threshold ``delta`` > 0."""
        r = _enum(Reduction, reduction, "huber_loss: reduction")
        return Tensor(_call(self.handle.huber_loss, target.handle, float(delta), r))


def _indices(value: Union[Tensor, Sequence[Any]]) -> Tensor:
    """Indices as the host takes them: an i64 tensor (lists become one)."""
    return value if isinstance(value, Tensor) else Tensor.from_i64(value)


class Params(Mapping[str, Tensor]):
    """Named tensors in order: a preprocessor's fitted state or a model's parameters.

    ``Params(mean=m, std=s)`` or ``Params({"w0": w, ...})``; ``params["w"]`` raises
    ``TensorletError`` naming the missing entry and the ones present.
    """

    def __init__(self, entries: Union[Mapping[str, Tensor], Iterable[Tuple[str, Tensor]], None] = None, **named: Tensor):
        self._entries: Dict[str, Tensor] = dict(entries or {})
        self._entries.update(named)

    @staticmethod
    def from_wit(named: List[_wit.NamedTensor]) -> "Params":
        return Params((n.name, Tensor(n.value)) for n in named)

    def to_wit(self) -> List[_wit.NamedTensor]:
        for name, value in self._entries.items():
            if not isinstance(value, Tensor):
                raise TensorletError(f"`{name}` is a {type(value).__name__}, not a Tensor")
        return [_wit.NamedTensor(name, value.handle) for name, value in self._entries.items()]

    def __getitem__(self, name: str) -> Tensor:
        try:
            return self._entries[name]
        except KeyError:
            present = ", ".join(f"`{n}`" for n in self._entries) or "none"
            raise TensorletError(f"no tensor named `{name}` (present: {present})") from None

    # `in` and `get` look the entries up directly: Mapping's versions expect a
    # KeyError from __getitem__, which raises TensorletError instead.
    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def get(self, name: str, default: Optional[Tensor] = None) -> Optional[Tensor]:
        return self._entries.get(name, default)

    def __setitem__(self, name: str, value: Tensor) -> None:
        self._entries[name] = value

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={list(t.shape)}" for n, t in self._entries.items())
        return f"Params({inner})"


class Task(enum.Enum):
    """What is learned from the labels (``DataSpec.task``)."""

    #: A class per row: labels are ``0..outputs-1``.
    CLASSIFICATION = "classification"
    #: ``outputs`` continuous targets per row.
    REGRESSION = "regression"


class Mode(enum.Enum):
    """Whether ``Model.forward`` runs for training or for prediction."""

    #: Training: the parameters are watched and the loss differentiated.
    TRAIN = "train"
    #: Prediction.
    EVAL = "eval"


class DataSpec:
    """What the host tells a trainer or model about the data before training.

    ``features`` per row (after preprocessing); ``outputs``: the number of classes
    (classification) or of targets (regression); ``task``; ``seed`` for
    parameter initialisation. ``classes`` is ``outputs``, the name ABI 0.1 used.
    """

    __slots__ = ("features", "outputs", "seed", "task")

    def __init__(self, features: int, outputs: int, seed: int = 0, task: Task = Task.CLASSIFICATION):
        self.features, self.outputs, self.seed, self.task = features, outputs, seed, task

    @property
    def classes(self) -> int:
        return self.outputs

    @staticmethod
    def from_wit(spec) -> "DataSpec":
        return DataSpec(spec.features, spec.outputs, spec.seed, Task[spec.task.name])

    def __repr__(self) -> str:
        return (
            f"DataSpec(features={self.features}, outputs={self.outputs}, "
            f"seed={self.seed}, task={self.task})"
        )


class StepOutput:
    """A training step's result: the complete new state and the batch loss."""

    __slots__ = ("params", "loss")

    def __init__(self, params: Union[Params, Mapping[str, Tensor]], loss: float):
        self.params = params if isinstance(params, Params) else Params(params)
        self.loss = float(loss)


class Preprocessor:
    """Base class of a preprocessor: override ``fit`` and ``transform``."""

    def fit(self, config: Dict[str, Any], x: Tensor) -> Params:
        raise NotImplementedError

    def transform(self, config: Dict[str, Any], state: Params, x: Tensor) -> Tensor:
        raise NotImplementedError


class Trainer:
    """Base class of a trainer: override ``init`` and ``step``."""

    def init(self, config: Dict[str, Any], spec: DataSpec) -> Params:
        raise NotImplementedError

    def step(self, config: Dict[str, Any], params: Params, x: Tensor, y: Tensor, step: int) -> StepOutput:
        raise NotImplementedError


class Predictor:
    """Base class of a predictor: override ``predict`` (class probabilities)."""

    def predict(self, config: Dict[str, Any], params: Params, x: Tensor) -> Tensor:
        raise NotImplementedError


class Model:
    """Base class of a model that is only its forward pass: override ``init`` and
    ``forward``. The host computes the loss of the outputs, their gradients with
    respect to the parameters and the optimizer's update (the pipeline's
    ``[training]``), and predicts with the softmax of ``forward`` in ``EVAL`` mode."""

    def init(self, config: Dict[str, Any], spec: DataSpec) -> Params:
        """Initial parameters; names must not start with ``opt.`` (the host
        optimizer's state)."""
        raise NotImplementedError

    def forward(self, config: Dict[str, Any], params: Params, x: Tensor, mode: Mode) -> Tensor:
        """The outputs for ``x`` ([batch, features]): one logit per class,
        [batch, outputs], for classification; the predictions for regression."""
        raise NotImplementedError


#: The name prefix of optimizer state among a trainer's params.
_OPTIMIZER_PREFIX = "opt."

_MASK64 = (1 << 64) - 1


def derive_seed(seed: int, stream: int) -> int:
    """An independent seed for stream ``stream`` from ``seed`` (SplitMix64), so that,
    say, each layer's initial weights get their own seed from one ``DataSpec.seed``.
    The same function as the Rust SDK's ``derive_seed``: equal inputs give equal seeds."""
    z = (seed + ((stream + 1) * 0x9E3779B97F4A7C15 & _MASK64)) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def f32(value: Number) -> float:
    """``value`` rounded to the nearest f32, the precision of the host's tensors and
    of every float a WIT call carries: compute a scalar as the host (or a Rust
    plugin) would, e.g. ``f32(math.sqrt(f32(2.0 / fan_in)))``."""
    return struct.unpack("f", struct.pack("f", float(value)))[0]


def config_keys(config: Mapping[str, Any], defaults: Mapping[str, Any]) -> Dict[str, Any]:
    """The plugin's declared config: ``config`` over ``defaults``, which lists every key
    the plugin takes with its default. A key not in ``defaults`` raises
    ``TensorletError`` naming it and the known keys, as the Rust SDK's
    ``Config::decode`` does (``unknown config key `hiden`; the known keys are:
    hidden``), so a typo is never a silent default. ``None`` (JSON ``null``) counts as
    absent. Call it in every method that reads ``config``::

        c = config_keys(config, {"hidden": [64]})
    """
    for key in sorted(config):
        if key not in defaults:
            known = ", ".join(sorted(defaults))
            raise TensorletError(
                f"unknown config key `{key}`; the known keys are: {known}"
                if defaults
                else f"unknown config key `{key}`; this plugin takes no config keys"
            )
    return {**defaults, **{k: v for k, v in config.items() if v is not None}}


def _config(text: str) -> Dict[str, Any]:
    value = json.loads(text) if text else {}
    if not isinstance(value, dict):
        raise TensorletError(f"config must be a JSON object, got {text!r}")
    return value


def _guard(name: str, f, *args):
    """Runs plugin code; any exception becomes the WIT result error."""
    try:
        return f(*args)
    except Err:
        raise
    except TensorletError as e:
        raise Err(str(e)) from None
    except Exception as e:  # noqa: BLE001 - every plugin failure must reach the host as a message
        raise Err(f"{name}: {type(e).__name__}: {e}") from None


def _params(value: Any, what: str) -> Params:
    if isinstance(value, Params):
        return value
    if isinstance(value, Mapping):
        return Params(value)
    raise TensorletError(f"{what} must return Params or a dict of tensors, got {type(value).__name__}")


def _tensor(value: Any, what: str) -> _wit.Tensor:
    if not isinstance(value, Tensor):
        raise TensorletError(f"{what} must return a Tensor, got {type(value).__name__}")
    return value.handle


def export_preprocessor(cls):
    """The class componentize-py exports as ``tensorlet:ml/preprocess``.

    In the app module: ``Preprocess = tensorlet.export_preprocessor(MyPreprocessor)``.
    """
    impl = cls()
    name = cls.__name__

    class Preprocess:
        def fit(self, config: str, x: _wit.Tensor) -> List[_wit.NamedTensor]:
            return _guard(name, lambda: _params(impl.fit(_config(config), Tensor(x)), "fit").to_wit())

        def transform(self, config: str, state: List[_wit.NamedTensor], x: _wit.Tensor) -> _wit.Tensor:
            return _guard(
                name,
                lambda: _tensor(impl.transform(_config(config), Params.from_wit(state), Tensor(x)), "transform"),
            )

    return Preprocess


def export_trainer(cls):
    """The class componentize-py exports as ``tensorlet:ml/train``: ``Train = export_trainer(T)``."""
    from wit_world.imports import types as _types

    impl = cls()
    name = cls.__name__

    class Train:
        def init(self, config: str, spec) -> List[_wit.NamedTensor]:
            return _guard(
                name,
                lambda: _params(impl.init(_config(config), DataSpec.from_wit(spec)), "init").to_wit(),
            )

        def step(self, config: str, params, x, y, step: int):
            def run():
                out = impl.step(_config(config), Params.from_wit(params), Tensor(x), Tensor(y), step)
                if not isinstance(out, StepOutput):
                    raise TensorletError(f"step must return a StepOutput, got {type(out).__name__}")
                if not math.isfinite(out.loss):
                    raise TensorletError(f"step computed a non-finite loss ({out.loss})")
                return _types.StepOutput(out.params.to_wit(), out.loss)

            return _guard(name, run)

    return Train


def export_predictor(cls):
    """The class componentize-py exports as ``tensorlet:ml/predict``: ``Predict = export_predictor(P)``."""
    impl = cls()
    name = cls.__name__

    class Predict:
        def predict(self, config: str, params: List[_wit.NamedTensor], x: _wit.Tensor) -> _wit.Tensor:
            return _guard(
                name,
                lambda: _tensor(impl.predict(_config(config), Params.from_wit(params), Tensor(x)), "predict"),
            )

    return Predict


def export_model(cls):
    """The class componentize-py exports as ``tensorlet:ml/forward`` (world ``model``):
    ``Forward = export_model(M)``."""
    from wit_world.exports import forward as _forward

    impl = cls()
    name = cls.__name__

    class Forward:
        def init(self, config: str, spec) -> List[_wit.NamedTensor]:
            return _guard(
                name, lambda: _params(impl.init(_config(config), DataSpec.from_wit(spec)), "init").to_wit()
            )

        def forward(self, config: str, params: List[_wit.NamedTensor], x: _wit.Tensor, mode) -> _wit.Tensor:
            m = Mode.TRAIN if mode == _forward.Mode.TRAIN else Mode.EVAL
            return _guard(
                name,
                lambda: _tensor(impl.forward(_config(config), Params.from_wit(params), Tensor(x), m), "forward"),
            )

    return Forward
