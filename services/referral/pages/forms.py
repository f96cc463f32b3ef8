"""HTML forms to the API's bodies, and their validation errors in the page language.

The pages validate with the API's own schemas (`referrals/schemas.py`), so a
form accepts exactly what the API accepts; only the field names are flat
(`patient_name` for `patient.name`) and empty fields count as missing.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ValidationError

from services.referral.pages.render import Labels
from services.referral.referrals import schemas as s
from services.referral.workflow import Action

PATIENT_FIELDS = ("local_id", "name", "sex", "birth_date")
REFERRAL_FIELDS = ("question", "summary", "specialty", "urgency", "service")

FieldErrors = dict[str, str]
Values = dict[str, Any]

# The body of each action a page form may post, with the fields it shows.
BODIES: dict[Action, type[BaseModel] | None] = {
    Action.ACCEPT: None,
    Action.DECLINE: s.DeclineBody,
    Action.REQUEST_INFO: s.RequestInfoBody,
    Action.PROVIDE_INFO: s.ProvideInfoBody,
    Action.SCHEDULE: s.ScheduleBody,
    Action.COMPLETE: s.ReportBody,
    Action.ACKNOWLEDGE: s.AcknowledgeBody,
    Action.CANCEL: s.CancelBody,
    Action.REROUTE: s.RerouteBody,
}
FIELDS: dict[Action, tuple[str, ...]] = {
    Action.ACCEPT: (),
    Action.DECLINE: ("reason",),
    Action.REQUEST_INFO: ("question",),
    Action.PROVIDE_INFO: ("answer",),
    Action.SCHEDULE: ("kind", "at", "note"),
    Action.COMPLETE: ("findings", "recommendations"),
    Action.ACKNOWLEDGE: ("outcome", "note"),
    Action.CANCEL: ("reason",),
    Action.REROUTE: ("provider_id", "reason"),
}


def _text(form: Mapping[str, Any], name: str) -> str | None:
    value = form.get(name)
    if not isinstance(value, str):
        return None
    return value.strip() or None


def _list(form: Any, name: str) -> list[str]:
    getter = getattr(form, "getlist", None)
    values = getter(name) if getter else []
    return [v for v in values if isinstance(v, str) and v]


def referral_values(form: Any) -> Values:
    """What the user typed, to fill the form again."""
    values: Values = {f"patient_{k}": _text(form, f"patient_{k}") or "" for k in PATIENT_FIELDS}
    values.update({k: _text(form, k) or "" for k in REFERRAL_FIELDS})
    values["languages"] = _list(form, "languages")
    return values


def referral_create(values: Values, labels: Labels) -> s.ReferralCreate | FieldErrors:
    patient = {k: values[f"patient_{k}"] for k in PATIENT_FIELDS if values[f"patient_{k}"]}
    data: dict[str, Any] = {k: values[k] for k in REFERRAL_FIELDS if values[k]}
    data.update(patient=patient, languages=values["languages"])
    try:
        return s.ReferralCreate.model_validate(data)
    except ValidationError as exc:
        return field_errors(exc, labels)


def action_values(action: Action, form: Mapping[str, Any]) -> Values:
    return {name: _text(form, name) or "" for name in FIELDS[action]}


def action_body(
    action: Action, values: Values, labels: Labels, tz: ZoneInfo
) -> BaseModel | FieldErrors | None:
    schema = BODIES[action]
    if schema is None:
        return None
    data: dict[str, Any] = {k: v for k, v in values.items() if v}
    if action is Action.SCHEDULE and "at" in data:
        data["at"] = _local_datetime(data["at"], tz)
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        errors = field_errors(exc, labels)
        if "" in errors and action is Action.SCHEDULE:  # the model's own check is about the date
            errors.setdefault("at", labels.t("form.error.required"))
            del errors[""]
        return errors


def _local_datetime(value: str, tz: ZoneInfo) -> datetime | str:
    """A `datetime-local` field is wall-clock time where the user works."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return value  # the schema says it is not a date
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)


def field_errors(exc: ValidationError, labels: Labels) -> FieldErrors:
    """One message per field, in the page language, keyed by the form's field name."""
    errors: FieldErrors = {}
    for error in exc.errors():
        loc = [str(part) for part in error.get("loc", ()) if not isinstance(part, int)]
        name = "_".join(loc)
        errors.setdefault(name, _message(error, name, labels))
    return errors


def _message(error: Mapping[str, Any], name: str, labels: Labels) -> str:
    kind = str(error.get("type", ""))
    ctx = error.get("ctx") or {}
    if kind in ("missing", "string_too_short"):
        return labels.t("form.error.required")
    if kind == "string_too_long":
        return labels.t("form.error.too_long", max=ctx.get("max_length", "?"))
    if kind == "too_long":
        return labels.t("form.error.too_many", max=ctx.get("max_length", "?"))
    if kind == "string_pattern_mismatch":
        return labels.t("form.error.characters")
    if kind.startswith("date_"):
        return labels.t("form.error.date")
    if kind.startswith(("datetime_", "timezone_")):
        return labels.t("form.error.datetime")
    if kind in ("literal_error", "enum"):
        return labels.t("form.error.choice")
    if kind == "value_error":
        if name == "patient_birth_date":
            return labels.t("form.error.past")
        if name in ("specialty", "languages"):
            return labels.t("form.error.choice")
    if kind.startswith("int_") or kind == "greater_than":
        return labels.t("form.error.choice")
    return labels.t("form.error.invalid")
