"""Targets against a loss's contract, the output layer against the loss, and `check_data` (all of a
call's data at once).

Part of `jaxnet.validate` (see its docstring for the conventions).
"""

from __future__ import annotations

import warnings
from typing import Any

import jax.numpy as jnp
import numpy as np

from jaxnet.validate._arrays import _inspectable, as_array, as_float_array, check_finite
from jaxnet.validate._network import check_input_dtype, check_network_input, float_dtype_of


# ----------------------------------------------------------------------------------------------
# Targets against a loss
# ----------------------------------------------------------------------------------------------

def _loss_contract(loss: Any) -> Any:
    """The `jaxnet.losses.Loss` record for `loss` (a record, a loss name, or anything else: then a
    same-shape contract with no value checks, named by its `name` attribute if it has one)."""
    from jaxnet import losses

    if isinstance(loss, losses.Loss):
        return loss
    if isinstance(loss, str) and loss in losses.LOSSES:
        return losses.LOSSES[loss]
    name = loss if isinstance(loss, str) else getattr(loss, "name", "the loss")
    return losses.Loss(name, None, None)


def _first_outside(name: str, values: Any, interval: tuple[float, float], expected: str) -> None:
    """Raise ValueError `{name}: expected {expected}, found v at index i` for the first entry of
    concrete `values` outside the closed `interval`."""
    values = np.asarray(values)
    low, high = interval
    bad = (values < low) | (values > high)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{name}: expected {expected}, found {values[where]} at index {where}")


def check_targets(name: str, y: Any, pred_shape: tuple[int, ...], loss: Any, pred_name: str = "y_pred",
                  y_pred: Any = None) -> None:
    """Check targets `y` against the contract of `loss` for a prediction of shape `pred_shape`.

    `loss` is a `jaxnet.losses.Loss` (a loss name is looked up; any other object gets the default
    contract: same-shape targets, no value checks). The record says:

    - `targets == "same_shape"`: y has the prediction's shape (no silent broadcasting of, say, (n,)
      against (n, 1)).
    - `targets == "labels"`: integer class labels of shape pred_shape[:-1] in [0, classes), or
      one-hot / probability targets of the prediction's shape.
    - `target_range`: every non-label target lies in that closed interval (e.g. [0, 1]).
    - `prediction_range`: every entry of `y_pred` (when given) lies in that interval.

    y must be numeric (bool, integer or floating) and finite. Shapes and dtypes are checked on
    tracers too; value checks (ranges, finiteness) only on concrete arrays.

    Raises:
        TypeError: y is not numeric. ValueError: another shape, a label outside the range, a value
            outside the loss's range, or NaN / infinity; the message starts with `name` (or
            `pred_name` for the prediction's range).
    """
    contract = _loss_contract(loss)
    shape, dtype = tuple(np.shape(y)), jnp.result_type(y)
    if not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer) or dtype == jnp.bool_):
        raise TypeError(f"{name}: expected numeric targets (float, int or bool), got dtype {dtype}")
    pred_shape = tuple(pred_shape)
    integer = jnp.issubdtype(dtype, jnp.integer)
    if contract.targets == "labels":
        if not pred_shape:
            raise ValueError(f"{pred_name}: {contract.name} expects scores (batch, classes), got a scalar")
        classes = pred_shape[-1]
        want = pred_shape[:-1] if integer else pred_shape
        if shape != want:
            kind = "integer class labels" if integer else "one-hot or probability targets"
            raise ValueError(f"{name}: expected {kind} of shape {want} for {pred_name} of shape {pred_shape}, "
                             f"got {shape}{_label_hint(name, shape, pred_shape, integer)}")
        if integer and _inspectable(y):
            _first_outside(name, y, (0, classes - 1), f"class labels in [0, {classes}) for {classes} output units")
    elif contract.targets == "same_shape":
        if shape != pred_shape:
            hint = (f" (add the output axis: {name}[:, None])" if shape + (1,) == pred_shape else
                    f" (class labels? one-hot them with jaxnet.data.one_hot({name}, {pred_shape[-1]}))"
                    if integer and shape == pred_shape[:-1] and pred_shape[-1] > 1 else "")
            raise ValueError(f"{name}: expected shape {pred_shape} to match {pred_name} for {contract.name}, "
                             f"got {shape}{hint}")
    else:
        raise ValueError(f"loss: {contract.name} has targets={contract.targets!r}; expected 'same_shape' or "
                         f"'labels'")
    if contract.target_range is not None and not integer and _inspectable(y):
        low, high = contract.target_range
        _first_outside(name, y, contract.target_range, f"targets in [{low:g}, {high:g}] for {contract.name}")
    check_finite(name, y)
    if contract.prediction_range is not None and y_pred is not None and _inspectable(y_pred):
        low, high = contract.prediction_range
        _first_outside(pred_name, y_pred, contract.prediction_range,
                       f"probabilities in [{low:g}, {high:g}] for {contract.name} (for logits use a sigmoid "
                       f"output layer or sigmoid_binary_crossentropy)")


def _label_hint(name: str, shape: tuple[int, ...], pred_shape: tuple[int, ...], integer: bool) -> str:
    """A fix for targets of the wrong shape for a class-label loss, or ''."""
    if integer and shape == pred_shape:
        return f" (integer one-hot targets? pass {name}.argmax(-1) or {name}.astype(jnp.float32))"
    if integer and shape == pred_shape[:-1] + (1,):
        return f" (integer labels have no class axis: pass {name}.ravel() or one-hot targets)"
    if not integer and shape in (pred_shape[:-1], pred_shape[:-1] + (1,)):
        return f" (float class labels? cast them to int: {name}.ravel().astype(jnp.int32))"
    return ""


_SQUASHING = ("softmax", "sigmoid")  # outputs in (0, 1): probabilities, not logits
_BOUNDED = ("relu", "tanh")  # outputs that cannot take every real value


def check_output_pairing(net: Any, loss: Any) -> None:
    """Check that the network's output layer suits the loss, as the `Loss` record describes it.

    Reads `net.layers[-1].name` ("softmax", "sigmoid", "identity", "relu", "tanh", "Dense(k)", ...;
    a Dense layer last means an identity output) and the record's `from_logits` and
    `output_activation`. Other layer names are not judged.

    Raises:
        ValueError: a softmax or sigmoid output feeding a loss that takes logits (a double softmax
            or sigmoid: `softmax_cross_entropy`, `sigmoid_binary_crossentropy`), or a loss that
            takes probabilities from a sigmoid (`binary_crossentropy`) after any other known
            output layer; the message names the fix.

    Warns:
        UserWarning: a ReLU or tanh output feeding a logit loss (it bounds the logits, e.g.
            `mlp([4, 8, 3], activation="relu")`, whose output activation defaults to the hidden one).
    """
    contract = _loss_contract(loss)
    if not getattr(net, "layers", None):
        return
    last = str(getattr(net.layers[-1], "name", ""))
    out = "identity" if last.startswith("Dense") else last
    known = out in ("identity", *_SQUASHING, *_BOUNDED)
    if contract.from_logits and out in _SQUASHING:
        alternative = {"softmax": "", "sigmoid": " (or keep it and use loss='binary_crossentropy')"}[out]
        raise ValueError(f"net: its output layer is {out}, but {contract.name} takes logits and applies the {out} "
                         f"itself (a double {out}); build the network with output_activation='identity', e.g. "
                         f"jaxnet.mlp(sizes, output_activation='identity'){alternative}")
    wanted = contract.output_activation
    if not contract.from_logits and wanted in _SQUASHING and known and out != wanted:
        alternative = (" or loss='sigmoid_binary_crossentropy' on identity (logit) outputs"
                       if wanted == "sigmoid" else "")
        raise ValueError(f"net: its output layer is {out}, but {contract.name} expects probabilities in [0, 1] from a "
                         f"{wanted} output layer; use output_activation='{wanted}'{alternative}")
    if contract.from_logits and out in _BOUNDED:
        warnings.warn(f"net: its output layer is {out}, which bounds the logits that {contract.name} expects "
                      f"(mlp's output_activation defaults to the hidden activation); pass "
                      f"output_activation='identity'", UserWarning, stacklevel=2)


def check_data(net: Any, params: Any, x: Any, y: Any, loss: Any, *, x_name: str = "x", y_name: str = "y",
               params_name: str = "params", same_dtype: bool = True, with_output_shape: bool = False) -> tuple:
    """Validate a network's params with a batch of data (x, y) for `loss`; return x, y as arrays (and,
    `with_output_shape`, the network's output shape for one example).

    x: floating (n, *input_shape) with n >= 1 matching the params (`check_network_input`); y: targets
    for the loss with n rows (`check_targets`); params of one floating dtype; x and floating y of the
    params' dtype (`check_input_dtype`; `same_dtype=False` exempts y only); x and y finite. Shape and
    dtype checks run on tracers too; value checks only on concrete arrays.
    """
    x = as_float_array(x_name, x)
    if x.ndim == 0:
        raise ValueError(f"{x_name}: expected a batch (n, *input_shape), got a scalar")
    y = as_array(y_name, y, "an array of targets")
    if x.shape[0] == 0:
        raise ValueError(f"{x_name}: expected at least one example, got an empty array of shape {tuple(x.shape)}")
    out_shape = check_network_input(net, params, x, name=x_name, params_name=params_name)
    dtype = float_dtype_of(params_name, params)
    if y.shape[:1] != x.shape[:1]:
        raise ValueError(f"{y_name}: expected {x.shape[0]} rows to match {x_name} {tuple(x.shape)}, "
                         f"got shape {tuple(y.shape)}")
    check_targets(y_name, y, (x.shape[0], *out_shape), loss, pred_name="the network's output")
    if same_dtype and dtype is not None:
        check_input_dtype(y_name, y, params, params_name)
    check_finite(x_name, x)
    return (x, y, tuple(out_shape)) if with_output_shape else (x, y)
