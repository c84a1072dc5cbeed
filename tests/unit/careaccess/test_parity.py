"""The store's rule table (CareAccess.java) is the proxy's (careaccess/rules.py), row for row:
read from the Java source, so a rule added on one side only fails here."""

import re
from pathlib import Path

from careaccess.rules import READABLE_TYPES, RULES
from hubspoke.identifiers import READER_SYSTEM

JAVA = (
    Path(__file__).resolve().parents[3] / "store/src/main/java/org/fhirplug/store/tenancy/CareAccess.java"
).read_text()


def test_the_java_rule_table_has_the_same_rows_in_the_same_order():
    rows = re.findall(r'new Rule\(\s*"([^"]+)",\s*"([^"]+)",\s*"([^"]+)",\s*"([^"]+)"\)', JAVA)
    assert rows == [(r.name, r.source, r.via, r.target) for r in RULES]


def test_both_sides_name_the_same_reader_label_system():
    assert f'READER_SYSTEM = "{READER_SYSTEM}"' in JAVA


def test_only_the_rules_targets_carry_reader_labels():
    assert {r.target for r in RULES} == READABLE_TYPES
