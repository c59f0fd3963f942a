"""Capture: turn live or recorded HTTP traffic into sanitized corpora.

- `sanitize`: the default policy that masks secrets before anything is written;
- `capture`: a mitmproxy flow becomes an `Exchange`;
- `addon`: the mitmproxy addon (`replaydiff record`, or `mitmdump -s recorder/addon.py`);
- `proxy`: runs mitmproxy in-process as a reverse or forward proxy with the addon;
- `har`: HAR 1.2 import and export.

Nothing is imported here, so HAR users do not pay for importing mitmproxy.
"""
