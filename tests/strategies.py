"""Hypothesis strategies for the data model, composed from one strategy per part."""

from __future__ import annotations

from hypothesis import strategies as st

from replaydiff.corpora import Exchange, Request, Response

token = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", min_size=1, max_size=16)
header_value = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40
)
headers = st.lists(st.tuples(token, header_value), max_size=8).flatmap(
    # duplicates kept: repeat a random prefix of the list
    lambda pairs: st.integers(0, len(pairs)).map(lambda n: pairs + pairs[:n])
)
bodies = st.one_of(st.binary(max_size=200), st.text(max_size=200).map(lambda s: s.encode("utf-8")))
paths = st.lists(token, max_size=4).map(lambda parts: "/" + "/".join(parts))

requests = st.builds(
    Request,
    method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]),
    scheme=st.sampled_from(["http", "https"]),
    host=token,
    port=st.integers(1, 65535),
    path=paths,
    query=st.text(alphabet="abc=&%20", max_size=20),
    http_version=st.sampled_from(["HTTP/1.0", "HTTP/1.1", "HTTP/2.0"]),
    headers=headers,
    body=bodies,
)
responses = st.builds(
    Response,
    status=st.integers(100, 599),
    reason=st.text(alphabet="abcdefgh OK", max_size=12),
    http_version=st.sampled_from(["HTTP/1.1", "HTTP/2.0"]),
    headers=headers,
    body=bodies,
    original_encoding=st.sampled_from([None, "gzip", "br"]),
)
exchanges = st.builds(
    Exchange,
    id=token,
    session=token,
    start_us=st.integers(0, 10**12),
    request=requests,
    response=st.one_of(st.none(), responses),
    duration_us=st.integers(0, 10**9),
    tags=st.dictionaries(token, token, max_size=2),
)
