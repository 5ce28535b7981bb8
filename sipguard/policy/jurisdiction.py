"""Jurisdiction of US traffic: interstate, intrastate, international, toll-free (pure).

A call from an account whose home is in the US is:

- ``toll-free`` when the number is a toll-free one (NANP 8XX);
- ``international`` when the number is not in the US (Canada and the
  Caribbean share +1 but are other countries; Puerto Rico, the US Virgin
  Islands, Guam, American Samoa and the Northern Marianas count as US states);
- ``intrastate`` when the number's state is the account's home state;
- ``interstate`` when it is another state; ``unknown`` when the number's state,
  or the account's, is not known.

Accounts elsewhere get ``domestic`` or ``international``. The state of a US
number comes from phonenumbers' geocoder (the area code's place), which
writes either "City, ST" or the state's name.
"""

from __future__ import annotations

from sipguard.policy.area_codes import US_AREA_CODES

STATE_NAMES = {
    "Alabama": "AL", "Alaska": "AK", "Arizona": "AZ", "Arkansas": "AR", "California": "CA",
    "Colorado": "CO", "Connecticut": "CT", "Delaware": "DE", "Florida": "FL", "Georgia": "GA",
    "Hawaii": "HI", "Idaho": "ID", "Illinois": "IL", "Indiana": "IN", "Iowa": "IA",
    "Kansas": "KS", "Kentucky": "KY", "Louisiana": "LA", "Maine": "ME", "Maryland": "MD",
    "Massachusetts": "MA", "Michigan": "MI", "Minnesota": "MN", "Mississippi": "MS",
    "Missouri": "MO", "Montana": "MT", "Nebraska": "NE", "Nevada": "NV",
    "New Hampshire": "NH", "New Jersey": "NJ", "New Mexico": "NM", "New York": "NY",
    "North Carolina": "NC", "North Dakota": "ND", "Ohio": "OH", "Oklahoma": "OK",
    "Oregon": "OR", "Pennsylvania": "PA", "Rhode Island": "RI", "South Carolina": "SC",
    "South Dakota": "SD", "Tennessee": "TN", "Texas": "TX", "Utah": "UT", "Vermont": "VT",
    "Virginia": "VA", "Washington": "WA", "West Virginia": "WV", "Wisconsin": "WI",
    "Wyoming": "WY", "Washington D.C.": "DC", "District of Columbia": "DC",
}  # fmt: skip
# Territories with their own NANP region codes but inside the US for jurisdiction.
US_TERRITORIES = frozenset({"PR", "VI", "GU", "AS", "MP"})
US_STATES = frozenset(STATE_NAMES.values()) | US_TERRITORIES

TOLL_FREE = "toll-free"
INTERNATIONAL = "international"
INTRASTATE = "intrastate"
INTERSTATE = "interstate"
DOMESTIC = "domestic"
UNKNOWN = "unknown"


def us_state(e164: str) -> str | None:
    """The two-letter state of a US number (by its area code), or None."""
    if not e164.startswith("+1") or len(e164) != 12 or not e164[1:].isdigit():
        return None
    return US_AREA_CODES.get(e164[2:5])


def state_from_place(place: str) -> str | None:
    """A state from a geocoder place: "Chicago, IL" or "Massachusetts"."""
    _, comma, tail = place.rpartition(", ")
    if comma and tail in US_STATES:
        return tail
    return STATE_NAMES.get(place)


def number_state(e164: str | None, region: str | None) -> str | None:
    """The state a number is in: a territory's own code, or a US area code's state."""
    if region in US_TERRITORIES:
        return region
    return us_state(e164) if e164 is not None and region == "US" else None


def jurisdiction(home_region: str, home_state: str | None, e164: str | None,
                 region: str | None, number_type: str | None) -> str:
    """The jurisdiction of a call from an account at home in ``home_region``."""
    if e164 is None or region is None:
        return UNKNOWN
    if home_region != "US":
        return DOMESTIC if region == home_region else INTERNATIONAL
    if number_type == "toll_free":
        return TOLL_FREE
    if region != "US" and region not in US_TERRITORIES:
        return INTERNATIONAL
    state = number_state(e164, region)
    if state is None or home_state is None:
        return UNKNOWN
    return INTRASTATE if state == home_state else INTERSTATE
