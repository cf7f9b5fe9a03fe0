"""Team-level data of the simulator: members, lead stages, lead ponds and transactions.

Deterministic from the seed, like the rest of the data set, and built so that it joins with it:

- every agent of :data:`~lofty_sim.data.AGENTS` (the ``agentId``/``userId`` of calls, texts and
  emails, the ``assignedUserId`` of leads) is a member whose ``memberUserId`` is that user id, and
  so is the lender (a lead's ``lenderUserId``); the other members are admins, assistants and
  agents without leads;
- the lead stages are :data:`~lofty_sim.data.STAGES`, whose ids are the leads' ``stageId``;
- the ponds are :data:`~lofty_sim.data.PONDS`, whose ids are the leads' ``pondId`` (a lead in no
  pond has 0 in the live shape, -1 in the spec's);
- each transaction belongs to a generated lead (``leadId``) and is assigned to that lead's agent.
"""

from __future__ import annotations

import random
from typing import Any

from lofty_sim.data import (
    AGENTS,
    AREA_CODES,
    DATA_NOW_MS,
    DAY_MS,
    FIRST_NAMES,
    LAST_NAMES,
    LENDER_USER_ID,
    PLACES,
    PONDS,
    STAGES,
    STREETS,
    TEAM_ID,
    Dataset,
    _ascii_slug,
    snowflake,
)

#: The office every member belongs to (one office: the simulator's team is small).
OFFICE_ID = 77_000_000_000_001
OFFICE_NAME = "Bay Area Office"
#: (role code, role name) of the members that are not one of the agents.
OTHER_ROLES = ((1, "Admin"), (3, "Assistant"), (2, "Agent"), (4, "ISA"))
TIME_ZONES = ("America/Los_Angeles", "America/New_York", "America/Chicago", "America/Denver")
#: Transaction types as served (the ``transactionType`` filter takes these or ``All``).
TRANSACTION_TYPES = ("Purchase", "Listing", "Lease", "Other")
TRANSACTION_TYPE_WEIGHTS = (55, 30, 10, 5)
TRANSACTION_STATUSES = ("Pre-contract", "Under Contract", "Pending", "Closed", "Terminated")
#: Share of generated leads with a transaction (some have two).
TRANSACTION_SHARE = 0.3
#: The team's transaction custom fields (``GET /v1.0/transaction/customfields`` ids).
TX_CUSTOM_FIELDS = (
    (88_000_101, ("Referral", "Sphere", "Online", "Open House")),
    (88_000_102, ('["Inspection","Appraisal"]', '["Appraisal"]', "[]")),
    (88_000_103, ("2026-01-31", "2026-07-15", "")),
)
#: The epoch-millisecond date fields of a transaction besides ``created``/``updated``.
TX_DATE_FIELDS = (
    "expectedCloseDate",
    "closeDate",
    "appointmentDate",
    "agreementSignedDate",
    "offerDate",
    "contractDate",
    "appraisalDate",
    "homeInspectionDate",
    "escrowDate",
    "expiration",
)


def member_id(k: int) -> int:
    """Return the team-member record id of the k-th member (not a user id: a different range)."""
    return 41_700_000_000_000 + 104_729 * k + 11


def build_members(seed: int, count: int) -> list[dict[str, Any]]:
    """Build the team's ``count`` members, ascending ``id``: the agents, the lender, others."""
    rng = random.Random(f"members:{seed}")
    people: list[tuple[int, str, str, str, int, str]] = [
        (user_id, first, last, phone, 2, "Agent") for user_id, first, last, phone in AGENTS
    ]
    people.append((LENDER_USER_ID, "Pat", "Lender", "+14155550177", 5, "Lender"))
    k = len(people)
    while len(people) < count:
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        role, role_name = rng.choice(OTHER_ROLES)
        user_id = 818_212_350_000_000 + 6_151 * k
        phone = f"+1{rng.choice(AREA_CODES)}555{rng.randrange(10_000):04d}"
        people.append((user_id, first, last, phone, role, role_name))
        k += 1
    out = []
    for k, (user_id, first, last, phone, role, role_name) in enumerate(people[:count]):
        slug = _ascii_slug(first) or "member"
        is_admin = role == 1 or k == 0  # the caller (the first agent) owns the team
        member: dict[str, Any] = {
            "id": member_id(k),
            "teamId": TEAM_ID,
            "invitorUserId": AGENTS[0][0] if k else 0,
            "memberUserId": user_id,
            "role": role,
            "roleName": role_name,
            "firstLetter": first[:1].upper(),
            "email": f"{slug}.{_ascii_slug(last) or k}@team.example.com",
            "firstName": first,
            "lastName": last,
            "phoneNumber": phone,
            "status": rng.choices((1, 0), weights=(9, 1))[0],
            "virtualNumber": f"+1415555{2000 + k:04d}" if rng.random() < 0.5 else "",
            "newLeadCount": rng.randint(0, 12),
            "assignedLeadCount": rng.randint(0, 400) if role_name == "Agent" else 0,
            "isAdmin": is_admin,
            "agentInfo": {
                "licenseId": f"DRE-{rng.randrange(10**7, 10**8)}",
                "position": role_name,
                "companyName": "Golden Gate Realty",
                "companyAddress": "100 Market St, San Francisco, CA",
                "mlsAgentId": f"MLS{rng.randrange(10**5, 10**6)}",
                "agentPid": "",
            },
            "timeZoneId": rng.choice(TIME_ZONES),
            "groupId": OFFICE_ID,
            "groupName": OFFICE_NAME,
            "group": {
                "id": OFFICE_ID,
                "teamId": TEAM_ID,
                "parentId": 0,
                "name": OFFICE_NAME,
                "type": 1,
                "city": "San Francisco",
                "state": "CA",
                "status": "ACTIVE",
                "agentCount": count,
            },
            "accountStatus": "Active" if rng.random() < 0.9 else "Inactive",
        }
        out.append(member)
    return out


def build_stages() -> list[dict[str, Any]]:
    """Build the lead pipeline stages, in the team's order."""
    return [{"id": stage_id, "name": name} for stage_id, name in STAGES]


def build_ponds(seed: int) -> list[dict[str, Any]]:
    """Build the lead ponds, with an owner and the agents who may take leads from them."""
    rng = random.Random(f"ponds:{seed}")
    agents = [a[0] for a in AGENTS]
    return [
        {
            "id": pond_id,
            "pondName": name,
            "pondOwnerId": agents[0],
            "agentIds": sorted(rng.sample(agents, rng.randint(2, 6))),
        }
        for pond_id, name in PONDS
    ]


def build_transactions(data: Dataset) -> list[dict[str, Any]]:
    """Build the transactions of the generated leads, ascending ``transactionId``."""
    rng = random.Random(f"transactions:{data.seed}")
    out: list[dict[str, Any]] = []
    used: set[int] = set()
    for st in data.leads[: data.n_generated]:
        if rng.random() >= TRANSACTION_SHARE:
            continue
        core = data.core(st)
        agent_id, agent_first, agent_last, _ = AGENTS[core.agent]
        for _ in range(rng.choices((1, 2), weights=(85, 15))[0]):
            created = st.create_ms + rng.randrange(DAY_MS, max(2 * DAY_MS, 90 * DAY_MS))
            created = min(created, DATA_NOW_MS - DAY_MS - rng.randrange(DAY_MS))
            updated = min(DATA_NOW_MS - 60_000, created + rng.randrange(0, 60 * DAY_MS))
            kind = rng.choices(TRANSACTION_TYPES, weights=TRANSACTION_TYPE_WEIGHTS)[0]
            status = rng.choice(TRANSACTION_STATUSES)
            city, state_code, _, _ = rng.choice(PLACES)
            price = rng.randrange(250_000, 2_500_000, 1_000)
            rate = rng.choice((2, 2.5, 3))
            gci = round(price * rate / 100, 2)
            team_share = rng.choice((0.2, 0.3, 0.25))
            tx_id = snowflake(created, st.idx)
            while tx_id in used:  # two deals of one lead in the same millisecond
                tx_id += 1 << 22
            used.add(tx_id)
            tx: dict[str, Any] = {
                "created": created,
                "updated": updated,
                "transactionId": tx_id,
                "leadId": st.lead_id,
                "propertyId": 6_100_000_000 + len(out),
                "transactionName": f"{rng.randint(10, 9999)} {rng.choice(STREETS)}, {city}, "
                f"{state_code}",
                "leadName": f"{core.first_name} {core.last_name}",
                "agentName": f"{agent_first} {agent_last}",
                "assignedAgent": agent_id,
                "transactionType": kind,
                "transactionStatus": status,
                "homePrice": price,
                "commissionRate": rate,
                "gci": gci,
                "teamRevenue": round(gci * team_share, 2),
                "agentRevenue": round(gci - round(gci * team_share, 2), 2),
            }
            # Each date is present or absent (a deal not yet at that step): absent keys are
            # what a client sees for dates never set.
            for name in TX_DATE_FIELDS:
                if name == "closeDate" and status != "Closed":
                    continue
                if rng.random() < 0.6:
                    tx[name] = created + rng.randrange(0, 120 * DAY_MS)
            tx["customFields"] = [
                {"id": field_id, "value": rng.choice(values)}
                for field_id, values in TX_CUSTOM_FIELDS
                if rng.random() < 0.5
            ]
            out.append(tx)
    out.sort(key=lambda t: int(t["transactionId"]))
    return out
