"""The typed IR that the engine runs: pydantic models whose field names are the language's words.

Spans and source paths ride along for diagnostics but are excluded from dumps, the JSON Schema and
the content hash; so are comments and the layout block, which never reach the IR at all.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from dsl.diagnostics import Span

IR_VERSION = 1


class Node(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    span: SkipJsonSchema[Span | None] = Field(default=None, exclude=True, repr=False)


# ============================================================================ expressions

LiteralType = Literal["number", "string", "bool", "null", "duration", "percent", "date"]


class Const(Node):
    """A literal; durations are in seconds, percentages in percent, dates ISO 8601."""

    node: Literal["const"] = "const"
    type: LiteralType
    value: float | int | str | bool | None


class Path(Node):
    """An attribute path such as `lead.industry`; roots: lead, event, answer, settings."""

    node: Literal["path"] = "path"
    root: str
    attrs: list[str]

    def dotted(self) -> str:
        return ".".join([self.root, *self.attrs])


RefKind = Literal["step", "event", "list", "segment", "stage", "form"]


class Ref(Node):
    """A bare name resolved by where it stands (a function's step, list, event … argument)."""

    node: Literal["ref"] = "ref"
    kind: RefKind
    name: str


class Call(Node):
    node: Literal["call"] = "call"
    function: str
    args: list[Expr]
    kwargs: dict[str, Expr] = Field(default_factory=dict)


class Not(Node):
    node: Literal["not"] = "not"
    operand: Expr


class Negate(Node):
    node: Literal["negate"] = "negate"
    operand: Expr


class Logic(Node):
    node: Literal["logic"] = "logic"
    op: Literal["and", "or"]
    operands: list[Expr]


CompareOp = Literal[
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "in",
    "not in",
    "contains",
    "starts_with",
    "ends_with",
    "matches",
]


class Compare(Node):
    node: Literal["compare"] = "compare"
    op: CompareOp
    left: Expr
    right: Expr


class Arith(Node):
    node: Literal["arith"] = "arith"
    op: Literal["+", "-", "*", "/"]
    left: Expr
    right: Expr


class ListExpr(Node):
    node: Literal["list"] = "list"
    items: list[Expr]


Expr = Annotated[
    Const | Path | Ref | Call | Not | Negate | Logic | Compare | Arith | ListExpr,
    Field(discriminator="node"),
]


# ============================================================================ steps


class StepBase(Node):
    name: str


class Variant(Node):
    name: str
    percent: float
    template: str | None = None
    subject: str | None = None
    preheader: str | None = None
    sender: str | None = None


class Send(StepBase):
    action: Literal["send"] = "send"
    template: str
    subject: str | None = None
    preheader: str | None = None
    sender: str | None = None
    variants: list[Variant] = Field(default_factory=list)
    next: str | None


class Wait(StepBase):
    action: Literal["wait"] = "wait"
    seconds: int
    next: str | None


class WaitBusinessDays(StepBase):
    action: Literal["wait_business_days"] = "wait_business_days"
    days: int
    next: str | None


class WaitUntilTime(StepBase):
    """Wait until a local time of day, optionally only on some weekdays (`mon`…`sun`)."""

    action: Literal["wait_until_time"] = "wait_until_time"
    time: str
    weekdays: list[str] = Field(default_factory=list)
    next: str | None


class WaitUntilDate(StepBase):
    action: Literal["wait_until_date"] = "wait_until_date"
    date: Expr
    next: str | None


class WaitFor(StepBase):
    """Wait until a condition holds (woken by events); `timeout_next` is taken after the timeout."""

    action: Literal["wait_for"] = "wait_for"
    condition: Expr
    timeout_seconds: int | None = None
    next: str | None
    timeout_next: str | None = None


class Arm(Node):
    condition: Expr
    target: str


class Branch(StepBase):
    """The first arm whose condition holds is taken; otherwise `otherwise` (the else arm or fall-through)."""

    action: Literal["branch"] = "branch"
    arms: list[Arm]
    has_else: bool
    otherwise: str | None


class SplitPath(Node):
    percent: float
    target: str


class Split(StepBase):
    """A deterministic random split per lead; the holdout leaves the flow as a control group."""

    action: Literal["split"] = "split"
    paths: list[SplitPath]
    holdout: float = 0.0


class Update(StepBase):
    action: Literal["update"] = "update"
    target: Path
    op: Literal["=", "+=", "-="]
    value: Expr
    next: str | None


class AddToList(StepBase):
    action: Literal["add_to_list"] = "add_to_list"
    list: str
    next: str | None


class RemoveFromList(StepBase):
    action: Literal["remove_from_list"] = "remove_from_list"
    list: str
    next: str | None


class MoveToFlow(StepBase):
    action: Literal["move_to_flow"] = "move_to_flow"
    flow: str


class Webhook(StepBase):
    action: Literal["webhook"] = "webhook"
    url: str
    next: str | None


class ReachGoal(StepBase):
    action: Literal["reach_goal"] = "reach_goal"
    goal: str
    next: str | None


class Suppress(StepBase):
    """Put the lead's address on the suppression list: no marketing email reaches it again."""

    action: Literal["suppress"] = "suppress"
    reason: str | None = None
    next: str | None


class End(StepBase):
    action: Literal["end"] = "end"
    reason: str | None = None


Step = Annotated[
    Send
    | Wait
    | WaitBusinessDays
    | WaitUntilTime
    | WaitUntilDate
    | WaitFor
    | Branch
    | Split
    | Update
    | AddToList
    | RemoveFromList
    | MoveToFlow
    | Webhook
    | ReachGoal
    | Suppress
    | End,
    Field(discriminator="action"),
]


def successors(step: Step) -> list[str]:
    """Every step a lead can go to from `step`, in port order."""
    # By exact type first: a model's `isinstance` goes through `ABCMeta`, and this runs per step
    # in every graph pass of the compiler, the linter and the engine.
    kind = type(step)
    if kind in _ONE_NEXT:
        return [step.next] if step.next else []  # type: ignore[union-attr]
    if kind is Branch:
        out = [arm.target for arm in step.arms]  # type: ignore[union-attr]
        return out + ([step.otherwise] if step.otherwise else [])  # type: ignore[union-attr]
    match step:
        case Branch():
            out = [arm.target for arm in step.arms]
            return out + ([step.otherwise] if step.otherwise else [])
        case Split():
            return [p.target for p in step.paths]
        case WaitFor():
            out = [step.next] if step.next else []
            return out + ([step.timeout_next] if step.timeout_next else [])
        case MoveToFlow() | End():
            return []
        case _:
            return [step.next] if step.next else []


_ONE_NEXT: frozenset[type] = frozenset(
    {
        Send,
        Wait,
        WaitBusinessDays,
        WaitUntilTime,
        WaitUntilDate,
        Update,
        AddToList,
        RemoveFromList,
        Webhook,
        ReachGoal,
        Suppress,
    }
)


# ============================================================================ triggers


class EventTrigger(Node):
    source: Literal["event"] = "event"
    event: str
    where: Expr | None = None


class EnteredTrigger(Node):
    source: Literal["entered"] = "entered"
    membership: Literal["list", "segment", "stage"]
    name: str


class FormTrigger(Node):
    source: Literal["form"] = "form"
    form: str
    where: Expr | None = None


class DateTrigger(Node):
    """Fires once on the date `date` evaluates to (an attribute date ± an offset)."""

    source: Literal["date"] = "date"
    date: Expr
    at: str | None = None


class AnniversaryTrigger(Node):
    source: Literal["anniversary"] = "anniversary"
    date: Expr
    at: str | None = None


class InactiveTrigger(Node):
    """Fires when a lead has neither opened nor clicked for `seconds`."""

    source: Literal["inactive"] = "inactive"
    seconds: int


class Membership(Node):
    kind: Literal["list", "segment", "stage"]
    name: str


class ScheduleTrigger(Node):
    source: Literal["schedule"] = "schedule"
    cron: str
    audience: Membership | None = None


Trigger = Annotated[
    EventTrigger
    | EnteredTrigger
    | FormTrigger
    | DateTrigger
    | AnniversaryTrigger
    | InactiveTrigger
    | ScheduleTrigger,
    Field(discriminator="source"),
]


# ============================================================================ flows


class Entry(Node):
    mode: Literal["once", "always", "every"] = "once"
    every_seconds: int | None = None


class ExitRule(Node):
    condition: Expr
    scope: Literal["lead", "account"] = "lead"


class Goal(Node):
    name: str
    condition: Expr
    within_seconds: int | None = None


class TimeWindow(Node):
    start: str
    end: str
    weekdays: list[str] = Field(default_factory=list)


class FrequencyCap(Node):
    count: int
    per_seconds: int


class Policy(Node):
    """Sending policy; a flow's policy narrows the workspace's."""

    send_window: TimeWindow | None = None
    quiet_hours: TimeWindow | None = None
    business_days: str | None = None
    frequency_cap: FrequencyCap | None = None
    timezone: str | None = None


FlowKind = Literal["marketing", "transactional", "cold", "sales"]
FLOW_KINDS: tuple[str, ...] = ("marketing", "transactional", "cold", "sales")


class Flow(Node):
    path: SkipJsonSchema[str] = Field(default="", exclude=True, repr=False)
    name: str
    title: str | None = None
    kind: FlowKind = "marketing"
    triggers: list[Trigger] = Field(default_factory=list)
    entry: Entry = Field(default_factory=Entry)
    exits: list[ExitRule] = Field(default_factory=list)
    goals: list[Goal] = Field(default_factory=list)
    policy: Policy = Field(default_factory=Policy)
    start: str | None
    steps: dict[str, Step]
    migrate: dict[str, str | None] = Field(default_factory=dict)

    def content_hash(self) -> str:
        return content_hash(self)


# ============================================================================ workspace


class Sender(Node):
    name: str
    address: str


class WorkspacePolicy(Policy):
    sender: Sender | None = None
    postal_address: str | None = None
    contact: str | None = None
    region: str | None = None


class Attribute(Node):
    path: SkipJsonSchema[str] = Field(default="", exclude=True, repr=False)
    name: str
    type: Literal["string", "number", "bool", "date", "list"]
    required: bool = False
    description: str | None = None


class Segment(Node):
    path: SkipJsonSchema[str] = Field(default="", exclude=True, repr=False)
    name: str
    title: str | None = None
    condition: Expr


class ListDecl(Node):
    path: SkipJsonSchema[str] = Field(default="", exclude=True, repr=False)
    name: str
    title: str | None = None
    add_when: list[Expr] = Field(default_factory=list)
    remove_when: list[Expr] = Field(default_factory=list)


class Stage(Node):
    path: SkipJsonSchema[str] = Field(default="", exclude=True, repr=False)
    name: str
    title: str | None = None
    condition: Expr | None = None


class ScoreRule(Node):
    kind: Literal["fit", "engagement"]
    points: float
    when: Expr | None = None
    per_event: str | None = None
    within_seconds: int | None = None


class Decay(Node):
    percent: float
    every_seconds: int


class Scoring(Node):
    rules: list[ScoreRule] = Field(default_factory=list)
    decay: Decay | None = None


class FormField(Node):
    name: str
    type: Literal["text", "email", "number", "choice", "checkbox", "phone", "date", "textarea"]
    choices: list[str] = Field(default_factory=list)
    required: bool = False
    label: str | None = None


class FormRoute(Node):
    condition: Expr
    list: str


class Form(Node):
    path: SkipJsonSchema[str] = Field(default="", exclude=True, repr=False)
    name: str
    title: str | None = None
    fields: list[FormField] = Field(default_factory=list)
    consent: str | None = None
    routes: list[FormRoute] = Field(default_factory=list)


class Template(Node):
    path: SkipJsonSchema[str] = Field(default="", exclude=True, repr=False)
    name: str
    title: str | None = None
    subject: str | None = None
    preheader: str | None = None
    sender: str | None = None
    html: str | None = None
    text: str | None = None
    topic: str | None = None
    message_class: Literal["marketing", "transactional"] = "marketing"


class Workspace(Node):
    ir_version: int = IR_VERSION
    name: str | None = None
    title: str | None = None
    policy: WorkspacePolicy = Field(default_factory=WorkspacePolicy)
    settings: dict[str, Any] = Field(default_factory=dict)
    attributes: dict[str, Attribute] = Field(default_factory=dict)
    segments: dict[str, Segment] = Field(default_factory=dict)
    lists: dict[str, ListDecl] = Field(default_factory=dict)
    stages: list[Stage] = Field(default_factory=list)
    scoring: Scoring = Field(default_factory=Scoring)
    forms: dict[str, Form] = Field(default_factory=dict)
    templates: dict[str, Template] = Field(default_factory=dict)
    flows: dict[str, Flow] = Field(default_factory=dict)

    def content_hash(self) -> str:
        return content_hash(self)


def canonical_json(model: BaseModel) -> str:
    """The IR as canonical JSON: sorted keys, no spans, no whitespace."""
    return json.dumps(model.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


def content_hash(model: BaseModel) -> str:
    """A stable sha256 of the IR; comments, layout and positions never change it."""
    return hashlib.sha256(canonical_json(model).encode("utf-8")).hexdigest()


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the IR, as exported to docs/ir.schema.json."""
    schema = Workspace.model_json_schema(mode="serialization")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = f"flowbuilder IR v{IR_VERSION}"
    return schema


for _model in (Call, Not, Negate, Logic, Compare, Arith, ListExpr):
    _model.model_rebuild()
