"""The bug zoo (jaxnet.check.zoo, docs/bug_zoo.md): every mistake is flagged by `layer_report`,
`gradcheck` and (for layer bugs) `check_layer`, at the right layer; the fixed networks pass.

The reference in every check is `jax.vjp` / `jax.grad` of the layers' `apply` (which the buggy
layers inherit unchanged from the correct built-in ones) and finite differences; nothing here
compares a buggy backward with a hand-written expectation.
"""

import jax
import pytest

from jaxnet.check import check_layer, gradcheck, layer_report, zoo

BUGS = list(zoo.BUGS)


def case(name, seed=0):
    return zoo.BUGS[name].case(jax.random.key(seed))


def test_the_zoo_has_at_least_twelve_real_mistakes():
    assert len(zoo.BUGS) >= 12
    assert {c.faulty for c in map(case, BUGS)} >= {"loss", "route", "1", "2", "3"}


@pytest.mark.parametrize("name", BUGS)
def test_layer_report_flags_the_bug_at_its_layer(name):
    c = case(name)
    report = layer_report(c.net, c.params, c.x, c.y, c.loss, state=c.state, key=c.key, train=c.train)
    if c.faulty == "route":  # a route bug outside the layers: every layer is right
        assert report.passed, str(report)
        return
    assert not report.passed
    assert [row.label for row in report.faulty] == [c.faulty], str(report)
    assert f"first wrong layer is {report.faulty[0].where}" in str(report)


@pytest.mark.parametrize("name", BUGS)
def test_gradcheck_flags_the_bug_and_names_the_layer(name):
    c = case(name)
    if name == "bias gradient over the wrong axis":  # wrong structure: a ValueError naming the layer
        with pytest.raises(ValueError,
                           match=r"^layer 2 \(Dense\(4\)\)\.backward: returned dparams\['b'\] of shape \(6,\)"):
            gradcheck(c.net, c.params, c.x, c.y, c.loss, **c.kwargs())
        return
    report = gradcheck(c.net, c.params, c.x, c.y, c.loss, **c.kwargs())
    if name == "max-pool gradient to every tie":
        # the ties are windows of ReLU zeros, so the relu in front masks the extra gradient: the
        # network's gradient is right and only the per-layer report (above) sees the bug
        assert report.passed, str(report)
        return
    assert not report.passed
    verdict = str(report).splitlines()[-1]
    if c.faulty == "route":
        assert "the route 'l2_on_biases' itself is wrong ([0]['b'], [2]['b'])" in verdict
    elif c.faulty == "loss":
        assert "blames the loss (softmax_cross_entropy, grad not / batch)" in verdict
    else:
        assert f"blames layer {c.faulty} (" in verdict and "also" not in verdict, verdict


@pytest.mark.parametrize("name", [n for n in BUGS if case(n).faulty not in ("loss", "route")])
def test_check_layer_flags_the_layer_at_its_real_input(name):
    c = case(name)
    layer, x, params, state, key = zoo.layer_input(c)
    if name == "bias gradient over the wrong axis":
        with pytest.raises(ValueError, match=r"returned dparams\['b'\] of shape \(6,\)"):
            check_layer(layer, x, params=params, state=state, key=key, train=c.train)
        return
    assert not check_layer(layer, x, params=params, state=state, key=key, train=c.train).passed
    assert check_layer(zoo.correct(layer), x, params=params, state=state, key=key, train=c.train).passed


@pytest.mark.parametrize("name", BUGS)
def test_the_fixed_network_passes(name):
    c = zoo.fixed(case(name))
    assert layer_report(c.net, c.params, c.x, c.y, c.loss, state=c.state, key=c.key, train=c.train).passed
    report = gradcheck(c.net, c.params, c.x, c.y, c.loss, **c.kwargs())
    assert report.passed, str(report)


def test_swish_forgetting_beta_is_exact_at_init_and_caught_perturbed():
    """The trap of init values: at beta = 1 the buggy dx is exactly right, so only the perturbed
    params expose it (perturb=None checks the params as given)."""
    c = case("Swish forgets beta")
    layer, x, params, state, key = zoo.layer_input(c)
    assert check_layer(layer, x, params=params, perturb=None).passed
    report = check_layer(layer, x, params=params)
    assert not report.passed and report.perturbed == ("['beta']",)
    assert gradcheck(c.net, c.params, c.x, c.y, c.loss, perturb=None, **c.kwargs()).passed
    report = gradcheck(c.net, c.params, c.x, c.y, c.loss, **c.kwargs())
    assert not report.passed and "[2]['beta']" in report.perturbed
    assert "blames layer 2 (Swish)" in str(report)
    # the upstream leaves are wrong in the route (the bad dx flows into them), yet not blamed
    assert not {leaf.path: leaf.route.passed for leaf in report.leaves}["[0]['W']"]
