"""Bind a task's inputData to a worker function's parameters by name and type (pure).

Supported annotations: int, float, str, bool, dict, list[T], dict[str, T], Optional/Union,
dataclasses (nested, lists of them), Any or none; a parameter typed as Task gets the raw task.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Callable
from typing import Any, Union

from worker_runtime.model import Task

_MISSING = object()


class InputBindingError(ValueError):
    """The task input does not fit the function's parameters; retrying cannot fix it."""


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} ({text[:60]}{'...' if len(text) > 60 else ''})"


def convert(value: Any, annotation: Any, where: str) -> Any:
    """Convert a JSON value to the annotated type, or raise InputBindingError saying where and why."""
    if annotation in (inspect.Parameter.empty, Any, object):
        return value
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        args = typing.get_args(annotation)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return convert(value, arg, where)
            except InputBindingError as exc:
                errors.append(str(exc))
        raise InputBindingError(errors[0] if len(errors) == 1 else f"{where}: no type of {annotation} fits")
    if value is None:
        raise InputBindingError(f"{where}: expected {_name(annotation)}, got null")
    if origin in (list, typing.List, tuple, set):  # noqa: UP006
        if not isinstance(value, list):
            raise InputBindingError(f"{where}: expected a list, got {_describe(value)}")
        (item_type,) = typing.get_args(annotation)[:1] or (Any,)
        items = [convert(v, item_type, f"{where}[{i}]") for i, v in enumerate(value)]
        return origin(items) if origin in (tuple, set) else items
    if origin is dict:
        if not isinstance(value, dict):
            raise InputBindingError(f"{where}: expected an object, got {_describe(value)}")
        args = typing.get_args(annotation)
        value_type = args[1] if len(args) == 2 else Any
        return {k: convert(v, value_type, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        return _to_dataclass(value, annotation, where)
    return _primitive(value, annotation, where)


def _name(annotation: Any) -> str:
    return getattr(annotation, "__name__", str(annotation))


def _primitive(value: Any, annotation: Any, where: str) -> Any:
    if annotation is bool:
        if isinstance(value, bool):
            return value
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif annotation is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif annotation is str:
        if isinstance(value, str):
            return value
    elif annotation in (dict, list) or isinstance(annotation, type):
        if isinstance(value, annotation):
            return value
    else:
        return value
    raise InputBindingError(f"{where}: expected {_name(annotation)}, got {_describe(value)}")


def _to_dataclass(value: Any, cls: type, where: str) -> Any:
    if isinstance(value, cls):
        return value
    if not isinstance(value, dict):
        raise InputBindingError(f"{where}: expected an object for {cls.__name__}, got {_describe(value)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.name in value:
            kwargs[f.name] = convert(value[f.name], hints.get(f.name, Any), f"{where}.{f.name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise InputBindingError(f"{where}: missing required field '{f.name}' of {cls.__name__}")
    return cls(**kwargs)


class Binder:
    """Precomputes a function's parameters once; bind() maps each task's input onto them."""

    def __init__(self, func: Callable[..., Any]) -> None:
        self.signature = inspect.signature(func)
        try:
            hints = typing.get_type_hints(func)
        except Exception:  # unresolvable forward refs: fall back to raw annotations
            hints = {}
        self.params: list[tuple[str, Any, Any, inspect._ParameterKind]] = []
        for p in self.signature.parameters.values():
            annotation = hints.get(p.name, p.annotation)
            default = _MISSING if p.default is inspect.Parameter.empty else p.default
            self.params.append((p.name, annotation, default, p.kind))

    def bind(self, task: Task) -> tuple[list[Any], dict[str, Any]]:
        inputs = task.input_data
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        used: set[str] = set()
        for name, annotation, default, kind in self.params:
            if kind is inspect.Parameter.VAR_KEYWORD:
                kwargs.update({k: v for k, v in inputs.items() if k not in used})
                continue
            if kind is inspect.Parameter.VAR_POSITIONAL:
                continue
            if annotation is Task:
                value: Any = task
            elif name in inputs:
                value = convert(inputs[name], annotation, f"input '{name}'")
                used.add(name)
            elif default is not _MISSING:
                value = default
            elif _optional(annotation):
                value = None
            else:
                raise InputBindingError(f"missing required input '{name}'")
            if kind is inspect.Parameter.POSITIONAL_ONLY:
                args.append(value)
            else:
                kwargs[name] = value
        return args, kwargs


def _optional(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    return origin in (Union, types.UnionType) and type(None) in typing.get_args(annotation)
