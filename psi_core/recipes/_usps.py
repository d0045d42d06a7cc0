"""Address tables after USPS Publication 28 (Postal Addressing Standards).

Every key and value is in the alphabet the text folding produces: upper-case letters,
digits and ``#``. A table change alters match keys, so it requires a new recipe version.

- ``SUFFIXES``: any written form of a street suffix (Appendix C1: the primary name, the
  common abbreviations and frequent misspellings) -> ``(primary name, standard abbreviation)``.
- ``ROUTE_SUFFIXES``: standard abbreviations that, followed by a number, name a numbered
  route ("US HWY 1", "COUNTY RD 5") rather than end a street name.
- ``DIRECTIONALS``: written forms of the eight directions -> ``(full word, abbreviation)``;
  ``DIRECTIONAL_PAIRS``: two-word forms ("SOUTH WEST") -> abbreviation.
- ``UNIT_DESIGNATORS``: secondary unit designators (Appendix C2) -> canonical designator.
  Designators people use interchangeably for one dwelling (APT, UNIT, #, STE, RM, LOT,
  SPACE, TRAILER, NO) all map to ``#``; BLDG, FL and DEPT name a different level of an
  address and keep their own abbreviation.
- ``NAME_WORDS``: words inside a street name written two ways (SAINT/ST, DOCTOR/DR,
  JUNIOR/JR); they take precedence over the spelled-out suffix and directional words.
- ``ORDINAL_WORDS`` / ``TENS_WORDS``: spelled ordinals -> numeric ("FIFTH" -> "5TH").
- ``STATES``: state, district and territory names, codes and common abbreviations ->
  two-letter USPS code (Appendix B).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType


def _suffix_table() -> dict[str, tuple[str, str]]:
    rows: tuple[tuple[str, str, tuple[str, ...]], ...] = (
        ("ALLEY", "ALY", ("ALLEE", "ALLY")),
        ("ANNEX", "ANX", ("ANEX", "ANNX")),
        ("ARCADE", "ARC", ()),
        ("AVENUE", "AVE", ("AV", "AVEN", "AVENU", "AVN", "AVNUE", "AVNU")),
        ("BAYOU", "BYU", ("BAYOO",)),
        ("BEACH", "BCH", ()),
        ("BEND", "BND", ()),
        ("BLUFF", "BLF", ("BLUF",)),
        ("BOTTOM", "BTM", ("BOT", "BOTTM")),
        ("BOULEVARD", "BLVD", ("BOUL", "BOULV", "BLV", "BOULEVRD")),
        ("BRANCH", "BR", ("BRNCH",)),
        ("BRIDGE", "BRG", ("BRDGE",)),
        ("BROOK", "BRK", ()),
        ("BYPASS", "BYP", ("BYPA", "BYPAS", "BYPS")),
        ("CANYON", "CYN", ("CANYN", "CNYN")),
        ("CAUSEWAY", "CSWY", ("CAUSWA", "CAUSWAY")),
        ("CENTER", "CTR", ("CEN", "CENT", "CENTR", "CENTRE", "CNTER", "CNTR")),
        ("CIRCLE", "CIR", ("CIRC", "CIRCL", "CRCL", "CRCLE")),
        ("CLIFF", "CLF", ()),
        ("CLIFFS", "CLFS", ()),
        ("CLUB", "CLB", ()),
        ("COMMON", "CMN", ()),
        ("CORNER", "COR", ()),
        ("CORNERS", "CORS", ()),
        ("COURSE", "CRSE", ()),
        ("COURT", "CT", ("CRT",)),
        ("COURTS", "CTS", ()),
        ("COVE", "CV", ()),
        ("CREEK", "CRK", ()),
        ("CRESCENT", "CRES", ("CRSENT", "CRSNT")),
        ("CROSSING", "XING", ("CRSSNG",)),
        ("DALE", "DL", ()),
        ("DIVIDE", "DV", ("DIV", "DVD")),
        ("DRIVE", "DR", ("DRIV", "DRV")),
        ("ESTATE", "EST", ()),
        ("ESTATES", "ESTS", ()),
        ("EXPRESSWAY", "EXPY", ("EXP", "EXPR", "EXPRESS", "EXPW")),
        ("EXTENSION", "EXT", ("EXTN", "EXTNSN")),
        ("FALLS", "FLS", ()),
        ("FERRY", "FRY", ("FRRY",)),
        ("FIELD", "FLD", ()),
        ("FIELDS", "FLDS", ()),
        ("FLAT", "FLT", ()),
        ("FORD", "FRD", ()),
        ("FOREST", "FRST", ("FORESTS",)),
        ("FORGE", "FRG", ("FORG",)),
        ("FORK", "FRK", ()),
        ("FORT", "FT", ("FRT",)),
        ("FREEWAY", "FWY", ("FREEWY", "FRWAY", "FRWY")),
        ("GARDEN", "GDN", ("GARDN", "GRDEN", "GRDN")),
        ("GARDENS", "GDNS", ("GRDNS",)),
        ("GATEWAY", "GTWY", ("GATEWY", "GATWAY", "GTWAY")),
        ("GLEN", "GLN", ()),
        ("GREEN", "GRN", ()),
        ("GROVE", "GRV", ("GROV",)),
        ("HARBOR", "HBR", ("HARB", "HARBR", "HRBOR", "HARBOUR")),
        ("HAVEN", "HVN", ()),
        ("HEIGHTS", "HTS", ("HT", "HGTS")),
        ("HIGHWAY", "HWY", ("HIGHWY", "HIWAY", "HIWY", "HWAY")),
        ("HILL", "HL", ()),
        ("HILLS", "HLS", ()),
        ("HOLLOW", "HOLW", ("HLLW", "HOLLOWS", "HOLWS")),
        ("ISLAND", "IS", ("ISLND",)),
        ("JUNCTION", "JCT", ("JCTION", "JCTN", "JUNCTN", "JUNCTON")),
        ("KNOLL", "KNL", ("KNOL",)),
        ("LAKE", "LK", ()),
        ("LAKES", "LKS", ()),
        ("LANDING", "LNDG", ("LNDNG",)),
        ("LANE", "LN", ("LNE",)),
        ("LOOP", "LOOP", ("LOOPS", "LP")),
        ("MALL", "MALL", ()),
        ("MANOR", "MNR", ()),
        ("MEADOW", "MDW", ()),
        ("MEADOWS", "MDWS", ("MEDOWS",)),
        ("MILL", "ML", ()),
        ("MISSION", "MSN", ("MISSN", "MSSN")),
        ("MOUNT", "MT", ("MNT",)),
        ("MOUNTAIN", "MTN", ("MNTAIN", "MNTN", "MOUNTIN", "MTIN")),
        ("ORCHARD", "ORCH", ("ORCHRD",)),
        ("OVAL", "OVAL", ("OVL",)),
        ("PARK", "PARK", ("PRK",)),
        ("PARKWAY", "PKWY", ("PARKWY", "PKWAY", "PKY", "PRKWY")),
        ("PASS", "PASS", ()),
        ("PATH", "PATH", ("PATHS",)),
        ("PIKE", "PIKE", ("PIKES",)),
        ("PINES", "PNES", ()),
        ("PLACE", "PL", ("PLC",)),
        ("PLAINS", "PLNS", ()),
        ("PLAZA", "PLZ", ("PLZA",)),
        ("POINT", "PT", ("PNT",)),
        ("PORT", "PRT", ()),
        ("PRAIRIE", "PR", ("PRR",)),
        ("RANCH", "RNCH", ("RANCHES", "RNCHS")),
        ("RIDGE", "RDG", ("RDGE",)),
        ("RIVER", "RIV", ("RVR", "RIVR")),
        ("ROAD", "RD", ()),
        ("ROUTE", "RTE", ("RT",)),
        ("ROW", "ROW", ()),
        ("RUN", "RUN", ()),
        ("SHORE", "SHR", ("SHOAR",)),
        ("SPRING", "SPG", ("SPNG", "SPRNG")),
        ("SPRINGS", "SPGS", ("SPNGS", "SPRNGS")),
        ("SQUARE", "SQ", ("SQR", "SQRE", "SQU")),
        ("STATION", "STA", ("STATN", "STN")),
        ("STRAVENUE", "STRA", ("STRAV", "STRAVEN", "STRAVN", "STRVN", "STRVNUE")),
        ("STREET", "ST", ("STR", "STRT", "STRET", "STREEET")),
        ("SUMMIT", "SMT", ("SUMIT", "SUMITT")),
        ("TERRACE", "TER", ("TERR", "TERACE")),
        ("TRACE", "TRCE", ("TRACES",)),
        ("TRAIL", "TRL", ("TRAILS", "TRLS")),
        ("TUNNEL", "TUNL", ("TUNEL", "TUNLS", "TUNNELS", "TUNNL")),
        ("TURNPIKE", "TPKE", ("TRNPK", "TURNPK")),
        ("VALLEY", "VLY", ("VALLY", "VLLY")),
        ("VIEW", "VW", ()),
        ("VILLAGE", "VLG", ("VILL", "VILLAG", "VILLG", "VILLIAGE")),
        ("VISTA", "VIS", ("VIST", "VST", "VSTA")),
        ("WALK", "WALK", ("WALKS",)),
        ("WAY", "WAY", ("WY",)),
        ("WELLS", "WLS", ()),
    )
    table: dict[str, tuple[str, str]] = {}
    for primary, abbreviation, variants in rows:
        for written in (primary, abbreviation, *variants):
            if written in table and table[written] != (primary, abbreviation):
                raise AssertionError(f"suffix {written} listed twice")
            table[written] = (primary, abbreviation)
    return table


SUFFIXES: Mapping[str, tuple[str, str]] = MappingProxyType(_suffix_table())

ROUTE_SUFFIXES: frozenset[str] = frozenset({"HWY", "RTE", "FWY", "EXPY", "TPKE", "RD", "PIKE"})

_DIRECTION_ROWS: tuple[tuple[str, str], ...] = (
    ("NORTH", "N"),
    ("SOUTH", "S"),
    ("EAST", "E"),
    ("WEST", "W"),
    ("NORTHEAST", "NE"),
    ("NORTHWEST", "NW"),
    ("SOUTHEAST", "SE"),
    ("SOUTHWEST", "SW"),
)

DIRECTIONALS: Mapping[str, tuple[str, str]] = MappingProxyType(
    {written: row for row in _DIRECTION_ROWS for written in row}
)

DIRECTIONAL_PAIRS: Mapping[tuple[str, str], str] = MappingProxyType(
    {
        (first, second): DIRECTIONALS[first][1] + DIRECTIONALS[second][1]
        for first in ("N", "NORTH", "S", "SOUTH")
        for second in ("E", "EAST", "W", "WEST")
    }
)

UNIT_DESIGNATORS: Mapping[str, str] = MappingProxyType(
    {
        "#": "#",
        "APT": "#",
        "APARTMENT": "#",
        "APPT": "#",
        "APTO": "#",
        "UNIT": "#",
        "UNT": "#",
        "STE": "#",
        "SUITE": "#",
        "SUIT": "#",
        "RM": "#",
        "ROOM": "#",
        "NO": "#",
        "NUM": "#",
        "NUMBER": "#",
        "LOT": "#",
        "SPC": "#",
        "SPACE": "#",
        "TRLR": "#",
        "TRAILER": "#",
        "BLDG": "BLDG",
        "BUILDING": "BLDG",
        "BLD": "BLDG",
        "FL": "FL",
        "FLOOR": "FL",
        "FLR": "FL",
        "DEPT": "DEPT",
        "DEPARTMENT": "DEPT",
    }
)

NAME_WORDS: Mapping[str, str] = MappingProxyType(
    {
        "SAINT": "ST",
        "ST": "ST",
        "SAINTE": "STE",
        "DOCTOR": "DR",
        "DR": "DR",
        "JUNIOR": "JR",
    }
)

ORDINAL_WORDS: Mapping[str, int] = MappingProxyType(
    {
        "FIRST": 1,
        "SECOND": 2,
        "THIRD": 3,
        "FOURTH": 4,
        "FIFTH": 5,
        "SIXTH": 6,
        "SEVENTH": 7,
        "EIGHTH": 8,
        "NINTH": 9,
        "TENTH": 10,
        "ELEVENTH": 11,
        "TWELFTH": 12,
        "THIRTEENTH": 13,
        "FOURTEENTH": 14,
        "FIFTEENTH": 15,
        "SIXTEENTH": 16,
        "SEVENTEENTH": 17,
        "EIGHTEENTH": 18,
        "NINETEENTH": 19,
        "TWENTIETH": 20,
        "THIRTIETH": 30,
        "FORTIETH": 40,
        "FIFTIETH": 50,
        "SIXTIETH": 60,
        "SEVENTIETH": 70,
        "EIGHTIETH": 80,
        "NINETIETH": 90,
        "HUNDREDTH": 100,
    }
)

TENS_WORDS: Mapping[str, int] = MappingProxyType(
    {
        "TWENTY": 20,
        "THIRTY": 30,
        "FORTY": 40,
        "FIFTY": 50,
        "SIXTY": 60,
        "SEVENTY": 70,
        "EIGHTY": 80,
        "NINETY": 90,
    }
)

_STATE_ROWS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("AL", ("ALABAMA", "ALA")),
    ("AK", ("ALASKA", "ALAS")),
    ("AZ", ("ARIZONA", "ARIZ")),
    ("AR", ("ARKANSAS", "ARK")),
    ("CA", ("CALIFORNIA", "CALIF", "CAL")),
    ("CO", ("COLORADO", "COLO")),
    ("CT", ("CONNECTICUT", "CONN")),
    ("DE", ("DELAWARE", "DEL")),
    ("DC", ("DISTRICT OF COLUMBIA", "WASHINGTON DC", "WASHINGTON D C")),
    ("FL", ("FLORIDA", "FLA")),
    ("GA", ("GEORGIA",)),
    ("HI", ("HAWAII",)),
    ("ID", ("IDAHO", "IDA")),
    ("IL", ("ILLINOIS", "ILL", "ILLS")),
    ("IN", ("INDIANA", "IND")),
    ("IA", ("IOWA",)),
    ("KS", ("KANSAS", "KAN", "KANS")),
    ("KY", ("KENTUCKY",)),
    ("LA", ("LOUISIANA",)),
    ("ME", ("MAINE",)),
    ("MD", ("MARYLAND",)),
    ("MA", ("MASSACHUSETTS", "MASS")),
    ("MI", ("MICHIGAN", "MICH")),
    ("MN", ("MINNESOTA", "MINN")),
    ("MS", ("MISSISSIPPI", "MISS")),
    ("MO", ("MISSOURI",)),
    ("MT", ("MONTANA", "MONT")),
    ("NE", ("NEBRASKA", "NEB", "NEBR")),
    ("NV", ("NEVADA", "NEV")),
    ("NH", ("NEW HAMPSHIRE",)),
    ("NJ", ("NEW JERSEY",)),
    ("NM", ("NEW MEXICO", "N MEX")),
    ("NY", ("NEW YORK",)),
    ("NC", ("NORTH CAROLINA", "N CAROLINA")),
    ("ND", ("NORTH DAKOTA", "N DAK")),
    ("OH", ("OHIO",)),
    ("OK", ("OKLAHOMA", "OKLA")),
    ("OR", ("OREGON", "ORE", "OREG")),
    ("PA", ("PENNSYLVANIA", "PENN", "PENNA")),
    ("RI", ("RHODE ISLAND",)),
    ("SC", ("SOUTH CAROLINA", "S CAROLINA")),
    ("SD", ("SOUTH DAKOTA", "S DAK")),
    ("TN", ("TENNESSEE", "TENN")),
    ("TX", ("TEXAS", "TEX")),
    ("UT", ("UTAH",)),
    ("VT", ("VERMONT",)),
    ("VA", ("VIRGINIA",)),
    ("WA", ("WASHINGTON", "WASH")),
    ("WV", ("WEST VIRGINIA", "W VIRGINIA", "W VA")),
    ("WI", ("WISCONSIN", "WIS", "WISC")),
    ("WY", ("WYOMING", "WYO")),
    ("PR", ("PUERTO RICO",)),
    ("GU", ("GUAM",)),
    ("VI", ("VIRGIN ISLANDS", "US VIRGIN ISLANDS")),
    ("AS", ("AMERICAN SAMOA",)),
    ("MP", ("NORTHERN MARIANA ISLANDS",)),
    ("AA", ("ARMED FORCES AMERICAS",)),
    ("AE", ("ARMED FORCES EUROPE",)),
    ("AP", ("ARMED FORCES PACIFIC",)),
)

STATES: Mapping[str, str] = MappingProxyType(
    {written: code for code, names in _STATE_ROWS for written in (code, *names)}
)
