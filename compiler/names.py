"""Python identifiers for the values of generated code.

Generated code names its values after the source (`z`, `w_bar`), so a name
the user chose must never be misread by Python. The rule is simple and total:

    a hint that is a Python keyword or soft keyword, a builtin (`dir(builtins)`),
    an array namespace's alias (`np`, `xp`), or that starts with `_`, gets a trailing `_`
    (`lambda` -> `lambda_`, `sum` -> `sum_`, `_x` -> `_x_`);
    a hint that is not an ASCII identifier is not used: a temporary is made;
    a name already taken gets `_1`, `_2`, ... (`x`, `x_1`, `x_2`; `fresh_all`
    serves the hints that need no change first);
    temporaries are `t1`, `t2`, ..., skipping every name already taken.

Runtime helpers of the generated module start with `_` and never end with `_`
or `_<digit>`, so no escaped or numbered name can hit one. Every name that
reaches generated code goes through `identifier`, which asserts the pattern
`[A-Za-z_][A-Za-z0-9_]*`: nothing from the source can become code.
"""

from __future__ import annotations

import builtins
import keyword
import re
from collections.abc import Iterable, Sequence

NAMESPACE_ALIASES = ("np", "xp")  # the array namespace in the NumPy and array API backends

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_RESERVED = frozenset((*keyword.kwlist, *keyword.softkwlist, *dir(builtins), *NAMESPACE_ALIASES))


def is_identifier(text: str) -> bool:
    """`text` matches `[A-Za-z_][A-Za-z0-9_]*`."""
    return _IDENTIFIER.match(text) is not None


def identifier(name: str) -> str:
    """`name`, after asserting that it is a plain ASCII identifier and no keyword."""
    assert is_identifier(name) and not keyword.iskeyword(name), f"unsafe identifier {name!r}"
    return name


def escape(hint: str) -> str:
    """`hint` with a trailing `_` when Python could misread it (see the module docstring)."""
    assert is_identifier(hint), hint
    return hint + "_" if hint in _RESERVED or hint.startswith("_") else hint


class Namer:
    """Allocates unique, Python-safe names: one `Namer` per scope of generated code."""

    def __init__(self, taken: Iterable[str] = ()):
        self._taken: set[str] = set(taken)
        self._temporaries = 0

    def fresh(self, hint: str | None) -> str:
        """A new name after `hint` (escaped, numbered on a clash), or a temporary."""
        if hint is None or not is_identifier(hint):
            return self.temporary()
        base = escape(hint)
        name, k = base, 0
        while name in self._taken:
            k += 1
            name = f"{base}_{k}"
        return self._take(name)

    def fresh_all(self, hints: Sequence[str]) -> list[str]:
        """New names for `hints`, in order; hints usable as they are are served
        first, so that `print_` keeps its name even when `print` becomes `print_`."""
        names: dict[int, str] = {}
        for k, hint in enumerate(hints):
            if is_identifier(hint) and escape(hint) == hint and hint not in self._taken:
                names[k] = self._take(hint)
        return [names[k] if k in names else self.fresh(hint) for k, hint in enumerate(hints)]

    def temporary(self) -> str:
        """The next unused name of `t1`, `t2`, ..."""
        while True:
            self._temporaries += 1
            name = f"t{self._temporaries}"
            if name not in self._taken:
                return self._take(name)

    def _take(self, name: str) -> str:
        self._taken.add(identifier(name))
        return name


_TEMPORARY = re.compile(r"t[0-9]+\Z")


def is_temporary(name: str) -> bool:
    """Whether `name` is of the form `Namer.temporary` makes (`t12`): no source name."""
    return _TEMPORARY.match(name) is not None
