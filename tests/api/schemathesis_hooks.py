"""Schemathesis hooks for tests/api/test_schemathesis.py (named by ``SCHEMATHESIS_HOOKS``)."""
from __future__ import annotations

import os
from typing import Any

import schemathesis

TENANT = os.environ.get("TEA_SCHEMATHESIS_TENANT")


def _own(value: Any) -> Any:
    """``value`` (a query, or a JSON body: an object or an array of them) naming the token's tenant."""
    if isinstance(value, dict) and isinstance(value.get("tenant_id"), str):
        return {**value, "tenant_id": TENANT}
    if isinstance(value, list):
        return [_own(item) for item in value]
    return value


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    """With a tenant's token, the tenant a generated request names is the token's own. Naming another is
    refused as documented (403 ``forbidden_tenant``, or per event), and would be all the run tested."""
    if TENANT:
        case.query = _own(case.query)
        case.body = _own(case.body)
    return case
