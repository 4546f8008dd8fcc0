"""Second order: Hessian-vector products of the hand-derived gradient (PyTorch's `gradgradcheck`).

For random unit directions v over all params, three routes to H v, the derivative of the gradient
along v, in float64:

1. `jax.jvp` of the hand-derived gradient (the route under test, `backprop` by default): JAX
   differentiates the hand-written backward code itself;
2. `jax.jvp` of `jax.grad` of the loss (forward-over-reverse, the reference);
3. central finite differences of the hand-derived gradient, (g(p + h v) - g(p - h v)) / 2h, with
   h = 1e-5 (truncation h^2 |g'''| / 6 ~ 1e-11, rounding eps_mach |g| / h ~ 1e-11 |g|), checked with
   the tolerance fd_atol + fd_rtol |H v| + 4 |fd(h) - fd(2h)| (the last term the difference's own
   error, estimated from a second step).

(1) against (2) checks that the hand-derived gradient is right in a neighbourhood, not only at the
point (a backward pass can be right at p and have the wrong derivative); (3) against (2) checks
JAX's second derivative itself (custom JVP rules, such as jaxnet's stable sigmoid and tanh).

Where it does not apply: the gradient of a network with ReLUs or max pooling is discontinuous at
the kinks (ReLU input 0, a tie in a pooling window), where H v does not exist. Away from them the
hand backward passes are differentiable (relu' and the pooling's argmax are piecewise constant:
their derivative is 0, which is what JAX gives), so the check holds at almost every point; a direction
whose stencil crosses a kink (a pattern of `_kinks` changes) is reported as a kink, not as an error.

Where jaxnet is more accurate than jax.numpy: its sigmoid and tanh carry custom JVPs with the stable
derivatives `sigmoid(x) sigmoid(-x)` and `4 sigmoid(2x) sigmoid(-2x)`, so their second derivatives
stay right in the tails. In float32 at x = 20, `jax.grad(jax.grad(jaxnet.activations.sigmoid))` gives
-2.0611537e-09 (float64 closed form s'(1 - 2s): -2.0611536e-09) where `jax.nn.sigmoid`'s gives 0; at
x = 10 jaxnet's tanh'' is -1.6489230e-08 (closed form -2 tanh tanh': -1.6489229e-08) where `jnp.tanh`'s
gives 0 (tests/test_check_tools.py locks these).

Source: PyTorch's `torch.autograd.gradgradcheck`; Pearlmutter, "Fast exact multiplication by the
Hessian", Neural Computation 1994 (Hessian-vector products by forward-over-reverse differentiation).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jaxnet import losses as losses_lib
from jaxnet.check._fd import _kink_vectors, _unravel
from jaxnet.check._common import (NOTHING, Comparison, cast, compare, e, keystr, markdown_table, repr_pretty,
                                  table, to_markdown)
from jaxnet.grad import l2_penalty
from jaxnet.grad import route as route_of
from jaxnet.validate import check_data, check_key, check_positive


class HvpLeaf(NamedTuple):
    """One parameter leaf: (1) vs (2) as `hand` and (3) vs (2) as `fd` (module docstring), over the
    directions that crossed no kink."""

    path: str
    shape: tuple[int, ...]
    hand: Comparison
    fd: Comparison
    passed: bool


class GradgradReport(NamedTuple):
    """Result of `gradgradcheck`: one row per leaf; `kinks` counts the directions whose stencil
    crossed a kink (left out); `str()` a table, `to_markdown()`."""

    network: str
    route: str
    leaves: tuple[HvpLeaf, ...]
    directions: int
    kinks: int
    passed: bool
    train: bool
    tolerances: dict

    def _title(self) -> str:
        mode = "training mode (train=True)" if self.train else "evaluation mode (train=False)"
        return (f"gradgradcheck of {self.route} on {self.network}: Hessian-vector products along {self.directions} "
                f"random unit directions, float64, {mode}")

    def _header(self) -> str:
        t = self.tolerances
        return (f"jvp of {self.route}'s gradient vs jvp of jax.grad: rtol {t['rtol']:g}, atol {t['atol']:g}; finite "
                f"differences of {self.route}'s gradient (eps {t['eps']:g}) vs jvp of jax.grad: rtol {t['fd_rtol']:g}, "
                f"atol {t['fd_atol']:g} + their estimated error; {self.kinks} direction(s) crossed a kink (left out)")

    def _cells(self, bold=False):
        return [[leaf.path, str(leaf.shape), e(leaf.hand.max_abs), e(leaf.hand.max_rel), leaf.hand.rule,
                 e(leaf.fd.max_abs), e(leaf.fd.max_rel), leaf.fd.rule,
                 "yes" if leaf.passed else ("**NO**" if bold else "NO")] for leaf in self.leaves]

    _columns = ["leaf", "shape", "jvp abs", "jvp rel", "rule", "fd abs", "fd rel", "rule", "ok"]

    def __str__(self) -> str:
        lines = [self._title(), "  " + self._header()] + table(self._columns, self._cells())
        return "\n".join(lines + ["  PASSED" if self.passed else "  FAILED"])

    def _markdown(self) -> list[str]:
        return ([f"**{self._title()}**", "", self._header(), ""] + markdown_table(self._columns, self._cells(True))
                + ["", "**PASSED**" if self.passed else "**FAILED**"])

    to_markdown = to_markdown
    _repr_markdown_ = to_markdown
    _repr_pretty_ = repr_pretty


_STATIC = ("net", "loss_fn", "train", "weight_decay", "route", "spec")


def _hand_fn(v, x, y, state, key, *, net, loss_fn, train, weight_decay, route, spec):
    """The route's gradient at the flat params v, flat."""
    grads = route(net, _unravel(v, spec), x, y, loss_fn, state=state, key=key, train=train,
                  weight_decay=weight_decay)[1]
    return ravel_pytree(grads)[0]


_hand = jax.jit(_hand_fn, static_argnames=_STATIC)


@functools.partial(jax.jit, static_argnames=_STATIC + ("auto",))
def _hvp(v, t, x, y, state, key, *, net, loss_fn, train, weight_decay, route, spec, auto):
    """H t at v: jax.jvp of the route's gradient, or (auto) of jax.grad of the loss (compiled once per
    network shape, shared by every call)."""
    if auto:
        def objective(w):
            value = loss_fn.value(net.apply(_unravel(w, spec), x, state=state, key=key, train=train), y)
            return value if weight_decay is None else value + l2_penalty(net, _unravel(w, spec), weight_decay)
        return jax.jvp(jax.grad(objective), (v,), (t,))[1]
    return jax.jvp(lambda w: _hand_fn(w, x, y, state, key, net=net, loss_fn=loss_fn, train=train,
                                      weight_decay=weight_decay, route=route, spec=spec), (v,), (t,))[1]


def gradgradcheck(
    net,
    params: Any,
    x: jax.Array,
    y: jax.Array,
    loss: str | losses_lib.Loss,
    *,
    state: Any = None,
    key: jax.Array | None = None,
    train: bool = False,
    grad: str | Callable = "backprop",
    directions: int = 3,
    eps: float = 1e-5,
    rtol: float = 1e-8,
    atol: float = 1e-12,
    fd_rtol: float = 1e-5,
    fd_atol: float = 1e-9,
    weight_decay: float | None = None,
    fd_key: jax.Array | None = None,
) -> GradgradReport:
    """Check Hessian-vector products of a gradient route against `jax.grad`'s and finite differences.

    Args:
        net, params, x, y, loss, state, key, train, weight_decay: as for `gradcheck`.
        grad: the route whose gradient is differentiated: 'backprop' (default), 'autodiff' or a
            callable with their signature; it must be differentiable by JAX.
        directions: random unit directions over all params (drawn from `fd_key`, default
            `jax.random.key(0)`), 4 gradient evaluations and two jvps each.
        eps: finite-difference step along a direction. rtol, atol: (1) vs (2); fd_rtol, fd_atol:
            (3) vs (2) (module docstring).

    Returns:
        A `GradgradReport`: per leaf the max abs/rel error of the route's H v against `jax.grad`'s and
        of finite differences against `jax.grad`'s, the rules that passed, and the verdict.

    Raises:
        ValueError / TypeError naming the argument, as `gradcheck`; non-positive eps, directions or
        tolerances.
    """
    loss_fn = losses_lib.get(loss)
    x, y = check_data(net, params, x, y, loss_fn)
    route = route_of(grad)
    label = grad if isinstance(grad, str) else getattr(grad, "__name__", "grad")
    check_positive("eps", eps)
    check_positive("directions", directions, integer=True)
    for name, value in (("rtol", rtol), ("atol", atol), ("fd_rtol", fd_rtol), ("fd_atol", fd_atol)):
        check_positive(name, value, allow_zero=True)
    if key is not None:
        check_key("key", key, single=True)
    train = bool(train)
    fd_key = jax.random.key(0) if fd_key is None else fd_key
    with jax.enable_x64(True):
        p64, x64, y64, s64 = (cast(t, jnp.float64) for t in (params, x, y, state))
        flat, _ = ravel_pytree(p64)
        leaves, treedef = jax.tree_util.tree_flatten(p64)
        static = dict(net=net, loss_fn=loss_fn, train=train, weight_decay=weight_decay, route=route,
                      spec=(treedef, tuple(tuple(np.shape(a)) for a in leaves)))
        args = (x64, y64, s64, key)
        hvp_hand = lambda v, t: _hvp(v, t, *args, auto=False, **static)  # noqa: E731
        hvp_auto = lambda v, t: _hvp(v, t, *args, auto=True, **static)  # noqa: E731
        hand_at = lambda v: _hand(v, *args, **static)  # noqa: E731
        pattern_at = lambda v: _kink_vectors(v, x64, s64, key, which=1, **{k: static[k] for k in static  # noqa: E731
                                                                            if k != "route"})
        p0 = np.asarray(pattern_at(flat))
        got, ref, fds, slack, kinks = [], [], [], [], 0
        for j in range(directions):
            t = jax.random.normal(jax.random.fold_in(fd_key, j), flat.shape, jnp.float64)
            t = t / jnp.linalg.norm(t)
            ends = [flat + s * eps * t for s in (1, -1, 2, -2)]
            if any(np.any(np.asarray(pattern_at(v)) != p0) for v in ends):
                kinks += 1
                continue
            g = [np.asarray(hand_at(v)) for v in ends]
            fd, fd2 = (g[0] - g[1]) / (2 * eps), (g[2] - g[3]) / (4 * eps)
            got.append(np.asarray(hvp_hand(flat, t)))
            ref.append(np.asarray(hvp_auto(flat, t)))
            fds.append(fd)
            slack.append(4 * np.abs(fd - fd2))
    leaves, offset = [], 0
    for path, a in jax.tree_util.tree_flatten_with_path(p64)[0]:
        size = int(np.size(a))
        part = slice(offset, offset + size)
        offset += size
        if not got:
            leaves.append(HvpLeaf(keystr(path), tuple(np.shape(a)), NOTHING, NOTHING, True))
            continue
        h, r, f, s = (np.concatenate([v[part] for v in arrays]) for arrays in (got, ref, fds, slack))
        hand_cmp, fd_cmp = compare(h, r, rtol, atol), compare(f, r, fd_rtol, fd_atol)
        if not fd_cmp.passed and np.all(np.abs(f - r) <= fd_atol + fd_rtol * np.abs(r) + s):
            fd_cmp = fd_cmp._replace(rule="err", passed=True)
        leaves.append(HvpLeaf(keystr(path), tuple(np.shape(a)), hand_cmp, fd_cmp, hand_cmp.passed and fd_cmp.passed))
    tolerances = {"rtol": rtol, "atol": atol, "fd_rtol": fd_rtol, "fd_atol": fd_atol, "eps": eps}
    return GradgradReport(net.name, label, tuple(leaves), directions, kinks, all(l.passed for l in leaves), train,
                          tolerances)
