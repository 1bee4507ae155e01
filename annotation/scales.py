"""Rating scales: what a value may be, how it is read and written, and the anchors annotators see.

Two scales (EMMA/MiSC paper ``001_…``): Likert 1–5 for the dialogue criteria (Appendix F) and
pass/fail for the memory checks (§5.2 "Memory": "a 'pass' if the element fully meets the
criteria, and a 'fail' if it does not"). The generic pass/fail anchors are replaced, for the
three memory checks, by anchors that say what *meeting the criterion* means for that element.

Reading values (one rule for the desktop, the CLI and ratings CSVs) — decided and documented:

* Likert: the ASCII digits ``1``–``5``, optionally written ``3.0`` (a spreadsheet or pandas
  column with blanks writes integers that way); surrounding spaces are ignored. Rejected with a
  message: ``3.5``, ``nan``, ``inf``, ``1e400``, words, and digits of other scripts (``٣``,
  ``३``) — Python's ``float()`` accepts those silently, and a value no annotator typed must not
  become a rating. Python ints 1..5 are accepted; ``True``/``False`` are not.
* Pass/fail: pass/fail, yes/no, true/false, p/f, 1/0 (any case) → 1/0.
"""

from __future__ import annotations

import math
import re

from .db import StudyError

SCALES = ("likert", "passfail")

# Appendix F: "A score of 5 is awarded when the dialogue is flawless, while a score of 1 is given if
# there is a critical issue that makes evaluation impossible. A score of 4 reflects excellent overall
# quality, while a score of 2 indicates significant issues that are not critical but go beyond minor
# problems. A score of 3 applies when there are some minor issues that do not significantly disrupt
# the overall flow or understanding of the dialogue."
LIKERT_ANCHORS = {
    "1": "Poor: a critical issue that makes evaluation impossible.",
    "2": "Significant issues that are not critical but go beyond minor problems.",
    "3": "Some minor issues that do not significantly disrupt the overall flow or understanding of the dialogue.",
    "4": "Excellent overall quality.",
    "5": "Perfect: the dialogue is flawless.",
}
# §5.2 "Memory": "assigning a 'pass' if the element fully meets the criteria, and a 'fail' if it does not".
PASSFAIL_ANCHORS = {"pass": "The element fully meets the criterion.", "fail": "It does not fully meet the criterion."}

# What "fully meets the criterion" means for each MiSC memory check (§5.2 definitions, made concrete).
MEMORY_ANCHORS = {
    "memory_summarization": {
        "pass": "Everything the memory says is in its source turns, it is written from the main speaker's "
                "point of view about the right partner (\"Bob passed his exam\", not \"I passed\"), and it keeps "
                "what matters for later sessions. A persona line given before the conversation passes when it is "
                "a clear, self-contained fact about its owner.",
        "fail": "It adds or changes facts, contradicts its source turns, is about the wrong person or written from "
                "the wrong perspective, or leaves out the point of the exchange.",
    },
    "memory_linking": {
        "pass": "The two memories are about the same context (the same person, topic or event), or the newer one "
                "is an update of the older one on the same event — so recalling one should bring up the other.",
        "fail": "They are about unrelated things, or the stated relation is wrong (an \"update\" where nothing "
                "changed, or two different events joined).",
    },
    "memory_tagging": {
        "pass": "The utterance uses the tagged memory: a detail from it is mentioned, asked about or acted on.",
        "fail": "The utterance would read the same without that memory, or it contradicts the memory.",
    },
}

PASS_WORDS = {"pass": 1, "fail": 0, "yes": 1, "no": 0, "true": 1, "false": 0, "1": 1, "0": 0, "p": 1, "f": 0}
_LIKERT_TEXT = re.compile(r"[1-5](?:\.0+)?")


def default_anchors(scale: str, criterion: str = "") -> dict:
    """The anchors a criterion shows when its definition gives none."""
    if scale == "likert":
        return dict(LIKERT_ANCHORS)
    return dict(MEMORY_ANCHORS.get(criterion, PASSFAIL_ANCHORS))


def _likert_error(raw) -> StudyError:
    return StudyError(f"a Likert rating is a whole number 1..5 written with the digits 1–5, got {raw!r}")


def parse_value(scale: str, raw) -> int:
    """Read a rating value (see the module docstring for what is accepted); bad input → StudyError."""
    if scale == "likert":
        if isinstance(raw, bool):
            raise _likert_error(raw)
        if isinstance(raw, int):
            if 1 <= raw <= 5:
                return raw
            raise _likert_error(raw)
        if isinstance(raw, float):
            if math.isfinite(raw) and raw == int(raw) and 1 <= raw <= 5:
                return int(raw)
            raise _likert_error(raw)
        text = str(raw).strip()
        if not _LIKERT_TEXT.fullmatch(text):
            raise _likert_error(raw)
        return int(text[0])
    if scale != "passfail":
        raise StudyError(f"unknown scale {scale!r}; scales are {', '.join(SCALES)}")
    if isinstance(raw, bool):
        return int(raw)
    if isinstance(raw, int) and raw in (0, 1):
        return raw
    key = str(raw).strip().lower()
    if key not in PASS_WORDS:
        raise StudyError(f"a pass/fail rating is pass or fail (or yes/no, true/false, 1/0), got {raw!r}")
    return PASS_WORDS[key]


def format_value(scale: str, value: int) -> str:
    return str(value) if scale == "likert" else ("pass" if value else "fail")
