"""Deterministic synthetic Lofty data: leads, their calls, ids and timestamps.

Everything derives from the seed. At start only a compact record per lead is drawn (creation time,
number of calls, time of the last call, time of the last visit), which is all the lead sorts need;
lead objects and call lists are built on demand from a per-lead RNG seeded with ``(seed, lead
index)``, so 100,000 leads / 1,000,000 calls start quickly and the same seed always yields the
same bytes.

Texts and emails (one row per email event: Sent, Opened, Bounced) are drawn the same way, from
their own per-lead streams; their milliseconds avoid those of the lead's calls, so ids stay unique
and ascend with creation time across all three channels.

Ids imitate Lofty's time-ordered 64-bit ids:
``((ms - 2015-01-01) << 22) | (lead index & 0x3FFFFF)``.
Within one lead every call gets a distinct millisecond, and two leads never share the low bits, so
ids are globally unique and increase with ``createTime`` across all leads. They are around 1.5e18,
far above 2**53, and almost none is a multiple of the float spacing there (256), so any float
conversion downstream produces a visibly wrong id.
"""

from __future__ import annotations

import calendar
import json
import math
import random
import time
import unicodedata
from dataclasses import dataclass, field
from typing import Any, cast

EPOCH_2015_MS = 1_420_070_400_000  # 2015-01-01T00:00:00Z
#: Fixed "now" of the generated data (2026-11-01T00:00:00Z): fixed, not the wall clock, so that
#: the same seed gives byte-identical data on any day. Appended calls use the wall clock, clamped
#: to be later than this.
DATA_NOW_MS = 1_793_491_200_000
DAY_MS = 86_400_000
LEAD_SPAN_MS = 730 * DAY_MS  # leads are created over the two years before DATA_NOW_MS
LOW_BITS = 22
LOW_MASK = (1 << LOW_BITS) - 1
MAX_REGULAR_CALLS = 400  # only "big" leads go beyond this
BIG_LEAD_CALLS = (2600, 3200)
MAX_REGULAR_MESSAGES = 300  # texts or emails of a lead that is not "big"
BIG_LEAD_TEXTS = (2100, 2600)

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False).encode


def dumps(obj: Any) -> bytes:
    """Serialise like the API: compact separators, raw UTF-8 rather than ASCII escapes."""
    return _encode(obj).encode("utf-8")


def snowflake(ms: int, low: int) -> int:
    """Build a time-ordered 64-bit id from a millisecond timestamp and a low part."""
    return ((ms - EPOCH_2015_MS) << LOW_BITS) | (low & LOW_MASK)


def id_ms(an_id: int) -> int:
    """Return the millisecond timestamp encoded in a :func:`snowflake` id."""
    return (an_id >> LOW_BITS) + EPOCH_2015_MS


def call_time(ms: int) -> str:
    """Format as the call endpoint does: ``yyyy-MM-dd HH:mm:ss`` in UTC."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms // 1000))


def epoch_ms_text(ms: int) -> str:
    """Epoch milliseconds as a string: the other format some text/email times come in."""
    return str(ms)


def lead_time(ms: int) -> str:
    """Format as lead objects do (observed): ``2026-03-01T15:00:00GMT``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SGMT", time.gmtime(ms // 1000))


# --------------------------------------------------------------------------------------------
# Vocabulary. Non-ASCII names, apostrophes and CJK on purpose: they are what breaks loaders.

FIRST_NAMES = (
    "James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David",
    "Elizabeth", "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah",
    "Christopher", "Karen", "Daniel", "Emily", "Matthew", "Ashley", "Anthony", "Olivia", "Mark",
    "Sophia", "Kevin", "Grace", "Brian", "Megan", "Jason", "Rachel", "Tyler", "Hannah",
    "José", "María", "Zoë", "Søren", "Renée", "François", "Björn", "Chloé", "Łukasz", "Siobhán",
    "Ana Sofía", "Hiroshi", "Mei", "Dmitri", "Aaliyah", "Jürgen", "伟", "Thảo",
)  # fmt: skip
LAST_NAMES = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
    "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Taylor", "Moore",
    "Jackson", "Martin", "Lee", "Perez", "Thompson", "White", "Harris", "Clark", "Lewis",
    "Robinson", "Walker", "Young", "Allen", "King", "Wright", "Scott", "Green", "Baker", "Adams",
    "Núñez", "Müller", "García", "Ødegaard", "O'Connor", "D'Angelo", "Nguyễn", "Kowalczyk",
    "Schäfer", "Åberg", "Çelik", "王", "Smith-Jones", "van der Berg",
)  # fmt: skip
EMAIL_DOMAINS = (
    "example.com",
    "example.net",
    "example.org",
    "mail.example.com",
    "inbox.example.net",
)
AREA_CODES = ("415", "510", "408", "212", "718", "312", "512", "206", "303", "617", "305", "602")

# (userId, first, last, phone): the team's agents.
AGENTS = tuple(
    (
        818_212_340_000_000 + 7919 * i,
        first,
        last,
        f"+1{AREA_CODES[i % len(AREA_CODES)]}555{1000 + 37 * i:04d}",
    )
    for i, (first, last) in enumerate(
        [
            ("Alex", "Rivera"),
            ("Jordan", "Kim"),
            ("Taylor", "Brooks"),
            ("Morgan", "Patel"),
            ("Casey", "Nguyen"),
            ("Jamie", "O'Neil"),
            ("Riley", "Chen"),
            ("Avery", "Johnson"),
            ("Quinn", "Martínez"),
            ("Drew", "Fischer"),
            ("Sam", "Okafor"),
            ("Lena", "Kovač"),
        ]
    )
)
#: The user the simulator's credentials belong to ("the caller" of the communications feed).
CALLER_AGENT_ID = AGENTS[0][0]
TEAM_ID = 512_300_000_000_017
TEAM_MAIN_LINE = "+18885550100"
LENDER_USER_ID = 818_212_349_999_001

STAGES = (
    (3_160_001, "New"), (3_160_002, "Attempted Contact"), (3_160_003, "Spoke with Customer"),
    (3_160_004, "Appointment Set"), (3_160_005, "Met with Customer"), (3_160_006, "Showing Homes"),
    (3_160_007, "Submitting Offers"), (3_160_008, "Under Contract"), (3_160_009, "Closed"),
    (3_160_010, "Nurture"), (3_160_011, "Archived"),
)  # fmt: skip
STAGE_WEIGHTS = (18, 14, 12, 8, 6, 6, 4, 3, 5, 20, 4)
SOURCES = (
    ("Zillow", 12), ("Realtor.com", 14), ("Website", 1), ("Facebook Ads", 21), ("Open House", 5),
    ("Referral", 7), ("Google PPC", 16), ("Homes.com", 13), ("Manual Import", -1), ("Sphere", -1),
)  # fmt: skip
TAGS = (
    (9_001_001, "Hot"), (9_001_002, "Buyer"), (9_001_003, "Seller"), (9_001_004, "Pre-approved"),
    (9_001_005, "Open House 3/15"), (9_001_006, "Past Client"), (9_001_007, "Investor"),
    (9_001_008, "Relocation"), (9_001_009, "Nurture"), (9_001_010, "Habla español"),
    (9_001_011, "VIP ⭐"),
)  # fmt: skip
SEGMENTS = (
    "Active Buyers",
    "Sphere",
    "Past Clients",
    "Zillow Premier",
    "First-time Buyers",
    "Luxury",
)
LEAD_TYPES = (-1, 1, 2, 5, 6, 7, 8, 9)
LANGUAGES = ("en", "en", "en", "en", "es", "zh", "fr", "vi")
TIME_FRAMES = ("1-3", "3-6", "6-12", "12+", "Just Looking", "Refinancing")
OPPORTUNITIES = ("High Interest", "Sell", "Back to Site", "Back on Market")
PROPERTY_TYPES = ("Single Family", "Condo", "Townhouse", "Multi-Family", "Land")
PONDS = ((61_000_001, "Unresponsive 90d"), (61_000_002, "Zillow Pond"))
PLACES = (
    ("San Francisco", "CA", "94110", "San Francisco"), ("Oakland", "CA", "94610", "Alameda"),
    ("San José", "CA", "95126", "Santa Clara"), ("Austin", "TX", "78704", "Travis"),
    ("Seattle", "WA", "98103", "King"), ("Denver", "CO", "80205", "Denver"),
    ("Miami", "FL", "33133", "Miami-Dade"), ("Chicago", "IL", "60614", "Cook"),
    ("Brooklyn", "NY", "11215", "Kings"), ("Phoenix", "AZ", "85016", "Maricopa"),
    ("Boston", "MA", "02118", "Suffolk"),
)  # fmt: skip
STREETS = (
    "Maple St",
    "Oak Ave",
    "Mission St",
    "Cedar Ln",
    "Calle de la Reina",
    "Elm Ct",
    "Lakeview Dr",
)
CUSTOM_ATTRIBUTES = (
    ("Preferred contact time", "text", ("Evenings", "Mornings", "Weekends only")),
    ("Move-in date", "date", ("2026-01-15", "2026-06-01", "2027-03-31")),
    ("Has pets", "select", ("Yes", "No")),
)
CALL_NOTES = (
    "Discussed pre-approval timeline.",
    "Left VM about the open house on Saturday.",
    "Wants 3BR under $650k near good schools; pre-approved with Chase.",
    "Asked to call back after 5pm.",
    'Said "maybe next spring" — follow up in March.',
    "Llamó: señora García — 電話",
    "Wrong number, removed from list.",
    "Zoë prefers texts 📱",
    "Multi-line note:\nline 2 with a tab\tand a backslash \\ here",
    "Price range 1,2M-1,5M €; relocating from München.",
    "Scheduled showing for 123 Oak Ave.",
    "",
)
YES_NO = ("Yes", "No")
TEXT_CONTENTS = (
    "Hi {first}, this is {agent} — are you still looking in {city}?",
    "Thanks! See you Saturday at 2pm 🏡",
    "¿Podemos hablar mañana? Gracias",
    "明天下午可以看房吗？",  # noqa: RUF001 (the full-width mark is what Chinese text uses)
    "Can you send me the listing for 123 Oak Ave?",
    "STOP",
    "Ok 👍",
    "Price dropped to $615k — want to see it?\nReply YES for details",
    "Chào anh, căn nhà này còn không?",
    "Je suis disponible jeudi après 17h.",
    "",
)
TEXT_OUTBOUND_OUTCOMES = (("Delivered", 82), ("Sent", 8), ("Undelivered", 6), ("Failed", 4))
EMAIL_SUBJECTS = (
    "New listings matching your search",
    "Re: 3BR in {city}",
    "Your home value report for {city} 🏠",
    "Open house this weekend — Sunday 1\u20134pm",  # an en dash
    "Préstamo pre-aprobado: próximos pasos",
    "Following up on our call",
    "物业信息",
    "Market update: {city}",
    "",
)

# Live-observed shapes (api-notes §16) that the spec does not describe.
#: Time-frame values seen live besides the documented ones.
LIVE_TIME_FRAMES = (*TIME_FRAMES, "0-3", "N/A")
#: The team's role catalog: live leads list every role, assigned or not.
ROLE_CATALOG = (
    (1, "Co-Agent"),
    (2, "Showing Agent"),
    (3, "Lender"),
    (4, "Transaction Coordinator"),
)
OPPORTUNITY_STATUSES = ("Active", "Dismissed", "Converted")
PROPERTY_SOURCES = ("Manual", "MLS", "Zillow", "Lead Inquiry", "Homes.com")

# (status, weight) for dialer calls by direction, and outcomes by status.
OUTBOUND_STATUSES = (
    ("Completed", 45),
    ("NoAnswer", 25),
    ("VoiceMail", 15),
    ("Busy", 7),
    ("Failed", 8),
)
INBOUND_STATUSES = (("Completed", 72), ("Missed", 28))
MANUAL_OUTCOMES = (
    ("Talked", 60),
    ("VoiceMessage", 15),
    ("NoAnswer", 15),
    ("BadNumber", 5),
    ("DNCNumber", 3),
    ("DNCContact", 2),
)


def _weighted(rng: random.Random, pairs: tuple[tuple[str, int], ...]) -> str:
    return rng.choices([p[0] for p in pairs], weights=[p[1] for p in pairs])[0]


def _ascii_slug(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return "".join(ch for ch in folded.lower() if ch.isalnum())


def _mmss(seconds: int) -> str:
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


@dataclass(slots=True)
class LeadState:
    """Compact, mutable per-lead record (all that sorting and counting need)."""

    idx: int
    lead_id: int
    create_ms: int
    n_base: int  # calls generated from the seed (appended calls are extra)
    base_last_call_ms: (
        int  # time of the last generated call; -1: none (fixed: calls derive from it)
    )
    last_visit_ms: int  # -1: never visited the site
    last_call_ms: int = -1  # time of the latest call, appended ones included; -1: no calls
    appended: list[dict[str, Any]] = field(default_factory=list)
    appended_texts: list[dict[str, Any]] = field(default_factory=list)
    appended_emails: list[dict[str, Any]] = field(default_factory=list)
    deleted: bool = False  # gone from the listing and from the history endpoints
    calls_gone: bool = False  # still listed, but the history endpoints answer 404
    n_texts_base: int = -1  # drawn on first use; -1: not drawn yet
    n_emails_base: int = -1  # emails sent (each has 1 or 2 event rows); -1: not drawn yet

    def __post_init__(self) -> None:
        self.last_call_ms = self.base_last_call_ms

    @property
    def last_activity_ms(self) -> int:
        """Latest of creation, last call and last visit."""
        return max(self.create_ms, self.last_call_ms, self.last_visit_ms)

    @property
    def n_calls(self) -> int:
        """Number of calls (generated plus appended)."""
        return self.n_base + len(self.appended)


@dataclass(frozen=True, slots=True)
class LeadCore:
    """The few lead attributes that the lead's calls depend on."""

    first_name: str
    last_name: str
    phones: tuple[str, ...]
    agent: int  # index into AGENTS


class Dataset:
    """Ground-truth data. Not thread-safe: the simulator serialises access with its lock."""

    def __init__(
        self,
        seed: int,
        leads: int,
        calls_per_lead_mean: float,
        big_leads: int,
        *,
        live_shape_share: float = 0.0,
        texts_per_lead_mean: float = 0.0,
        emails_per_lead_mean: float = 0.0,
        big_text_leads: int = 0,
    ) -> None:
        """Draw the compact lead records (fast: a few random numbers per lead)."""
        self.seed = seed
        self.live_shape_share = live_shape_share
        self.texts_per_lead_mean = texts_per_lead_mean
        self.emails_per_lead_mean = emails_per_lead_mean
        # Own stream: the lead records below stay what they were before texts existed.
        self.big_text = set(
            random.Random(f"bigtexts:{seed}").sample(range(leads), min(big_text_leads, leads))
        )
        #: time.time() at which appended rows (any channel) were added, by id: the feed's
        #: indexing delay counts from here. Generated rows are not in it (indexed long ago).
        self.appended_at: dict[int, float] = {}
        rng = random.Random(seed)
        # rng.random() arithmetic instead of randrange(): ~5x faster, and 100,000 leads must start
        # in well under a second.
        uniform = rng.random
        start = DATA_NOW_MS - LEAD_SPAN_MS
        span = LEAD_SPAN_MS - 2 * DAY_MS
        # Sorted creation times make leadIds (which embed them) ascend with createTime.
        creates = sorted(start + int(uniform() * span) for _ in range(leads))
        big = set(rng.sample(range(leads), min(big_leads, leads)))
        # ~10% of leads have no calls (more when the mean is below 0.9); the others have 1 plus a
        # geometric tail, so that the mean over all leads is calls_per_lead_mean.
        p_zero = max(0.1, 1.0 - calls_per_lead_mean)
        tail_mean = calls_per_lead_mean / 0.9 - 1
        # int(expovariate(r)) is geometric with mean 1 / (e**r - 1).
        tail_rate = math.log(1 + 1 / tail_mean) if tail_mean > 0 else 0.0
        last_call_end = DATA_NOW_MS - 3_600_000
        self.leads: list[LeadState] = []
        for idx, create_ms in enumerate(creates):
            if idx in big:
                n = rng.randint(*BIG_LEAD_CALLS)
            elif calls_per_lead_mean <= 0 or uniform() < p_zero:
                n = 0
            elif tail_rate == 0.0:
                n = 1
            else:
                n = min(MAX_REGULAR_CALLS, 1 + int(rng.expovariate(tail_rate)))
            # Calls lie in [create + 1 min, last call], the last call at least an hour before
            # DATA_NOW_MS; the window is >= 60,000 ms, enough for n distinct milliseconds.
            first_call = create_ms + 120_000
            last_call = first_call + int(uniform() * (last_call_end - first_call)) if n else -1
            visit = (
                create_ms + int(uniform() * (DATA_NOW_MS - create_ms)) if uniform() < 0.7 else -1
            )
            self.leads.append(
                LeadState(idx, snowflake(create_ms, idx), create_ms, n, last_call, visit)
            )
        self.by_id: dict[int, LeadState] = {s.lead_id: s for s in self.leads}
        self.n_generated = len(self.leads)
        # Monotonic clock for appended data; starts at the end of the generated data.
        self.clock_ms = DATA_NOW_MS
        self.append_batches = 0

    # ---------------------------------------------------------------- leads

    def _core(self, rng: random.Random, idx: int) -> LeadCore:
        first = rng.choice(FIRST_NAMES)
        last = rng.choice(LAST_NAMES)
        n_phones = rng.choices((0, 1, 2), weights=(5, 80, 15))[0]
        phones = tuple(
            f"{rng.choice(AREA_CODES)}555{rng.randrange(10_000):04d}" for _ in range(n_phones)
        )
        return LeadCore(first, last, phones, rng.randrange(len(AGENTS)))

    def _lead_rng(self, idx: int) -> random.Random:
        return random.Random(f"lead:{self.seed}:{idx}")

    def core(self, st: LeadState) -> LeadCore:
        """Return the attributes of a lead that its calls need."""
        return self._core(self._lead_rng(st.idx), st.idx)

    def build_lead(self, st: LeadState) -> dict[str, Any]:
        """Build the full wire-format lead object."""
        rng = self._lead_rng(st.idx)
        core = self._core(rng, st.idx)
        lead_id = st.lead_id
        # Secondary timestamps (tags, inquiry, assignment) are drawn after createTime; keep them
        # out of the future of the data set.
        latest = max(st.create_ms, DATA_NOW_MS - 60_000)
        lead_user_id = 70_000_000_000_000 + st.idx * 13 + 5
        agent_id, agent_first, agent_last, _ = AGENTS[core.agent]
        slug = _ascii_slug(core.first_name) or "lead"
        slug_last = _ascii_slug(core.last_name) or str(st.idx)
        n_emails = rng.choices((0, 1, 2), weights=(4, 84, 12))[0]
        emails = [
            f"{slug}.{slug_last}{st.idx + k if k else ''}@{rng.choice(EMAIL_DOMAINS)}"
            for k in range(n_emails)
        ]
        stage_id, stage = rng.choices(STAGES, weights=STAGE_WEIGHTS)[0]
        source, lead_source = rng.choice(SOURCES)
        assign_ms = min(latest, st.create_ms + rng.randrange(0, 3_600_000))
        tag_count = rng.choices((0, 1, 2, 3), weights=(40, 30, 20, 10))[0]
        tags = []
        for tag_id, tag_name in sorted(rng.sample(TAGS, tag_count)):
            tag_ms = min(latest, st.create_ms + rng.randrange(0, 30 * DAY_MS))
            tags.append(
                {
                    "leadId": lead_id,
                    "tagId": tag_id,
                    "createTime": lead_time(tag_ms),
                    "updateTime": lead_time(tag_ms),
                    "tagName": tag_name,
                    "creatorUserId": agent_id,
                    "visibleType": rng.choice((0, 1)),
                }
            )
        city, state_code, zip_code, county = rng.choice(PLACES)
        price_min = rng.choice((-1, 250_000, 400_000, 550_000, 800_000))
        inquiry_ms = min(latest, st.create_ms + rng.randrange(0, DAY_MS))
        lead_inquiry = {
            "id": 5_000_000_000 + st.idx,
            "leadUserId": lead_user_id,
            "priceMin": price_min,
            "priceMax": -1
            if price_min < 0
            else price_min + rng.choice((100_000, 200_000, 350_000)),
            "propertyType": sorted(rng.sample(PROPERTY_TYPES, rng.randint(0, 2))),
            "bedroomsMin": rng.choice((-1, 1, 2, 3)),
            "bedroomsMax": rng.choice((-1, 3, 4, 5)),
            "bathroomsMin": rng.choice(("-1", "1", "1.5", "2")),
            "bathroomsMax": rng.choice(("-1", "2", "3")),
            "locations": [
                {
                    "city": city,
                    "stateCode": state_code,
                    "zipCode": zip_code,
                    "county": county,
                    "streetAddress": "",
                    "description": f"{city}, {state_code}",
                }
            ],
            "modifyByAgent": rng.random() < 0.3,
            "defaultValue": rng.random() < 0.2,
            "createTime": lead_time(inquiry_ms),
            "updateTime": lead_time(min(latest, inquiry_ms + rng.randrange(0, 10 * DAY_MS))),
        }
        properties = []
        if rng.random() < 0.4:
            beds = rng.randint(1, 5)
            price = rng.randrange(300_000, 2_000_000, 5_000)
            properties.append(
                {
                    "id": 6_000_000_000 + st.idx,
                    "leadUserId": lead_user_id,
                    "listingId": f"ML{rng.randrange(10**7, 10**8)}",
                    "autoListingId": -1,
                    "streetAddress": f"{rng.randint(10, 9999)} {rng.choice(STREETS)}",
                    "city": city,
                    "state": state_code,
                    "zipCode": zip_code,
                    "propertyType": rng.choice(PROPERTY_TYPES),
                    "bedrooms": beds,
                    "bathrooms": rng.choice((1.0, 1.5, 2.0, 2.5, 3.0)),
                    "squareFeet": rng.randrange(600, 4000, 10),
                    "lotSize": round(rng.uniform(0.05, 1.5), 2),
                    "parkingSpace": rng.randint(0, 3),
                    "floors": rng.randint(1, 3),
                    # No priceMin/priceMax: the spec marks them writeOnly (lead routing input),
                    # so a response does not carry them.
                    "price": price,
                    "mailAddress": rng.random() < 0.5,
                    "label": rng.choice(("Home", "Investment", "")),
                    "labelType": "",
                    "labelList": "",
                    "note": rng.choice(("", "Needs new roof", "Vue sur la baie ✨")),
                    "listingStatus": rng.choice(("Active", "Pending", "Sold", "")),
                    "pictureUrl": "",
                    "siteListingUrl": "",
                }
            )
        custom_attributes = [
            {
                "attributeName": name,
                "attributeType": kind,
                "value": rng.choice(values),
                "params": "",
            }
            for name, kind, values in CUSTOM_ATTRIBUTES
            if rng.random() < 0.3
        ]
        custom_roles = []
        if rng.random() < 0.15:
            custom_roles.append(
                {
                    "roleId": 3,
                    "role": "Lender",
                    "assigneeId": LENDER_USER_ID,
                    "assignee": "Pat Lender",
                }
            )
        family = []
        if rng.random() < 0.1:
            family.append(
                {
                    "relationship": "Spouse",
                    "firstName": rng.choice(FIRST_NAMES),
                    "lastName": core.last_name,
                    "phones": [],
                    "emails": [],
                    "birthday": "",
                }
            )
        pond = rng.choice(PONDS) if rng.random() < 0.05 else None
        scope = rng.choices(("TEAM", "OFFICE", "PERSONAL"), weights=(70, 10, 20))[0]
        last_update_ms = max(st.last_activity_ms, assign_ms)
        lead_types = sorted(rng.sample(LEAD_TYPES, rng.choices((0, 1, 2), weights=(10, 70, 20))[0]))
        n_segments = rng.choices((0, 1, 2), weights=(60, 30, 10))[0]
        lead = {
            "leadId": lead_id,
            "leadUserId": lead_user_id,
            "firstName": core.first_name,
            "lastName": core.last_name,
            "emails": emails,
            "phones": list(core.phones),
            "phoneStatuses": [
                rng.choices((1, 2, 3, 4, 5), weights=(5, 50, 40, 3, 2))[0] for _ in core.phones
            ],
            "birthday": rng.choice(("", "", "1984-04-12", "1991-11-03", "1975-07-30")),
            "leadSource": lead_source,
            "source": source,
            "stageId": stage_id,
            "stage": stage,
            "assignedUserId": agent_id,
            "assignedUser": f"{agent_first} {agent_last}",
            "lenderUserId": LENDER_USER_ID if custom_roles else -1,
            "score": rng.randint(0, 100),
            "teamId": TEAM_ID,
            "streetAddress": "",
            "city": city,
            "state": state_code,
            "zipCode": zip_code,
            "createTime": lead_time(st.create_ms),
            "assignTime": lead_time(assign_ms),
            "lastUpdateTime": lead_time(last_update_ms),
            "lastTouch": lead_time(st.last_call_ms) if st.last_call_ms >= 0 else None,
            "lastVisit": lead_time(st.last_visit_ms) if st.last_visit_ms >= 0 else None,
            "facebook": "",
            "twitter": "",
            "hiddenFlag": False,
            "referredBy": rng.choice(("", "", "", "Dana Whitfield")),
            "cannotText": rng.random() < 0.05,
            "cannotCall": rng.random() < 0.03,
            "cannotEmail": rng.random() < 0.04,
            "unsubscription": rng.random() < 0.06,
            "assignCompletionStatus": True,
            "language": rng.choice(LANGUAGES),
            "pondId": pond[0] if pond else -1,
            "pondName": pond[1] if pond else None,
            "ownershipId": TEAM_ID if scope == "TEAM" else agent_id,
            "ownershipScope": scope,
            "opportunity": rng.choice(OPPORTUNITIES) if rng.random() < 0.3 else None,
            "buyingTimeFrame": rng.choice(TIME_FRAMES),
            "sellingTimeFrame": rng.choice(TIME_FRAMES),
            "preQual": rng.choice(YES_NO),
            "houseToSell": rng.choice(YES_NO),
            "fthb": rng.choice(YES_NO),
            "withBuyerAgent": rng.choice(YES_NO),
            "mortgage": rng.choice(YES_NO),
            "buyHouse": rng.choice(YES_NO),
            "withListingAgent": rng.choice(YES_NO),
            "leadTypes": lead_types,
            "groups": [],
            "segments": sorted(rng.sample(SEGMENTS, n_segments)),
            "tags": tags,
            "customAttributes": custom_attributes,
            "customRoleList": custom_roles,
            "leadFamilyMemberList": family,
            "leadPropertyList": properties,
            "leadInquiry": lead_inquiry,
        }
        # A separate stream decides and draws the live shapes, so that the other leads stay
        # byte-identical to what they were before these shapes existed.
        live_rng = random.Random(f"live:{self.seed}:{st.idx}")
        if live_rng.random() < self.live_shape_share:
            self._live_shapes(live_rng, st, lead, county, latest)
        return lead

    def _live_shapes(
        self, rng: random.Random, st: LeadState, lead: dict[str, Any], county: str, latest: int
    ) -> None:
        """Turn ``lead`` into the shape live clients report (api-notes §16), in place."""
        # The live opportunity object's fields are not documented anywhere; this shape (an id,
        # the documented enum as "type", a status) is a plausible guess. Null when none.
        if rng.random() < 0.5:
            lead["opportunity"] = {
                "id": snowflake(min(latest, st.create_ms + rng.randrange(DAY_MS)), st.idx),
                "type": rng.choice(OPPORTUNITIES),
                "status": rng.choice(OPPORTUNITY_STATUSES),
            }
        else:
            lead["opportunity"] = None
        lead["leadType"] = lead["leadTypes"][0] if lead["leadTypes"] else rng.choice(LEAD_TYPES)
        lead["privateFlag"] = rng.random() < 0.2
        for prop in lead["leadPropertyList"]:
            prop["propertySource"] = rng.choice(PROPERTY_SOURCES)
            prop["county"] = county
            prop["createTime"] = lead_time(min(latest, st.create_ms + rng.randrange(DAY_MS)))
        # The full role catalog, assigneeId 0 / assignee null where unassigned.
        assigned = {r["roleId"]: r for r in lead["customRoleList"]}
        lead["customRoleList"] = [
            assigned.get(
                role_id, {"roleId": role_id, "role": role, "assigneeId": 0, "assignee": None}
            )
            for role_id, role in ROLE_CATALOG
        ]
        if lead["pondId"] == -1:
            lead["pondId"] = 0  # no pond: 0 live, not -1
        lead["buyingTimeFrame"] = rng.choice(LIVE_TIME_FRAMES)
        lead["sellingTimeFrame"] = rng.choice(LIVE_TIME_FRAMES)
        inquiry = lead["leadInquiry"]
        inquiry["bathroomsMin"] = rng.choice((None, 1.0, 1.5, 2.0))
        inquiry["bathroomsMax"] = rng.choice((None, 2.0, 2.5, 3.0))

    # ---------------------------------------------------------------- calls

    def make_call(
        self,
        rng: random.Random,
        st: LeadState,
        core: LeadCore,
        ms: int,
        *,
        logged_at_ms: int | None = None,
    ) -> dict[str, Any]:
        """Build one wire-format call of lead ``st`` created at ``ms``.

        ``logged_at_ms``: make it a manually logged call that took place at that (earlier) time,
        as an agent logging a call after the fact does; the id and createTime stay ``ms``.
        """
        agent_idx = core.agent if rng.random() < 0.8 else rng.randrange(len(AGENTS))
        agent_id, _, _, agent_phone = AGENTS[agent_idx]
        lead_phone = f"+1{rng.choice(core.phones)}" if core.phones else ""
        direction = "Outbound" if rng.random() < 0.72 else "Inbound"
        manual = rng.random() < 0.15 or logged_at_ms is not None
        note: str | None = (
            rng.choice(CALL_NOTES) if rng.random() < (0.8 if manual else 0.6) else None
        )
        call_id = snowflake(ms, st.idx)
        if manual:
            # Manually logged call: no dialer record, so the dialer-only fields are absent.
            outcome = _weighted(rng, MANUAL_OUTCOMES)
            duration = rng.randint(60, 1200) if outcome == "Talked" else 0
            at_ms = ms if logged_at_ms is None else logged_at_ms
            end_ms = at_ms + duration * 1000
            return {
                "id": call_id,
                "userId": agent_id,
                "userPhoneNumber": agent_phone,
                "leadId": st.lead_id,
                "leadPhoneNumber": lead_phone,
                "direction": direction,
                "startTime": call_time(at_ms),
                "endTime": call_time(end_ms),
                "duration": duration,
                "callingOutcome": outcome,
                "rateScore": rng.randint(0, 5) if outcome == "Talked" else 0,
                "createTime": call_time(ms),
                "updateTime": call_time(max(ms, end_ms)),
                "note": note,
                "agentId": agent_id,
            }
        status = _weighted(rng, OUTBOUND_STATUSES if direction == "Outbound" else INBOUND_STATUSES)
        if status == "Completed":
            outcome = _weighted(rng, (("Talked", 94), ("DNCContact", 3), ("VoiceMessage", 3)))
            duration = min(3600, 15 + int(rng.expovariate(1 / 240)))
            ring = rng.randint(3, 30)
        elif status == "VoiceMail":
            outcome, duration, ring = "VoiceMessage", rng.randint(10, 75), rng.randint(20, 40)
        elif status == "Failed":
            outcome = _weighted(rng, (("BadNumber", 80), ("DNCNumber", 20)))
            duration, ring = 0, rng.randint(0, 3)
        else:  # NoAnswer, Busy, Missed
            outcome, duration, ring = (
                "NoAnswer",
                0,
                (rng.randint(25, 45) if status == "NoAnswer" else rng.randint(0, 5)),
            )
        end_ms = ms + (ring + duration) * 1000
        update_ms = end_ms + (
            rng.randrange(60_000, 3 * DAY_MS) if note and rng.random() < 0.2 else 0
        )
        return {
            "id": call_id,
            "dialerCallRecordId": 400_000_000_000 + rng.randrange(10**11),
            "userId": agent_id,
            "userPhoneNumber": agent_phone,
            "leadId": st.lead_id,
            "leadPhoneNumber": lead_phone,
            "direction": direction,
            "status": status,
            "startTime": call_time(ms),
            "endTime": call_time(end_ms),
            "duration": duration,
            "callingOutcome": outcome,
            "rateScore": rng.randint(0, 5) if status == "Completed" else 0,
            "recordingSwitch": status == "Completed" and rng.random() < 0.7,
            "showUserNumber": agent_phone if rng.random() < 0.8 else TEAM_MAIN_LINE,
            "createTime": call_time(ms),
            "updateTime": call_time(update_ms),
            "note": note,
            "isMachineAnswered": status == "VoiceMail",
            "price": 0.0
            if status == "Failed"
            else round(0.02 * max(1, math.ceil(duration / 60)), 2),
            "agentId": agent_id,
            "elapsedTime": _mmss(ring),
        }

    def _base_call_times(self, st: LeadState) -> tuple[random.Random, list[int]]:
        """Return the stream and the milliseconds of a lead's generated calls, ascending."""
        rng = random.Random(f"calls:{self.seed}:{st.idx}")
        if st.n_base == 0:
            return rng, []
        lo, hi = st.create_ms + 60_000, st.base_last_call_ms
        times = sorted(rng.randrange(lo, hi) for _ in range(st.n_base - 1))
        # Distinct milliseconds within a lead keep ids unique (the low bits are the lead index):
        # push duplicates forward, then back below hi (the window is >= 60,000 ms wide).
        for i in range(1, len(times)):
            if times[i] <= times[i - 1]:
                times[i] = times[i - 1] + 1
        for i in range(len(times) - 1, -1, -1):
            limit = hi - 1 if i == len(times) - 1 else times[i + 1] - 1
            times[i] = min(times[i], limit)
        times.append(hi)  # the last call is exactly base_last_call_ms, which the LastCall sort uses
        return rng, times

    def base_calls(self, st: LeadState) -> list[dict[str, Any]]:
        """Generate the seed-derived calls of a lead, ascending id."""
        rng, times = self._base_call_times(st)
        if not times:
            return []
        core = self.core(st)
        return [self.make_call(rng, st, core, ms) for ms in times]

    def calls(self, st: LeadState) -> list[dict[str, Any]]:
        """All calls of a lead (generated plus appended), ascending id."""
        # Copies of the appended calls, so callers cannot edit the stored ground truth.
        return self.base_calls(st) + [dict(c) for c in st.appended]

    # ---------------------------------------------------------------- texts and emails

    def _count(self, kind: str, st: LeadState, mean: float) -> int:
        """Draw how many texts / emails a generated lead has (1 + geometric tail, or 0)."""
        if kind == "texts" and st.idx in self.big_text:
            return random.Random(f"ntexts:{self.seed}:{st.idx}").randint(*BIG_LEAD_TEXTS)
        if mean <= 0 or st.idx >= self.n_generated:  # appended leads start without any
            return 0
        rng = random.Random(f"n{kind}:{self.seed}:{st.idx}")
        if rng.random() < max(0.2, 1.0 - mean):
            return 0
        tail_mean = mean / 0.8 - 1
        if tail_mean <= 0:
            return 1
        return min(MAX_REGULAR_MESSAGES, 1 + int(rng.expovariate(math.log(1 + 1 / tail_mean))))

    def n_texts(self, st: LeadState) -> int:
        """Return the number of texts of a lead (generated plus appended)."""
        if st.n_texts_base < 0:
            st.n_texts_base = self._count("texts", st, self.texts_per_lead_mean)
        return st.n_texts_base + len(st.appended_texts)

    def _n_emails_base(self, st: LeadState) -> int:
        if st.n_emails_base < 0:
            st.n_emails_base = self._count("emails", st, self.emails_per_lead_mean)
        return st.n_emails_base

    def _spread(self, rng: random.Random, st: LeadState, n: int, used: set[int]) -> list[int]:
        """``n`` distinct milliseconds in the lead's life, none of them in ``used`` (updated)."""
        lo, hi = st.create_ms + 60_000, DATA_NOW_MS - 3_600_000
        out = []
        for drawn in sorted(rng.randrange(lo, max(lo + 1, hi)) for _ in range(n)):
            ms = drawn
            while ms in used:
                ms += 1  # at most a few ms past hi: still before DATA_NOW_MS
            used.add(ms)
            out.append(ms)
        out.sort()
        return out

    def _used_ms(self, st: LeadState) -> set[int]:
        return set(self._base_call_times(st)[1])

    def make_text(
        self, rng: random.Random, st: LeadState, core: LeadCore, ms: int
    ) -> dict[str, Any]:
        """Build one wire-format text of lead ``st`` sent or received at ``ms``."""
        agent_idx = core.agent if rng.random() < 0.85 else rng.randrange(len(AGENTS))
        agent_id, agent_first, _, _ = AGENTS[agent_idx]
        direction = "Outbound" if rng.random() < 0.65 else "Inbound"
        auto = direction == "Outbound" and rng.random() < 0.35
        outcome = _weighted(rng, TEXT_OUTBOUND_OUTCOMES) if direction == "Outbound" else "Received"
        content: str | None = rng.choice(TEXT_CONTENTS).format(
            first=core.first_name, agent=agent_first, city=rng.choice(PLACES)[0]
        )
        if rng.random() < 0.05:
            content = None  # e.g. a picture-only message
        # textTime's format is undocumented: mostly like call times, some as epoch ms.
        when = epoch_ms_text(ms) if rng.random() < 0.1 else call_time(ms)
        return {
            "id": snowflake(ms, st.idx),
            "leadId": st.lead_id,
            "direction": direction,
            "agentId": agent_id,
            "textOutcome": outcome,
            "textTime": when,
            "textType": "Auto" if auto else "Manual",
            "textContent": content,
        }

    def base_texts(self, st: LeadState) -> list[dict[str, Any]]:
        """Generate the seed-derived texts of a lead, ascending id."""
        n = self.n_texts(st) - len(st.appended_texts)
        if n == 0:
            return []
        rng = random.Random(f"texts:{self.seed}:{st.idx}")
        times = self._spread(rng, st, n, self._used_ms(st))
        core = self.core(st)
        return [self.make_text(rng, st, core, ms) for ms in times]

    def texts(self, st: LeadState) -> list[dict[str, Any]]:
        """All texts of a lead (generated plus appended), ascending id."""
        return self.base_texts(st) + [dict(t) for t in st.appended_texts]

    def make_email_events(
        self,
        rng: random.Random,
        st: LeadState,
        core: LeadCore,
        sent_ms: int,
        later_ms: int | None,
    ) -> list[dict[str, Any]]:
        """Build the event rows of one email: Sent at ``sent_ms``, maybe a follow-up later.

        The follow-up (Opened or Bounced, drawn) is at ``later_ms``; None: no follow-up.
        """
        agent_idx = core.agent if rng.random() < 0.85 else rng.randrange(len(AGENTS))
        agent_id = AGENTS[agent_idx][0]
        direction = "Outbound" if rng.random() < 0.85 else "Inbound"
        auto = direction == "Outbound" and rng.random() < 0.5
        subject: str | None = rng.choice(EMAIL_SUBJECTS).format(city=rng.choice(PLACES)[0])
        if rng.random() < 0.05:
            subject = None
        from_pond = rng.random() < 0.05
        epoch_format = rng.random() < 0.1  # emailEventTime's format is undocumented too
        follow = _weighted(rng, (("Opened", 45), ("Bounced", 7), ("", 48)))
        events = [("Sent", sent_ms)]
        if direction == "Outbound" and follow and later_ms is not None:
            events.append((follow, later_ms))
        return [
            {
                "id": snowflake(ms, st.idx),
                "leadId": st.lead_id,
                "direction": direction,
                "agentId": agent_id,
                "eventType": event,
                "emailEventTime": epoch_ms_text(ms) if epoch_format else call_time(ms),
                "emailType": "Auto" if auto else "Manual",
                "emailSubject": subject,
                "fromPond": from_pond,
            }
            for event, ms in events
        ]

    def base_emails(self, st: LeadState) -> list[dict[str, Any]]:
        """Generate the seed-derived email events of a lead, ascending id."""
        n = self._n_emails_base(st)
        if n == 0:
            return []
        rng = random.Random(f"emails:{self.seed}:{st.idx}")
        used = self._used_ms(st)
        if self.n_texts(st) - len(st.appended_texts):
            used |= {id_ms(t["id"]) for t in self.base_texts(st)}
        core = self.core(st)
        rows: list[dict[str, Any]] = []
        for sent in self._spread(rng, st, n, used):
            # The follow-up event (opened / bounced) comes 1 s .. 3 days later, before the end.
            later = min(sent + rng.randrange(1_000, 3 * DAY_MS), DATA_NOW_MS - 3_600_000)
            while later in used:
                later += 1
            if later > sent:
                used.add(later)
            rows += self.make_email_events(rng, st, core, sent, later if later > sent else None)
        rows.sort(key=lambda r: cast(int, r["id"]))
        return rows

    def emails(self, st: LeadState) -> list[dict[str, Any]]:
        """All email events of a lead (generated plus appended), ascending id."""
        return self.base_emails(st) + [dict(e) for e in st.appended_emails]

    def n_emails(self, st: LeadState) -> int:
        """Return the number of email event rows of a lead (builds them)."""
        return len(self.emails(st))

    # ---------------------------------------------------------------- mutation

    def tick(self) -> int:
        """Next millisecond of the append clock: wall clock, but strictly after all data."""
        self.clock_ms = max(int(time.time() * 1000), self.clock_ms + 1)
        return self.clock_ms

    def add_lead(self) -> LeadState:
        """Append a brand new lead (created now, with a higher leadId than all others)."""
        idx = len(self.leads)
        ms = self.tick()
        st = LeadState(idx, snowflake(ms, idx), ms, 0, -1, -1)
        self.leads.append(st)
        self.by_id[st.lead_id] = st
        return st

    def append_calls(
        self,
        existing_leads: int,
        new_leads: int,
        calls_per_lead: int,
        *,
        backdated_per_lead: int = 0,
        backdate_ms: int = 3 * DAY_MS,
    ) -> tuple[list[dict[str, Any]], set[int]]:
        """Add calls to random existing leads and to new leads; return (new calls, touched idxs).

        The first ``backdated_per_lead`` calls of each lead are manually logged calls whose
        startTime is ``backdate_ms`` before their creation (their id and createTime are now).
        """
        rng = random.Random(f"append:{self.seed}:{self.append_batches}")
        self.append_batches += 1
        eligible = [s for s in self.leads if not s.deleted and not s.calls_gone]
        targets = rng.sample(eligible, min(existing_leads, len(eligible)))
        targets.sort(key=lambda s: s.idx)
        targets += [self.add_lead() for _ in range(new_leads)]
        new_calls: list[dict[str, Any]] = []
        now = time.time()
        for st in targets:
            core = self.core(st)
            for k in range(calls_per_lead):
                ms = self.tick()
                logged_at = ms - backdate_ms if k < backdated_per_lead else None
                call = self.make_call(rng, st, core, ms, logged_at_ms=logged_at)
                st.appended.append(call)
                st.last_call_ms = id_ms(call["id"])
                self.appended_at[call["id"]] = now
                new_calls.append(dict(call))
        return new_calls, {s.idx for s in targets}

    def append_messages(
        self, existing_leads: int, texts_per_lead: int, emails_per_lead: int
    ) -> tuple[dict[str, list[dict[str, Any]]], set[int]]:
        """Add texts and emails (Sent events) to random existing leads; return them by kind."""
        rng = random.Random(f"append-messages:{self.seed}:{self.append_batches}")
        self.append_batches += 1
        eligible = [s for s in self.leads if not s.deleted and not s.calls_gone]
        targets = sorted(
            rng.sample(eligible, min(existing_leads, len(eligible))), key=lambda s: s.idx
        )
        out: dict[str, list[dict[str, Any]]] = {"texts": [], "emails": []}
        now = time.time()
        for st in targets:
            core = self.core(st)
            self.n_texts(st)  # draw the generated counts before anything is appended
            self._n_emails_base(st)
            for _ in range(texts_per_lead):
                text = self.make_text(rng, st, core, self.tick())
                st.appended_texts.append(text)
                self.appended_at[text["id"]] = now
                out["texts"].append(dict(text))
            for _ in range(emails_per_lead):
                for event in self.make_email_events(rng, st, core, self.tick(), None):
                    st.appended_emails.append(event)
                    self.appended_at[event["id"]] = now
                    out["emails"].append(dict(event))
        return out, {s.idx for s in targets}


# --------------------------------------------------------------------------------------------
# The team communications feed (GET /v2.0/communication/agent): one item per call, text or
# email event, derived from the rows the per-lead endpoints serve.


def _parse_call_time(text: str) -> int:
    """``yyyy-MM-dd HH:mm:ss`` (UTC) or epoch-ms text to epoch milliseconds."""
    if text.isdigit():
        return int(text)
    return calendar.timegm(time.strptime(text, "%Y-%m-%d %H:%M:%S")) * 1000


def feed_item(kind: str, row: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Return (communication time in ms, feed item) for a call, text or email row.

    The item's time is second-precision ``yyyy-MM-dd HH:mm:ss`` UTC (the format is
    undocumented; this is the call endpoints'), and the window filters on it as served. A call's
    time is its startTime, which for a back-dated logged call lies before its creation.
    """
    if kind == "CALL":
        if row["startTime"] == row["createTime"]:
            when = id_ms(row["id"]) // 1000 * 1000  # the same, without strptime
        else:
            when = _parse_call_time(row["startTime"])
        dialer = "dialerCallRecordId" in row
        # Logged = entered by hand (no dialer record); AUTO for a share of dialer calls (power
        # dialer), derived from the record id so it is stable.
        if not dialer:
            ctype = "LOGGED"
        else:
            ctype = "AUTO" if row["dialerCallRecordId"] % 10 == 0 else "MANUAL"
        item = {
            "id": row["id"],
            "leadId": row["leadId"],
            "agentId": row["agentId"],
            "direction": row["direction"],
            "callOutcome": row["callingOutcome"],
            "callDuration": str(row["duration"]),  # unit undocumented: seconds, as a string
            "status": row.get("status"),  # null for a logged call (no dialer status)
            "communicationTime": call_time(when),
            "communicationType": ctype,
            "eventType": "Call",
            "fromPond": False,
        }
    elif kind == "TEXT":
        when = id_ms(row["id"]) // 1000 * 1000
        item = {
            "id": row["id"],
            "leadId": row["leadId"],
            "agentId": row["agentId"],
            "direction": row["direction"],
            "callOutcome": None,
            "callDuration": None,
            "status": row["textOutcome"],
            "communicationTime": call_time(when),
            "communicationType": row["textType"].upper(),
            "eventType": "Text",
            "fromPond": False,
        }
    else:
        when = id_ms(row["id"]) // 1000 * 1000
        item = {
            "id": row["id"],
            "leadId": row["leadId"],
            "agentId": row["agentId"],
            "direction": row["direction"],
            "callOutcome": None,
            "callDuration": None,
            "status": row["eventType"],
            "communicationTime": call_time(when),
            "communicationType": row["emailType"].upper(),
            "eventType": f"{row['eventType']} Email",
            "fromPond": row["fromPond"],
        }
    return when, item
