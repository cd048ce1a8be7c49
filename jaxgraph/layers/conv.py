"""Convolutions: Conv1D/2D/3D, their transposes, depthwise and separable variants.

Each layer lowers to a single `lax.conv_general_dilated` (two for separable) and keeps
Keras's weight names, order and layouts, so `set_weights(keras_layer.get_weights())`
reproduces a Keras model's numbers.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from .. import activations, constraints, initializers, regularizers
from .base import InputSpec, Layer

_SPATIAL_LETTERS = {1: "W", 2: "HW", 3: "DHW"}

# ------------------------------------------------------------------ argument helpers
# Shared with pooling.py and reshaping.py.


def normalize_tuple(value, n: int, arg: str, owner: str, allow_zero: bool = False) -> tuple:
    """An int or an n-sequence of ints -> an n-tuple, rejecting negatives (and zeros)."""
    if isinstance(value, (int,)) and not isinstance(value, bool):
        out = (int(value),) * n
    else:
        try:
            out = tuple(int(v) for v in value)
        except TypeError:
            raise ValueError(
                f"{owner}: `{arg}` must be an int or a tuple of {n} ints, got {value!r}"
            ) from None
        if len(out) != n:
            raise ValueError(f"{owner}: `{arg}` must have {n} values, got {value!r}")
    lowest = 0 if allow_zero else 1
    if any(v < lowest for v in out):
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{owner}: every value of `{arg}` must be {kind}, got {value!r}")
    return out


def normalize_data_format(value, owner: str) -> str:
    """`None` means Keras's default image data format, channels_last."""
    fmt = "channels_last" if value is None else str(value).lower()
    if fmt not in ("channels_last", "channels_first"):
        raise ValueError(
            f"{owner}: data_format must be 'channels_last' or 'channels_first', got {value!r}"
        )
    return fmt


def normalize_padding(value, owner: str, allow_causal: bool = False) -> str:
    allowed = ("valid", "same", "causal") if allow_causal else ("valid", "same")
    pad = str(value).lower()
    if pad not in allowed:
        raise ValueError(f"{owner}: padding must be one of {allowed}, got {value!r}")
    return pad


def conv_output_length(length, kernel: int, stride: int, padding: str, dilation: int = 1):
    """Output length of a convolution/pooling window along one axis (None stays None)."""
    if length is None:
        return None
    effective = (kernel - 1) * dilation + 1
    if padding == "valid":
        return (length - effective) // stride + 1 if length >= effective else 0
    return (length + stride - 1) // stride  # 'same' and 'causal'


def deconv_output_length(length, kernel: int, stride: int, padding: str,
                         output_padding, dilation: int = 1):
    """Output length of a transposed convolution along one axis, as Keras defines it."""
    if length is None:
        return None
    effective = (kernel - 1) * dilation + 1
    if output_padding is None:
        if padding == "valid":
            return length * stride + max(effective - stride, 0)
        return length * stride
    crop = effective // 2 if padding == "same" else 0
    return (length - 1) * stride + effective - 2 * crop + output_padding


def spatial_axes(rank: int, data_format: str) -> tuple:
    return tuple(range(2, 2 + rank)) if data_format == "channels_first" else tuple(
        range(1, 1 + rank)
    )


def _dimension_numbers(rank: int, data_format: str, kernel_io: str = "IO"):
    s = _SPATIAL_LETTERS[rank]
    lhs = "NC" + s if data_format == "channels_first" else "N" + s + "C"
    return (lhs, s + kernel_io, lhs)


# ------------------------------------------------------------------ shared base


class _ConvBase(Layer):
    """Argument handling and shape logic shared by every convolution class."""

    rank = 2
    _allow_causal = False

    def _setup(self, kernel_size, strides, padding, data_format, dilation_rate,
               activation, use_bias, bias_initializer, bias_regularizer, bias_constraint):
        owner = f"{type(self).__name__} {self.name!r}"
        self.kernel_size = normalize_tuple(kernel_size, self.rank, "kernel_size", owner)
        self.strides = normalize_tuple(strides, self.rank, "strides", owner)
        self.padding = normalize_padding(
            padding, owner, allow_causal=self._allow_causal and self.rank == 1
        )
        self.data_format = normalize_data_format(data_format, owner)
        self.dilation_rate = normalize_tuple(dilation_rate, self.rank, "dilation_rate", owner)
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.bias_initializer = initializers.get(bias_initializer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.bias_constraint = constraints.get(bias_constraint)
        self.input_spec = InputSpec(ndim=self.rank + 2)

    @property
    def _channel_axis(self) -> int:
        return 1 if self.data_format == "channels_first" else -1

    def _spatial_axes(self) -> tuple:
        return spatial_axes(self.rank, self.data_format)

    def _input_channels(self, input_shape) -> int:
        if len(input_shape) != self.rank + 2:
            raise ValueError(
                f"{type(self).__name__} {self.name!r} expects inputs of rank {self.rank + 2} "
                f"(batch, {self.rank} spatial dims, channels), got shape {tuple(input_shape)}"
            )
        channels = input_shape[self._channel_axis]
        if channels is None:
            raise ValueError(
                f"{type(self).__name__} {self.name!r}: the channel dimension of the input "
                f"must be known, got shape {tuple(input_shape)}"
            )
        return int(channels)

    def _lock_channels(self, channels: int) -> None:
        self.input_spec = InputSpec(ndim=self.rank + 2, axes={self._channel_axis: channels})

    def _padding_arg(self):
        """What `lax.conv_general_dilated` takes: 'SAME'/'VALID' or explicit causal pads."""
        if self.padding == "causal":
            return [((self.kernel_size[0] - 1) * self.dilation_rate[0], 0)]
        return self.padding.upper()

    def _add_bias(self, y, bias):
        if self.data_format == "channels_first":
            bias = bias.reshape((1, -1) + (1,) * self.rank)
        return y + bias

    def _bias_weight(self, size: int) -> None:
        if self.use_bias:
            self.add_weight("bias", (size,), self.bias_initializer,
                            regularizer=self.bias_regularizer, constraint=self.bias_constraint)

    def _finish(self, w, y):
        if self.use_bias:
            y = self._add_bias(y, w["bias"].astype(y.dtype))
        return self.activation(y)

    def _output_shape(self, input_shape, channels, length_fn):
        shape = list(input_shape)
        for i, axis in enumerate(self._spatial_axes()):
            n = length_fn(shape[axis], i)
            if n is not None and n <= 0:
                raise ValueError(
                    f"{type(self).__name__} {self.name!r}: computed output size would be "
                    f"{n} along spatial axis {i} for input shape {tuple(input_shape)} "
                    f"(kernel_size={self.kernel_size}, strides={self.strides}, "
                    f"dilation_rate={self.dilation_rate}, padding={self.padding!r})"
                )
            shape[axis] = n
        shape[self._channel_axis] = channels
        return tuple(shape)

    def _conv_length(self, length, i):
        return conv_output_length(length, self.kernel_size[i], self.strides[i],
                                  self.padding, self.dilation_rate[i])

    def _cast(self, x):
        dtype = self.compute_dtype
        return x if x.dtype == dtype else x.astype(dtype)


# ------------------------------------------------------------------ Conv


class _Conv(_ConvBase):
    """`activation(conv(x, kernel) + bias)`; kernel is (*kernel_size, in // groups, filters)."""

    _allow_causal = True

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None,
                 dilation_rate=1, groups=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        owner = f"{type(self).__name__} {self.name!r}"
        if not isinstance(filters, int) or isinstance(filters, bool) or filters <= 0:
            raise ValueError(f"{owner}: filters must be a positive int, got {filters!r}")
        if not isinstance(groups, int) or groups <= 0:
            raise ValueError(f"{owner}: groups must be a positive int, got {groups!r}")
        if filters % groups:
            raise ValueError(
                f"{owner}: filters ({filters}) must be divisible by groups ({groups})"
            )
        self.filters = filters
        self.groups = groups
        self._setup(kernel_size, strides, padding, data_format, dilation_rate, activation,
                    use_bias, bias_initializer, bias_regularizer, bias_constraint)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)

    def build(self, input_shape):
        channels = self._input_channels(input_shape)
        if channels % self.groups:
            raise ValueError(
                f"{type(self).__name__} {self.name!r}: the input's {channels} channels must be "
                f"divisible by groups={self.groups} (input shape {tuple(input_shape)})"
            )
        shape = self.kernel_size + (channels // self.groups, self.filters)
        self.add_weight("kernel", shape, self.kernel_initializer,
                        regularizer=self.kernel_regularizer, constraint=self.kernel_constraint)
        self._bias_weight(self.filters)
        self._lock_channels(channels)

    def call(self, w, x):
        x = self._cast(x)
        y = lax.conv_general_dilated(
            x,
            w["kernel"].astype(x.dtype),
            window_strides=self.strides,
            padding=self._padding_arg(),
            rhs_dilation=self.dilation_rate,
            dimension_numbers=_dimension_numbers(self.rank, self.data_format),
            feature_group_count=self.groups,
        )
        return self._finish(w, y)

    def compute_output_shape(self, input_shape):
        return self._output_shape(input_shape, self.filters, self._conv_length)


class Conv1D(_Conv):
    """1D convolution over (batch, steps, channels); padding='causal' looks only backwards."""

    rank = 1


class Conv2D(_Conv):
    rank = 2


class Conv3D(_Conv):
    rank = 3


# ------------------------------------------------------------------ transposed conv


class _ConvTranspose(_ConvBase):
    """The gradient of a convolution w.r.t. its input; kernel is (*kernel_size, filters, in).

    Lowered as a stride-1 convolution of the stride-dilated input with the spatially
    flipped kernel; the pads are chosen so output sizes follow Keras's formula.
    """

    def __init__(self, filters, kernel_size, strides=1, padding="valid", output_padding=None,
                 data_format=None, dilation_rate=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        owner = f"{type(self).__name__} {self.name!r}"
        if not isinstance(filters, int) or isinstance(filters, bool) or filters <= 0:
            raise ValueError(f"{owner}: filters must be a positive int, got {filters!r}")
        self.filters = filters
        self._setup(kernel_size, strides, padding, data_format, dilation_rate, activation,
                    use_bias, bias_initializer, bias_regularizer, bias_constraint)
        if output_padding is None:
            self.output_padding = None
        else:
            self.output_padding = normalize_tuple(
                output_padding, self.rank, "output_padding", owner, allow_zero=True
            )
            for op, s in zip(self.output_padding, self.strides):
                if op >= s:
                    raise ValueError(
                        f"{owner}: each output_padding must be strictly less than its stride; "
                        f"got output_padding={self.output_padding}, strides={self.strides}"
                    )
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)

    def build(self, input_shape):
        channels = self._input_channels(input_shape)
        shape = self.kernel_size + (self.filters, channels)
        self.add_weight("kernel", shape, self.kernel_initializer,
                        regularizer=self.kernel_regularizer, constraint=self.kernel_constraint)
        self._bias_weight(self.filters)
        self._lock_channels(channels)

    def _deconv_length(self, length, i):
        op = None if self.output_padding is None else self.output_padding[i]
        return deconv_output_length(length, self.kernel_size[i], self.strides[i],
                                    self.padding, op, self.dilation_rate[i])

    def _pads(self, spatial_shape):
        pads = []
        for i, n in enumerate(spatial_shape):
            effective = (self.kernel_size[i] - 1) * self.dilation_rate[i] + 1
            out = self._deconv_length(n, i)
            # A valid conv of the (n-1)*s+1 dilated input needs this much padding in total.
            total = out + effective - 2 - (n - 1) * self.strides[i]
            if self.padding == "valid":
                left = effective - 1
            else:
                left = min((total + 1) // 2, effective - 1)
            pads.append((left, total - left))
        return pads

    def call(self, w, x):
        x = self._cast(x)
        spatial = [x.shape[a] for a in self._spatial_axes()]
        kernel = jnp.flip(w["kernel"].astype(x.dtype), axis=tuple(range(self.rank)))
        y = lax.conv_general_dilated(
            x,
            kernel,
            window_strides=(1,) * self.rank,
            padding=self._pads(spatial),
            lhs_dilation=self.strides,
            rhs_dilation=self.dilation_rate,
            dimension_numbers=_dimension_numbers(self.rank, self.data_format, kernel_io="OI"),
        )
        return self._finish(w, y)

    def compute_output_shape(self, input_shape):
        return self._output_shape(input_shape, self.filters, self._deconv_length)


class Conv1DTranspose(_ConvTranspose):
    rank = 1


class Conv2DTranspose(_ConvTranspose):
    rank = 2


class Conv3DTranspose(_ConvTranspose):
    rank = 3


# ------------------------------------------------------------------ depthwise conv


def _depthwise(x, kernel, layer):
    """Per-channel convolution: kernel (*k, in, dm) becomes in groups of dm filters each."""
    in_ch, mult = kernel.shape[-2], kernel.shape[-1]
    kernel = kernel.reshape(kernel.shape[:-2] + (1, in_ch * mult))
    return lax.conv_general_dilated(
        x,
        kernel.astype(x.dtype),
        window_strides=layer.strides,
        padding=layer._padding_arg(),
        rhs_dilation=layer.dilation_rate,
        dimension_numbers=_dimension_numbers(layer.rank, layer.data_format),
        feature_group_count=in_ch,
    )


class _DepthwiseConv(_ConvBase):
    """Each input channel convolved with its own `depth_multiplier` filters.

    Output channel `c * depth_multiplier + m` comes from input channel `c`, as in Keras.
    Padding is 'valid' or 'same' (Keras allows 'causal' only for Conv1D).
    """

    def __init__(self, kernel_size, strides=1, padding="valid", depth_multiplier=1,
                 data_format=None, dilation_rate=1, activation=None, use_bias=True,
                 depthwise_initializer="glorot_uniform", bias_initializer="zeros",
                 depthwise_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 depthwise_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        if not isinstance(depth_multiplier, int) or depth_multiplier <= 0:
            raise ValueError(
                f"{type(self).__name__} {self.name!r}: depth_multiplier must be a positive int, "
                f"got {depth_multiplier!r}"
            )
        self.depth_multiplier = depth_multiplier
        self._setup(kernel_size, strides, padding, data_format, dilation_rate, activation,
                    use_bias, bias_initializer, bias_regularizer, bias_constraint)
        self.depthwise_initializer = initializers.get(depthwise_initializer)
        self.depthwise_regularizer = regularizers.get(depthwise_regularizer)
        self.depthwise_constraint = constraints.get(depthwise_constraint)

    def build(self, input_shape):
        channels = self._input_channels(input_shape)
        # Keras names the depthwise layer's kernel "kernel".
        self.add_weight("kernel", self.kernel_size + (channels, self.depth_multiplier),
                        self.depthwise_initializer, regularizer=self.depthwise_regularizer,
                        constraint=self.depthwise_constraint)
        self._bias_weight(channels * self.depth_multiplier)
        self._lock_channels(channels)

    def call(self, w, x):
        x = self._cast(x)
        return self._finish(w, _depthwise(x, w["kernel"], self))

    def compute_output_shape(self, input_shape):
        channels = input_shape[self._channel_axis]
        out = None if channels is None else channels * self.depth_multiplier
        return self._output_shape(input_shape, out, self._conv_length)


class DepthwiseConv1D(_DepthwiseConv):
    rank = 1


class DepthwiseConv2D(_DepthwiseConv):
    rank = 2


# ------------------------------------------------------------------ separable conv


class _SeparableConv(_ConvBase):
    """A depthwise convolution followed by a 1x1 pointwise one (fewer parameters).

    Padding is 'valid' or 'same' (Keras allows 'causal' only for Conv1D).
    """

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None,
                 dilation_rate=1, depth_multiplier=1, activation=None, use_bias=True,
                 depthwise_initializer="glorot_uniform", pointwise_initializer="glorot_uniform",
                 bias_initializer="zeros", depthwise_regularizer=None,
                 pointwise_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 depthwise_constraint=None, pointwise_constraint=None, bias_constraint=None,
                 **kwargs):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        owner = f"{type(self).__name__} {self.name!r}"
        if not isinstance(filters, int) or isinstance(filters, bool) or filters <= 0:
            raise ValueError(f"{owner}: filters must be a positive int, got {filters!r}")
        if not isinstance(depth_multiplier, int) or depth_multiplier <= 0:
            raise ValueError(
                f"{owner}: depth_multiplier must be a positive int, got {depth_multiplier!r}"
            )
        self.filters = filters
        self.depth_multiplier = depth_multiplier
        self._setup(kernel_size, strides, padding, data_format, dilation_rate, activation,
                    use_bias, bias_initializer, bias_regularizer, bias_constraint)
        self.depthwise_initializer = initializers.get(depthwise_initializer)
        self.pointwise_initializer = initializers.get(pointwise_initializer)
        self.depthwise_regularizer = regularizers.get(depthwise_regularizer)
        self.pointwise_regularizer = regularizers.get(pointwise_regularizer)
        self.depthwise_constraint = constraints.get(depthwise_constraint)
        self.pointwise_constraint = constraints.get(pointwise_constraint)

    def build(self, input_shape):
        channels = self._input_channels(input_shape)
        self.add_weight("depthwise_kernel", self.kernel_size + (channels, self.depth_multiplier),
                        self.depthwise_initializer, regularizer=self.depthwise_regularizer,
                        constraint=self.depthwise_constraint)
        self.add_weight("pointwise_kernel",
                        (1,) * self.rank + (channels * self.depth_multiplier, self.filters),
                        self.pointwise_initializer, regularizer=self.pointwise_regularizer,
                        constraint=self.pointwise_constraint)
        self._bias_weight(self.filters)
        self._lock_channels(channels)

    def call(self, w, x):
        x = self._cast(x)
        y = _depthwise(x, w["depthwise_kernel"], self)
        y = lax.conv_general_dilated(
            y,
            w["pointwise_kernel"].astype(y.dtype),
            window_strides=(1,) * self.rank,
            padding="VALID",
            dimension_numbers=_dimension_numbers(self.rank, self.data_format),
        )
        return self._finish(w, y)

    def compute_output_shape(self, input_shape):
        return self._output_shape(input_shape, self.filters, self._conv_length)


class SeparableConv1D(_SeparableConv):
    rank = 1


class SeparableConv2D(_SeparableConv):
    rank = 2


# Keras's alternative spellings.
Convolution1D = Conv1D
Convolution2D = Conv2D
Convolution3D = Conv3D
Convolution1DTranspose = Conv1DTranspose
Convolution2DTranspose = Conv2DTranspose
Convolution3DTranspose = Conv3DTranspose
Deconvolution2D = Conv2DTranspose
Deconvolution3D = Conv3DTranspose
SeparableConvolution1D = SeparableConv1D
SeparableConvolution2D = SeparableConv2D

__all__ = [
    "Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose",
    "DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D", "SeparableConv2D",
    "Convolution1D", "Convolution2D", "Convolution3D", "Convolution1DTranspose",
    "Convolution2DTranspose", "Convolution3DTranspose", "Deconvolution2D", "Deconvolution3D",
    "SeparableConvolution1D", "SeparableConvolution2D",
]
