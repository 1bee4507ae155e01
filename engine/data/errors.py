"""The one error type every reader and validator raises."""

from __future__ import annotations


class DataFormatError(ValueError):
    """Bad input data, located precisely: which file, which record, which field.

    ``record`` is an index (``int``) or an id (``str``) inside the file; ``field`` is a dotted
    path inside that record (``"sessions[2].turns[5].text"``). Either may be ``None`` when the
    problem is with the file as a whole (unreadable, not JSON, wrong encoding).
    """

    def __init__(self, file, record=None, field=None, message: str = "invalid data"):
        self.file = str(file) if file is not None else "<memory>"
        self.record = record
        self.field = field
        self.reason = message
        where = [f"file {self.file}"]
        if record is not None:
            where.append(f"record {record}")
        if field is not None:
            where.append(f"field {field}")
        super().__init__(f"{', '.join(where)}: {message}")
