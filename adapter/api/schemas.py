"""The shapes of requests and answers, as pydantic models.

Requests are validated strictly (no coercion, unknown fields refused) and every
problem is reported at once. Answers are built as plain dicts by the handlers;
their models exist so the OpenAPI document describes them exactly, and the
tests validate every answer against that document.

Bounds that come from the settings (the largest amount) are checked through the
validation context and written into the OpenAPI document by ``adapter.api.openapi``.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timezone
from typing import Annotated, Literal

from pydantic import AwareDatetime, BeforeValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from adapter.counter import MAX_PASS_NUMBER_LENGTH, as_scanned


def _as_scanned(value: object) -> object:
    """A pass number read as ``counter.as_scanned`` reads it; anything but text is left to the validation."""
    return as_scanned(value) if isinstance(value, str) else value


# Constraints before the validator: that order keeps them in the JSON Schema.
PassNumber = Annotated[str, Field(pattern=r"^[0-9]+$", min_length=4, max_length=MAX_PASS_NUMBER_LENGTH,
                                  description="The pass number as printed: digits only, a string (leading zeros). "
                                              "Whitespace around it and spaces between its groups are left out."),
                       BeforeValidator(_as_scanned)]
Category = Annotated[str, Field(pattern=r"^[a-z0-9_*-]+$", min_length=1, max_length=64)]


def _json_whole_number(value: object) -> object:
    """JSON has one number type: ``2.0`` is the integer 2 to a JSON Schema validator, so accept
    it as such. ``2.5``, ``"2"`` and ``true`` are still refused by the strict int check."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= 2**53:
        return int(value)
    return value


WholeNumber = BeforeValidator(_json_whole_number)
# Constraints before the validator: that order keeps them as JSON Schema minimum/maximum.
Cents = Annotated[int, Field(ge=1, description="Euro cents, a whole number."), WholeNumber]
BudgetId = Annotated[int, Field(ge=1, le=2**53 - 1), WholeNumber]
MAX_BUDGET_ID = 2**53 - 1  # the largest integer every JSON client reads exactly


class _Request(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


def _within_max_amount(amount_cents: int | None, info: ValidationInfo) -> int | None:
    maximum = (info.context or {}).get("max_amount_cents")
    if amount_cents is not None and maximum is not None and amount_cents > maximum:
        raise ValueError(f"maximaal {maximum} cent per verzoek")
    return amount_cents


class BalanceCheckRequest(_Request):
    pass_number: PassNumber


# Text a till types, without control characters: a NUL byte would make PostgreSQL refuse the row (a 500 whose "try
# again" never works), and no receipt number or reason needs one. In the document too, so that a client can see it.
PRINTABLE = r"^[^\x00-\x1f\x7f]*$"
# ... and with at least one character that is not a space.
PRINTABLE_WORDS = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"


class RedemptionCreate(_Request):
    pass_number: PassNumber
    amount_cents: Cents
    category: Category | None = Field(default=None, description="Redeem from the open budget of this category "
                                                                "that ends first. Give this or budget_id.")
    budget_id: BudgetId | None = Field(default=None,
                                  description="Redeem from this budget (from a balance check).")
    reference: str | None = Field(default=None, min_length=1, max_length=128, pattern=PRINTABLE,
                                  description="The till's own reference, e.g. the receipt number. No control "
                                              "characters.")
    allow_partial: bool = Field(default=False, description="Take what is available when it is less than "
                                                           "amount_cents; the customer pays the rest.")

    _amount_bound = field_validator("amount_cents")(_within_max_amount)

    @model_validator(mode="after")
    def _one_budget_choice(self) -> RedemptionCreate:
        if (self.category is None) == (self.budget_id is None):
            raise ValueError("geef precies één van category of budget_id")
        return self


class ReversalCreate(_Request):
    amount_cents: Cents | None = Field(default=None, description="Leave out to reverse all that is left.")
    reason: str = Field(min_length=1, max_length=500, pattern=PRINTABLE_WORDS,
                        description="Why, for the municipality's books. Not blank; no control characters.")

    _amount_bound = field_validator("amount_cents")(_within_max_amount)


# ------------------------------------------------------------------ answers

class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PassInfo(_Answer):
    status: Literal["active"]
    valid_until: date | None


class HolderInfo(_Answer):
    name: str = Field(description="First name, or initials when the source has no first name. Nothing else of the "
                                  "child is told to a shop.")


class BudgetInfo(_Answer):
    budget_id: int
    rule_name: str
    category: str | None
    available_cents: int = Field(ge=0)
    expires_on: date


class BalanceCheckResponse(_Answer):
    pass_: PassInfo = Field(alias="pass")
    holder: HolderInfo
    budgets: list[BudgetInfo] = Field(description="The budgets the asking shop may redeem, and only those: a child's "
                                                  "budgets for other kinds of shop are not shown. Empty when there "
                                                  "is none.")
    as_of: datetime


class RedemptionCreated(_Answer):
    redemption_id: str
    budget_id: int
    requested_cents: int
    amount_cents: int = Field(description="What the budget paid.")
    remaining_to_pay_cents: int = Field(ge=0, description="What the customer pays themselves.")
    available_cents_after: int = Field(ge=0)
    created_at: datetime


class ReversalCreated(_Answer):
    reversal_id: str
    redemption_id: str
    amount_cents: int
    reversible_cents_after: int = Field(ge=0)
    returned_to_budget: bool = Field(description="False when the budget had expired: the money went back to "
                                                 "the municipality.")
    available_cents_after: int = Field(ge=0)
    created_at: datetime


class ReversalItem(_Answer):
    reversal_id: str
    amount_cents: int
    reason: str
    returned_to_budget: bool
    created_at: datetime


class RedemptionItem(_Answer):
    redemption_id: str
    created_at: datetime
    amount_cents: int
    reversed_cents: int
    budget_id: int
    category: str | None
    pass_last4: str
    reference: str | None
    reversals: list[ReversalItem]


class RedemptionPage(_Answer):
    items: list[RedemptionItem]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page. It "
                                                "keeps this listing's `from` and `to`: the next page needs only "
                                                "the cursor.")


class ListedReversalItem(_Answer):
    reversal_id: str
    redemption_id: str = Field(description="The redemption it gave back (part of); listed by GET "
                                           "/v1/redemptions whenever it was made.")
    created_at: datetime
    amount_cents: int
    reason: str
    returned_to_budget: bool
    reference: str | None = Field(description="The redemption's `reference`, as the till sent it.")


class ReversalPage(_Answer):
    items: list[ListedReversalItem]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page. It "
                                                "keeps this listing's `from` and `to`: the next page needs only "
                                                "the cursor.")


class InvalidParam(_Answer):
    name: str
    reason: str


class ProblemDocument(_Answer):
    type: str
    title: str
    status: int
    detail: str
    code: str
    invalid_params: list[InvalidParam] | None = None
    available_cents: int | None = None
    requested_cents: int | None = None
    reversible_cents: int | None = None
    retry_after_seconds: int | None = None


class HealthStatus(_Answer):
    status: Literal["ok"]


class ReadyStatus(_Answer):
    status: Literal["ready"]


# A time with its offset's '+' read as a space (12:00:00 01:00); a space between date and time is RFC 3339's own.
_OFFSET_AFTER_A_SPACE = re.compile(r":\d\d(\.\d+)? \d\d(:?\d\d)?$")


class RedemptionQuery(BaseModel):
    """The query of GET /v1/redemptions (query strings are text, so this one is read leniently)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=False)

    created_from: AwareDatetime | None = Field(default=None, alias="from",
                                               description="Made at or after this moment.")
    created_before: AwareDatetime | None = Field(default=None, alias="to", description="Made before this moment.")
    cursor: str | None = Field(default=None, min_length=1, max_length=512,
                               description="`next_cursor` of the page before. The listing keeps that page's "
                                           "`from` and `to` unless given again.")
    limit: int = Field(default=50, ge=1, le=100)

    @field_validator("created_from", "created_before", mode="before")
    @classmethod
    def _no_plus_lost_in_the_url(cls, moment: object) -> object:
        # A '+' written as such in a query string reads as a space: "…T00:00:00+01:00" arrives as "…T00:00:00 01:00".
        # Told only "not a moment like …Z", the till's developer sees the offset they sent and cannot tell why.
        if isinstance(moment, str) and _OFFSET_AFTER_A_SPACE.search(moment):
            raise ValueError("bevat een spatie: een '+' in een URL leest als spatie; schrijf +01:00 als %2B01:00, "
                             "of geef de tijd in UTC met Z, zoals 2026-03-01T00:00:00Z")
        return moment

    @field_validator("created_from", "created_before")
    @classmethod
    def _a_utc_instant(cls, moment: datetime | None) -> datetime | None:
        # Stored times are UTC: 0001-01-01T00:00+14:00 is a valid aware time whose UTC lies before year 1, and
        # the database layer's conversion would fail with a 500 instead of telling the till what to send.
        if moment is None:
            return None
        try:
            return moment.astimezone(timezone.utc)
        except OverflowError:
            raise ValueError("valt buiten de kalender; geef een moment zoals 2026-03-01T00:00:00+01:00") from None


class ReversalQuery(RedemptionQuery):
    """The query of GET /v1/reversals: the same as the redemptions listing's, over the reversals' own times."""
