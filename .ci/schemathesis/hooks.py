"""Checks of the crebitos API that docs/openapi.yaml cannot state, for .ci/schemathesis.sh.

schemathesis.toml lets valid data answer 422, because a debit beyond the limit, or a credit
that would overflow the balance, is valid JSON the schema accepts: only the account's balance
refuses it. `refused_only_by_the_balance_rule` keeps that allowance narrow. The other check ties
each 200 to the account it was asked about, which a schema cannot do: the limit of that very
account, a balance never below its negation, and a statement listed newest first.

Both run as part of `--checks all`. The limits are read from the account table of the document's
own description, which crates/api/tests/openapi.rs holds to rinha_api::contract::ACCOUNTS.
"""

import re

import schemathesis

# The messages of the two balance refusals (crates/api/src/handler.rs). Clients must not rely on
# messages, but this check is about this server: any other 422 to valid data is a finding.
BALANCE_REFUSALS = frozenset({"limit exceeded", "balance overflow"})

ACCOUNT_ROW = re.compile(r"^\|\s*(\d+)\s*\|\s*(\d+)\s*\|$")


def account_limits(case):
    """The limit of each account id, from the table in the document's `info.description`."""
    description = case.operation.schema.raw_schema["info"]["description"]
    rows = (ACCOUNT_ROW.match(line.strip()) for line in description.splitlines())
    return {int(row.group(1)): int(row.group(2)) for row in rows if row}


def account_id(case):
    """The account id of the request, or None when the path names none."""
    try:
        return int(str(case.path_parameters.get("id")))
    except ValueError:
        return None


@schemathesis.check
def refused_only_by_the_balance_rule(ctx, response, case):
    """Data the document calls valid answers 422 only when the account's balance refuses it."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code != 422:
        return None
    message = response.json().get("erro")
    if message not in BALANCE_REFUSALS:
        raise AssertionError(
            f"valid data was refused with 422 {message!r}, which is not a balance refusal "
            f"({', '.join(sorted(BALANCE_REFUSALS))})"
        )
    return None


@schemathesis.check
def answers_about_the_account_asked(ctx, response, case):
    """A 200 carries the limit of the account in the path, and balances at or above -limite."""
    if response.status_code != 200:
        return None
    limits = account_limits(case)
    account = account_id(case)
    if account not in limits:
        raise AssertionError(f"200 for account {case.path_parameters.get('id')!r}, which does not exist")
    limit = limits[account]
    body = response.json()
    if case.method.upper() == "POST":
        answered, balance = body["limite"], body["saldo"]
    else:
        answered, balance = body["saldo"]["limite"], body["saldo"]["total"]
        times = [transaction["realizada_em"] for transaction in body["ultimas_transacoes"]]
        # RFC 3339 UTC times of one fixed width order as strings do.
        if times != sorted(times, reverse=True):
            raise AssertionError(f"the statement of account {account} is not newest first: {times}")
    if answered != limit:
        raise AssertionError(f"account {account} answered limite {answered}; its limit is {limit}")
    if balance < -limit:
        raise AssertionError(f"account {account} answered a balance of {balance}, below -{limit}")
    return None
