"""Parse trees of a workspace's files to one checked IR `Workspace`."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

from dsl import ir, rules
from dsl.build import Builder, FileDecls, Layout
from dsl.check import REGIONS, Checker, Scope, replaced
from dsl.collector import without_collector
from dsl.diagnostics import Diagnostic, Span, has_errors, sorted_diagnostics
from dsl.parse import ParsedFile, parse_tree

_CRON_FIELD = re.compile(r"^[\d*/,\-A-Za-z?]+$")


@dataclass
class Compilation:
    """The result of compiling a workspace: the IR (when the text parsed), layouts and every problem."""

    workspace: ir.Workspace | None
    files: dict[str, ParsedFile]
    layouts: dict[str, Layout] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.workspace is not None and not has_errors(self.diagnostics)


@without_collector
def compile_text(text: str | bytes, path: str = "<string>") -> Compilation:
    return compile_files([parse_tree(text, path)])


def flow_files(paths: Iterable[str | FsPath]) -> list[FsPath]:
    """Every .flow file named, or found under a named folder, in a stable order."""
    found: list[FsPath] = []
    for raw in paths:
        p = FsPath(raw)
        if p.is_dir():
            found.extend(sorted(x for x in p.rglob("*.flow") if x.is_file()))
        else:
            found.append(p)
    return found


@without_collector
def compile_paths(paths: Iterable[str | FsPath]) -> Compilation:
    """Compile files and folders as one workspace (every .flow file under a folder)."""
    parsed = [parse_tree(p.read_bytes(), str(p)) for p in flow_files(paths)]
    return compile_files(parsed)


@without_collector
def compile_files(files: Sequence[ParsedFile]) -> Compilation:
    by_path = {f.path: f for f in files}
    diagnostics = [d for f in files for d in f.diagnostics]
    if any(f.tree is None for f in files):
        return Compilation(None, by_path, {}, sorted_diagnostics(diagnostics))
    decls = []
    for f in files:
        assert f.tree is not None
        built = Builder(f.path).build(f.tree)
        decls.append(built)
        diagnostics.extend(built.diagnostics)
    workspace, layouts, merge_problems = _merge(decls)
    diagnostics.extend(merge_problems)
    workspace, check_problems = _check(workspace, layouts)
    diagnostics.extend(check_problems)
    return Compilation(workspace, by_path, layouts, sorted_diagnostics(diagnostics))


# ---------------------------------------------------------------------------- merging


def _merge(decls: list[FileDecls]) -> tuple[ir.Workspace, dict[str, Layout], list[Diagnostic]]:
    problems: list[Diagnostic] = []
    seen: dict[tuple[str, str], tuple[str, Span]] = {}

    def claim(kind: str, name: str, path: str, span: Span | None) -> bool:
        span = span or Span(1, 1, 1, 2)
        key = (kind, name)
        if key in seen:
            first_path, first = seen[key]
            problems.append(
                rules.make(
                    "FB210",
                    f"{kind} `{name}` is defined twice; the first is at {first_path}:{first.line}:{first.col}",
                    path,
                    span,
                    hint="rename one of them",
                )
            )
            return False
        seen[key] = (path, span)
        return True

    values: dict[str, Any] = {
        "settings": {},
        "attributes": {},
        "segments": {},
        "lists": {},
        "forms": {},
        "templates": {},
        "flows": {},
    }
    stages: list[ir.Stage] = []
    scoring_rules: list[ir.ScoreRule] = []
    decay: ir.Decay | None = None
    head: ir.Workspace | None = None
    layouts: dict[str, Layout] = {}
    for d in decls:
        for ws, span in d.workspaces:
            if claim("workspace", "", d.path, span) and head is None:
                head = ws
        for name, value, span in d.settings:
            if claim("setting", name, d.path, span):
                values["settings"][name] = value
        for kind, items in (
            ("attribute", d.attributes),
            ("segment", d.segments),
            ("list", d.lists),
            ("form", d.forms),
            ("template", d.templates),
            ("flow", d.flows),
        ):
            for item in items:
                if claim(kind, item.name, d.path, item.span):
                    values[kind + "s"][item.name] = item
        for stage in d.stages:
            if claim("stage", stage.name, d.path, stage.span):
                stages.append(stage)
        for scoring in d.scoring:
            scoring_rules.extend(scoring.rules)
            if scoring.decay is not None:
                if decay is not None:
                    problems.append(
                        rules.make(
                            "FB215",
                            "score `decay` is set twice in the workspace",
                            d.path,
                            scoring.decay.span or Span(1, 1, 1, 2),
                        )
                    )
                decay = scoring.decay
        for flow_name, steps in d.step_names.items():
            names: dict[str, Span] = {}
            for name, span in steps:
                if name in names:
                    problems.append(
                        rules.make(
                            "FB210",
                            f"step `{name}` is defined twice in flow `{flow_name}` (first on line {names[name].line})",
                            d.path,
                            span,
                            hint="rename one of them",
                        )
                    )
                names.setdefault(name, span)
        for flow_name, layout in d.layouts.items():
            layouts.setdefault(flow_name, Layout()).positions.update(layout.positions)
            layouts[flow_name].spans.update(layout.spans)
    workspace = ir.Workspace(
        name=head.name if head else None,
        title=head.title if head else None,
        policy=head.policy if head else ir.WorkspacePolicy(),
        stages=stages,
        scoring=ir.Scoring(rules=scoring_rules, decay=decay),
        **values,
    )
    return workspace, layouts, problems


# ---------------------------------------------------------------------------- checking


def _check(ws: ir.Workspace, layouts: dict[str, Layout]) -> tuple[ir.Workspace, list[Diagnostic]]:
    ck = Checker(ws)
    plain = Scope()
    # Workspace-level declarations
    if ws.policy.region is not None and ws.policy.region not in REGIONS:
        ck.error(
            "FB212",
            f"unknown region `{ws.policy.region}`; known regions: {', '.join(REGIONS)}",
            ws.policy.span,
        )

    segments = {}
    for name, seg in ws.segments.items():
        ck.path = seg.path
        segments[name] = seg.model_copy(update={"condition": ck.condition(seg.condition, plain)})
    lists = {}
    for name, lst in ws.lists.items():
        ck.path = lst.path
        lists[name] = lst.model_copy(
            update={
                "add_when": [ck.condition(c, plain) for c in lst.add_when],
                "remove_when": [ck.condition(c, plain) for c in lst.remove_when],
            }
        )
    stages = []
    for stage in ws.stages:
        ck.path = stage.path
        cond = ck.condition(stage.condition, plain) if stage.condition is not None else None
        stages.append(stage.model_copy(update={"condition": cond}))
    score_rules = []
    for rule in ws.scoring.rules:
        score_rules.append(
            rule.model_copy(
                update={"when": ck.condition(rule.when, plain) if rule.when is not None else None}
            )
        )
    forms = {}
    for name, form in ws.forms.items():
        ck.path = form.path
        answer_scope = Scope(roots=frozenset({"lead", "settings", "answer"}))
        field_names = [f.name for f in form.fields]
        for duplicate in {n for n in field_names if field_names.count(n) > 1}:
            ck.error("FB210", f"form `{name}` has two fields named `{duplicate}`", form.span)
        routes = []
        for route in form.routes:
            ck.require("list", route.list, route.span)
            routes.append(
                route.model_copy(update={"condition": ck.condition(route.condition, answer_scope)})
            )
        forms[name] = form.model_copy(update={"routes": routes})
    ws = ws.model_copy(
        update={
            "segments": segments,
            "lists": lists,
            "stages": stages,
            "forms": forms,
            "scoring": ws.scoring.model_copy(update={"rules": score_rules}),
        }
    )
    ck.ws = ws
    ck.policy(ws.policy, ws.policy.span)

    flows = {name: _check_flow(ck, flow, layouts.get(name)) for name, flow in ws.flows.items()}
    ws = ws.model_copy(update={"flows": flows})
    return ws, ck.diagnostics


def _check_flow(ck: Checker, flow: ir.Flow, layout: Layout | None) -> ir.Flow:
    ck.path = flow.path
    steps = frozenset(flow.steps)
    scope = Scope(steps=steps)
    if not flow.steps:
        ck.error(
            "FB216",
            f"flow `{flow.name}` has no steps",
            flow.span,
            hint="add a step such as `hello: send welcome_email`",
        )
    ck.policy(flow.policy, flow.span)
    if flow.entry.mode == "every" and not flow.entry.every_seconds:
        ck.error("FB212", "re-entry every 0 days is not a period", flow.entry.span)

    triggers = [_check_trigger(ck, t, scope) for t in flow.triggers]
    exits = [
        e.model_copy(update={"condition": ck.condition(e.condition, scope)}) for e in flow.exits
    ]
    goal_names: dict[str, ir.Goal] = {}
    goals = []
    for goal in flow.goals:
        if goal.name in goal_names:
            ck.error(
                "FB210", f"goal `{goal.name}` is declared twice in flow `{flow.name}`", goal.span
            )
        goal_names[goal.name] = goal
        goals.append(goal.model_copy(update={"condition": ck.condition(goal.condition, scope)}))

    new_steps: dict[str, ir.Step] = {}
    for name, step in flow.steps.items():
        new_steps[name] = _check_step(ck, flow, step, scope)
    for old, new in flow.migrate.items():
        ck.require_step(new, steps, flow.span, flow.name)
        del old
    if layout is not None:
        for name, span in layout.spans.items():
            if name not in steps:
                ck.error(
                    "FB217",
                    f"the layout places `{name}`, which is not a step of flow `{flow.name}`",
                    span,
                    hint="remove the line or run `flowbuilder fmt`",
                )
    return flow.model_copy(
        update={"triggers": triggers, "exits": exits, "goals": goals, "steps": new_steps}
    )


def _check_trigger(ck: Checker, trigger: ir.Trigger, scope: Scope) -> ir.Trigger:
    match trigger:
        case ir.EventTrigger(where=where) if where is not None:
            event_scope = Scope(roots=scope.roots | {"event"}, steps=scope.steps)
            return trigger.model_copy(update={"where": ck.condition(where, event_scope)})
        case ir.EnteredTrigger():
            ck.require(trigger.membership, trigger.name, trigger.span)
        case ir.FormTrigger():
            ck.require("form", trigger.form, trigger.span)
            if trigger.where is not None:
                form_scope = Scope(roots=scope.roots | {"answer"}, steps=scope.steps)
                return trigger.model_copy(update={"where": ck.condition(trigger.where, form_scope)})
        case ir.DateTrigger() | ir.AnniversaryTrigger():
            ck.time(trigger.at, trigger.span)
            resolved, typ = ck.expr(trigger.date, scope)
            ck.expect(typ, "date", trigger.date, "the trigger's date")
            return trigger.model_copy(update={"date": resolved})
        case ir.InactiveTrigger():
            if trigger.seconds <= 0:
                ck.error("FB212", "inactivity needs a period above zero", trigger.span)
        case ir.ScheduleTrigger():
            fields = trigger.cron.split()
            if len(fields) != 5 or not all(_CRON_FIELD.match(f) for f in fields):
                ck.error(
                    "FB212",
                    f'"{trigger.cron}" is not a cron schedule of 5 fields (minute hour day month weekday)',
                    trigger.span,
                    hint='for example "0 9 * * mon" for Mondays at 09:00',
                )
            if trigger.audience is not None:
                ck.require(trigger.audience.kind, trigger.audience.name, trigger.audience.span)
    return trigger


def _check_step(ck: Checker, flow: ir.Flow, step: ir.Step, scope: Scope) -> ir.Step:
    steps = flow.steps
    for target in ir.successors(step):
        ck.require_step(target, steps, step.span, flow.name)
    match step:
        case ir.Send():
            ck.require("template", step.template, step.span)
            if step.variants:
                total = sum(v.percent for v in step.variants)
                if abs(total - 100) > 1e-9:
                    ck.error(
                        "FB214",
                        f"the variants of `{step.name}` add up to {total:g}%, not 100%",
                        step.span,
                    )
                names = [v.name for v in step.variants]
                for v in step.variants:
                    if names.count(v.name) > 1:
                        ck.error("FB210", f"variant `{v.name}` is declared twice", v.span)
                    if v.template is not None:
                        ck.require("template", v.template, v.span)
        case ir.Wait():
            if step.seconds <= 0:
                ck.error(
                    "FB212",
                    "a wait of zero does nothing",
                    step.span,
                    hint="remove the step or wait at least 1m",
                )
        case ir.WaitBusinessDays():
            if step.days <= 0:
                ck.error("FB212", "a wait of zero business days does nothing", step.span)
        case ir.WaitUntilTime():
            ck.time(step.time, step.span)
        case ir.WaitUntilDate():
            resolved, typ = ck.expr(step.date, scope)
            ck.expect(typ, "date", step.date, "`wait until` with a value")
            return replaced(step, date=resolved)
        case ir.WaitFor():
            if step.timeout_seconds == 0:
                ck.error("FB212", "a timeout of zero never waits", step.span)
            return replaced(step, condition=ck.condition(step.condition, scope))
        case ir.Branch():
            arms = [replaced(a, condition=ck.condition(a.condition, scope)) for a in step.arms]
            if not arms:
                ck.error("FB212", f"branch `{step.name}` has no `if` arm", step.span)
            return replaced(step, arms=arms)
        case ir.Split():
            total = sum(p.percent for p in step.paths) + step.holdout
            if abs(total - 100) > 1e-9:
                ck.error(
                    "FB214",
                    f"the split `{step.name}` adds up to {total:g}%, not 100%",
                    step.span,
                    hint="make the paths and the holdout add up to 100%",
                )
            for p in step.paths:
                if p.percent <= 0:
                    ck.error("FB212", "a split path needs a share above 0%", p.span)
        case ir.Update():
            return _check_update(ck, step, scope)
        case ir.AddToList() | ir.RemoveFromList():
            ck.require("list", step.list, step.span)
        case ir.MoveToFlow():
            ck.require("flow", step.flow, step.span)
            if step.flow == flow.name:
                ck.error(
                    "FB212",
                    f"`{step.name}` moves the lead to the flow it is already in",
                    step.span,
                    hint="connect to a step of this flow instead",
                )
        case ir.Webhook():
            if not re.match(r"^https?://[^\s/]+", step.url):
                ck.error("FB212", f'"{step.url}" is not an http(s) URL', step.span)
    return step


def _check_update(ck: Checker, step: ir.Update, scope: Scope) -> ir.Step:
    target = step.target
    value, typ = ck.expr(step.value, scope)
    if target.root != "lead" or not target.attrs:
        ck.error(
            "FB211", f"only `lead.` attributes can be updated, not `{target.dotted()}`", target.span
        )
        return step.model_copy(update={"value": value})
    field_name = target.dotted()
    if field_name == "lead.score":
        ck.expect(typ, "number", step.value, "a score change")
    elif field_name == "lead.tags":
        if step.op == "=":
            ck.error("FB211", "tags are added with `+=` and removed with `-=`", step.span)
        ck.expect(typ, "string", step.value, "a tag")
    elif field_name == "lead.stage":
        if step.op != "=":
            ck.error("FB211", "a stage is set with `=`", step.span)
        if isinstance(value, ir.Const) and isinstance(value.value, str):
            ck.require("stage", value.value, value.span)
        else:
            ck.expect(typ, "string", step.value, "a stage")
    elif field_name == "lead.email":
        ck.error("FB211", "a flow cannot change a lead's email address", target.span)
    else:
        declared = ck.path_type(target, scope)
        if step.op != "=":
            if declared not in ("number", "any") or typ not in ("number", "any"):
                ck.error(
                    "FB211",
                    f"`{step.op}` works on numbers; `{field_name}` is a {declared}",
                    step.span,
                )
        elif declared != "any" and typ not in (declared, "any", "null"):
            ck.error(
                "FB211",
                f"`{field_name}` is declared as {declared}, but the value is a {typ}",
                step.value.span,
            )
    return step.model_copy(update={"value": value})
