"""Structural checks of the ensembles: forests, gradient boosting and histogram gradient boosting.

Each derives the sizes prediction will work with from trusted scalars (the feature count, the
classes) and holds every part to them: scikit-learn's compiled boosting loop writes one output
column per stage column into an array as wide as the initial prediction, unchecked, so an
``init_`` that predicts one class for a three-class model writes past the end of the heap.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn import ensemble, tree
from sklearn._loss.link import LogLink
from sklearn.dummy import DummyClassifier, DummyRegressor

from workers.formats.categorical import rebuild_preprocessor
from workers.formats.checks import (
    LARGEST,
    attr,
    check_classes,
    check_part,
    check_same_hyperparameters,
    exactly,
    float_array,
    holds_none,
    n_features,
    per_step,
    require,
)
from workers.formats.trees import check_bin_mapper, check_predictor, check_tree

__all__ = [
    "check_forest",
    "check_gradient_boosting",
    "check_hist_gradient_boosting",
    "check_tree_estimator",
]

_FOREST_TREES: dict[type, type] = {
    ensemble.RandomForestClassifier: tree.DecisionTreeClassifier,
    ensemble.RandomForestRegressor: tree.DecisionTreeRegressor,
    ensemble.ExtraTreesClassifier: tree.ExtraTreeClassifier,
    ensemble.ExtraTreesRegressor: tree.ExtraTreeRegressor,
}
_CLASSIFIERS = (
    ensemble.RandomForestClassifier,
    ensemble.ExtraTreesClassifier,
    ensemble.GradientBoostingClassifier,
    ensemble.HistGradientBoostingClassifier,
)
_MAX_MEMBERS = 10**6
_EXP_REACH = float(np.log(np.finfo(np.float64).max))


def _classes(model: Any, *, counted: bool = True) -> int:
    """The number of classes, 1 for a regressor."""
    if not isinstance(model, _CLASSIFIERS):
        return 1
    return len(check_classes(model, counted=counted))


def _members(model: Any, name: str) -> list[Any]:
    members = attr(model, name)
    require(
        isinstance(members, list) and 1 <= len(members) <= _MAX_MEMBERS,
        f"the model's {name} is not a list of trees",
    )
    listed: list[Any] = members
    return listed


def check_forest(model: Any, features: int) -> None:
    """A forest of one output whose every tree reads ``features`` and knows its classes."""
    check_part(model)
    n = n_features(model, features)
    classes = _classes(model)
    require(exactly(attr(model, "n_outputs_"), 1), "the model does not have exactly one output")
    kind = _FOREST_TREES[type(model)]
    template = attr(model, "estimator")
    require(type(template) is kind, "the forest's template tree is not of its kind")
    check_part(template)
    members = _members(model, "estimators_")
    # The thread pool prediction uses is sized by it.
    require(model.n_estimators == len(members), "n_estimators disagrees with the trees")
    for member in members:
        require(type(member) is kind, "a forest member is not the forest's kind of tree")
        check_tree_estimator(member, n, classes)
    check_same_hyperparameters(members)


def check_tree_estimator(member: Any, features: int, classes: int) -> None:
    """A decision tree of one output over ``features`` with ``classes`` (1: a regressor)."""
    n_features(member, features)
    require(exactly(attr(member, "n_outputs_"), 1), "a tree does not have exactly one output")
    if classes > 1:
        # A classifier tree cuts its probabilities to n_classes_ columns.
        require(
            exactly(attr(member, "n_classes_"), classes),
            "a tree's classes disagree with the model's",
        )
    check_tree(attr(member, "tree_"), features, classes)


def _check_init(model: Any, classes: int) -> int:
    """The initial estimator of gradient boosting; the width of the prediction it starts from."""
    init = attr(model, "init_")
    if isinstance(init, str):
        require(init == "zero", "unknown init_")
        return per_step(classes)
    if classes == 1:
        require(type(init) is DummyRegressor, "init_ is not mlgate's initial regressor")
        check_part(init)
        require(exactly(attr(init, "n_outputs_"), 1), "init_ does not have exactly one output")
        float_array(attr(init, "constant_"), (1, 1), "init_.constant_")
        return 1
    require(type(init) is DummyClassifier, "init_ is not mlgate's initial classifier")
    check_part(init)
    require(
        init.strategy == "prior" and attr(init, "_strategy") == "prior",
        "init_ does not predict the class priors",
    )
    require(exactly(attr(init, "n_outputs_"), 1), "init_ does not have exactly one output")
    # Fitted on the labels encoded as 0..classes-1.
    encoded = attr(init, "classes_")
    require(
        isinstance(encoded, np.ndarray)
        and encoded.shape == (classes,)
        and encoded.dtype.kind in "iuf"
        and bool(np.all(encoded == np.arange(classes))),
        "init_'s classes disagree with the model's",
    )
    require(
        exactly(attr(init, "n_classes_"), classes), "init_'s class count disagrees with the model's"
    )
    prior = float_array(attr(init, "class_prior_"), (classes,), "init_.class_prior_")
    require(bool(np.all((prior >= 0) & (prior <= 1))), "init_'s class priors are not shares")
    return per_step(classes)


def check_gradient_boosting(model: Any, features: int) -> None:
    """Gradient boosting: its stages, its initial estimator and its loss agree on the width of
    the raw prediction; the loss is rebuilt from the checked parameters."""
    check_part(model)
    require(isinstance(model.loss, str), "the loss is not one of scikit-learn's names")
    n = n_features(model, features)
    classes = _classes(model)
    width = per_step(classes)
    require(exactly(attr(model, "n_trees_per_iteration_"), width), "wrong trees per stage")
    rate = model.learning_rate
    require(0 < rate <= LARGEST, "the learning rate is not a positive finite number")
    stages = attr(model, "estimators_")
    require(
        isinstance(stages, np.ndarray)
        and stages.dtype == object
        and stages.ndim == 2
        and 1 <= stages.shape[0] <= _MAX_MEMBERS
        and stages.shape[1] == width,
        "the boosting stages have the wrong shape",
    )
    members = stages.ravel().tolist()
    for member in members:
        require(type(member) is tree.DecisionTreeRegressor, "a boosting stage is not a tree")
        check_tree_estimator(member, n, 1)
    check_same_hyperparameters(members)
    require(_check_init(model, classes) == width, "init_ predicts the wrong width")
    # Compiled code: rebuilt from the parameters just checked, never taken from the artifact.
    model._loss = model._get_loss(sample_weight=None)


def check_hist_gradient_boosting(model: Any, features: int) -> None:
    """Histogram gradient boosting: binning, baseline and every tree of every iteration agree on
    the features and the trees per iteration; the loss is rebuilt from the checked parameters."""
    check_part(model)
    require(isinstance(model.loss, str), "the loss is not one of scikit-learn's names")
    n = n_features(model, features)
    width = per_step(_classes(model, counted=False))
    require(exactly(attr(model, "n_trees_per_iteration_"), width), "wrong trees per iteration")
    # Prediction takes binned inputs while fitting, raw ones after; mlgate loads fitted models.
    require(attr(model, "_in_fit") in (None, False), "the model claims to be fitting")
    categorical = check_bin_mapper(attr(model, "_bin_mapper"), n)
    if holds_none(model, "_preprocessor"):
        require(not bool(categorical.any()), "categorical splits without a preprocessor")
    else:
        # Given categorical_features, the model encodes them first: rebuilt, never loaded.
        rebuild_preprocessor(model, n, categorical)
    baseline = float_array(attr(model, "_baseline_prediction"), (1, width), "the baseline")
    iterations = _members(model, "_predictors")
    reach = np.abs(baseline).max()
    for predictors in iterations:
        require(
            isinstance(predictors, list) and len(predictors) == width,
            "an iteration has the wrong number of trees",
        )
        for predictor in predictors:
            reach += check_predictor(predictor, n, categorical)
    model._loss = model._get_loss(sample_weight=None)
    if isinstance(model._loss.link, LogLink):
        # Poisson and gamma predict exp(raw): past this, every prediction would be infinite.
        require(reach <= _EXP_REACH, "the trees add up to predictions too large to represent")
