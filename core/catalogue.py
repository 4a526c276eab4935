"""The category catalogue (部件 / 事件 / 網格社會治理 分類): versioned data, validated at load.

Why data and not code: the list of categories, their time limits (限時辦結) and their default
departments change by local regulation far more often than the software does. An admin edits
``deploy/categories.v1.json``; the service refuses to start on a catalogue that would make
deadlines or routing meaningless (unknown department function, non-positive limits, an urgent
limit longer than the ordinary one...), naming the offending category and field, so a bad edit
never reaches a dispatcher.

Codes follow the structure of the national standard (CJ/T 214 部件和事件分類與編碼): a kind
prefix (``BJ`` 部件 component, ``SJ`` 事件 event, ``ZL`` 治理 grid governance) followed by a
2-digit major class and a 2-digit minor class. For components the four digits are the same
major + minor class embedded in the 16-digit component id (county code + major + minor + serial).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from datetime import date
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from core.vocabulary import PRIORITIES, Priority

Clock = Literal["working", "natural"]  # 工作時 / 自然時
Kind = Literal["component", "event", "governance"]  # 部件 / 事件 / 網格社會治理

#: Rank of each priority, 0 = most urgent; used to compare without string tricks.
PRIORITY_RANK: dict[Priority, int] = {p: i for i, p in enumerate(PRIORITIES)}

#: The fixed department function tags. The jurisdiction builds its departments with exactly
#: these, so a category can name *what kind* of department handles it without naming a unit.
DEPARTMENT_FUNCTIONS: frozenset[str] = frozenset(
    {
        "sanitation",  # 環衛
        "municipal",  # 市政
        "greening",  # 園林綠化
        "urban_management",  # 城管執法
        "housing",  # 住建 / 房管
        "water",  # 水務 / 供排水
        "traffic",  # 交通 / 交警
        "public_security",  # 公安
        "market",  # 市場監管
        "civil_affairs",  # 民政
        "mediation",  # 司法 / 人民調解
        "emergency",  # 應急 / 消防
        "environment",  # 生態環境
        "community_service",  # 社區服務
    }
)

#: Command level keys of the default three-level tree (city → district → community).
DEFAULT_LEVELS: tuple[str, ...] = ("community", "district", "city")

_Hours = Annotated[float, Field(gt=0, allow_inf_nan=False)]
_Text = Annotated[str, Field(min_length=1)]


class CatalogueError(ValueError):
    """The catalogue file cannot be used; the message names the category and the field."""


class UnknownCategory(KeyError):
    """A code that is not in the loaded catalogue (e.g. a stale client or an old event)."""

    def __str__(self) -> str:  # KeyError would print the repr of the argument only
        return f"unknown category code {self.args[0]!r}" if self.args else "unknown category"


class StepLimits(BaseModel):
    """Time limit of each step for one priority, in hours of the category's clock."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    file: _Hours  # 立案
    dispatch: _Hours  # 派遣
    handle: _Hours  # 處置
    verify: _Hours  # 核查


Language = Literal["zh-Hans", "zh-Hant", "en"]
#: The languages a question's text is given in (zh-Hans is required: the users' language).
LANGUAGES: tuple[Language, ...] = ("zh-Hans", "zh-Hant", "en")
#: Kinds of answer a question takes (Open311 datatypes: ``OPEN311_DATATYPES``).
QuestionType = Literal["text", "number", "boolean", "date", "choice", "multi_choice"]
OPEN311_DATATYPES: dict[str, str] = {
    "text": "string",
    "number": "number",
    "boolean": "singlevaluelist",
    "date": "datetime",
    "choice": "singlevaluelist",
    "multi_choice": "multivaluelist",
}
#: Longest text answer (characters).
MAX_TEXT_ANSWER = 500
#: Default distance (metres) between a case and the inspector's fix for 核查 (verification).
DEFAULT_VERIFY_RADIUS_M = 200.0


def _texts(value: dict[Language, str]) -> dict[Language, str]:
    if not (value.get("zh-Hans") or "").strip():
        raise ValueError("the zh-Hans text is required")
    return {k: v.strip() for k, v in value.items() if v.strip()}


class Choice(BaseModel):
    """One possible answer of a choice question."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_]{0,39}$")]
    text: dict[Language, str]

    _text = field_validator("text")(_texts)


class Question(BaseModel):
    """An extra question a category asks at intake (e.g. 积水深度 for 积水内涝); the answer is
    recorded in the report's event under ``answers[code]``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
    type: QuestionType
    required: bool = False
    text: dict[Language, str]
    help: dict[Language, str] = Field(default_factory=dict)
    choices: list[Choice] = Field(default_factory=list)
    min: float | None = None  # numbers only
    max: float | None = None
    unit: str | None = None  # numbers only, shown after the field (cm, m², ...)

    _text = field_validator("text")(_texts)

    @model_validator(mode="after")
    def _consistent(self) -> Question:
        choosing = self.type in ("choice", "multi_choice")
        if choosing and len(self.choices) < 2:
            raise ValueError(f"question {self.code}: a {self.type} needs at least two choices")
        if not choosing and self.choices:
            raise ValueError(f"question {self.code}: only choice questions have choices")
        codes = [c.code for c in self.choices]
        if len(set(codes)) != len(codes):
            raise ValueError(f"question {self.code}: duplicate choice code")
        if self.type != "number" and (self.min is not None or self.max is not None or self.unit):
            raise ValueError(f"question {self.code}: min, max and unit are for numbers")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"question {self.code}: min is above max")
        return self

    def check(self, value: Any) -> Any:
        """The answer in its recorded form (form text accepted: "12", "true", "a,b");
        ValueError naming what is wrong otherwise."""
        if self.type == "text":
            if not isinstance(value, str | int | float) or isinstance(value, bool):
                raise ValueError("must be text")
            text = str(value).strip()
            if len(text) > MAX_TEXT_ANSWER:
                raise ValueError(f"at most {MAX_TEXT_ANSWER} characters")
            return text
        if self.type == "number":
            return self._number(value)
        if self.type == "boolean":
            return _boolean(value)
        if self.type == "date":
            if not isinstance(value, str):
                raise ValueError("must be a date (YYYY-MM-DD)")
            try:
                return date.fromisoformat(value.strip()[:10]).isoformat()
            except ValueError:
                raise ValueError("must be a date (YYYY-MM-DD)") from None
        codes = [c.code for c in self.choices]
        if self.type == "choice":
            if not isinstance(value, str) or value.strip() not in codes:
                raise ValueError(f"must be one of {', '.join(codes)}")
            return value.strip()
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
            raise ValueError(f"must be a list of {', '.join(codes)}")
        chosen = {i.strip() for i in items if i.strip()}
        unknown = sorted(chosen - set(codes))
        if unknown:
            raise ValueError(f"unknown choice {', '.join(unknown)} (allowed: {', '.join(codes)})")
        return [c for c in codes if c in chosen]  # catalogue order, no repeats

    def _number(self, value: Any) -> float | int:
        if isinstance(value, bool):
            raise ValueError("must be a number")
        try:
            number = float(value.strip()) if isinstance(value, str) else float(value)
        except (TypeError, ValueError):
            raise ValueError("must be a number") from None
        if not math.isfinite(number):
            raise ValueError("must be a finite number")
        if self.min is not None and number < self.min:
            raise ValueError(f"must be at least {self.min:g}")
        if self.max is not None and number > self.max:
            raise ValueError(f"must be at most {self.max:g}")
        return int(number) if number.is_integer() else number

    def example(self) -> Any:
        """A valid answer (load generators and sample data answer required questions)."""
        examples: dict[str, Any] = {
            "text": "示例", "boolean": False, "date": "2026-01-01",
            "number": self.min if self.min is not None else 0,
        }
        if self.choices:
            first = self.choices[0].code
            return [first] if self.type == "multi_choice" else first
        return examples[self.type]


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    words = {"true": True, "1": True, "yes": True, "是": True,
             "false": False, "0": False, "no": False, "否": False}
    if isinstance(value, str | int) and str(value).strip().lower() in words:
        return words[str(value).strip().lower()]
    raise ValueError("must be true or false")


class AnswerError(ValueError):
    """An answer the category's questions refuse; ``question`` names the one concerned."""

    def __init__(self, question: str, message: str) -> None:
        super().__init__(message)
        self.question = question


class Category(BaseModel):
    """One case category: what may be filed, who handles it at which level, how fast."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
    name_zh: str
    name_en: str
    kind: Kind
    group_zh: str  # 大類, e.g. 公用設施
    group_en: str
    filing_conditions: list[_Text]  # 立案條件
    closure_conditions: list[_Text]  # 結案條件
    department_function: str
    level: str
    default_priority: Priority
    limits: dict[Priority, StepLimits]
    clock: Clock
    keywords: dict[Priority, list[_Text]]
    escalate_after_overdue_hours: _Hours
    max_extensions: Annotated[int, Field(ge=0)] = 1
    requires_verification: bool = True
    #: Extra search terms (simplified-Chinese spellings, colloquial names). Optional; only
    #: pickers use it, so older files without it stay valid.
    aliases: list[_Text] = Field(default_factory=list)
    #: Extra questions asked at intake (optional; see :class:`Question`).
    questions: list[Question] = Field(default_factory=list)
    #: 核查: the inspector's fix must be within this many metres of the case.
    verify_radius_m: Annotated[float, Field(gt=0, le=10_000)] = DEFAULT_VERIFY_RADIUS_M

    @field_validator("questions")
    @classmethod
    def _unique_questions(cls, value: list[Question]) -> list[Question]:
        codes = [q.code for q in value]
        doubled = sorted({c for c in codes if codes.count(c) > 1})
        if doubled:
            raise ValueError(f"duplicate question code {', '.join(doubled)}")
        return value

    def check_answers(self, answers: Mapping[str, Any], *, complete: bool) -> dict[str, Any]:
        """The answers in their recorded form, in question order. Refuses (AnswerError) an
        answer to no question of this category and an invalid one; with ``complete`` also a
        required question left unanswered. Intake asks with ``complete``; the aggregate
        without, so a report queued before a question became required is still taken."""
        questions = {q.code: q for q in self.questions}
        unknown = sorted(set(answers) - set(questions))
        if unknown:
            raise AnswerError(
                unknown[0], f"category {self.code} asks no question {unknown[0]!r}"
                + (f" (its questions: {', '.join(questions)})" if questions else "")
            )
        out: dict[str, Any] = {}
        for code, question in questions.items():
            value = answers.get(code)
            if value is None or value == "" or value == []:
                if complete and question.required:
                    raise AnswerError(
                        code, f"{question.text['zh-Hans']} ({code}) is required for {self.code}"
                    )
                continue
            try:
                out[code] = question.check(value)
            except ValueError as exc:
                raise AnswerError(code, f"{question.text['zh-Hans']} ({code}): {exc}") from None
        return out

    def example_answers(self) -> dict[str, Any]:
        """Valid answers to the required questions (for generated reports)."""
        return {q.code: q.example() for q in self.questions if q.required}

    @field_validator("name_zh", "name_en", "group_zh", "group_en")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()

    @field_validator("filing_conditions", "closure_conditions")
    @classmethod
    def _some_conditions(cls, value: list[str]) -> list[str]:
        # A dispatcher decides 立案 / 結案 against these; an empty list means "anything goes".
        if not value:
            raise ValueError("at least one condition is required")
        return value

    @field_validator("department_function")
    @classmethod
    def _known_function(cls, value: str) -> str:
        if value not in DEPARTMENT_FUNCTIONS:
            allowed = ", ".join(sorted(DEPARTMENT_FUNCTIONS))
            raise ValueError(f"unknown department function {value!r} (allowed: {allowed})")
        return value

    @field_validator("limits")
    @classmethod
    def _complete_and_ordered(cls, value: dict[Priority, StepLimits]) -> dict[Priority, StepLimits]:
        missing = [p for p in PRIORITIES if p not in value]
        if missing:
            raise ValueError(f"missing limits for priority {', '.join(missing)}")
        # A more pressing priority must never give the department *more* time to handle.
        # The urgent/ordinary pair is checked first so the message names the worst inversion.
        for higher, lower in [(PRIORITIES[0], PRIORITIES[-1]), *pairwise(PRIORITIES)]:
            if value[higher].handle > value[lower].handle:
                raise ValueError(
                    f"handle limit for {higher} ({value[higher].handle} h) is longer than "
                    f"for {lower} ({value[lower].handle} h)"
                )
        return value

    def limit(self, priority: Priority, step: str) -> float:
        """Hours allowed for ``step`` (file/dispatch/handle/verify) at ``priority``, counted
        in this category's clock."""
        if step not in StepLimits.model_fields:
            raise ValueError(
                f"unknown step {step!r} (expected one of {', '.join(StepLimits.model_fields)})"
            )
        hours: float = getattr(self.limits[priority], step)
        return hours


class _CatalogueFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Annotated[str, Field(min_length=1)]
    categories: list[dict[str, Any]]


def _format_errors(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "(category)"
        message = item["msg"].removeprefix("Value error, ")
        parts.append(f"field {where}: {message}")
    return "; ".join(parts)


def _fold(text: str) -> str:
    return text.casefold().strip()


class Catalogue:
    """A validated, read-only set of categories, addressed by code."""

    def __init__(self, version: str, categories: Iterable[Category]) -> None:
        self.version = version
        self._by_code: dict[str, Category] = {}
        for category in categories:
            if category.code in self._by_code:
                raise CatalogueError(f"category {category.code!r}: field code: duplicate code")
            self._by_code[category.code] = category

    @classmethod
    def load(cls, path: Path, *, levels: Iterable[str] = DEFAULT_LEVELS) -> Catalogue:
        """Read and validate a catalogue file; raise :class:`CatalogueError` on any problem."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise CatalogueError(f"{path}: cannot read catalogue: {exc}") from exc
        except json.JSONDecodeError as exc:
            raise CatalogueError(f"{path}: not valid JSON: {exc}") from exc
        return cls.from_dict(data, source=str(path), levels=levels)

    @classmethod
    def from_dict(
        cls, data: Any, *, source: str = "<catalogue>", levels: Iterable[str] = DEFAULT_LEVELS
    ) -> Catalogue:
        """Validate an already-parsed catalogue document (same rules as :meth:`load`)."""
        try:
            document = _CatalogueFile.model_validate(data)
        except ValidationError as exc:
            raise CatalogueError(f"{source}: {_format_errors(exc)}") from exc
        known_levels = tuple(levels)
        categories: list[Category] = []
        seen: dict[str, int] = {}
        for index, raw in enumerate(document.categories):
            label = repr(raw.get("code")) if isinstance(raw.get("code"), str) else f"#{index}"
            try:
                category = Category.model_validate(raw)
            except ValidationError as exc:
                raise CatalogueError(
                    f"{source}: category {label} (entry {index}): {_format_errors(exc)}"
                ) from exc
            if category.code in seen:
                raise CatalogueError(
                    f"{source}: category {label} (entry {index}): field code: duplicate code, "
                    f"already used by entry {seen[category.code]}"
                )
            if category.level not in known_levels:
                raise CatalogueError(
                    f"{source}: category {label} (entry {index}): field level: unknown level "
                    f"{category.level!r} (allowed: {', '.join(known_levels)})"
                )
            seen[category.code] = index
            categories.append(category)
        return cls(document.version, categories)

    def get(self, code: str) -> Category:
        """The category with this code; :class:`UnknownCategory` if there is none."""
        try:
            return self._by_code[code]
        except KeyError:
            raise UnknownCategory(code) from None

    def all(self) -> list[Category]:
        """Every category, in file order (the order admins curated for pickers)."""
        return list(self._by_code.values())

    def __contains__(self, code: object) -> bool:
        return isinstance(code, str) and code in self._by_code

    def __len__(self) -> int:
        return len(self._by_code)

    def search(self, text: str) -> list[Category]:
        """Categories matching ``text`` (zh or en, case-insensitive), best matches first.

        Why ranked: a picker shows the first few results, so an exact code or name must beat a
        category that merely lists the word as a triage keyword. Empty text lists everything.
        """
        needle = _fold(text)
        if not needle:
            return self.all()
        ranked: list[tuple[int, int, Category]] = []
        for order, category in enumerate(self._by_code.values()):
            rank = _match_rank(category, needle)
            if rank is not None:
                ranked.append((rank, order, category))
        ranked.sort(key=lambda item: (item[0], item[1]))
        return [category for _, _, category in ranked]


def _match_rank(category: Category, needle: str) -> int | None:
    names = [category.name_zh, category.name_en, *category.aliases]
    if _fold(category.code) == needle or any(_fold(n) == needle for n in names):
        return 0
    if _fold(category.code).startswith(needle) or any(needle in _fold(n) for n in names):
        return 1
    if needle in _fold(category.group_zh) or needle in _fold(category.group_en):
        return 2
    keywords = (k for words in category.keywords.values() for k in words)
    if any(needle in _fold(k) or _fold(k) in needle for k in keywords):
        return 3
    return None


def priority_max(*priorities: Priority) -> Priority:
    """The most pressing of the given priorities (triage only ever raises)."""
    return min(priorities, key=PRIORITY_RANK.__getitem__)


__all__ = [
    "DEFAULT_LEVELS",
    "DEFAULT_VERIFY_RADIUS_M",
    "DEPARTMENT_FUNCTIONS",
    "LANGUAGES",
    "OPEN311_DATATYPES",
    "PRIORITIES",
    "PRIORITY_RANK",
    "AnswerError",
    "Catalogue",
    "CatalogueError",
    "Category",
    "Choice",
    "Clock",
    "Kind",
    "Priority",
    "Question",
    "StepLimits",
    "UnknownCategory",
    "priority_max",
]
