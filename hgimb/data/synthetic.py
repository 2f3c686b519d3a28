"""``synthetic``: a Freebase-like movie graph with planted, imbalanced class labels.

The ``make demo`` dataset: no files, deterministic in ``seed``, a second to build at the default
size, and fully vectorised (numpy) so that it also serves scale tests (millions of nodes).

Schema (as HGB Freebase): node types ``movie`` (the labelled target), ``actor``, ``director``,
``writer``; every relation in both directions: ``(movie, starring, actor)`` / ``(actor, in,
movie)``, ``(movie, directed_by, director)`` / ``(director, of, movie)``, ``(movie, written_by,
writer)`` / ``(writer, of, movie)``. People have no features; movies get a 32-dim feature vector
when ``features=True`` (the default).

Planted signal
--------------
* Movie classes: ``num_classes`` (default 5) with sizes by ``profile``: ``long-tail`` (geometric,
  class 0 largest, class ``C-1`` ``imbalance`` times smaller), ``step`` (the first ``ceil(C/2)``
  classes equal, the last ``C//2`` ``imbalance`` times smaller) or ``balanced``. Labels are
  assigned to movie ids at random.
* Every person has a latent preferred class, shared out in proportion to the class sizes (at
  least one person per class and type), never stored in the Task.
* A movie of class ``c`` draws ``Poisson(d_r)`` people of each relation ``r``; each edge goes,
  with probability ``homophily`` (default 0.7), to a uniformly random person preferring ``c``, and
  otherwise to a uniformly random person. So about ``homophily + (1 - homophily) * share_c`` of a
  person's movies are of its preferred class, the same purity for every class: a model that passes
  labels/embeddings movie -> person -> movie can learn the classes, and the minority classes are
  hard only because they have few training labels. Duplicate (movie, person) pairs are dropped.
* Movie features (``features=True``): ``N(0, I_32)`` noise plus a class mean of norm
  ``FEATURE_SIGNAL`` (random directions). Weak on purpose: a classifier on movie features alone
  stays far below one that uses the graph (tests/test_synthetic.py checks this).

Sizes: people per movie ``PEOPLE_PER_MOVIE`` (2 actors, 0.3 directors, 0.5 writers), so a graph has
about ``3.8 * num_movies`` nodes; ``avg_degree`` (default 10) is the mean number of people per movie,
shared among relations as ``DEGREE_SHARE`` (60% actors, 15% directors, 25% writers), giving about
``2 * avg_degree * num_movies`` directed edges. Peak memory is a few int64 arrays of the edge
count (about 1.5 GB for 50M edges).

Split (official, ``meta['official_split'] = True``): 50% train / 25% val / 25% test of the movies,
stratified per class, seeded by ``seed`` -- the training set inherits the class-size profile.
``seed`` is the *data* seed (which graph), separate from the run seed (which split/init).
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import HgimbError
from ..params import Param, Range
from .registry import register_dataset
from .splits import _stratified
from .task import Task

PEOPLE_TYPES = ("actor", "director", "writer")
PEOPLE_PER_MOVIE = {"actor": 2.0, "director": 0.3, "writer": 0.5}
DEGREE_SHARE = {"actor": 0.60, "director": 0.15, "writer": 0.25}
RELATIONS = {"actor": ("starring", "in"), "director": ("directed_by", "of"), "writer": ("written_by", "of")}
FEATURE_DIM = 32
FEATURE_SIGNAL = 0.6  # norm of the class means against unit-variance noise
SPLIT_FRACTIONS = (0.5, 0.25, 0.25)
PROFILES = ("long-tail", "step", "balanced")
MIN_PER_CLASS = 3  # one train, one val and one test movie per class at least

PARAMS = (
    Param("num_movies", int, 3000, "labelled movie nodes (at least 3 per class)", Range(1)),
    Param("num_classes", int, 5, "movie classes", Range(2)),
    Param("profile", str, "long-tail", "class-size profile", choices=PROFILES),
    Param("imbalance", float, 10.0, "largest / smallest class size", Range(1)),
    Param("homophily", float, 0.7, "share of edges to a person preferring the movie's class", Range(0, 1)),
    Param("features", bool, True, "32-dim movie features (else featureless)"),
    Param("avg_degree", float, 10.0, "mean people per movie", Range(0, low_open=True)),
    Param("seed", int, 0, "data seed (which graph; the run seed is separate)", Range(0)),
)


def class_sizes(num_movies: int, num_classes: int, profile: str, imbalance: float) -> np.ndarray:
    """Number of movies per class (largest-remainder rounding, at least ``MIN_PER_CLASS`` each)."""
    ranks = np.arange(num_classes)
    if profile == "long-tail":
        weights = imbalance ** (-ranks / max(num_classes - 1, 1))
    elif profile == "step":
        weights = np.where(ranks < num_classes - num_classes // 2, 1.0, 1.0 / imbalance)
    else:
        weights = np.ones(num_classes)
    return _allocate(num_movies, weights, MIN_PER_CLASS)


def _allocate(total: int, weights: np.ndarray, minimum: int) -> np.ndarray:
    """Split ``total`` in proportion to ``weights``: floors, then the largest remainders, each >= minimum."""
    exact = total * weights / weights.sum()
    sizes = np.maximum(np.floor(exact).astype(np.int64), minimum)
    missing = total - int(sizes.sum())
    if missing > 0:  # the largest remainders (ties: lower index) get one more
        order = np.lexsort((np.arange(len(exact)), -(exact - np.floor(exact))))
        sizes[order[:missing]] += 1
    while sizes.sum() > total:  # minimums pushed us over: trim the largest (a loop over classes)
        sizes[int(np.argmax(sizes))] -= 1
    return sizes


# ---------------------------------------------------------------------------- generator
def _person_edges(rng, y: np.ndarray, sizes: np.ndarray, num_people: int, mean_degree: float, homophily: float):
    """Movie -> person edges of one relation, as a sorted, duplicate-free ``[2, E]`` int64 array."""
    num_movies, num_classes = len(y), len(sizes)
    # latent preferred classes, in proportion to the class sizes; pool[c] = people preferring c
    per_class = _allocate(num_people, sizes.astype(np.float64), 1)
    preferred = rng.permutation(np.repeat(np.arange(num_classes), per_class))
    pool = np.argsort(preferred, kind="stable")
    pool_start = np.cumsum(per_class) - per_class

    degree = rng.poisson(mean_degree, size=num_movies)
    src = np.repeat(np.arange(num_movies, dtype=np.int64), degree)
    cls = y[src]
    homophilous = rng.random(src.size) < homophily
    dst = rng.integers(0, num_people, size=src.size, dtype=np.int64)  # the random edges
    k = np.flatnonzero(homophilous)
    offset = (rng.random(k.size) * per_class[cls[k]]).astype(np.int64)
    dst[k] = pool[pool_start[cls[k]] + offset]
    del cls, homophilous, k, offset
    # drop duplicate pairs (sort + neighbour compare: several times faster than np.unique's hashing)
    key = src * num_people + dst
    del src, dst
    key.sort()
    keep = np.empty(key.size, dtype=bool)
    keep[:1] = True
    np.not_equal(key[1:], key[:-1], out=keep[1:])
    key = key[keep]
    return np.stack([key // num_people, key % num_people])


def generate(num_movies: int = 3000, num_classes: int = 5, profile: str = "long-tail", imbalance: float = 10.0,
             homophily: float = 0.7, features: bool = True, avg_degree: float = 10.0, seed: int = 0) -> Task:
    """Build the synthetic Task (arguments as in the module docstring; already validated)."""
    from torch_geometric.data import HeteroData

    rng = np.random.default_rng(seed)
    sizes = class_sizes(num_movies, num_classes, profile, imbalance)
    y = rng.permutation(np.repeat(np.arange(num_classes, dtype=np.int64), sizes))

    data = HeteroData()
    data["movie"].num_nodes = num_movies
    if features:
        means = rng.standard_normal((num_classes, FEATURE_DIM))
        means *= FEATURE_SIGNAL / np.linalg.norm(means, axis=1, keepdims=True)
        x = rng.standard_normal((num_movies, FEATURE_DIM), dtype=np.float32)
        x += means[y].astype(np.float32)
        data["movie"].x = torch.from_numpy(x)
    for person in PEOPLE_TYPES:
        num_people = max(num_classes, int(round(PEOPLE_PER_MOVIE[person] * num_movies)))
        data[person].num_nodes = num_people
        edges = torch.from_numpy(_person_edges(rng, y, sizes, num_people, avg_degree * DEGREE_SHARE[person],
                                               homophily))
        forward, backward = RELATIONS[person]
        data["movie", forward, person].edge_index = edges
        data[person, backward, "movie"].edge_index = edges.flip(0)

    train, val, test = _stratified(np.arange(num_movies), y, num_classes, SPLIT_FRACTIONS, rng)
    options = dict(num_movies=num_movies, num_classes=num_classes, profile=profile, imbalance=imbalance,
                   homophily=homophily, features=features, avg_degree=avg_degree, seed=seed)
    return Task(
        name="synthetic",
        kind="node",
        class_names=[f"class{c}" for c in range(num_classes)],
        y=torch.from_numpy(y),
        split={"train": torch.from_numpy(train), "val": torch.from_numpy(val), "test": torch.from_numpy(test)},
        data=data,
        target_types=["movie"],
        item_ids=np.arange(num_movies),
        meta=dict(source="synthetic", official_split=True, options=options, class_sizes=sizes.tolist()),
    )


@register_dataset("synthetic", "Freebase-like movie graph with planted imbalanced labels (no files needed)", PARAMS)
def load_synthetic(root=None, **options) -> Task:
    """Loader: ``root`` is ignored; options (validated against :data:`PARAMS`) as in the module docstring."""
    if options["num_movies"] < MIN_PER_CLASS * options["num_classes"]:
        raise HgimbError(f"dataset 'synthetic': option num_movies must be >= {MIN_PER_CLASS} * num_classes = "
                         f"{MIN_PER_CLASS * options['num_classes']}, got {options['num_movies']}")
    return generate(**options).validate()
