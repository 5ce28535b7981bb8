"""Call records: the jurisdiction of a number, the record's rows and exports, and the SQL
both CDR databases share."""

from __future__ import annotations

import dataclasses
import json
import re
import sqlite3

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phonenumbers import geocoder

from sipguard.policy.area_codes import US_AREA_CODES
from sipguard.policy.jurisdiction import (
    DOMESTIC,
    INTERNATIONAL,
    INTERSTATE,
    INTRASTATE,
    TOLL_FREE,
    UNKNOWN,
    US_STATES,
    US_TERRITORIES,
    jurisdiction,
    state_from_place,
    us_state,
)
from sipguard.records import sql
from sipguard.records.record import (
    FIELDS,
    NUMBER_FIELDS,
    TEXT_FIELDS,
    TIME_FIELDS,
    CallRecord,
    clean_text,
    iso_time,
)
from sipguard.records.sink import GROUPS

JURISDICTIONS = {DOMESTIC, INTERNATIONAL, INTERSTATE, INTRASTATE, TOLL_FREE, UNKNOWN}


def _question_mark(_: int) -> str:
    return "?"


def _dollar(position: int) -> str:
    return f"${position}"


FULL = CallRecord(
    call_id="a84b4c76e66710@pbx", started_at=1795435200.25, account="asterisk-1",
    source="127.0.0.1", dialled="9011442079460321", decision="challenge", id="0123abcd",
    node="node-1", answered_at=1795435205.5, ended_at=1795435265.5, extension="201",
    caller="Alice <201>", e164="+442079460321", region="GB", number_type="fixed_line",
    number_class="international", state=None, jurisdiction="international", action="pin",
    would="pin", category="PIN required", rule="pin-gb", rules=("pin-gb", "risk"),
    risk_score=35, policy_version="3f2a9c0d1e2b", reason="destination rule pin-gb",
    status=200, trunk_status=200, duration=60.0, cost=0.12, trunk="carrier", pin_outcome="accepted",
    ended_by="pbx", end_reason="bye", trace=("pin-gb: region GB", "risk: 35 < 60"),
)


# -- jurisdiction ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("e164", "expected"),
    [
        ("+12125551234", "NY"),
        ("+13105551234", "CA"),
        ("+12025551234", "DC"),
        ("+13125550199", "IL"),
        ("+18005551234", None),  # toll-free: no state
        ("+18885551234", None),
        ("+14165550123", None),  # Toronto: Canada shares +1
        ("+18095550123", None),  # Dominican Republic: the Caribbean shares +1 too
        ("+442079460321", None),  # not NANP
        ("12125551234", None),  # no "+"
        ("+1212555123", None),  # a digit short
        ("+121255512345", None),  # a digit long
        ("+1", None),
        ("", None),
    ],
)
def test_us_state_by_area_code(e164: str, expected: str | None):
    """us_state gives the state of a US number's area code, and None for anything else."""
    assert us_state(e164) == expected


def test_area_code_table_names_only_us_states():
    """Every area code in the generated table is three digits and maps to a US state (or DC)."""
    assert len(US_AREA_CODES) > 300
    assert all(re.fullmatch(r"[2-9]\d\d", code) for code in US_AREA_CODES)
    assert set(US_AREA_CODES.values()) <= US_STATES
    assert {"800", "888", "416", "809"}.isdisjoint(US_AREA_CODES)


def test_area_code_table_agrees_with_the_geocoder():
    """For every area code in the table, the number is in the US and the geocoder names no other state."""
    disagreements = []
    for code, state in US_AREA_CODES.items():
        for exchange in ("2000000", "5550100", "9999999"):
            number = phonenumbers.parse(f"+1{code}{exchange}")
            assert phonenumbers.region_code_for_number(number) in (None, "US"), code
            named = state_from_place(geocoder.description_for_number(number, "en"))
            if named is not None and named != state:
                disagreements.append((code, exchange, state, named))
    assert disagreements == []


def test_territories_count_as_states():
    """Puerto Rico, the US Virgin Islands, Guam, American Samoa and the Northern Marianas are US states here."""
    assert {"PR", "VI", "GU", "AS", "MP"} == US_TERRITORIES
    assert US_TERRITORIES <= US_STATES
    assert not US_TERRITORIES & set(US_AREA_CODES.values())  # their state is their region


@pytest.mark.parametrize(
    ("place", "expected"),
    [
        ("Chicago, IL", "IL"),
        ("New York, NY", "NY"),
        ("Washington, DC", "DC"),
        ("Massachusetts", "MA"),
        ("Washington", "WA"),
        ("Washington D.C.", "DC"),
        ("District of Columbia", "DC"),
        ("Toronto, ON", None),  # a Canadian province is no state
        ("Ontario", None),
        ("Chicago,IL", None),  # not the geocoder's ", " form
        ("Springfield, Illinois", None),
        ("", None),
    ],
)
def test_state_from_geocoder_place(place: str, expected: str | None):
    """state_from_place reads "City, ST" and full state names, and nothing else."""
    assert state_from_place(place) == expected


@pytest.mark.parametrize(
    ("home_region", "home_state", "e164", "region", "number_type", "expected"),
    [
        ("US", "NY", "+12125551234", "US", "fixed_line_or_mobile", INTRASTATE),
        ("US", "NY", "+13105551234", "US", "fixed_line_or_mobile", INTERSTATE),
        ("US", "CA", "+13105551234", "US", "mobile", INTRASTATE),
        ("US", "NY", "+12025551234", "US", "fixed_line", INTERSTATE),  # DC is not NY
        ("US", None, "+12125551234", "US", "fixed_line", UNKNOWN),  # no home state
        ("US", "NY", "+19995551234", "US", "fixed_line", UNKNOWN),  # area code not in the table
        ("US", "NY", "+18005551234", "US", "toll_free", TOLL_FREE),
        ("US", None, "+18005551234", "US", "toll_free", TOLL_FREE),  # toll-free needs no state
        ("US", "NY", "+14165550123", "CA", "fixed_line_or_mobile", INTERNATIONAL),
        ("US", "NY", "+18095550123", "DO", "fixed_line", INTERNATIONAL),
        ("US", "NY", "+442079460321", "GB", "fixed_line", INTERNATIONAL),
        ("US", "NY", None, None, None, UNKNOWN),  # an unparseable number
        ("US", "NY", "+12125551234", None, None, UNKNOWN),
        ("GB", None, "+442079460321", "GB", "fixed_line", DOMESTIC),
        ("GB", None, "+12125551234", "US", "fixed_line", INTERNATIONAL),
        ("GB", None, "+448001111", "GB", "toll_free", DOMESTIC),  # toll-free is a US notion
        ("CA", None, "+14165550123", "CA", "fixed_line", DOMESTIC),
        ("CA", None, "+12125551234", "US", "fixed_line", INTERNATIONAL),
        ("GB", None, None, None, None, UNKNOWN),
        ("US", "NY", "+17875550123", "PR", "fixed_line", INTERSTATE),  # a territory is in the US
        ("US", "PR", "+17875550123", "PR", "fixed_line", INTRASTATE),
        ("US", "NY", "+13405550123", "VI", "fixed_line", INTERSTATE),
        ("US", "NY", "+18765550123", "JM", "fixed_line", INTERNATIONAL),  # Jamaica is not
        ("US", "GU", "+16715550123", "GU", "fixed_line", INTRASTATE),
        ("US", "PR", "+12125551234", "US", "fixed_line", INTERSTATE),
        ("US", None, "+16845550123", "AS", "fixed_line", UNKNOWN),  # home state unknown
    ],
)
def test_jurisdiction_table(home_region: str, home_state: str | None, e164: str | None,
                            region: str | None, number_type: str | None, expected: str):
    """jurisdiction classifies a call by the account's home and the number's region and state."""
    assert jurisdiction(home_region, home_state, e164, region, number_type) == expected


@settings(max_examples=200, deadline=None)
@given(
    home_region=st.sampled_from(["US", "CA", "GB"]),
    home_state=st.none() | st.sampled_from(sorted(US_STATES)),
    e164=st.none() | st.text(alphabet="+0123456789", max_size=14),
    region=st.none() | st.sampled_from(["US", "CA", "GB", "PR", "GU", "JM"]),
    number_type=st.none() | st.sampled_from(["toll_free", "fixed_line", "mobile", "invalid"]),
)
def test_jurisdiction_is_always_one_of_six(home_region: str, home_state: str | None,
                                           e164: str | None, region: str | None,
                                           number_type: str | None):
    """Whatever it is given, jurisdiction answers one of its six values, and us_state a state or None."""
    assert jurisdiction(home_region, home_state, e164, region, number_type) in JURISDICTIONS
    if e164 is not None:
        assert us_state(e164) in (US_STATES | {None})


# -- the record ---------------------------------------------------------------------------


def test_fields_name_every_attribute_once():
    """FIELDS lists every CallRecord attribute once; text, time and number fields partition them."""
    names = [item.name for item in dataclasses.fields(CallRecord)]
    assert len(FIELDS) == len(set(FIELDS)) and set(FIELDS) == set(names)
    assert set(TEXT_FIELDS) == set(FIELDS) - {*TIME_FIELDS, *NUMBER_FIELDS, "rules", "trace"}
    assert "trunk_status" in NUMBER_FIELDS and "dialled" in TEXT_FIELDS


def test_record_defaults():
    """A record built from the six required fields gets a fresh hex id and empty defaults."""
    first = CallRecord("c1", 10.0, "pbx", "127.0.0.1", "12125551234", "reject")
    second = CallRecord("c1", 10.0, "pbx", "127.0.0.1", "12125551234", "reject")
    assert re.fullmatch(r"[0-9a-f]{32}", first.id) and first.id != second.id
    assert (first.jurisdiction, first.rules, first.trace, first.duration, first.cost) == (
        "unknown", (), (), 0.0, 0.0)
    assert first.answered_at is None and first.ended_at is None and first.node == ""


def test_row_round_trip_of_a_full_record():
    """as_row keeps every column, with rules and trace as JSON text, and from_row undoes it."""
    row = FULL.as_row()
    assert list(row) == list(FIELDS)
    assert row["rules"] == '["pin-gb","risk"]'
    assert json.loads(row["trace"]) == ["pin-gb: region GB", "risk: 35 < 60"]
    assert CallRecord.from_row(row) == FULL


def test_values_follow_the_column_order():
    """as_values gives the row's values in FIELDS order (the INSERT's parameters)."""
    values = FULL.as_values()
    assert len(values) == len(FIELDS)
    assert values == tuple(FULL.as_row()[name] for name in FIELDS)
    assert values[FIELDS.index("id")] == "0123abcd"
    assert values[FIELDS.index("trace")] == FULL.as_row()["trace"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('["a", "b"]', ("a", "b")),
        ("[]", ()),
        ("", ()),
        (None, ()),
        (["a", "b"], ("a", "b")),  # a database driver may hand back a list already
        (("a",), ("a",)),
    ],
)
def test_from_row_reads_rules_as_json_text_or_a_list(raw: object, expected: tuple[str, ...]):
    """from_row accepts rules as JSON text, a list, empty text or NULL."""
    row = FULL.as_row() | {"rules": raw}
    assert CallRecord.from_row(row).rules == expected


def test_from_row_ignores_unknown_keys_and_defaults_missing_ones():
    """from_row leaves out keys that are no column and defaults the optional columns missing."""
    row = {"call_id": "c", "started_at": 1.0, "account": "a", "source": "s", "dialled": "1",
           "decision": "forward", "id": "x", "surprise": 1}
    record = CallRecord.from_row(row)
    assert record == CallRecord("c", 1.0, "a", "s", "1", "forward", id="x")


def test_from_row_without_a_required_column_raises_type_error():
    """A row missing a required column is refused with TypeError (the spool counts it)."""
    row = FULL.as_row()
    del row["call_id"]
    with pytest.raises(TypeError):
        CallRecord.from_row(row)


def test_export_has_iso_times_and_joined_lists():
    """for_export writes times as ISO 8601 UTC with milliseconds and joins rules and trace."""
    exported = FULL.for_export()
    assert list(exported) == list(FIELDS)
    assert exported["started_at"] == "2026-11-23T12:00:00.250+00:00"
    assert exported["answered_at"] == "2026-11-23T12:00:05.500+00:00"
    assert exported["ended_at"] == "2026-11-23T12:01:05.500+00:00"
    assert exported["rules"] == "pin-gb risk"
    assert exported["trace"] == "pin-gb: region GB | risk: 35 < 60"
    assert exported["duration"] == 60.0 and exported["status"] == 200


def test_export_of_an_unanswered_call_keeps_missing_times_empty():
    """for_export leaves times that are not there as None and empty lists as empty text."""
    exported = CallRecord("c", 0.0, "a", "s", "1", "reject").for_export()
    assert exported["started_at"] == "1970-01-01T00:00:00.000+00:00"
    assert exported["answered_at"] is None and exported["ended_at"] is None
    assert exported["rules"] == "" and exported["trace"] == ""


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0.0, "1970-01-01T00:00:00.000+00:00"),
        (1795435200.0, "2026-11-23T12:00:00.000+00:00"),
        (1795435200.1234, "2026-11-23T12:00:00.123+00:00"),
    ],
)
def test_iso_time(seconds: float, expected: str):
    """iso_time writes epoch seconds in UTC to the millisecond."""
    assert iso_time(seconds) == expected


def test_replace_changes_only_the_given_fields():
    """replace gives a copy with the named fields changed and the id kept."""
    changed = FULL.replace(cost=1.5, end_reason="cancel")
    assert (changed.cost, changed.end_reason, changed.id) == (1.5, "cancel", FULL.id)
    assert FULL.cost == 0.12


@pytest.mark.parametrize(
    ("changes", "field", "expected"),
    [
        ({"dialled": "9\udcff011"}, "dialled", "9\ufffd011"),  # an undecodable byte
        ({"caller": "Bob\x00<201>"}, "caller", "Bob\ufffd<201>"),  # %00 unescaped
        ({"call_id": "\udce9t\udce9"}, "call_id", "\ufffdt\ufffd"),
        ({"extension": "20\udc801"}, "extension", "20\ufffd1"),
        ({"account": "caf\u00e9"}, "account", "caf\u00e9"),  # good UTF-8 is left alone
        ({"caller": None}, "caller", None),
        ({"rules": ("ok", "x\udc80")}, "rules", ("ok", "x\ufffd")),
        ({"trace": ("a: b\x00",)}, "trace", ("a: b\ufffd",)),
    ],
)
def test_record_text_is_made_storable(changes: dict[str, object], field: str, expected: object):
    """A record turns lone surrogates and NULs in its text into U+FFFD, and keeps good text."""
    record = CallRecord("c", 1.0, "a", "s", "1", "forward").replace(**changes)
    assert getattr(record, field) == expected
    json.dumps(record.as_row(), ensure_ascii=False).encode("utf-8")  # no surrogate is left


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain ascii", "plain ascii"),
        ("caf\u00e9", "caf\u00e9"),
        ("9\udcff011", "9\ufffd011"),
        ("nul\x00", "nul\ufffd"),
        ("\udcc3\udca9", "\u00e9"),  # escaped bytes that are UTF-8 together come back as it
        ("a\ud800b", "a\ufffdb"),  # a surrogate that stands for no byte is a lone one too
        ("\udcff\ud800", "\ufffd\ufffd"),
    ],
)
def test_clean_text(text: str, expected: str):
    """clean_text makes lone surrogates and NUL U+FFFD, as its docstring says."""
    assert clean_text(text) == expected


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=40))
def test_clean_text_of_undecodable_bytes_is_their_replacement_decoding(raw: bytes):
    """Text the SIP parser decoded with surrogateescape is cleaned as a "replace" decode would."""
    cleaned = clean_text(raw.decode("utf-8", "surrogateescape"))
    assert cleaned == raw.decode("utf-8", "replace").replace("\x00", "\ufffd")
    cleaned.encode("utf-8")


OPTIONAL_TEXT = st.none() | st.text(max_size=12)
TIMES = st.floats(min_value=0, max_value=4e9, allow_nan=False)
RECORDS = st.builds(
    CallRecord,
    call_id=st.text(max_size=20), started_at=TIMES, account=st.text(max_size=8),
    source=st.text(max_size=8), dialled=st.text(max_size=16),
    decision=st.sampled_from(["forward", "challenge", "reject", "unscreened"]),
    id=st.text(min_size=1, max_size=32), answered_at=st.none() | TIMES,
    ended_at=st.none() | TIMES, extension=OPTIONAL_TEXT, caller=OPTIONAL_TEXT,
    e164=OPTIONAL_TEXT, region=OPTIONAL_TEXT, state=OPTIONAL_TEXT, rule=OPTIONAL_TEXT,
    rules=st.lists(st.text(max_size=8), max_size=4).map(tuple),
    risk_score=st.none() | st.integers(0, 100), status=st.none() | st.integers(100, 699),
    trunk_status=st.none() | st.integers(100, 699),
    duration=st.floats(0, 1e5), cost=st.floats(0, 1e4), end_reason=OPTIONAL_TEXT,
    trace=st.lists(st.text(max_size=20), max_size=4).map(tuple),
)


@settings(max_examples=100, deadline=None)
@given(RECORDS)
def test_row_survives_the_spools_json_lines(record: CallRecord):
    """Any record, lone surrogates included, comes back equal from as_row through JSON text."""
    line = json.dumps(record.as_row(), separators=(",", ":"))
    assert CallRecord.from_row(json.loads(line)) == record


# -- SQL ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "definition"),
    [
        ("id", "id TEXT PRIMARY KEY"),
        ("started_at", "started_at REAL NOT NULL"),
        ("ended_at", "ended_at REAL"),
        ("status", "status INTEGER"),
        ("trunk_status", "trunk_status INTEGER"),
        ("dialled", "dialled TEXT"),
    ],
)
def test_column_definitions(name: str, definition: str):
    """column types each field: id the key, times and money real, statuses integers, the rest text."""
    assert sql.column(name, "REAL") == definition


def test_added_columns_bring_an_older_table_up_to_date():
    """added_columns adds exactly the fields an older table lacks, and nothing to a current one."""
    older = set(FIELDS) - {"trunk_status", "end_reason"}
    assert sql.added_columns(older, "DOUBLE PRECISION") == [
        "ALTER TABLE cdr ADD COLUMN trunk_status INTEGER",
        "ALTER TABLE cdr ADD COLUMN end_reason TEXT",
    ]
    assert sql.added_columns(set(FIELDS), "REAL") == []


def test_schema_types_each_column():
    """The table has every column in FIELDS order: id the key, started_at required, numbers typed."""
    table, started, account_started, source = sql.schema("DOUBLE PRECISION")
    assert table.startswith("CREATE TABLE IF NOT EXISTS cdr (")
    columns = table[table.index("(") + 1:-1].split(", ")
    assert [column.split()[0] for column in columns] == list(FIELDS)
    assert "id TEXT PRIMARY KEY" in columns
    assert "started_at DOUBLE PRECISION NOT NULL" in columns
    assert "answered_at DOUBLE PRECISION" in columns and "cost DOUBLE PRECISION" in columns
    assert "risk_score INTEGER" in columns and "status INTEGER" in columns
    assert "rules TEXT" in columns and "trace TEXT" in columns
    assert started == "CREATE INDEX IF NOT EXISTS cdr_started ON cdr (started_at)"
    assert account_started == (
        "CREATE INDEX IF NOT EXISTS cdr_account_started ON cdr (account, started_at)")
    assert source == "CREATE INDEX IF NOT EXISTS cdr_source ON cdr (source)"


@pytest.mark.parametrize(
    ("placeholder", "conflict", "prefix", "values", "suffix"),
    [
        (_question_mark, "OR IGNORE", "INSERT OR IGNORE INTO cdr (",
         ", ".join(["?"] * len(FIELDS)), ""),
        (_dollar, "ON CONFLICT (id) DO NOTHING", "INSERT INTO cdr (",
         ", ".join(f"${n}" for n in range(1, len(FIELDS) + 1)), " ON CONFLICT (id) DO NOTHING"),
    ],
)
def test_insert_per_dialect(placeholder: sql.Placeholder, conflict: str, prefix: str,
                            values: str, suffix: str):
    """insert names every column once, one placeholder each ("$n" numbered from 1)."""
    statement = sql.insert(placeholder, conflict)
    assert statement == f"{prefix}{', '.join(FIELDS)}) VALUES ({values}){suffix}"


@pytest.mark.parametrize(
    ("since", "until", "placeholder", "clause", "parameters"),
    [
        (None, None, _question_mark, "", []),
        (10.0, None, _question_mark, " WHERE started_at >= ?", [10.0]),
        (None, 20.0, _question_mark, " WHERE started_at < ?", [20.0]),
        (10.0, 20.0, _question_mark, " WHERE started_at >= ? AND started_at < ?", [10.0, 20.0]),
        (10.0, 20.0, _dollar, " WHERE started_at >= $1 AND started_at < $2", [10.0, 20.0]),
        (None, 20.0, _dollar, " WHERE started_at < $1", [20.0]),
        (0.0, None, _dollar, " WHERE started_at >= $1", [0.0]),  # zero is a time, not "none"
    ],
)
def test_where_on_started_at(since: float | None, until: float | None,
                             placeholder: sql.Placeholder, clause: str, parameters: list[float]):
    """where is [since, until) on started_at, numbering its placeholders from 1."""
    assert sql.where(since, until, placeholder) == (clause, parameters)


@pytest.mark.parametrize(
    ("limit", "tail"),
    [(None, "ORDER BY started_at, id"), (5, "ORDER BY started_at, id LIMIT 5"),
     (0, "ORDER BY started_at, id LIMIT 0")],
)
def test_select_oldest_first_with_a_limit(limit: int | None, tail: str):
    """select reads every column, oldest first (id breaking ties), with an optional LIMIT."""
    query, parameters = sql.select(1.0, 2.0, limit, _dollar)
    assert query == (f"SELECT {', '.join(FIELDS)} FROM cdr WHERE started_at >= $1 "
                     f"AND started_at < $2 {tail}")
    assert parameters == [1.0, 2.0]


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_summary_groups_by_a_fixed_expression(group: str):
    """summary groups by the GROUPS expression and orders by minutes, calls, then key."""
    query, parameters = sql.summary(group, None, 5.0, 3, _question_mark)
    assert query.startswith(f"SELECT {GROUPS[group]} AS key, COUNT(*), ")
    assert " FROM cdr WHERE started_at < ? GROUP BY 1 ORDER BY 4 DESC, 2 DESC, 1 LIMIT 3" in query
    assert parameters == [5.0]


def test_summary_of_an_unknown_group_is_refused():
    """A group that is not a key of GROUPS never reaches the SQL."""
    with pytest.raises(KeyError):
        sql.summary("region; DROP TABLE cdr", None, None, None, _question_mark)


def test_statements_run_on_sqlite():
    """The schema, insert, select and summary run as written on SQLite ("?" placeholders)."""
    db = sqlite3.connect(":memory:")
    try:
        for statement in sql.schema("REAL"):
            db.execute(statement)
        db.execute(sql.insert(_question_mark, "OR IGNORE"), FULL.as_values())
        db.execute(sql.insert(_question_mark, "OR IGNORE"), FULL.replace(cost=9.0).as_values())
        query, parameters = sql.select(FULL.started_at, None, None, _question_mark)
        rows = db.execute(query, parameters).fetchall()
        assert [CallRecord.from_row(dict(zip(FIELDS, row, strict=True))) for row in rows] == [FULL]
        query, parameters = sql.summary("country", None, None, None, _question_mark)
        assert db.execute(query, parameters).fetchall() == [("GB", 1, 1, 1.0, 0.12, 0)]
    finally:
        db.close()
