"""YAML as a spec author means it: ``1e-3`` is a number and a repeated key is a mistake.

PyYAML follows YAML 1.1, where a float needs a dot (``1e-3`` stays the string "1e-3") and a
repeated key silently overwrites the first. Specs are validated strictly (text is never
taken for a number), so the loader reads YAML 1.2 floats and rejects duplicate keys.
"""
from __future__ import annotations

import re
from typing import Any

import yaml

_FLOAT_1_2 = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
        |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
    re.X,
)


class SpecLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 floats and duplicate-key errors."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (each key may appear once per section)", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


SpecLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_1_2, list("-+0123456789."))


def load_yaml(text: str) -> Any:
    """Parse one YAML document with :class:`SpecLoader`; raises ``yaml.YAMLError``."""
    return yaml.load(text, Loader=SpecLoader)  # noqa: S506 (SpecLoader is a SafeLoader)
