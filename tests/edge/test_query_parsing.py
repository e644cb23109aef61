"""The edge's own query-string parser agrees with the standard library's."""

from urllib.parse import parse_qsl, quote_plus

from hypothesis import given
from hypothesis import strategies as st

from runtime.edge.inputs import _parse_query

names = st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)
pairs = st.lists(st.tuples(names, names), max_size=5)


@given(pairs, st.booleans())
def test_parse_query_matches_parse_qsl(items, with_blanks):
    raw = "&".join(f"{quote_plus(k)}={quote_plus(v)}" for k, v in items)
    if with_blanks:
        raw = "&" + raw + "&&flag"
    data = raw.encode("ascii")
    assert _parse_query(data) == dict(parse_qsl(data.decode("latin-1"), keep_blank_values=True))
