"""Dialled strings to numbers: normalisation and number intelligence.

Screening must not be evadable, so every spelling of one number screens
the same: the Request-URI user is unescaped, URI parameters (``;isub=``,
``;phone-context=``) and visual separators are removed, the account's
outside-line digits are stripped, and ``+``, the international prefix
(011, 00) and national forms all become one E.164 number. A string that
is not a dialable number once cleaned (letters, ``*``, ``#``, pauses) is
reported as such and the policy denies it.

phonenumbers does the numbering-plan work: the region (which tells the
NANP's Caribbean countries from the US and Canada), the number type
(premium rate, shared cost, toll free…) and validity. Its answers are
cached (per dialled string and dial plan, and per E.164 number), since the
same destinations are dialled again and again.
"""

from __future__ import annotations

import enum
import functools
import unicodedata
from dataclasses import dataclass
from urllib.parse import unquote

import phonenumbers
from phonenumbers import PhoneMetadata, PhoneNumberType, phonenumberutil

# Characters people and PBXes put between digits; they mean nothing.
VISUAL_SEPARATORS = frozenset(" -.()/\t")
# Emergency numbers honoured in every region, beside phonenumbers' own data.
ALWAYS_EMERGENCY = frozenset({"911", "112", "999", "000", "110", "119", "933", "118", "08"})


class NumberType(enum.Enum):
    """phonenumbers' number types, by the names the policy file uses."""

    FIXED_LINE = "fixed_line"
    MOBILE = "mobile"
    FIXED_LINE_OR_MOBILE = "fixed_line_or_mobile"
    TOLL_FREE = "toll_free"
    PREMIUM_RATE = "premium_rate"
    SHARED_COST = "shared_cost"
    VOIP = "voip"
    PERSONAL_NUMBER = "personal_number"
    PAGER = "pager"
    UAN = "uan"
    VOICEMAIL = "voicemail"
    INVALID = "invalid"


_TYPES = {
    PhoneNumberType.FIXED_LINE: NumberType.FIXED_LINE,
    PhoneNumberType.MOBILE: NumberType.MOBILE,
    PhoneNumberType.FIXED_LINE_OR_MOBILE: NumberType.FIXED_LINE_OR_MOBILE,
    PhoneNumberType.TOLL_FREE: NumberType.TOLL_FREE,
    PhoneNumberType.PREMIUM_RATE: NumberType.PREMIUM_RATE,
    PhoneNumberType.SHARED_COST: NumberType.SHARED_COST,
    PhoneNumberType.VOIP: NumberType.VOIP,
    PhoneNumberType.PERSONAL_NUMBER: NumberType.PERSONAL_NUMBER,
    PhoneNumberType.PAGER: NumberType.PAGER,
    PhoneNumberType.UAN: NumberType.UAN,
    PhoneNumberType.VOICEMAIL: NumberType.VOICEMAIL,
}


@dataclass(frozen=True, slots=True)
class DialPlan:
    """How an account's PBX dials: what to strip and how to read what is left."""

    home_region: str = "US"
    outside_line: str = ""
    international_prefix: str = "011"
    national_prefix: str = "1"


@dataclass(frozen=True, slots=True)
class Number:
    """What screening knows about a dialled destination.

    ``e164`` is None when the string is not a dialable number; ``region``
    is None when no numbering plan claims the number.
    """

    dialled: str
    cleaned: str
    e164: str | None
    region: str | None
    country_code: int | None
    number_type: NumberType
    problem: str | None = None

    @property
    def dialable(self) -> bool:
        """Whether the string is a number at all."""
        return self.e164 is not None

    @property
    def valid(self) -> bool:
        """Whether the number is a valid number of its region's plan."""
        return self.number_type is not NumberType.INVALID


_DROP_SEPARATORS = str.maketrans("", "", "".join(VISUAL_SEPARATORS))


def clean(dialled: str) -> str:
    """The dialled string unescaped, without URI parameters or visual separators.

    Digits of other scripts (fullwidth ２, Arabic-Indic ٢) become ASCII digits,
    as phonenumbers and many carriers read them, so they screen as the number
    they spell.
    """
    text = unquote(dialled) if "%" in dialled else dialled
    text = text.split(";", 1)[0].split("@", 1)[0]  # ;isub=, ;phone-context=, a stray host
    text = text.strip().translate(_DROP_SEPARATORS)
    if not text.isascii():
        text = "".join(str(unicodedata.decimal(char)) if char.isdecimal() else char
                       for char in text)
    return text


def strip_outside_line(digits: str, plan: DialPlan) -> str:
    """Remove the outside-line digits when the PBX left them on."""
    if plan.outside_line and digits.startswith(plan.outside_line) and not digits.startswith("+"):
        return digits[len(plan.outside_line):]
    return digits


@functools.lru_cache(maxsize=16384)
def is_emergency(dialled: str, plan: DialPlan) -> bool:
    """Whether a dialled string reaches an emergency service (with or without the outside line)."""
    digits = clean(dialled)
    candidates = {digits, strip_outside_line(digits, plan)}
    for candidate in candidates:
        if not candidate.isdigit():
            continue
        if candidate in ALWAYS_EMERGENCY:
            return True
        if _is_emergency_in(candidate, plan.home_region):
            return True
    return False


@functools.lru_cache(maxsize=4096)
def _is_emergency_in(digits: str, region: str) -> bool:
    return len(digits) <= 6 and bool(phonenumbers.is_emergency_number(digits, region))


def to_e164(dialled: str, plan: DialPlan) -> tuple[str, str | None]:
    """Normalise to ``+digits``; return (cleaned string, E.164 or None).

    The outside-line digit is ambiguous (a US "9" is also the start of area
    code 972), so the string is read both ways and the stripped reading is
    used only when the string as dialled is not a valid number.
    """
    cleaned = clean(dialled)
    as_dialled = _digits_to_e164(cleaned, plan)
    stripped = strip_outside_line(cleaned, plan)
    if stripped == cleaned:
        return cleaned, as_dialled
    if as_dialled is not None and classify(as_dialled)[2] is not NumberType.INVALID:
        return cleaned, as_dialled
    return cleaned, _digits_to_e164(stripped, plan)


def _digits_to_e164(digits: str, plan: DialPlan) -> str | None:
    if digits.startswith("+"):
        rest = digits[1:]
        return "+" + rest if rest.isascii() and rest.isdigit() else None
    if not (digits.isascii() and digits.isdigit()):
        return None
    if plan.international_prefix and digits.startswith(plan.international_prefix):
        return "+" + digits[len(plan.international_prefix):]
    if digits.startswith("00") and plan.international_prefix != "00":
        # A PBX outside its home convention: 00 is the ITU's recommended prefix.
        return "+" + digits[2:]
    return _national_to_e164(digits, plan.home_region, plan.national_prefix)


def _national_to_e164(digits: str, region: str, national_prefix: str) -> str:
    country_code = phonenumbers.country_code_for_region(region)
    if country_code == 1 and len(digits) == 11 and digits.startswith("1"):
        return "+" + digits  # NANP: 1 + ten digits
    if national_prefix and digits.startswith(national_prefix) and country_code != 1:
        digits = digits[len(national_prefix):]
    return f"+{country_code}{digits}"


@functools.lru_cache(maxsize=65536)
def analyse(dialled: str, plan: DialPlan) -> Number:
    """Clean, normalise and classify a dialled string."""
    cleaned, e164 = to_e164(dialled, plan)
    if e164 is None or len(e164) < 3:
        problem = "not a dialable number (letters, *, #, pauses or nothing left)"
        return Number(dialled, cleaned, None, None, None, NumberType.INVALID, problem)
    if len(e164) > 16:
        return Number(dialled, cleaned, None, None, None, NumberType.INVALID,
                      "longer than any E.164 number (15 digits)")
    region, country_code, number_type = classify(e164)
    return Number(dialled, cleaned, e164, region, country_code, number_type)


@functools.lru_cache(maxsize=65536)
def classify(e164: str) -> tuple[str | None, int | None, NumberType]:
    """Region, country code and type of an E.164 number (cached)."""
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return None, None, NumberType.INVALID
    exact_region = phonenumbers.region_code_for_number(parsed)
    region = exact_region
    if region is None and parsed.country_code is not None:
        # Invalid numbers of a shared country code still belong to its main region.
        main = phonenumbers.region_code_for_country_code(parsed.country_code)
        region = None if main in (None, "ZZ", "001") else main
    # The type is UNKNOWN exactly when the number is not valid for its region, so
    # is_valid_number() (which would repeat the same matching) is not needed.
    raw_type = _number_type(parsed, exact_region)
    number_type = _TYPES.get(raw_type, NumberType.INVALID)
    return region, parsed.country_code, number_type


def _number_type(parsed: phonenumbers.PhoneNumber, region: str | None) -> int:
    """phonenumbers.number_type() without looking the region up a second time."""
    helper = getattr(phonenumberutil, "_number_type_helper", None)
    if helper is None:  # a future phonenumbers without the helper: the public call
        return int(phonenumbers.number_type(parsed))
    if region is None or parsed.country_code is None:
        return int(phonenumbers.number_type(parsed))  # rare: non-geographic or unknown
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(parsed.country_code, region)
    if metadata is None:
        return int(PhoneNumberType.UNKNOWN)
    return int(helper(phonenumbers.national_significant_number(parsed), metadata))
