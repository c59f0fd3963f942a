"""Capture: turn live or recorded HTTP traffic into sanitized corpora.

- `policy`: what is secret: one rule type, the safe defaults, TOML policy files;
- `walk`: the one walker that visits every place a value can hide in a request or response;
- `pseudonym`: keyed, shape-keeping tokens for `pseudonymize` rules;
- `sanitize`: the judge between walker and policy, counting which rules fired;
- `capture`: a mitmproxy flow becomes an `Exchange` (and bodies above the cap are cut);
- `retries`: client retries in recorded traffic are tagged `retry_of` / `attempt`;
- `addon`: the mitmproxy addon (`replaydiff record`, or `mitmdump -s recorder/addon.py`);
- `proxy`: runs mitmproxy in-process as a reverse or forward proxy with the addon;
- `importing`: `replaydiff import`, the input kind told by content; `har` (HAR 1.2 in and out),
  `pcap` and `http1` (packet captures: TCP reassembly, HTTP/1.x parsing);
- `tap`, `tap_proxy`, `faults`: the egress proxy between a service and its dependencies.

Nothing is imported here, so a user of one part does not pay for importing the others.
"""
