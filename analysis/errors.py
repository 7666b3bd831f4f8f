"""User-facing errors: one paragraph naming the file, trial, column and what was expected."""

from __future__ import annotations

__all__ = ["InputError"]


class InputError(Exception):
    """Bad input that the user must fix. The CLI prints it without a traceback."""

    def __init__(self, problem: str, *, file=None, trial=None, column=None, expected=None, found=None, hint=None):
        self.problem = problem
        self.file = str(file) if file is not None else None
        self.trial = trial
        self.column = column
        self.expected = expected
        self.found = found
        self.hint = hint
        super().__init__(self.message())

    def __reduce__(self):
        # keep the fields when the error crosses processes (a trial harmonised in a worker)
        fields = {k: getattr(self, k) for k in ("file", "trial", "column", "expected", "found", "hint")}
        return _rebuild, (self.problem, fields)

    def message(self) -> str:
        where = []
        if self.file:
            where.append(f"file {self.file}")
        if self.trial:
            where.append(f"trial {self.trial}")
        if self.column:
            where.append(f"column {self.column!r}")
        text = (", ".join(where) + ": " if where else "") + self.problem
        if self.expected is not None:
            text += f"; expected {self.expected}"
        if self.found is not None:
            text += f", found {self.found}"
        if self.hint:
            text += f". {self.hint}"
        return text if text.endswith(".") else text + "."


def _rebuild(problem, fields) -> InputError:
    return InputError(problem, **fields)
