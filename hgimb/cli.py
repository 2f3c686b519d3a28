"""Shared CLI plumbing: RunConfig flags, ``key=value`` parsing, and the error guard."""
from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from typing import Any, Callable, Dict, List, Optional

import yaml

from .config import DICT_FLAGS, LOADER_FIELDS, RunConfig
from .errors import HgimbError

# Fields set through dedicated flags (key=value lists, booleans) rather than the generic mapping.
KEY_VALUE_FLAGS = DICT_FLAGS
_BOOLEAN = {"quiet", "skip_bad"}
_OPTIONAL_VALUE = {"amp": "on"}  # flags whose bare form means this value
_HELP = {
    "amp": "mixed precision: --amp (bf16 on CPU, fp16 + gradient scaler on CUDA), --amp bf16|fp16|off",
    "dataset": "dataset name or prefix:path (see the list below)",
    "model": "model name (see the list below); join names with + for a soft-voting ensemble (e.g. cgcnn+random-forest)",
    "remedy": "imbalance remedy; combine with + (e.g. focal+balanced-sampler+threshold)",
    "imbalance_ratio": "make the training split long-tailed/step with this max/min class ratio (>= 1)",
    "monitor": "validation metric for early stopping and the best checkpoint",
    "device": "cpu, cuda, cuda:N or auto",
    "out": "run directory (default runs/<dataset>-<model>-<remedy>-s<seed>)",
    "folds": "stratified K-fold cross-validation with K folds (mean ± std)",
    "batch_size": "graphs per batch (graph tasks) or seed nodes per batch (node tasks: neighbour sampling)",
    "data_root": "data root (default $HGIMB_DATA or ./datasets)",
}


def parse_key_values(pairs: Optional[List[str]], flag: str) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise HgimbError(f"{flag} expects name=value, got '{pair}'")
        key, value = pair.split("=", 1)
        try:
            out[key.strip().replace("-", "_")] = yaml.safe_load(value)
        except yaml.YAMLError:
            out[key.strip().replace("-", "_")] = value
    return out


def add_run_config_flags(parser: argparse.ArgumentParser, skip=()) -> None:
    """One flag per RunConfig field (``--imbalance-ratio`` for ``imbalance_ratio``), default SUPPRESS
    so that only flags the user typed override a ``--config`` file."""
    for f in dataclasses.fields(RunConfig):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        help_text = _HELP.get(f.name) or LOADER_FIELDS.get(f.name, "")
        if f.name in KEY_VALUE_FLAGS:
            parser.add_argument(KEY_VALUE_FLAGS[f.name], dest=f.name, action="append", metavar="NAME=VALUE",
                                default=argparse.SUPPRESS, help=f"set one entry of {f.name} (repeatable)")
        elif f.name in _OPTIONAL_VALUE:  # a bare flag means its "on" value
            parser.add_argument(flag, dest=f.name, nargs="?", const=_OPTIONAL_VALUE[f.name], default=argparse.SUPPRESS,
                                help=help_text)
        elif f.name in _BOOLEAN:
            parser.add_argument(flag, dest=f.name, action="store_true", default=argparse.SUPPRESS, help=help_text)
        elif f.name == "plots":
            parser.add_argument("--no-plots", dest="plots", action="store_false", default=argparse.SUPPRESS,
                                help="do not write PNG plots")
        else:
            kind = {"int": int, "float": float}.get(str(f.type).replace("Optional[", "").rstrip("]"), str)
            default = f.default if f.default is not dataclasses.MISSING else None
            parser.add_argument(flag, dest=f.name, type=_typed(kind, flag), default=argparse.SUPPRESS,
                                help=f"{help_text} (default: {default})".strip())


def _typed(kind, flag):
    def convert(text: str):
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} expects {kind.__name__}, got '{text}'") from None

    return convert


def config_from_args(args: argparse.Namespace) -> RunConfig:
    values = {k: v for k, v in vars(args).items() if k in RunConfig.field_names()}
    for name, flag in KEY_VALUE_FLAGS.items():
        if name in values:
            values[name] = parse_key_values(values[name], flag)
    config_path = getattr(args, "config", None)
    sources = {k: "flag" for k in values}
    if config_path:
        file_values = RunConfig.read_yaml(config_path)
        RunConfig.from_dict(file_values, source=str(config_path))  # the file alone is valid
        merged = dict(file_values)
        for name in KEY_VALUE_FLAGS:
            if name in values and isinstance(merged.get(name), dict):
                values[name] = {**merged[name], **values[name]}
        merged.update(values)
        sources = {**{k: f"config file {config_path}" for k in file_values}, **sources}
        return RunConfig.from_dict(merged, source=str(config_path), sources=sources)
    return RunConfig.from_dict(values, source="command line", sources=sources)


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but usage errors exit 2 with one line (no usage dump), and an option's value may
    start with a minus sign (``--fanout -1,5``), which plain argparse takes for another option."""

    def parse_known_args(self, args=None, namespace=None):
        args = list(sys.argv[1:] if args is None else args)
        joined = []
        i = 0
        while i < len(args):
            token = args[i]
            action = self._option_string_actions.get(token)
            takes_value = action is not None and action.nargs is None and action.option_strings and action.const is None
            if takes_value and i + 1 < len(args) and re.match(r"^-\d", args[i + 1]):
                joined.append(f"{token}={args[i + 1]}")
                i += 2
                continue
            joined.append(token)
            i += 1
        return super().parse_known_args(joined, namespace)

    def error(self, message: str):  # noqa: D401
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def guard(main: Callable[[Optional[List[str]]], int]) -> Callable[[Optional[List[str]]], int]:
    """Turn HgimbError into 'error: <message>' on stderr and exit code 2."""

    def wrapped(argv: Optional[List[str]] = None) -> int:
        try:
            return main(argv)
        except HgimbError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return exc.exit_code
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130

    return wrapped
