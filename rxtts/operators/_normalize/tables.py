"""Word tables of the English normaliser (units, currencies, abbreviations, months)."""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

__all__ = [
    "ABBREVIATIONS",
    "COUNT_NOUNS",
    "CURRENCIES",
    "CURRENCY_CODES",
    "DATE_CUES",
    "KEEP_PERIOD",
    "MONTHS",
    "MONTH_ABBREVIATIONS",
    "NUMBER_ABBREVIATIONS",
    "PER_UNITS",
    "PHONE_CUES",
    "QUANTITY_CUES",
    "REGNAL_NAMES",
    "ROMAN_CUES",
    "SCORE_CUES",
    "SYMBOL_WORDS",
    "UNITS",
    "VULGAR_FRACTIONS",
    "WEEKDAY_ABBREVIATIONS",
    "YEAR_CUES",
]

MONTHS: Final = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip

MONTH_ABBREVIATIONS: Final = MappingProxyType(
    {m[:3]: m for m in MONTHS if m != "May"} | {"Sept": "September"}
)
"""``Jan`` -> ``January``: only read as a month when a day number follows."""

# symbol -> (major singular, major plural, minor singular, minor plural)
CURRENCIES: Final = MappingProxyType(
    {
        "$": ("dollar", "dollars", "cent", "cents"),
        "€": ("euro", "euros", "cent", "cents"),
        "£": ("pound", "pounds", "penny", "pence"),
        "¥": ("yen", "yen", "", ""),
        "₹": ("rupee", "rupees", "paisa", "paise"),
        "¢": ("cent", "cents", "", ""),
    }
)

CURRENCY_CODES: Final = MappingProxyType(
    {
        "USD": ("US dollar", "US dollars", "cent", "cents"),
        "EUR": ("euro", "euros", "cent", "cents"),
        "GBP": ("pound", "pounds", "penny", "pence"),
        "JPY": ("yen", "yen", "", ""),
        "INR": ("rupee", "rupees", "paisa", "paise"),
        "CAD": ("Canadian dollar", "Canadian dollars", "cent", "cents"),
        "AUD": ("Australian dollar", "Australian dollars", "cent", "cents"),
        "NZD": ("New Zealand dollar", "New Zealand dollars", "cent", "cents"),
        "CHF": ("Swiss franc", "Swiss francs", "centime", "centimes"),
        "CNY": ("yuan", "yuan", "", ""),
        "MXN": ("Mexican peso", "Mexican pesos", "centavo", "centavos"),
        "SEK": ("Swedish krona", "Swedish kronor", "", ""),
    }
)
"""ISO 4217 codes, before (``USD 45``) or after (``30 EUR``) the amount: said like a symbol."""

# unit as written -> (singular, plural); case-sensitive ("MB" megabytes, "mb" is not a unit here)
UNITS: Final = MappingProxyType(
    {
        "km": ("kilometer", "kilometers"),
        "m": ("meter", "meters"),
        "cm": ("centimeter", "centimeters"),
        "mm": ("millimeter", "millimeters"),
        "nm": ("nanometer", "nanometers"),
        "mi": ("mile", "miles"),
        "ft": ("foot", "feet"),
        "yd": ("yard", "yards"),
        "kg": ("kilogram", "kilograms"),
        "g": ("gram", "grams"),
        "mg": ("milligram", "milligrams"),
        "lb": ("pound", "pounds"),
        "lbs": ("pound", "pounds"),
        "oz": ("ounce", "ounces"),
        "fl oz": ("fluid ounce", "fluid ounces"),
        "tbsp": ("tablespoon", "tablespoons"),
        "Tbsp": ("tablespoon", "tablespoons"),
        "tsp": ("teaspoon", "teaspoons"),
        "gal": ("gallon", "gallons"),
        "qt": ("quart", "quarts"),
        "kcal": ("kilocalorie", "kilocalories"),
        "mcg": ("microgram", "micrograms"),
        "µg": ("microgram", "micrograms"),
        "psi": ("psi", "psi"),
        "L": ("liter", "liters"),
        "l": ("liter", "liters"),
        "ml": ("milliliter", "milliliters"),
        "mL": ("milliliter", "milliliters"),
        "mph": ("mile per hour", "miles per hour"),
        "km/h": ("kilometer per hour", "kilometers per hour"),
        "kph": ("kilometer per hour", "kilometers per hour"),
        "m/s": ("meter per second", "meters per second"),
        "h": ("hour", "hours"),
        "hr": ("hour", "hours"),
        "hrs": ("hour", "hours"),
        "pts": ("point", "points"),
        "wk": ("week", "weeks"),
        "wks": ("week", "weeks"),
        "yr": ("year", "years"),
        "yrs": ("year", "years"),
        "min": ("minute", "minutes"),
        "mins": ("minute", "minutes"),
        "sec": ("second", "seconds"),
        "ms": ("millisecond", "milliseconds"),
        "µs": ("microsecond", "microseconds"),
        "ns": ("nanosecond", "nanoseconds"),
        "Hz": ("hertz", "hertz"),
        "kHz": ("kilohertz", "kilohertz"),
        "MHz": ("megahertz", "megahertz"),
        "GHz": ("gigahertz", "gigahertz"),
        "KB": ("kilobyte", "kilobytes"),
        "kB": ("kilobyte", "kilobytes"),
        "MB": ("megabyte", "megabytes"),
        "GB": ("gigabyte", "gigabytes"),
        "TB": ("terabyte", "terabytes"),
        "PB": ("petabyte", "petabytes"),
        "Mb": ("megabit", "megabits"),
        "Gb": ("gigabit", "gigabits"),
        "kbps": ("kilobit per second", "kilobits per second"),
        "Mbps": ("megabit per second", "megabits per second"),
        "Gbps": ("gigabit per second", "gigabits per second"),
        "W": ("watt", "watts"),
        "kW": ("kilowatt", "kilowatts"),
        "kWh": ("kilowatt hour", "kilowatt hours"),
        "MW": ("megawatt", "megawatts"),
        "GW": ("gigawatt", "gigawatts"),
        "mA": ("milliamp", "milliamps"),
        "kV": ("kilovolt", "kilovolts"),
        "dB": ("decibel", "decibels"),
        "V": ("volt", "volts"),
        "mAh": ("milliamp hour", "milliamp hours"),
        "px": ("pixel", "pixels"),
        "fps": ("frame per second", "frames per second"),
        "rpm": ("revolution per minute", "revolutions per minute"),
        "%": ("percent", "percent"),
        "°F": ("degree Fahrenheit", "degrees Fahrenheit"),
        "°C": ("degree Celsius", "degrees Celsius"),
        "°K": ("kelvin", "kelvin"),
        "m²": ("square meter", "square meters"),
        "km²": ("square kilometer", "square kilometers"),
        "cm²": ("square centimeter", "square centimeters"),
        "ft²": ("square foot", "square feet"),
        "mi²": ("square mile", "square miles"),
        "sq ft": ("square foot", "square feet"),
        "sq mi": ("square mile", "square miles"),
        "m³": ("cubic meter", "cubic meters"),
        "cm³": ("cubic centimeter", "cubic centimeters"),
        "°": ("degree", "degrees"),
    }
)

PER_UNITS: Final = MappingProxyType(
    {
        "h": "hour", "hr": "hour", "hour": "hour", "day": "day", "wk": "week", "week": "week",
        "mo": "month", "month": "month", "yr": "year", "year": "year", "min": "minute",
        "s": "second", "sec": "second", "person": "person", "night": "night",
        "kg": "kilogram", "lb": "pound", "km": "kilometer", "mi": "mile", "GB": "gigabyte",
        "user": "user", "seat": "seat",
    }
)  # fmt: skip
"""``$5/month`` -> "five dollars per month"."""

# abbreviation (without its period) -> spoken word
ABBREVIATIONS: Final = MappingProxyType(
    {
        "Mr": "Mister", "Mrs": "Missus", "Ms": "Miz", "Mx": "Mix", "Prof": "Professor",
        "Mt": "Mount", "Ft": "Fort", "Jr": "Junior", "Sr": "Senior", "Gen": "General",
        "Gov": "Governor", "Sen": "Senator", "Rep": "Representative", "Rev": "Reverend",
        "Capt": "Captain", "Lt": "Lieutenant", "Col": "Colonel", "Sgt": "Sergeant",
        "Hon": "Honorable", "Ave": "Avenue", "Blvd": "Boulevard", "Rd": "Road", "Ln": "Lane",
        "Inc": "Incorporated", "Ltd": "Limited", "Corp": "Corporation", "Co": "Company",
        "Bros": "Brothers", "approx": "approximately", "Approx": "Approximately",
        "dept": "department", "Dept": "Department", "vs": "versus", "etc": "et cetera",
        "cf": "compare", "Cf": "Compare", "Apt": "Apartment", "Ste": "Suite", "Bldg": "Building",
        "Hwy": "Highway", "Pkwy": "Parkway", "Ct": "Court", "Univ": "University",
    }
)  # fmt: skip
"""``Dr``, ``St`` and the number-only ones (``No.``, ``Fig.``, ...) are decided by context."""

KEEP_PERIOD: Final = frozenset(
    [
        "Jr",
        "Sr",
        "Ave",
        "Blvd",
        "Rd",
        "Ln",
        "Inc",
        "Ltd",
        "Corp",
        "Co",
        "Bros",
        "etc",
        "dept",
        "Dept",
        "Hwy",
        "Pkwy",
        "Ct",
    ]
)
"""Abbreviations that may end a sentence: their period is kept when the sentence ends there."""

NUMBER_ABBREVIATIONS: Final = MappingProxyType(
    {"No": "number", "no": "number", "Fig": "figure", "fig": "figure", "Vol": "volume", "vol": "volume",
     "pp": "pages", "p": "page", "Ch": "chapter", "ch": "chapter", "Sec": "section", "sec": "section",
     "ext": "extension", "Ext": "extension"}
)  # fmt: skip
"""Read only when a number follows (``No. 5`` -> "number 5"): "no." alone is a word."""

YEAR_CUES: Final = frozenset(
    ["in", "since", "by", "from", "until", "till", "before", "after", "around", "circa", "year", "years",
     "early", "late", "mid", "summer", "winter", "spring", "fall", "autumn", "of", "and", "to", "between",
     "during", "c", *MONTHS]
)  # fmt: skip
"""Words before a 4-digit number that make it a year even outside 1900-2099."""

QUANTITY_CUES: Final = frozenset(
    ["over", "under", "nearly", "almost", "than", "exactly", "only", "just", "some", "total", "has", "have",
     "had", "with", "all", "costs", "cost", "paid", "pay", "about", "approximately", "roughly"]
)  # fmt: skip
"""Words before a 4-digit number that make it a count ("over 1500 people")."""

VULGAR_FRACTIONS: Final = MappingProxyType(
    {"½": (1, 2), "⅓": (1, 3), "⅔": (2, 3), "¼": (1, 4), "¾": (3, 4), "⅕": (1, 5), "⅖": (2, 5),
     "⅗": (3, 5), "⅘": (4, 5), "⅙": (1, 6), "⅚": (5, 6), "⅛": (1, 8), "⅜": (3, 8), "⅝": (5, 8),
     "⅞": (7, 8)}
)  # fmt: skip

SYMBOL_WORDS: Final = MappingProxyType(
    {".": "dot", "/": "slash", "-": "dash", "_": "underscore", "@": "at", "?": "question mark",
     "=": "equals", "&": "and", "#": "hash", ":": "colon", "~": "tilde", "%": "percent", "+": "plus",
     ",": "comma", ";": "semicolon", "!": "bang", "*": "star", "$": "dollar", "|": "pipe"}
)  # fmt: skip
"""How a separator inside a URL or e-mail address is said."""

DATE_CUES: Final = frozenset(
    ["on", "by", "until", "till", "since", "from", "due", "before", "after", "through", "thru", "dated",
     "starting", "ending", "expires", "expiring"]
)  # fmt: skip
"""Words before ``12/25`` that make it a date (month/day) rather than a fraction."""

PHONE_CUES: Final = frozenset(
    ["call", "dial", "phone", "tel", "telephone", "fax", "mobile", "cell", "text", "ring", "extension", "ext"]
)  # fmt: skip
"""Words before a number that make it read digit by digit (``call 911``, ``dial 555-0100``)."""

COUNT_NOUNS: Final = frozenset(
    ["people", "persons", "users", "customers", "employees", "students", "members", "votes", "words",
     "tokens", "characters", "bytes", "bits", "pixels", "items", "units", "copies", "pages", "lines", "rows",
     "files", "records", "samples", "steps", "points", "times", "calories", "cases", "deaths", "miles",
     "meters", "feet", "dollars", "euros", "pounds", "seconds", "minutes", "hours", "days", "downloads",
     "stars", "likes", "followers", "views", "requests", "cars", "homes", "jobs", "parameters", "params",
     "subscribers", "visitors", "installs", "images", "examples", "messages", "queries", "transactions",
     "sales", "readers", "listeners", "viewers", "players", "residents", "patients", "tons"]
)  # fmt: skip
"""Words after a number that make it a count: ``2048 tokens`` (not a year), ``7B parameters``."""

SCORE_CUES: Final = frozenset(
    ["scored", "score", "scores", "rated", "rating", "rate", "rates", "got", "gets", "gave", "give", "gives",
     "grade", "graded", "earned", "earns"]
)  # fmt: skip
"""Words before ``8/10`` that make it a score ("eight out of ten"), not a fraction."""


WEEKDAY_ABBREVIATIONS: Final = MappingProxyType(
    {"Mon": "Monday", "Tue": "Tuesday", "Tues": "Tuesday", "Wed": "Wednesday", "Thu": "Thursday",
     "Thur": "Thursday", "Thurs": "Thursday", "Fri": "Friday", "Sat": "Saturday", "Sun": "Sunday"}
)  # fmt: skip
"""Said in full only before a date (``Mon., Feb. 14``, ``Fri 3 May``): "the Sun." stays the Sun."""

ROMAN_CUES: Final = frozenset(
    ["Chapter", "Part", "Volume", "Vol", "Book", "Act", "Scene", "War", "Phase", "Stage", "Level", "Type",
     "Class", "Grade", "Appendix", "Section", "Episode", "Season", "Article", "Title", "Round", "Tier",
     "Category", "Schedule", "Mark", "Mk", "Bowl", "Series", "Generation", "Plate", "Figure", "Table",
     "Psalm", "Canto", "Symphony", "Division"]
)  # fmt: skip
"""Words after which a Roman numeral is a cardinal, even a one-letter one (``Part I``,
``World War I``, ``Chapter V``)."""

REGNAL_NAMES: Final = frozenset(
    ["Louis", "Henry", "Elizabeth", "George", "Charles", "Edward", "William", "James", "Richard", "John",
     "Paul", "Benedict", "Pius", "Leo", "Gregory", "Innocent", "Clement", "Urban", "Boniface", "Sixtus",
     "Julius", "Francis", "Peter", "Catherine", "Frederick", "Philip", "Ferdinand", "Alexander",
     "Napoleon", "Nicholas", "Ivan", "Mary", "Anne", "Alfonso", "Carlos", "Juan", "Felipe", "Constantine",
     "Ramesses", "Rameses", "Mehmed", "Suleiman", "Gustav", "Gustavus", "Christian", "Olaf", "Harald",
     "Haakon", "Wilhelm", "Otto", "Friedrich", "Ludwig", "Robert", "David", "Malcolm", "Stephen", "Rudolf",
     "Karl", "Leopold", "Joseph", "Franz", "Pedro", "Manuel", "Umberto", "Vittorio", "Rama", "Selim",
     "Murad", "Mohammed", "Victor", "Emmanuel", "Humbert", "Sancho", "Casimir", "Sigismund", "Augustus",
     "Martin", "Adrian", "Hadrian", "Celestine", "Eugene", "Sergius", "Honorius", "Felix"]
)  # fmt: skip
"""Names after which a Roman numeral is regnal: ``Louis XIV`` "Louis the fourteenth" (after
any other capitalised word it is a cardinal: ``Rocky II``, ``Final Fantasy VII``)."""
