"""Question sets and answers: validation of the JSON shapes that PRODUCT.md defines (pure, no Django)."""

from __future__ import annotations

import itertools
import math
from typing import Any

QUESTION_TYPES = ("single", "multiple", "points", "location", "text")
UNSURE = "unsure"
MAX_QUESTIONS = 30
MAX_CHOICES = 50
MAX_POINTS = 500
MAX_TEXT_CHARS = 5000
# A multiple-choice primary question's consensus is one of every combination of its options (2^n labels).
MULTIPLE_PRIMARY_MAX_CHOICES = 6
# The label of an answer that chose none of a multiple-choice question's options (never the primary's: it
# is required).
NO_OPTION = "none"
MAX_KEY_CHARS = 64


class QuestionSetError(ValueError):
    """A question set that does not follow the documented shape."""


class AnswerError(ValueError):
    """An answer that does not fit its question set; `field` names the offending question key."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _is_key(value: Any) -> bool:
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_KEY_CHARS
        and all(c.isalnum() or c in "_-" for c in value)
    )


def validate_question_set(question_set: Any) -> dict[str, Any]:
    """Return the question set unchanged when valid, else raise QuestionSetError with a clear message."""
    if not isinstance(question_set, dict):
        raise QuestionSetError("a question set must be a JSON object with 'primary' and 'questions'")
    questions = question_set.get("questions")
    if not isinstance(questions, list) or not questions:
        raise QuestionSetError("'questions' must be a non-empty list")
    if len(questions) > MAX_QUESTIONS:
        raise QuestionSetError(f"at most {MAX_QUESTIONS} questions are allowed")
    keys: set[str] = set()
    for index, question in enumerate(questions):
        where = f"question {index + 1}"
        if not isinstance(question, dict):
            raise QuestionSetError(f"{where} must be an object")
        key = question.get("key")
        if not _is_key(key):
            raise QuestionSetError(f"{where}: 'key' must be 1-64 letters, digits, '_' or '-'")
        if key in keys:
            raise QuestionSetError(f"{where}: duplicate key {key!r}")
        keys.add(str(key))
        qtype = question.get("type")
        if qtype not in QUESTION_TYPES:
            raise QuestionSetError(f"{where} ({key}): 'type' must be one of {', '.join(QUESTION_TYPES)}")
        if not isinstance(question.get("text"), str) or not question["text"].strip():
            raise QuestionSetError(f"{where} ({key}): 'text' must be a non-empty string")
        for optional in ("help",):
            if optional in question and not isinstance(question[optional], str):
                raise QuestionSetError(f"{where} ({key}): '{optional}' must be a string")
        if "required" in question and not isinstance(question["required"], bool):
            raise QuestionSetError(f"{where} ({key}): 'required' must be true or false")
        if qtype in ("single", "multiple"):
            choices = question.get("choices")
            if not isinstance(choices, list) or len(choices) < 2:
                raise QuestionSetError(f"{where} ({key}): 'choices' must list at least two choices")
            if len(choices) > MAX_CHOICES:
                raise QuestionSetError(f"{where} ({key}): at most {MAX_CHOICES} choices")
            values: set[str] = set()
            for choice in choices:
                if not isinstance(choice, dict) or not _is_key(choice.get("value")):
                    raise QuestionSetError(
                        f"{where} ({key}): each choice needs a 'value' (letters, digits, _ -)"
                    )
                if not isinstance(choice.get("label"), str) or not choice["label"].strip():
                    raise QuestionSetError(f"{where} ({key}): choice {choice.get('value')!r} needs a 'label'")
                if "help" in choice and not isinstance(choice["help"], str):
                    raise QuestionSetError(f"{where} ({key}): choice 'help' must be a string")
                if choice["value"] in values:
                    raise QuestionSetError(f"{where} ({key}): duplicate choice {choice['value']!r}")
                values.add(choice["value"])
    primary = question_set.get("primary")
    if primary not in keys:
        raise QuestionSetError("'primary' must name one of the questions")
    primary_question = question_by_key(question_set, primary)
    if primary_question["type"] not in ("single", "multiple"):
        raise QuestionSetError("the primary question must be a single or multiple choice question")
    if primary_question["type"] == "multiple":
        # Its consensus label is the set of options chosen, one of every combination of them.
        options = [v for v in choice_values(primary_question) if v != UNSURE]
        if len(options) > MULTIPLE_PRIMARY_MAX_CHOICES:
            raise QuestionSetError(
                f"a multiple-choice primary question may offer at most {MULTIPLE_PRIMARY_MAX_CHOICES} choices "
                f"besides {UNSURE!r} (its consensus is one of every combination of them); ask the others in "
                "questions of their own"
            )
        for value in options:
            if "+" in value:
                raise QuestionSetError(
                    f"a multiple-choice primary question's choice may not contain '+': {value!r} (its "
                    "consensus labels join the options chosen with '+')"
                )
    return question_set


def primary_labels(question_set: dict[str, Any]) -> list[tuple[str, str]]:
    """Every consensus label of the primary question, as (value, what a reviewer reads), in a fixed order.

    A single-choice question's labels are its choices.  A multiple-choice question's are the sets of options
    a volunteer can give, as `primary_label` writes them: sorted values joined by '+' (the primary question
    is required, so never the empty set), then ``unsure`` if offered.
    """
    question = question_by_key(question_set, question_set["primary"])
    choices = question.get("choices", [])
    if question["type"] != "multiple":
        return [(c["value"], c["label"]) for c in choices]
    options = [c for c in choices if c["value"] != UNSURE]
    labels = []
    for size in range(1, len(options) + 1):
        for subset in itertools.combinations(options, size):
            value = "+".join(sorted(c["value"] for c in subset))
            labels.append((value, " + ".join(c["label"] for c in subset)))
    return labels + [(c["value"], c["label"]) for c in choices if c["value"] == UNSURE]


def label_names(question_set: dict[str, Any]) -> dict[str, str]:
    """What a reviewer reads for each value of the primary question's choices (``choice["value"]`` ->
    ``choice["label"]``); a multiple-choice label (``a+b``) reads as its options' names (`label_name`)."""
    try:
        question = question_by_key(question_set, question_set["primary"])
    except (KeyError, TypeError):
        return {}
    return {str(c["value"]): str(c.get("label") or c["value"]) for c in question.get("choices", [])}


def label_name(names: dict[str, str], value: str | None) -> str:
    """``value`` as the question set names it: ``destroyed`` -> "Structures destroyed", ``a+b`` ->
    "A + B"; a value the question set does not know (a choice since removed) reads as itself."""
    if not value:
        return ""
    if value in names:
        return names[value]
    parts = value.split("+")
    if len(parts) > 1 and all(part in names for part in parts):
        return " + ".join(names[part] for part in parts)
    return value


def question_by_key(question_set: dict[str, Any], key: str) -> dict[str, Any]:
    for question in question_set["questions"]:
        if question["key"] == key:
            return dict(question)
    raise KeyError(key)


def choice_values(question: dict[str, Any]) -> list[str]:
    return [choice["value"] for choice in question.get("choices", [])]


def _finite_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def validate_answer(
    question_set: dict[str, Any],
    answer: Any,
    *,
    tile_size_px: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Check an answer against its question set and return it normalised; raise AnswerError otherwise.

    Unknown keys are refused (so a typo never silently drops data). The primary question is always
    required, because consensus is computed on it; other questions only when marked `required`.
    """
    if not isinstance(answer, dict):
        raise AnswerError("answer", "must be an object keyed by question key")
    questions = {q["key"]: q for q in question_set["questions"]}
    for key in answer:
        if key not in questions:
            raise AnswerError(str(key)[:MAX_KEY_CHARS], "is not a question of this campaign")
    normalised: dict[str, Any] = {}
    for key, question in questions.items():
        required = question.get("required", False) or key == question_set["primary"]
        if key not in answer or answer[key] is None:
            if required:
                raise AnswerError(key, "an answer is required")
            continue
        value = answer[key]
        qtype = question["type"]
        allowed = set(choice_values(question))
        if qtype == "single":
            if not isinstance(value, str) or value not in allowed:
                raise AnswerError(key, f"must be one of {', '.join(sorted(allowed))}")
            normalised[key] = value
        elif qtype == "multiple":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise AnswerError(key, "must be a list of choice values")
            unknown = [v for v in value if v not in allowed]
            if unknown:
                raise AnswerError(key, f"unknown choice {unknown[0]!r}")
            if len(set(value)) != len(value):
                raise AnswerError(key, "a choice is listed twice")
            if required and not value:
                raise AnswerError(key, "choose at least one option")
            normalised[key] = sorted(value)
        elif qtype == "points":
            if not isinstance(value, list) or len(value) > MAX_POINTS:
                raise AnswerError(key, f"must be a list of at most {MAX_POINTS} [x, y] pairs")
            points = []
            for point in value:
                if (
                    not isinstance(point, list | tuple)
                    or len(point) != 2
                    or not all(_finite_number(c) for c in point)
                ):
                    raise AnswerError(key, "each point must be [x, y] with finite numbers")
                x, y = float(point[0]), float(point[1])
                if x < 0 or y < 0:
                    raise AnswerError(key, "points must lie inside the tile")
                if tile_size_px is not None and (x > tile_size_px[0] or y > tile_size_px[1]):
                    raise AnswerError(key, "points must lie inside the tile")
                points.append([x, y])
            normalised[key] = points
        elif qtype == "location":
            if not isinstance(value, dict) or set(value) != {"lon", "lat"}:
                raise AnswerError(key, 'must be {"lon": number, "lat": number}')
            lon, lat = value["lon"], value["lat"]
            if not (_finite_number(lon) and _finite_number(lat)) or not (
                -180 <= lon <= 180 and -90 <= lat <= 90
            ):
                raise AnswerError(key, "lon must be within [-180, 180] and lat within [-90, 90]")
            normalised[key] = {"lon": float(lon), "lat": float(lat)}
        elif qtype == "text":
            if not isinstance(value, str):
                raise AnswerError(key, "must be a string")
            if len(value) > MAX_TEXT_CHARS:
                raise AnswerError(key, f"at most {MAX_TEXT_CHARS} characters")
            if "\x00" in value:
                raise AnswerError(key, "must not contain NUL characters")
            if required and not value.strip():
                raise AnswerError(key, "an answer is required")
            normalised[key] = value
    return normalised


def primary_label(question_set: dict[str, Any], answer: dict[str, Any]) -> str | None:
    """The consensus-relevant label of an answer: the primary question's value (a multiple set joined by '+';
    ``unsure`` beside other options counts as those options alone)."""
    value = answer.get(question_set["primary"])
    if value is None:
        return None
    if isinstance(value, list):
        options = sorted(v for v in value if v != UNSURE)
        if not options and UNSURE in value:
            return UNSURE
        return "+".join(options) if options else NO_OPTION
    return str(value)


def answer_for_label(question_set: dict[str, Any], label: str) -> dict[str, Any]:
    """The primary-question answer a label stands for (the inverse of `primary_label`), e.g. for gold tasks."""
    primary = question_by_key(question_set, question_set["primary"])
    value: Any = label.split("+") if primary["type"] == "multiple" else label
    return {primary["key"]: value}


IMAGERY_QUESTION_SET: dict[str, Any] = {
    "primary": "damage",
    "questions": [
        {
            "key": "damage",
            "type": "single",
            "text": "Compare the two images. What happened to the structures in this tile?",
            "help": "Look for huts and buildings in the 'before' image, then check the same place 'after'.",
            "choices": [
                {
                    "value": "no_structures",
                    "label": "No structures",
                    "help": "Bare ground, fields or bush only.",
                },
                {
                    "value": "intact",
                    "label": "Structures intact",
                    "help": "Huts are still there, roofs visible.",
                },
                {
                    "value": "destroyed",
                    "label": "Structures destroyed",
                    "help": "Huts gone or replaced by dark burn scars.",
                },
                {
                    "value": UNSURE,
                    "label": "Unsure",
                    "help": "Clouds, blur, or you cannot tell. Never penalised.",
                },
            ],
        },
        {
            "key": "marks",
            "type": "points",
            "text": "Optional: tap on each destroyed structure.",
            "required": False,
        },
        {"key": "note", "type": "text", "text": "Anything a researcher should know?", "required": False},
    ],
}

VIDEO_QUESTION_SET: dict[str, Any] = {
    "primary": "authentic",
    "questions": [
        {
            "key": "authentic",
            "type": "single",
            "text": "Does this footage look like what it claims to show, unedited?",
            "choices": [
                {"value": "consistent", "label": "Consistent with the claim"},
                {"value": "inconsistent", "label": "Inconsistent or misleading"},
                {"value": "edited", "label": "Shows signs of editing"},
                {"value": UNSURE, "label": "Unsure"},
            ],
        },
        {
            "key": "clues",
            "type": "multiple",
            "text": "Which clues to place and time can you see?",
            "required": False,
            "choices": [
                {"value": "signage", "label": "Signs or text"},
                {"value": "landmark", "label": "Landmark or distinctive building"},
                {"value": "terrain", "label": "Terrain or vegetation"},
                {"value": "weather", "label": "Weather"},
                {"value": "shadows", "label": "Shadows (time of day)"},
                {"value": "season", "label": "Season"},
            ],
        },
        {
            "key": "where",
            "type": "location",
            "text": "Where do you think this was filmed?",
            "required": False,
        },
        {
            "key": "graphic",
            "type": "single",
            "text": "Does this segment contain graphic content?",
            "required": False,
            "choices": [{"value": "no", "label": "No"}, {"value": "yes", "label": "Yes"}],
        },
        {"key": "note", "type": "text", "text": "Notes for the researchers", "required": False},
    ],
}
